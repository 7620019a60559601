"""How a HIS embeds hcmiddleware: start it, find or create the patient, register a visit.

Run it after `pip install -e . -e adapters/his/sample`:

    python examples/embed_in_his.py

It uses the sample HIS adapter, enabled in code here; a hospital would enable its own
adapter in the config file instead (see README.md).
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import date, datetime, timedelta

from hcmiddleware import Middleware
from hcmiddleware.config import parse_config
from hcmiddleware.errors import HcmError
from hcmiddleware.models import RegistrationRequest, Resident, Sex


def main() -> int:
    config = parse_config(
        {
            "middleware": {
                "data_dir": tempfile.mkdtemp(prefix="hcm-example-"),
                "institution_code": "210100000001",
            },
            "plugins": {"enabled": ["sample-his"], "sample-his": {"hospital_code": "H0001"}},
        }
    )
    resident = Resident(
        resident_id="example-1", name="王丽", sex=Sex.FEMALE, birth_date=date(1990, 2, 3)
    )
    try:
        with Middleware(config) as mw:
            code = mw.config.middleware.institution_code
            patient = mw.hooks.hcm_his_lookup_patient(resident=resident, hospital_code=code)
            if patient is None:
                patient = mw.hooks.hcm_his_register_patient(
                    resident=resident, card=None, hospital_code=code
                )
            start = datetime.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            registration = mw.hooks.hcm_his_register_visit(
                patient=patient,
                request=RegistrationRequest(
                    department_code="NEI",
                    slot_start=start,
                    slot_end=start + timedelta(minutes=30),
                    fee="12.00",
                    request_id=uuid.uuid4().hex,
                ),
            )
            queue = mw.hooks.hcm_his_queue_position(registration=registration)
    except HcmError as exc:
        print(f"could not register: {exc}")
        return 1
    print(
        f"patient {patient.patient_id}: registration {registration.registration_id}, "
        f"queue number {queue.queue_number}, about {queue.estimated_wait_minutes} min"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
