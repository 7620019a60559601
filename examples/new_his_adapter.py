"""Write a HIS adapter: the hospital's system behind the four hooks the flows need.

``MiniHis`` has the shape of ``adapters/his/sample``: ``@hookimpl`` methods named after
the hookspecs (``hcm plugins hooks``); its "HIS" is two dicts where a real adapter calls
the hospital's API. Answers are idempotent (a retried flow gets the same patient and
registration), failures typed. ``python examples/new_his_adapter.py`` registers the
sample cardholder through it, then runs the conformance kit on it (pytest).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from _site import site

from hcmiddleware import hookimpl
from hcmiddleware.errors import HisError
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.models import HospitalPatient as Patient
from hcmiddleware.models import QueuePosition, Registration, Resident
from hcmiddleware.models import RegistrationRequest as Request
from hcmiddleware.testing.conformance import HisConformance


class MiniHis:
    hcm_plugin_name = "mini-his"  # its name in [plugins] enabled and [plugins.mini-his]

    def __init__(self) -> None:  # a fresh, empty HIS
        self.patients: dict[str, str] = {}  # resident ID → this HIS's patient ID
        self.visits: dict[str, Registration] = {}  # request ID → its registration

    @hookimpl
    def hcm_his_lookup_patient(self, resident: Resident, hospital_code: str) -> Patient | None:
        known = resident.resident_id in self.patients  # if not, the flow registers them
        return self.hcm_his_register_patient(resident, hospital_code) if known else None

    @hookimpl
    def hcm_his_register_patient(self, resident: Resident, hospital_code: str) -> Patient:
        new = resident.resident_id not in self.patients
        number = self.patients.setdefault(resident.resident_id, f"P{len(self.patients) + 1:06d}")
        return Patient(hospital_code=hospital_code, patient_id=number,
                               resident_id=resident.resident_id, created=new)  # fmt: skip

    @hookimpl
    def hcm_his_register_visit(self, patient: Patient, request: Request) -> Registration:
        if patient.patient_id not in self.patients.values():  # typed, with what to do
            raise HisError(f"no patient {patient.patient_id}", hint="register the patient first")
        if request.request_id not in self.visits:  # a department's queue lasts a day:
            day = [(v.department_code, v.slot_start.date()) for v in self.visits.values()]
            number = 1 + day.count((request.department_code, request.slot_start.date()))
            self.visits[request.request_id] = Registration(
                registration_id=f"R{len(self.visits) + 1:06d}", patient_id=patient.patient_id,
                department_code=request.department_code, slot_start=request.slot_start,
                slot_end=request.slot_end, queue_number=number)  # fmt: skip
        return self.visits[request.request_id]

    @hookimpl
    def hcm_his_queue_position(self, registration: Registration) -> QueuePosition:
        number = registration.queue_number or 1  # nobody leaves this HIS's queues
        return QueuePosition(registration_id=registration.registration_id,
                             queue_number=number, ahead=number - 1)  # fmt: skip


class TestMiniHis(HisConformance):  # the kit's HIS suite, run on MiniHis by pytest below
    plugin_name = "mini-his"  # hooks it leaves out (orders, inpatients …): skipped, by name

    @pytest.fixture
    def plugin(self) -> MiniHis:
        return MiniHis()


if __name__ == "__main__":
    with site(reference_his=False, plugins={"mini-his": MiniHis()}) as s:
        flow = OutpatientFlow(s.mw, actor="kiosk-01")
        patient = flow.patient(flow.identify(s.card))
        slot = (datetime.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        visit = flow.register(patient, department_code="NEI", slot_start=slot)
        print(f"mini-his: patient {patient.patient_id}, registration {visit.registration_id}")
    raise SystemExit(pytest.main([__file__, "-q", "-rs", "--assert=plain"]))  # TestMiniHis
