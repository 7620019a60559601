"""Run scripts of ``examples/``, each in a process of its own, without a cold start each.

``python _run_examples.py EXAMPLES OUT SCRIPT...`` imports once what the examples
import (Python, the SDK, the reference HIS, the face models …), then forks one child
per script. The child is a fresh process as far as the script can tell: it runs the
script as ``__main__`` from its own working folder ``OUT/<script stem>``, which is
also its ``TMPDIR``, with its output in ``stdout``/``stderr`` there; what it changes
dies with it. The parent waits for each child in turn and writes its exit code to
``OUT/<script stem>/exit`` (its wall time to ``seconds``). A child that runs longer
than ``TIMEOUT`` seconds is ended by an alarm.

Only the start-up is shared: every example still starts its own Middleware, HIS and
card, exactly as when it is run by hand.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import runpy
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

TIMEOUT = 120
#: what the examples import between them, lazily too (the face models load when
#: imported; the index, the database migrations, the HIS adapter when first used; the
#: conformance kit's pytest run loads the plugins pytest finds installed)
WARM = (
    "hcmiddleware",
    "hcmiddleware.flows.outpatient",
    "hcmiddleware.flows.inpatient",
    "hcmiddleware.flows.payment",
    "hcmiddleware.flows.settlement",
    "hcmiddleware.empi.index",
    "hcmiddleware.empi.duplicates",
    "hcmiddleware.empi.enrolment",
    "hcmiddleware.empi.linkage",
    "hcmiddleware.empi.training",
    "hcmiddleware.face.verify",
    "hcmiddleware.face.enrolment",
    "hcmiddleware.face.dlib_backend",
    "hcmiddleware.face.detectors",
    "hcmiddleware.face.gallery",
    "hcmiddleware.ehc.issuer",
    "hcmiddleware.ehc.revocations",
    "hcmiddleware.ehc.replay",
    "hcmiddleware.ehc.keyfiles",
    "hcmiddleware.ehc.qr",
    "hcmiddleware.ward.labels",
    "hcmiddleware.testing.conformance",
    "hcmiddleware.testing.plugin",
    "hcm_his_reference",
    "hcm_his_reference.fhir_front",
    "hcm_his_hl7.adapter",
    "hcm_his_sample",
    "hcm_bank_soap.reference",
    "hcm_insurance_soap.reference",
    "alembic.command",
    "alembic.runtime.migration",
    "alembic.autogenerate",
    "alembic.operations",
    "face_recognition",
    "PIL.Image",
    "pytest",
    "schemathesis",
    "hypothesis",
    "_site",
)


def child(script: Path, folder: Path) -> int:
    """Run ``script`` as ``__main__`` in this (forked) process; its exit code."""
    os.chdir(folder)
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None  # read TMPDIR again
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [str(script)]
    sys.path[0] = str(script.parent)  # as `python script.py` sets it
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main(examples: Path, out: Path, scripts: list[str]) -> int:
    sys.path.insert(0, str(examples))
    for module in WARM:
        with contextlib.suppress(ImportError):  # an example that needs it says so
            importlib.import_module(module)
    # a fork copies only the thread that forks: nothing may run beside it
    assert threading.active_count() == 1, threading.enumerate()
    sys.stdout.flush()
    sys.stderr.flush()
    for name in scripts:
        folder = out / Path(name).stem
        folder.mkdir(parents=True)
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                import signal

                signal.alarm(TIMEOUT)
                code = child(examples / name, folder)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        (folder / "exit").write_text(str(os.waitstatus_to_exitcode(status)), encoding="ascii")
        (folder / "seconds").write_text(f"{time.perf_counter() - started:.2f}", encoding="ascii")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]))
