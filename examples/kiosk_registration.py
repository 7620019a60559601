"""A self-service kiosk registers a patient with the health card (挂号).

Run it: ``python examples/kiosk_registration.py``. ``_site.site()`` stands in for the
hospital (config, keys, the reference HIS over HL7/MLLP, the sample card); what
follows is what a kiosk's screens do, one ``OutpatientFlow`` step each:

1. read the card (at a real kiosk ``flow.identify()`` reads the configured reader)
   and find the resident in the index, enrolling them on a first visit;
2. get the hospital patient ID — from the index, else from the HIS, which creates it;
3. check the face at the camera against the card photo;
4. register the visit in a slot and print the queue ticket. Pressing "register"
   twice registers once: the HIS answers the same registration.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from _site import site

from hcmiddleware.errors import FaceBackendError, FaceMismatchError, HcmError
from hcmiddleware.face.samples import KIOSK_LIVE_PHOTO
from hcmiddleware.flows.outpatient import OutpatientFlow


def main() -> int:
    """Run the kiosk once; 0 when the patient holds a ticket."""
    with site() as s:
        flow = OutpatientFlow(s.mw, actor="kiosk-01")  # the actor goes to the audit log
        warning = s.mw.cards.notice()  # for the staff screen while a card list is stale
        if warning:
            print(f"staff notice: {warning}")
        try:
            who = flow.identify(s.card)  # card + SAM authenticate each other; index lookup
            name = who.resident.name  # the screen may show it; a log never spells it out
            print(f"card read: {name[0]}{'*' * (len(name) - 1)}, {who.resident.resident_id[:8]}…")
            patient = flow.patient(who)
            how = "new, created by the HIS" if patient.created else "known"
            print(f"hospital patient ID {patient.patient_id} ({how})")
            try:  # the card's photo is read now, only for this check
                live = KIOSK_LIVE_PHOTO.read_bytes()  # the kiosk camera's picture
                check = flow.check_face(who, live, transport=s.card)
                print(f"face check: the cardholder (distance {check.distance:.2f})")
            except FaceBackendError as exc:  # no face library installed here
                print(f"face check skipped: {exc.message}")
            except FaceMismatchError as exc:
                print(f"face check failed ({exc.status}): send the patient to the desk")
                return 1
            slot = (datetime.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
            args = {"department_code": "NEI", "doctor_code": "D01", "slot_start": slot}
            registration = flow.register(patient, **args, fee="12.00")
            again = flow.register(patient, **args, fee="12.00")  # "register" pressed twice
            print(f"pressed twice: {'still one registration' if again == registration else 'TWO!'}")
            position = flow.queue(registration)
        except HcmError as exc:  # every failure is typed and its hint says what to do
            print(f"sorry: {exc.message}\n  → {exc.hint}")
            return 1
    print(
        f"ticket: registration {registration.registration_id}, internal medicine, "
        f"{registration.slot_start:%H:%M}–{registration.slot_end:%H:%M}, "
        f"number {position.queue_number}, {position.ahead} ahead of you"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
