"""``hcm demo``: one patient's whole journey on embedded defaults, one numbered step at a time.

Everything runs on this machine and is stopped again, whatever happens: the sample
health card and a SAM card behind pcscd + vpcd (in-process where pcscd is not
installed), the resident index, journal and audit log in SQLite in a fresh folder, and
the reference peers of the installed adapters on loopback — the HIS (HL7 v2.5 over
MLLP), the bank and the insurer (SOAP), the e-card platform, the ward's MQTT broker
when one answers (see :mod:`hcmiddleware.demo.peers`). The journey: enrolment with a
face check, the kiosk's card read, registration and queue, the e-health card, the
doctor's desk, payment from the card's bank account, insurance settlement, the visit
written to the card, admission with a deposit and a wristband, the nurse's round, an
emergency call, discharge, the day's reconciliation and the audit chain's check.

Each step prints what happened and how long it took, split among the card, the HIS,
the bank, the insurer, the e-card platform, the face models and the middleware itself.
A failing step says what to do and the demo stops there; ``--step N`` stops after
step N; ``--json`` prints one JSON document for scripts.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from hcmiddleware.config import Config, parse_config
from hcmiddleware.demo.clock import SHARES, Clock
from hcmiddleware.demo.peers import SAMPLE_PROFILE, Peers, Terminal, start_peers, start_terminal
from hcmiddleware.demo.steps import STEPS, Journey, StepSkippedError
from hcmiddleware.errors import HcmError, MissingExtraError
from hcmiddleware.keyfiles import scratch_audit_key, scratch_empi_keys
from hcmiddleware.registry import installed_plugins
from hcmiddleware.runtime import Middleware
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

__all__ = ["SAMPLE_PROFILE", "STEPS", "run_demo"]

Echo = Callable[[str], None]
SAMPLE_HIS = "sample-his"
INSTITUTION = "210100000001"
#: exit codes: 0 every step passed, 1 a step failed, 2 the demo could not start, 130 Ctrl-C
OK, FAILED, CANNOT_START, INTERRUPTED = 0, 1, 2, 130
#: For the tests of Ctrl-C (docs/testing.md), not for users: with this set to a step's
#: number the demo presses Ctrl-C on itself while that step runs.
INTERRUPT_AT = "HCM_DEMO_INTERRUPT_AT"


class _CtrlC:
    """Ctrl-C, pressed once while step ``at`` runs: right after the step's first call to
    a peer, the card or the face models has returned, or — for a step that makes none —
    when its work is done, before its line is printed. Always from the main thread, so
    the interrupt lands at that very point, as the terminal's would when pressed then.
    The signal goes to the demo's process group when it leads one (as a terminal sends
    it), else to the demo alone."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.pressed = False
        # a process started in the background by a shell without job control ignores
        # SIGINT from birth; a terminal's Ctrl-C reaches Python's own handler
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def __call__(self, number: int) -> None:
        if number != self.at or self.pressed:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        self.pressed = True
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGINT)
        else:
            os.kill(os.getpid(), signal.SIGINT)


def _ctrl_c_hook() -> _CtrlC | None:
    """The test hook's Ctrl-C, when :data:`INTERRUPT_AT` names a step."""
    value = os.environ.get(INTERRUPT_AT, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= len(STEPS):
        raise HcmError(
            f"{INTERRUPT_AT} must be a step number from 1 to {len(STEPS)}, not {value!r}",
            hint=f"unset {INTERRUPT_AT} (it is for the demo's own tests)",
        )
    return _CtrlC(int(value))


def _writable(folder: Path) -> str | None:
    """Why the demo cannot keep its files in ``folder``, or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".hcm-demo-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"the data folder {folder} cannot be written ({exc.strerror or exc})"
    return None


def _ehc_section(folder: Path, peers: Peers) -> dict[str, Any]:
    """The e-card platform's key when its peer runs, else an issuer of the demo's own."""
    if "ehc" in peers.sections:
        return dict(peers.sections["ehc"])
    from hcmiddleware.ehc.keyfiles import ehc_section

    try:
        return ehc_section(folder / "keys" / "ehc", algorithm="sm2", issuer="DEMO", key_id="DEMO1")
    except MissingExtraError:
        return ehc_section(
            folder / "keys" / "ehc-p256", algorithm="ecdsa-p256", issuer="DEMO", key_id="DEMO2"
        )


def _config(folder: Path, terminal: Terminal, peers: Peers) -> Config:
    plugins: dict[str, Any] = dict(peers.plugins)
    his = [name for name in plugins if name.startswith("his-")]
    enabled = list(plugins) if his else [SAMPLE_HIS, *plugins]
    sam: dict[str, Any] = {"keys": str(TEST_ISSUER_KEYS)}
    if terminal.pcsc:
        from hcmiddleware.sam.emulated import DEFAULT_TEST_PIN

        pin = folder / "keys" / "sam-pin"
        pin.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pin.write_text(DEFAULT_TEST_PIN, encoding="ascii")
        os.chmod(pin, 0o600)
        sam = {"pin": {"file": str(pin)}}
    return parse_config(
        {
            "middleware": {
                "data_dir": str(folder),
                "site_name": "Demo hospital",
                "institution_code": INSTITUTION,
            },
            "readers": terminal.readers_section(),
            "sam": sam,
            # the demo's own keys, beside its data (an installation's come from 'hcm init')
            "empi": scratch_empi_keys(folder / "keys"),
            "audit": scratch_audit_key(folder / "keys"),
            "ehc": _ehc_section(folder, peers),
            # the thermal printer is a file here (the ESC/POS bytes a printer would get);
            # the self-service page printer, PDFs in a folder
            "printing": {
                "escpos_device": str(folder / "thermal-printer.escpos"),
                "pdf_dir": str(folder / "printed"),
            },
            "plugins": {"enabled": enabled, **plugins},
        }
    )


def run_demo(
    *,
    data_dir: str | None = None,
    echo: Echo = print,
    step: int | None = None,
    as_json: bool = False,
    pcsc: bool = True,
    broker: str | None = None,
) -> int:
    """Run the journey (up to ``step``); the exit code (0 when every step passed)."""
    say: Echo = (lambda _line: None) if as_json else echo
    result: dict[str, Any] = {"ok": False, "steps": [], "parts": []}

    def finish(code: int, message: str | None = None) -> int:
        if message:
            result["error"] = message
            say(message)
        if as_json:
            echo(json.dumps(result, ensure_ascii=False, indent=2))
        return code

    if step is not None and not 1 <= step <= len(STEPS):
        return finish(CANNOT_START, f"--step must be between 1 and {len(STEPS)}, not {step}")
    try:
        ctrl_c = _ctrl_c_hook()
    except HcmError as exc:
        return finish(CANNOT_START, f"{exc.message} ({exc.hint})")
    if not ({SAMPLE_HIS, "his-hl7", "his-fhir"} & set(installed_plugins())):
        return finish(
            CANNOT_START,
            "the demo needs a HIS adapter: pip install -e adapters/his/sample, or the "
            "reference HIS with the HL7 adapter (tox -e demo installs them)",
        )
    folder = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="hcm-demo-"))
    unwritable = _writable(folder)
    if unwritable:
        return finish(CANNOT_START, f"{unwritable}: choose another with --data-dir")
    say(f"hcmiddleware demo — data in {folder}")
    result["data_dir"] = str(folder)
    number = 0
    with ExitStack() as stack:
        try:
            terminal = start_terminal(stack, pcsc=pcsc)
            peers = start_peers(stack, folder, broker=broker)
            for note in [terminal.note, *peers.notes]:
                say(f"  · {note}")
                result["parts"].append(note)
            config = _config(folder, terminal, peers)
            mw = stack.enter_context(Middleware(config))
        except KeyboardInterrupt:
            return finish(INTERRUPTED, "interrupted while starting; everything started is stopped")
        except HcmError as exc:
            hint = f" — {exc.hint}" if exc.hint else ""
            return finish(CANNOT_START, f"the demo could not start: {exc.message}{hint}")
        clock = Clock()
        clock.listener = ctrl_c
        stack.callback(mw.dispatcher.add_observer(clock.observe))
        journey = Journey(mw, terminal, peers, clock)
        last = step or len(STEPS)
        started = time.perf_counter()
        try:
            for number, (title, run, _outpatient) in enumerate(STEPS[:last], start=1):
                record = _run_step(journey, number, title, run, ctrl_c)
                result["steps"].append(record)
                say(_line(record, last))
                if record["status"] == "failed":
                    return finish(FAILED)
        except KeyboardInterrupt:
            return finish(
                INTERRUPTED,
                f"interrupted at step {number}; everything the demo started is stopped. "
                f"Run 'hcm demo' again (with --data-dir {folder} to go on with the same data).",
            )
        result["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    result["ok"] = True
    _summary(result, say)
    return finish(OK)


def _run_step(
    j: Journey,
    number: int,
    title: str,
    run: Callable[[Journey], str],
    ctrl_c: _CtrlC | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {"step": number, "title": title}
    with j.clock.step(number) as timing:
        try:
            record.update(status="ok", detail=run(j))
        except StepSkippedError as exc:
            record.update(status="skipped", detail=str(exc))
        except MissingExtraError as exc:
            record.update(status="skipped", detail=f"needs the '{exc.extra}' extra ({exc.hint})")
        except HcmError as exc:
            record.update(status="failed", detail=exc.message, hint=exc.hint)
        except Exception as exc:  # a defect: say so, keep the traceback for the report
            log = j.mw.config.middleware.data_dir / "demo-error.log"
            log.write_text(traceback.format_exc(), encoding="utf-8")
            record.update(
                status="failed",
                detail=f"unexpected {type(exc).__name__}: {exc}",
                hint=f"this is a defect; report it with {log}",
            )
        if ctrl_c is not None:
            ctrl_c(number)  # a step that called no peer: Ctrl-C at its end
    record["ms"] = round(timing.total * 1000, 1)
    record["shares_ms"] = timing.shares_ms()
    return record


def _line(record: dict[str, Any], last: int) -> str:
    head = f"[{record['step']}/{last}] {record['title']}"
    if record["status"] == "failed":
        hint = f" (what to do: {record['hint']})" if record.get("hint") else ""
        return f"{head}: FAILED — {record['detail']}{hint}"
    if record["status"] == "skipped":
        return f"{head}: skipped: {record['detail']}"
    shares = record["shares_ms"]
    split = ", ".join(f"{k} {v:.0f}" for k, v in shares.items() if v >= 0.5)
    return f"{head}: {record['detail']} ({record['ms']:.0f} ms: {split})"


def _summary(result: dict[str, Any], say: Echo) -> None:
    steps = result["steps"]
    totals = {name: round(sum(s["shares_ms"][name] for s in steps), 1) for name in SHARES}
    visit = [s for s in steps if STEPS[s["step"] - 1][2]]
    visit_ms = round(sum(s["ms"] for s in visit), 1)
    visit_mw = round(sum(s["shares_ms"]["middleware"] for s in visit), 1)
    result.update(shares_ms=totals, outpatient_ms=visit_ms, outpatient_middleware_ms=visit_mw)
    say(
        f"journey complete in {result['total_ms']:.0f} ms — "
        + ", ".join(f"{k} {v:.0f}" for k, v in totals.items())
    )
    if visit:
        say(
            f"the outpatient visit (steps {visit[0]['step']}–{visit[-1]['step']}): "
            f"{visit_ms:.0f} ms, of which the middleware {visit_mw:.0f} ms"
        )
