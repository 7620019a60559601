"""``hcm demo``: the patient journey on embedded defaults, one numbered step at a time.

Everything runs on this machine: the sample health card in the software card emulator,
a software SAM with the test issuer keys, the resident index and journal in SQLite in a
temporary folder, the sample HIS adapter (``adapters/his/sample``), and the reference
bank's SOAP server on loopback behind the bank adapter (``adapters/bank/soap``). The steps are
those of :class:`~hcmiddleware.flows.outpatient.OutpatientFlow`. Each step prints
what it did; a failing step prints why and what to do, and the demo stops there.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.config import Config, parse_config
from hcmiddleware.errors import HcmError
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.keyfiles import scratch_audit_key, scratch_empi_keys
from hcmiddleware.models import VisitSummary
from hcmiddleware.registry import installed_plugins
from hcmiddleware.runtime import Middleware
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

__all__ = ["run_demo"]

Echo = Callable[[str], None]
DEMO_HIS = "sample-his"
DEMO_BANK = "bank-soap"
DEMO_PEER_GROUP = "hcmiddleware.demo"
SAMPLE_PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


@dataclass
class Journey:
    """What the steps hand on to each other; the steps are the outpatient flow's."""

    mw: Middleware
    card: EmulatedCard
    flow: OutpatientFlow
    bank: bool = False
    values: dict[str, Any] = field(default_factory=dict)


NO_BANK = (
    "skipped: the bank adapter is not installed "
    "(pip install -e adapters/bank/soap with hcmiddleware[soap]; tox -e demo does this)"
)


def _step_top_up(j: Journey) -> str:
    if not j.bank:
        return NO_BANK
    from hcmiddleware.flows.payment import top_up

    card_number = j.values["who"].card.issuer.card_number
    moved = top_up(
        j.mw.journal,
        key=f"demo-top-up-{card_number}",
        card_number=card_number,
        amount="100.00",
        terminal_id="demo-kiosk",
    )
    return f"100.00 yuan topped up through the reference bank (transaction {moved.transaction_id})"


def _step_pay(j: Journey) -> str:
    if not j.bank:
        return NO_BANK
    from hcmiddleware.flows.payment import charges_payment

    patient = j.values["patient"]
    charges = j.flow.charges(patient, j.values["registration"])
    pay = charges_payment(
        j.mw.journal, card_number=j.values["who"].card.issuer.card_number, terminal_id="demo-kiosk"
    )
    settled = j.flow.settle(patient, charges, pay=pay)
    after = j.flow.charges(patient, j.values["registration"])
    return (
        f"{settled.amount:.2f} yuan paid from the card's account, journalled before it was "
        f"sent (transaction {settled.transaction_id}); "
        f"{sum(c.paid for c in after)} of {len(after)} charges marked paid in the HIS"
    )


def _mask(number: str) -> str:
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def _step_doctor(j: Journey) -> str:
    rows = j.mw.doctor()
    bad = [f"{p}: {r.name} — {r.detail}" for p, r in rows if not r.ok]
    if bad:
        raise HcmError("health checks failed: " + "; ".join(bad), hint="run 'hcm doctor'")
    return f"{len(rows)} checks passed"


def _step_read_card(j: Journey) -> str:
    before = j.mw.residents.index.count()
    who = j.flow.identify(j.card)
    j.values["who"] = who
    card = who.card
    assert card is not None  # identified by the card itself
    how = "enrolled" if j.mw.residents.index.count() > before else "found"
    return (
        f"card {_mask(card.issuer.card_number)}, authenticated with the SAM; "
        f"read {', '.join(card.parts)} only; "
        f"resident {who.resident.resident_id} ({how} in the index)"
    )


def _step_face(j: Journey) -> str:
    from hcmiddleware.errors import FaceBackendError, MissingExtraError
    from hcmiddleware.face.samples import KIOSK_LIVE_PHOTO

    try:
        result = j.flow.check_face(j.values["who"], KIOSK_LIVE_PHOTO.read_bytes(), transport=j.card)
    except MissingExtraError as exc:
        return f"skipped: face checks need the '{exc.extra}' extra ({exc.hint})"
    except FaceBackendError as exc:
        return f"skipped: {exc}"
    return (
        f"the person at the kiosk is the cardholder (distance {result.distance:.2f}, "
        f"threshold {result.threshold:.2f})"
    )


def _step_patient(j: Journey) -> str:
    patient = j.flow.patient(j.values["who"])
    j.values["patient"] = patient
    how = "created" if patient.created else "found"
    return f"hospital patient ID {patient.patient_id} ({how} by the HIS, kept in the index)"


def _step_register(j: Journey) -> str:
    start = (datetime.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    reg = j.flow.register(j.values["patient"], department_code="NEI", slot_start=start, fee="12.00")
    j.values["registration"] = reg
    pos = j.flow.queue(reg)
    return (
        f"registration {reg.registration_id}, {start:%H:%M}–{reg.slot_end:%H:%M}, "
        f"queue number {pos.queue_number} ({pos.ahead} ahead)"
    )


def _step_desk(j: Journey) -> str:
    view = j.flow.desk(j.values["who"], j.values["patient"], j.values["registration"], j.card)
    orders = len(view.orders)
    return (
        f"{len(view.previous_visits)} earlier visits on the card, "
        f"{orders} order{'' if orders == 1 else 's'} for this visit"
    )


def _step_charges(j: Journey) -> str:
    charges = j.flow.charges(j.values["patient"], j.values["registration"])
    j.values["total"] = sum((c.amount for c in charges), start=Decimal("0.00"))
    return f"{len(charges)} charges, total {j.values['total']:.2f} yuan"


def _step_write_back(j: Journey) -> str:
    config = j.mw.config.middleware
    slot = j.flow.write_summary(
        j.values["who"],
        VisitSummary(
            kind="outpatient",
            visited_at=datetime.now(),
            institution_name=config.site_name,
            institution_code=config.institution_code,
            department="内科",
            doctor="张医生",
            diagnosis_code="J06.9",
            diagnosis_name="急性上呼吸道感染",
            treatment="对症治疗",
            total_fee=j.values["total"],
        ),
        j.card,
    )
    visits = j.mw.terminal.open(j.card).read_visits()
    return f"visit summary written to outpatient slot {slot}; the card now holds {len(visits)}"


def _step_audit(j: Journey) -> str:
    checkpoint = j.mw.audit.checkpoint()
    report = j.mw.audit.verify(actor="demo")
    if not report.ok:
        raise HcmError(report.render(), hint="run 'hcm audit verify'")
    signed = "signed" if checkpoint is not None and checkpoint.signature else "unsigned"
    return (
        f"{report.entries} entries in the audit chain ({report.algorithm}), every one "
        f"intact; checkpoint at entry {report.head} ({signed})"
    )


STEPS: list[tuple[str, Callable[[Journey], str]]] = [
    ("Check the installation", _step_doctor),
    ("Read the health card and find the resident", _step_read_card),
    ("Check the face against the card photo", _step_face),
    ("Find or create the hospital patient", _step_patient),
    ("Register the visit and join the queue", _step_register),
    ("Show the doctor the card's visits and the orders", _step_desk),
    ("List the visit's charges", _step_charges),
    ("Top up the card's account", _step_top_up),
    ("Pay the charges from the card's account", _step_pay),
    ("Write the visit summary back to the card", _step_write_back),
    ("Verify the audit log", _step_audit),
]


def run_demo(*, data_dir: str | None = None, echo: Echo = print) -> bool:
    """Run every step; True when all passed."""
    if DEMO_HIS not in installed_plugins():
        echo(
            "the demo needs the sample HIS adapter: "
            "pip install -e adapters/his/sample (tox -e demo does this)"
        )
        return False
    folder = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="hcm-demo-"))
    # The demo's card is the software card in-process; `hcm card emulate` serves the
    # same card behind pcscd for the PC/SC path.
    card = EmulatedCard.from_files(SAMPLE_PROFILE, TEST_ISSUER_KEYS)
    with ExitStack() as stack:
        peers = _start_peers(stack, folder)
        plugins: dict[str, Any] = {"enabled": [DEMO_HIS, *peers], **peers}
        config = parse_config(
            {
                "middleware": {
                    "data_dir": str(folder),
                    "site_name": "Demo hospital",
                    "institution_code": "210100000001",
                },
                "sam": {"keys": str(TEST_ISSUER_KEYS)},
                # the demo's own index keys, beside its data (an installation's come
                # from 'hcm init')
                "empi": scratch_empi_keys(folder / "keys"),
                "audit": scratch_audit_key(folder / "keys"),
                "plugins": plugins,
            }
        )
        echo(f"hcmiddleware demo — data in {folder}")
        return _run_steps(config, card, DEMO_BANK in peers, echo)


def _start_peers(stack: ExitStack, folder: Path) -> dict[str, dict[str, Any]]:
    """Start the demo peers installed adapters offer (entry point ``hcmiddleware.demo``).

    Each returns the plugin to enable with its settings; the core never imports an
    adapter. Today the bank adapter offers its reference SOAP server.
    """
    cardholder = json.loads(SAMPLE_PROFILE.read_text(encoding="utf-8"))["items"]
    folder.mkdir(parents=True, exist_ok=True)
    peers: dict[str, dict[str, Any]] = {}
    for ep in entry_points(group=DEMO_PEER_GROUP):
        peer = ep.load()(folder, cardholder)
        stack.callback(peer["stop"])
        peers[str(peer["plugin"])] = dict(peer["settings"])
    return peers


def _run_steps(config: Config, card: EmulatedCard, bank: bool, echo: Echo) -> bool:
    started = time.perf_counter()
    with Middleware(config) as mw:
        journey = Journey(mw, card, OutpatientFlow(mw, actor="demo-kiosk"), bank=bank)
        for number, (title, step) in enumerate(STEPS, start=1):
            t0 = time.perf_counter()
            try:
                outcome = step(journey)
            except HcmError as exc:
                echo(f"[{number}/{len(STEPS)}] {title}: FAILED — {exc}")
                return False
            ms = (time.perf_counter() - t0) * 1000
            echo(f"[{number}/{len(STEPS)}] {title}: {outcome} ({ms:.0f} ms)")
    echo(f"journey complete in {(time.perf_counter() - started) * 1000:.0f} ms")
    return True
