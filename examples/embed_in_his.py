"""How a HIS embeds hcmiddleware: read the card, find or register the patient, register.

Run it after `pip install -e . -e adapters/his/sample`:

    python examples/embed_in_his.py

`register_at_the_desk` is the whole story a HIS vendor writes, in typed calls only;
``_site.site()`` stands in for a hospital's installation, here with the sample HIS
adapter enabled (a hospital enables its own in its TOML file) in place of the
reference HIS, and the software card in place of a card in the reader.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from _site import site

from hcmiddleware import HcmError, Middleware, Registration, RegistrationRequest
from hcmiddleware.card.transport import Transport


def register_at_the_desk(mw: Middleware, reader: Transport | None = None) -> Registration:
    """The patient hands over the card; the desk registers them for internal medicine."""
    card = mw.terminal.read(reader)  # authenticated with the SAM, audited
    resident = mw.residents.enrol_from_card(card)  # found in the index, or enrolled
    patient = mw.his.find_or_register(resident, card=card)  # the HIS's own patient ID
    slot = datetime.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    request = RegistrationRequest(
        department_code="NEI",
        slot_start=slot,
        slot_end=slot + timedelta(minutes=30),
        fee="12.00",
        request_id=f"{patient.patient_id}-NEI-{slot:%Y%m%d%H}",  # pressing twice registers once
    )
    return mw.his.register_visit(patient, request)


def main() -> int:
    sample_his = {"sample-his": {"hospital_code": "H0001"}}  # [plugins.sample-his]
    try:
        with site(reference_his=False, enabled=("sample-his",), settings=sample_his) as s:
            first = register_at_the_desk(s.mw, s.card)
            again = register_at_the_desk(s.mw, s.card)
            queue = s.mw.his.queue_position(first)
    except HcmError as exc:
        print(f"could not register: {exc}")
        return 1
    print(f"patient {first.patient_id}: registration {first.registration_id}")
    print(f"registered twice, one registration: {again.registration_id == first.registration_id}")
    print(f"queue number {queue.queue_number}, about {queue.estimated_wait_minutes} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
