"""Conformance suites: what every adapter of a kind must do, as reusable pytest classes.

An adapter's own test module subclasses the suite for its kind and says how to make
the plugin; every test of the suite then runs against it::

    import pytest
    from hcmiddleware.testing.conformance import HisConformance
    from my_his_adapter import MyHis

    class TestMyHis(HisConformance):
        plugin_name = "my-his"

        @pytest.fixture
        def plugin(self):
            return MyHis()

        @pytest.fixture
        def plugin_settings(self):
            return {"base_url": "http://127.0.0.1:8080"}

The suite talks to the adapter only through the Middleware, exactly as the flows do.
Later kinds (bank, insurance, ward devices) add their suites here.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

import pytest

from hcmiddleware.config import SettingsModel
from hcmiddleware.errors import ConfigError, HcmError
from hcmiddleware.models import (
    CheckResult,
    HospitalPatient,
    QueuePosition,
    Registration,
    RegistrationRequest,
    Resident,
    Sex,
)
from hcmiddleware.registry import hook_names
from hcmiddleware.runtime import Middleware

__all__ = ["HisConformance", "PluginConformance"]


class PluginConformance:
    """What every plugin must do. Subclasses provide the ``plugin`` fixture."""

    #: The plugin's name, as its entry point and its config section call it.
    plugin_name: ClassVar[str] = "plugin-under-test"

    @pytest.fixture
    def plugin(self) -> object:
        """Override: return a fresh plugin object."""
        pytest.fail("the conformance subclass must provide a 'plugin' fixture", pytrace=False)

    @pytest.fixture
    def plugin_settings(self) -> dict[str, Any]:
        """Override: the plugin's ``[plugins.<name>]`` section for the tests."""
        return {}

    @pytest.fixture
    def mw(
        self, plugin: object, plugin_settings: dict[str, Any], hcm_make_middleware: Any
    ) -> Middleware:
        """A started Middleware with the plugin under test registered and configured."""
        settings = {self.plugin_name: plugin_settings} if plugin_settings else None
        started: Middleware = hcm_make_middleware(
            plugins={self.plugin_name: plugin}, settings=settings
        )
        return started

    def test_implements_only_known_hooks(self, plugin: object) -> None:
        known = set(hook_names())
        named = {n for n in dir(plugin) if n.startswith("hcm_") and callable(getattr(plugin, n))}
        unknown = sorted(named - known)
        assert not unknown, f"not hooks of hcmiddleware (misspelled?): {unknown}"

    def test_registers_and_starts(self, mw: Middleware) -> None:
        assert self.plugin_name in mw.enabled_plugins()
        info = next(i for i in mw.plugins() if i.name == self.plugin_name)
        assert info.hooks, "the plugin implements no hook"

    def test_settings_refuse_unknown_keys(self, mw: Middleware) -> None:
        model = mw.settings.model_for(self.plugin_name)
        if model is None:
            with pytest.raises(ConfigError):
                mw.settings.validate(self.plugin_name, {"surely_not_a_key": 1}, file=None)
            return
        assert issubclass(model, SettingsModel), "settings must subclass SettingsModel"
        with pytest.raises(ConfigError) as caught:
            mw.settings.validate(self.plugin_name, {"surely_not_a_key": 1}, file="t.toml")
        assert caught.value.key == f"plugins.{self.plugin_name}.surely_not_a_key"

    def test_doctor_checks_are_results(self, mw: Middleware) -> None:
        for plugin, result in mw.doctor():
            if plugin == self.plugin_name:
                assert isinstance(result, CheckResult)

    def test_close_is_clean(self, mw: Middleware) -> None:
        mw.close()
        mw.close()  # closing twice is harmless


def _resident(tag: str) -> Resident:
    return Resident(
        resident_id=f"conf-{tag}-{uuid.uuid4().hex[:12]}",
        name="张三",
        sex=Sex.MALE,
        birth_date=date(1980, 1, 1),
        id_number="11010519800101003X",
    )


class HisConformance(PluginConformance):
    """What every HIS adapter must do (R-HIS-1), on top of :class:`PluginConformance`."""

    REQUIRED_HOOKS: ClassVar[tuple[str, ...]] = (
        "hcm_his_lookup_patient",
        "hcm_his_register_patient",
        "hcm_his_register_visit",
        "hcm_his_queue_position",
    )

    @pytest.fixture
    def hospital_code(self, mw: Middleware) -> str:
        """This hospital's code as the flows pass it."""
        return mw.config.middleware.institution_code

    def _request(self, *, department: str = "NEI", minutes: int = 30) -> RegistrationRequest:
        start = datetime.now().replace(microsecond=0) + timedelta(days=1)
        return RegistrationRequest(
            department_code=department,
            slot_start=start,
            slot_end=start + timedelta(minutes=minutes),
            request_id=uuid.uuid4().hex,
        )

    def test_implements_required_hooks(self, mw: Middleware) -> None:
        info = next(i for i in mw.plugins() if i.name == self.plugin_name)
        missing = sorted(set(self.REQUIRED_HOOKS) - set(info.hooks))
        assert not missing, f"a HIS adapter must implement {missing}"

    def test_unknown_resident_is_not_found(self, mw: Middleware, hospital_code: str) -> None:
        found = mw.hooks.hcm_his_lookup_patient(
            resident=_resident("unknown"), hospital_code=hospital_code
        )
        assert found is None

    def test_register_patient_is_idempotent(self, mw: Middleware, hospital_code: str) -> None:
        resident = _resident("idem")
        first = mw.hooks.hcm_his_register_patient(
            resident=resident, card=None, hospital_code=hospital_code
        )
        again = mw.hooks.hcm_his_register_patient(
            resident=resident, card=None, hospital_code=hospital_code
        )
        assert isinstance(first, HospitalPatient)
        assert first.created is True
        assert again.patient_id == first.patient_id
        assert again.created is False
        found = mw.hooks.hcm_his_lookup_patient(resident=resident, hospital_code=hospital_code)
        assert found is not None
        assert found.patient_id == first.patient_id

    def test_distinct_residents_get_distinct_ids(self, mw: Middleware, hospital_code: str) -> None:
        ids = {
            mw.hooks.hcm_his_register_patient(
                resident=_resident(str(i)), card=None, hospital_code=hospital_code
            ).patient_id
            for i in range(3)
        }
        assert len(ids) == 3

    def test_register_visit_is_idempotent_per_request(
        self, mw: Middleware, hospital_code: str
    ) -> None:
        patient = mw.hooks.hcm_his_register_patient(
            resident=_resident("visit"), card=None, hospital_code=hospital_code
        )
        request = self._request()
        first = mw.hooks.hcm_his_register_visit(patient=patient, request=request)
        again = mw.hooks.hcm_his_register_visit(patient=patient, request=request)
        assert isinstance(first, Registration)
        assert again.registration_id == first.registration_id
        assert first.patient_id == patient.patient_id

    def test_queue_counts_those_ahead(self, mw: Middleware, hospital_code: str) -> None:
        department = "Q" + uuid.uuid4().hex[:6].upper()
        regs = []
        for i in range(3):
            patient = mw.hooks.hcm_his_register_patient(
                resident=_resident(f"q{i}"), card=None, hospital_code=hospital_code
            )
            regs.append(
                mw.hooks.hcm_his_register_visit(
                    patient=patient, request=self._request(department=department)
                )
            )
        positions = [mw.hooks.hcm_his_queue_position(registration=r) for r in regs]
        assert all(isinstance(p, QueuePosition) for p in positions)
        assert [p.ahead for p in positions] == [0, 1, 2]

    def test_visit_for_unknown_patient_is_a_typed_error(
        self, mw: Middleware, hospital_code: str
    ) -> None:
        stranger = HospitalPatient(
            hospital_code=hospital_code, patient_id="NO-SUCH-PATIENT", resident_id="nobody"
        )
        with pytest.raises(HcmError) as caught:
            mw.hooks.hcm_his_register_visit(patient=stranger, request=self._request())
        assert getattr(caught.value, "plugin", None) == self.plugin_name
