"""The conformance kit itself: it passes a correct adapter and catches a wrong one."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

ADAPTER = '''
import itertools, pytest
from hcmiddleware.models import HospitalPatient, QueuePosition, Registration
from hcmiddleware.errors import HisError
from hcmiddleware.testing.conformance import HisConformance

class MemoryHis:
    """A correct in-memory HIS."""
    def __init__(self):
        self.patients, self.regs, self.ids = {}, {}, itertools.count(1)
    def hcm_his_lookup_patient(self, resident, hospital_code):
        return self.patients.get(resident.resident_id)
    def hcm_his_register_patient(self, resident, hospital_code):
        if resident.resident_id in self.patients:
            return self.patients[resident.resident_id].model_copy(update={"created": False})
        p = HospitalPatient(hospital_code=hospital_code, patient_id=f"P{next(self.ids)}",
                            resident_id=resident.resident_id, created=True)
        self.patients[resident.resident_id] = p.model_copy(update={"created": False})
        return p
    def hcm_his_register_visit(self, patient, request):
        if patient.patient_id not in {p.patient_id for p in self.patients.values()}:
            raise HisError("unknown patient")
        if request.request_id not in self.regs:
            same = [r for r in self.regs.values() if r.department_code == request.department_code]
            self.regs[request.request_id] = Registration(
                registration_id=f"R{len(self.regs)}", patient_id=patient.patient_id,
                department_code=request.department_code, slot_start=request.slot_start,
                slot_end=request.slot_end, queue_number=len(same) + 1)
        return self.regs[request.request_id]
    def hcm_his_queue_position(self, registration):
        return QueuePosition(registration_id=registration.registration_id,
                             queue_number=registration.queue_number,
                             ahead=registration.queue_number - 1)

class ForgetfulHis(MemoryHis):
    """Wrong: registers the same resident again on a retry."""
    def hcm_his_register_patient(self, resident, hospital_code):
        return HospitalPatient(hospital_code=hospital_code, patient_id=f"P{next(self.ids)}",
                               resident_id=resident.resident_id, created=True)

class TestGood(HisConformance):
    plugin_name = "memory-his"
    @pytest.fixture
    def plugin(self):
        return MemoryHis()

class TestForgetful(HisConformance):
    plugin_name = "forgetful-his"
    @pytest.fixture
    def plugin(self):
        return ForgetfulHis()
'''


def test_suite_passes_good_adapter_and_fails_forgetful_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_adapter=ADAPTER)
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    failed = [line for line in result.outlines if line.startswith("FAILED")]
    assert all("TestForgetful" in line for line in failed), failed
    assert any("test_register_patient_is_idempotent" in line for line in failed)
    assert outcomes["failed"] == len(failed) >= 1
    assert outcomes["passed"] >= 20
