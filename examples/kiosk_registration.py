"""A self-service kiosk registers a patient with the health card (挂号).

Run it (the HL7 adapter and the reference HIS are installed by tox / the README's
install line)::

    python examples/kiosk_registration.py

What it does, in the order a kiosk screen does it:

1. starts the reference HIS on loopback — a stand-in for the hospital's own HIS,
   speaking HL7 v2.5 over MLLP — and a Middleware whose config enables the HL7
   adapter (a hospital writes the same keys in its TOML file);
2. reads the sample health card (the software card, in-process; at a real kiosk
   ``flow.identify()`` with no argument reads the configured PC/SC reader);
3. finds the resident in the index, enrolling them on a first visit;
4. gets the hospital patient ID — from the index, else from the HIS, which creates it
   on a first visit — and remembers it in the index;
5. checks the face at the camera against the card photo (skipped when no face
   backend is installed);
6. registers the visit in a slot of at most an hour and prints the queue ticket.

Pressing "register" twice (or a kiosk restarting mid-way) registers once: run step 6
again and the HIS answers the same registration.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path

from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.config import parse_config
from hcmiddleware.errors import FaceBackendError, FaceMismatchError, HcmError
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.keyfiles import write_empi_keys
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

HOSPITAL = "210100000001"
SAMPLE_CARD = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


def main() -> int:
    """Run the kiosk once; 0 when the patient holds a ticket."""
    workdir = Path(tempfile.mkdtemp(prefix="hcm-kiosk-"))
    with ReferenceHis(workdir / "his.db", hospital_code=HOSPITAL) as his:
        host, port = his.mllp_address
        config = parse_config(
            {
                "middleware": {"data_dir": str(workdir / "hcm"), "institution_code": HOSPITAL},
                "sam": {"keys": str(TEST_ISSUER_KEYS)},
                # the resident index's keys, as `hcm init` writes them for a site
                "empi": write_empi_keys(workdir / "keys").section(),  # the software SAM's test keys
                "plugins": {"enabled": ["his-hl7"], "his-hl7": {"host": host, "port": port}},
            }
        )
        card = EmulatedCard.from_files(SAMPLE_CARD, TEST_ISSUER_KEYS)
        with Middleware(config) as mw:
            try:
                return kiosk(mw, card)
            except HcmError as exc:  # every failure is typed and says what to do
                print(f"sorry: {exc.message}\n  → {exc.hint}")
                return 1


def kiosk(mw: Middleware, card: EmulatedCard) -> int:
    """The kiosk's screens, one flow step each."""
    flow = OutpatientFlow(mw, actor="kiosk-01")
    warning = mw.cards.notice()  # shown on the kiosk's staff screen while a list is stale
    if warning:
        print(f"staff notice: {warning}")

    who = flow.identify(card)
    name = who.resident.name
    print(f"card read: {name[0]}{'*' * (len(name) - 1)}, resident {who.resident.resident_id[:8]}…")

    patient = flow.patient(who)
    print(
        f"hospital patient ID {patient.patient_id}"
        f" ({'new, created by the HIS' if patient.created else 'known'})"
    )

    from hcmiddleware.face.samples import KIOSK_LIVE_PHOTO

    try:
        # the identifying read took identity, insurance and phones; the photo is read now
        check = flow.check_face(who, KIOSK_LIVE_PHOTO.read_bytes(), transport=card)
        print(f"face check: the cardholder (distance {check.distance:.2f})")
    except FaceBackendError as exc:
        print(f"face check skipped: {exc.message}")
    except FaceMismatchError as exc:
        print(f"face check failed ({exc.status}): send the patient to the desk")
        return 1

    slot = (datetime.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    registration = flow.register(
        patient, department_code="NEI", doctor_code="D01", slot_start=slot, fee="12.00"
    )
    again = flow.register(
        patient, department_code="NEI", doctor_code="D01", slot_start=slot, fee="12.00"
    )
    print(f"pressed twice: {'still one registration' if again == registration else 'TWO!'}")
    position = flow.queue(registration)
    print(
        f"ticket: registration {registration.registration_id}, internal medicine, "
        f"{registration.slot_start:%H:%M}–{registration.slot_end:%H:%M}, "
        f"number {position.queue_number}, {position.ahead} ahead of you"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
