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

A HIS adapter that talks to a HIS over a network should also give the suite a way to
make that HIS misbehave, by overriding the ``his_faults`` fixture with an object that
has the methods of :class:`HisFaults`; the fault tests then check that each failure
is a typed :class:`~hcmiddleware.errors.HisError` carrying the plugin's name and that
nothing is half-registered. Hooks an adapter does not implement (the sample HIS has no
inpatient side) are reported as skipped with the hook's name, never passed silently.
Later kinds (bank, insurance, ward devices) add their suites here.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Protocol

import pytest

from hcmiddleware.config import SettingsModel
from hcmiddleware.errors import (
    ConfigError,
    HcmError,
    HisError,
    HisProtocolError,
    HisRejectedError,
    HisUnavailableError,
    PluginTimeoutError,
)
from hcmiddleware.models import (
    Admission,
    AdmissionRequest,
    BankBinding,
    Bill,
    Charge,
    CheckResult,
    Deposit,
    Discharge,
    HospitalPatient,
    MoneyKind,
    Order,
    OrderExecution,
    PaymentRequest,
    PaymentResult,
    PaymentStatus,
    QueuePosition,
    Registration,
    RegistrationRequest,
    Report,
    Resident,
    Settlement,
    SettlementRequest,
    Sex,
    Statement,
)
from hcmiddleware.registry import hook_names
from hcmiddleware.runtime import Middleware

__all__ = [
    "BankConformance",
    "HisConformance",
    "HisFaults",
    "InsuranceConformance",
    "PluginConformance",
]


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

    # -- the doctor's desk: orders, charges, payment, reports ---------------------------

    def _needs(self, mw: Middleware, *hooks: str) -> None:
        info = next(i for i in mw.plugins() if i.name == self.plugin_name)
        missing = [h for h in hooks if h not in info.hooks]
        if missing:
            pytest.skip(f"{self.plugin_name} does not implement {', '.join(missing)}")

    def seed_visit(self, patient: HospitalPatient, visit_id: str) -> None:
        """Override when the HIS under test needs a doctor to order something first.

        The suite expects a registered visit to have at least one order, one charge and
        one report afterwards (the reference HIS's consultation makes them itself).
        """

    def _visit(
        self, mw: Middleware, hospital_code: str, **request: Any
    ) -> tuple[HospitalPatient, Registration]:
        patient = mw.hooks.hcm_his_register_patient(
            resident=_resident("desk"), card=None, hospital_code=hospital_code
        )
        registration = mw.hooks.hcm_his_register_visit(
            patient=patient, request=self._request(**request)
        )
        self.seed_visit(patient, registration.registration_id)
        return patient, registration

    def test_appointment_is_registered_like_a_visit(
        self, mw: Middleware, hospital_code: str
    ) -> None:
        patient = mw.hooks.hcm_his_register_patient(
            resident=_resident("appt"), card=None, hospital_code=hospital_code
        )
        start = datetime.now().replace(microsecond=0, second=0) + timedelta(days=2)
        request = RegistrationRequest(
            kind="appointment",
            department_code="WAI",
            doctor_code="D007",
            slot_start=start,
            slot_end=start + timedelta(hours=1),
            fee=Decimal("15.00"),
            request_id=uuid.uuid4().hex,
        )
        first = mw.hooks.hcm_his_register_visit(patient=patient, request=request)
        again = mw.hooks.hcm_his_register_visit(patient=patient, request=request)
        assert isinstance(first, Registration)
        assert (first.slot_start, first.slot_end) == (request.slot_start, request.slot_end)
        # the doctor and the quoted fee are optional in a HIS's answer, but never wrong
        assert first.doctor_code in (None, "D007")
        assert first.fee in (None, Decimal("15.00"))
        assert again == first

    def test_orders_belong_to_the_visit(self, mw: Middleware, hospital_code: str) -> None:
        self._needs(mw, "hcm_his_list_orders")
        patient, reg = self._visit(mw, hospital_code)
        orders = mw.hooks.hcm_his_list_orders(patient=patient, visit_id=reg.registration_id)
        assert orders, "a visit after seed_visit has at least one order"
        assert all(isinstance(o, Order) for o in orders)
        assert {(o.patient_id, o.visit_id) for o in orders} == {
            (patient.patient_id, reg.registration_id)
        }
        assert len({o.order_id for o in orders}) == len(orders)

    def test_charges_add_up(self, mw: Middleware, hospital_code: str) -> None:
        self._needs(mw, "hcm_his_list_charges")
        patient, reg = self._visit(mw, hospital_code)
        charges = mw.hooks.hcm_his_list_charges(patient=patient, visit_id=reg.registration_id)
        assert charges, "a visit after seed_visit has at least one charge"
        for charge in charges:
            assert isinstance(charge, Charge)
            assert charge.visit_id == reg.registration_id
            assert charge.amount == (charge.unit_price * charge.quantity).quantize(Decimal("0.01"))
            assert charge.paid is False

    def test_paying_charges_is_idempotent_per_transaction(
        self, mw: Middleware, hospital_code: str
    ) -> None:
        self._needs(mw, "hcm_his_list_charges", "hcm_his_charges_paid")
        patient, reg = self._visit(mw, hospital_code)
        charges = mw.hooks.hcm_his_list_charges(patient=patient, visit_id=reg.registration_id)
        ids = [c.charge_id for c in charges]
        txn = "T" + uuid.uuid4().hex[:16]
        assert (
            mw.hooks.hcm_his_charges_paid(patient=patient, charge_ids=ids, transaction_id=txn)
            is True
        )
        assert (
            mw.hooks.hcm_his_charges_paid(patient=patient, charge_ids=ids, transaction_id=txn)
            is True
        )
        after = mw.hooks.hcm_his_list_charges(patient=patient, visit_id=reg.registration_id)
        assert all(c.paid for c in after)
        with pytest.raises(HisError) as caught:
            mw.hooks.hcm_his_charges_paid(
                patient=patient, charge_ids=ids[:1], transaction_id="T-other"
            )
        assert caught.value.plugin == self.plugin_name  # type: ignore[attr-defined]

    def test_paying_an_unknown_charge_pays_nothing(
        self, mw: Middleware, hospital_code: str
    ) -> None:
        self._needs(mw, "hcm_his_list_charges", "hcm_his_charges_paid")
        patient, reg = self._visit(mw, hospital_code)
        charges = mw.hooks.hcm_his_list_charges(patient=patient, visit_id=reg.registration_id)
        with pytest.raises(HisError):
            mw.hooks.hcm_his_charges_paid(
                patient=patient,
                charge_ids=[charges[0].charge_id, "NO-SUCH-CHARGE"],
                transaction_id="T" + uuid.uuid4().hex[:16],
            )
        after = mw.hooks.hcm_his_list_charges(patient=patient, visit_id=reg.registration_id)
        assert not any(c.paid for c in after), "a refused payment must leave every charge unpaid"

    def test_reports_belong_to_the_visit(self, mw: Middleware, hospital_code: str) -> None:
        self._needs(mw, "hcm_his_list_reports")
        patient, reg = self._visit(mw, hospital_code)
        reports = mw.hooks.hcm_his_list_reports(patient=patient, visit_id=reg.registration_id)
        assert reports, "a visit after seed_visit has at least one report"
        assert all(isinstance(r, Report) and r.visit_id == reg.registration_id for r in reports)

    # -- inpatient ----------------------------------------------------------------------

    INPATIENT_HOOKS: ClassVar[tuple[str, ...]] = (
        "hcm_his_admit",
        "hcm_his_record_deposit",
        "hcm_his_inpatient_bill",
        "hcm_his_discharge",
    )

    def _admit(self, mw: Middleware, hospital_code: str) -> tuple[AdmissionRequest, Admission]:
        self._needs(mw, *self.INPATIENT_HOOKS)
        patient = mw.hooks.hcm_his_register_patient(
            resident=_resident("stay"), card=None, hospital_code=hospital_code
        )
        request = AdmissionRequest(
            department_code="NEI",
            ward="W" + uuid.uuid4().hex[:4].upper(),
            bed="12",
            admitted_at=datetime.now().replace(microsecond=0),
            request_id=uuid.uuid4().hex,
        )
        admission = mw.hooks.hcm_his_admit(patient=patient, request=request)
        assert isinstance(admission, Admission)
        assert admission.patient_id == patient.patient_id
        return request, admission

    def _deposit(self, admission: Admission, amount: str, txn: str | None = None) -> Deposit:
        return Deposit(
            deposit_id="D" + uuid.uuid4().hex[:10],
            admission_id=admission.admission_id,
            amount=Decimal(amount),
            paid_at=datetime.now().replace(microsecond=0),
            transaction_id=txn or "T" + uuid.uuid4().hex[:16],
        )

    def test_admission_is_idempotent_per_request(self, mw: Middleware, hospital_code: str) -> None:
        request, admission = self._admit(mw, hospital_code)
        patient = HospitalPatient(
            hospital_code=hospital_code, patient_id=admission.patient_id, resident_id="-"
        )
        again = mw.hooks.hcm_his_admit(patient=patient, request=request)
        assert again.admission_id == admission.admission_id
        assert (admission.ward, admission.bed) == (request.ward, request.bed)
        assert admission.deposit_balance == Decimal("0.00")

    def test_deposits_count_once_per_transaction(self, mw: Middleware, hospital_code: str) -> None:
        _request, admission = self._admit(mw, hospital_code)
        deposit = self._deposit(admission, "500.00")
        first = mw.hooks.hcm_his_record_deposit(admission=admission, deposit=deposit)
        again = mw.hooks.hcm_his_record_deposit(admission=admission, deposit=deposit)
        top_up = mw.hooks.hcm_his_record_deposit(
            admission=admission, deposit=self._deposit(admission, "200.50")
        )
        assert first.deposit_balance == again.deposit_balance == Decimal("500.00")
        assert top_up.deposit_balance == Decimal("700.50")

    def test_bill_and_discharge(self, mw: Middleware, hospital_code: str) -> None:
        _request, admission = self._admit(mw, hospital_code)
        bill = mw.hooks.hcm_his_inpatient_bill(admission=admission)
        assert isinstance(bill, Bill)
        assert bill.total == sum((c.amount for c in bill.items), Decimal("0.00"))
        assert bill.balance == bill.total - bill.deposits - bill.insured
        cover = bill.total + Decimal("100.00")
        mw.hooks.hcm_his_record_deposit(
            admission=admission, deposit=self._deposit(admission, str(cover))
        )
        settled = mw.hooks.hcm_his_inpatient_bill(admission=admission)
        assert settled.deposits == cover
        assert settled.balance == Decimal("-100.00"), "the patient is owed the surplus"
        done = mw.hooks.hcm_his_discharge(admission=admission, bill=settled)
        assert isinstance(done, Discharge)
        assert done.admission_id == admission.admission_id
        assert done.final_bill.total == settled.total

    def test_bedside_execution_is_idempotent(self, mw: Middleware, hospital_code: str) -> None:
        self._needs(mw, "hcm_his_list_orders", "hcm_his_order_executed")
        _request, admission = self._admit(mw, hospital_code)
        patient = HospitalPatient(
            hospital_code=hospital_code, patient_id=admission.patient_id, resident_id="-"
        )
        orders = mw.hooks.hcm_his_list_orders(patient=patient, visit_id=admission.admission_id)
        assert orders, "a stay has at least one order"
        execution = OrderExecution(
            order_id=orders[0].order_id,
            admission_id=admission.admission_id,
            wristband_id="WB1",
            executed_by="N001",
            executed_at=datetime.now().replace(microsecond=0),
            checks=dict.fromkeys(("patient", "bed", "name", "drug", "dose", "time", "route"), True),
        )
        assert mw.hooks.hcm_his_order_executed(execution=execution) is True
        assert mw.hooks.hcm_his_order_executed(execution=execution) is True

    def _stay_drugs(self, mw: Middleware, hospital_code: str) -> tuple[Admission, list[Order]]:
        self._needs(mw, "hcm_his_list_orders")
        _request, admission = self._admit(mw, hospital_code)
        patient = HospitalPatient(
            hospital_code=hospital_code, patient_id=admission.patient_id, resident_id="-"
        )
        orders = mw.hooks.hcm_his_list_orders(patient=patient, visit_id=admission.admission_id)
        drugs = [o for o in orders if o.kind in ("drug", "skin_test")]
        if not drugs:
            pytest.skip(f"{self.plugin_name}'s test HIS orders no drug at admission")
        return admission, drugs

    def test_drug_orders_carry_what_the_bedside_checks_need(
        self, mw: Middleware, hospital_code: str
    ) -> None:
        _admission, drugs = self._stay_drugs(mw, hospital_code)
        for order in drugs:
            assert order.code, f"order {order.order_id}: the drug's code"
            assert any(c.isdigit() for c in order.dose or ""), (
                f"order {order.order_id}: the dose with its unit (e.g. '250 ml')"
            )
            assert order.route, f"order {order.order_id}: the route"
            assert order.scheduled_at or order.window_start, f"order {order.order_id}: when"
            # the ward's rules go by order type: one the HIS gives must be a ward type
            # (the model refuses others), and a window it gives must be a real span
            if order.window_start is not None and order.window_end is not None:
                assert order.window_start < order.window_end, (
                    f"order {order.order_id}: its window ends after it starts"
                )
            if order.order_type is not None:
                assert order.order_type != "specimen", (
                    f"order {order.order_id}: a drug order is not a specimen"
                )

    def test_drug_administration_is_idempotent(self, mw: Middleware, hospital_code: str) -> None:
        self._needs(mw, "hcm_his_order_executed")
        admission, drugs = self._stay_drugs(mw, hospital_code)
        order = drugs[0]
        given = OrderExecution(
            order_id=order.order_id,
            admission_id=admission.admission_id,
            wristband_id="WB1",
            executed_by="N001",
            second_nurse="N002",
            executed_at=datetime.now().replace(microsecond=0),
            checks=dict.fromkeys(("bed", "name", "drug", "dose", "time", "route"), True),
            patient_id=admission.patient_id,
            drug_code=order.code,
            dose=order.dose,
            route=order.route,
        )
        assert mw.hooks.hcm_his_order_executed(execution=given) is True
        assert mw.hooks.hcm_his_order_executed(execution=given) is True

    # -- a HIS that misbehaves ------------------------------------------------------------

    @pytest.fixture
    def his_faults(self) -> HisFaults:
        """Override: switches on the HIS under test (see :class:`HisFaults`)."""
        pytest.skip(f"{self.plugin_name}'s conformance test gives no his_faults switch")

    def _typed(
        self, caught: pytest.ExceptionInfo[BaseException], *kinds: type[BaseException]
    ) -> None:
        assert isinstance(caught.value, kinds), (
            f"{type(caught.value).__name__} is not one of {kinds}"
        )
        assert getattr(caught.value, "plugin", None) == self.plugin_name
        assert str(caught.value), "the error says what happened"
        assert getattr(caught.value, "hint", ""), "and what the operator can do"

    def test_refusal_is_typed_and_registers_nothing(
        self, mw: Middleware, hospital_code: str, his_faults: HisFaults
    ) -> None:
        resident = _resident("nak")
        his_faults.refuse()
        with pytest.raises(HcmError) as caught:
            mw.hooks.hcm_his_register_patient(
                resident=resident, card=None, hospital_code=hospital_code
            )
        self._typed(caught, HisRejectedError)
        his_faults.clear()
        assert (
            mw.hooks.hcm_his_lookup_patient(resident=resident, hospital_code=hospital_code) is None
        )

    def test_down_his_is_a_typed_error(
        self, mw: Middleware, hospital_code: str, his_faults: HisFaults
    ) -> None:
        his_faults.down()
        with pytest.raises(HcmError) as caught:
            mw.hooks.hcm_his_lookup_patient(resident=_resident("down"), hospital_code=hospital_code)
        self._typed(caught, HisUnavailableError)

    def test_slow_his_is_a_typed_error(
        self, mw: Middleware, hospital_code: str, his_faults: HisFaults
    ) -> None:
        his_faults.slow()
        with pytest.raises(HcmError) as caught:
            mw.hooks.hcm_his_lookup_patient(resident=_resident("slow"), hospital_code=hospital_code)
        self._typed(caught, HisUnavailableError, PluginTimeoutError)

    def test_garbage_answer_is_a_typed_error(
        self, mw: Middleware, hospital_code: str, his_faults: HisFaults
    ) -> None:
        his_faults.garbage()
        with pytest.raises(HcmError) as caught:
            mw.hooks.hcm_his_lookup_patient(resident=_resident("junk"), hospital_code=hospital_code)
        self._typed(caught, HisProtocolError)

    def test_lost_answer_is_retried_without_a_duplicate(
        self, mw: Middleware, hospital_code: str, his_faults: HisFaults
    ) -> None:
        resident = _resident("lost")
        his_faults.lose_next_write_answer()
        first = mw.hooks.hcm_his_register_patient(
            resident=resident, card=None, hospital_code=hospital_code
        )
        again = mw.hooks.hcm_his_register_patient(
            resident=resident, card=None, hospital_code=hospital_code
        )
        assert first.patient_id == again.patient_id
        assert again.created is False


class HisFaults(Protocol):
    """Switches on the HIS under test, for :class:`HisConformance`'s fault tests."""

    def refuse(self) -> None:
        """Refuse every request (HL7 NAK, FHIR OperationOutcome) until cleared."""

    def down(self) -> None:
        """Answer nothing: refuse or drop every connection until cleared."""

    def slow(self) -> None:
        """Answer every request later than the adapter's timeout, until cleared."""

    def garbage(self) -> None:
        """Answer every request with bytes that are not a message, until cleared."""

    def lose_next_write_answer(self) -> None:
        """Carry out the next write (not a query) but drop the connection unanswered."""

    def clear(self) -> None:
        """Behave again."""


# --- money ---------------------------------------------------------------------------


def _tid() -> str:
    return "conf-" + uuid.uuid4().hex


class BankConformance(PluginConformance):
    """What every bank adapter must do (R-PAY-1, R-PAY-3), on top of PluginConformance.

    Subclasses also provide ``bank_account``: ``(card_number, bank_card_number,
    id_number)`` of an account the test bank accepts; the suite binds it and tops it up.
    """

    REQUIRED_HOOKS: ClassVar[tuple[str, ...]] = (
        "hcm_bank_bind",
        "hcm_bank_unbind",
        "hcm_bank_top_up",
        "hcm_bank_pay",
        "hcm_bank_refund",
        "hcm_bank_query",
        "hcm_bank_reverse",
        "hcm_bank_statement",
    )

    @pytest.fixture
    def bank_account(self) -> tuple[str, str, str]:
        """Override: ``(card_number, bank_card_number, id_number)`` for the tests."""
        pytest.fail("the bank conformance subclass must provide 'bank_account'", pytrace=False)

    @pytest.fixture
    def card(self, mw: Middleware, bank_account: tuple[str, str, str]) -> str:
        """The account's card number, bound and topped up with 100.00."""
        card, bank_card, id_number = bank_account
        binding = mw.hooks.hcm_bank_bind(
            card_number=card, bank_card_number=bank_card, id_number=id_number
        )
        assert isinstance(binding, BankBinding)
        assert bank_card not in binding.bank_account_masked, "bank card number not masked"
        result = self._move(mw, MoneyKind.TOP_UP, card, "100.00")
        assert result.status is PaymentStatus.CONFIRMED
        return card

    @staticmethod
    def _move(
        mw: Middleware,
        kind: MoneyKind,
        card: str,
        amount: str,
        tid: str | None = None,
        original: str | None = None,
    ) -> PaymentResult:
        request = PaymentRequest(
            transaction_id=tid or _tid(),
            kind=kind,
            card_number=card,
            amount=Decimal(amount),
            original_transaction_id=original,
        )
        hook = {
            MoneyKind.TOP_UP: mw.hooks.hcm_bank_top_up,
            MoneyKind.PAY: mw.hooks.hcm_bank_pay,
            MoneyKind.REFUND: mw.hooks.hcm_bank_refund,
        }[kind]
        result = hook(request=request)
        assert isinstance(result, PaymentResult)
        assert result.transaction_id == request.transaction_id
        return result

    def test_implements_required_hooks(self, mw: Middleware) -> None:
        info = next(i for i in mw.plugins() if i.name == self.plugin_name)
        missing = sorted(set(self.REQUIRED_HOOKS) - set(info.hooks))
        assert not missing, f"a bank adapter must implement {missing}"

    def test_same_transaction_twice_moves_money_once(self, mw: Middleware, card: str) -> None:
        tid = _tid()
        first = self._move(mw, MoneyKind.PAY, card, "10.00", tid)
        again = self._move(mw, MoneyKind.PAY, card, "10.00", tid)
        assert first.status is again.status is PaymentStatus.CONFIRMED
        assert again.balance_after == first.balance_after == Decimal("90.00")

    def test_query_knows_what_was_done_and_not_what_was_not(
        self, mw: Middleware, card: str
    ) -> None:
        tid = _tid()
        done = self._move(mw, MoneyKind.PAY, card, "1.00", tid)
        found = mw.hooks.hcm_bank_query(transaction_id=tid)
        assert isinstance(found, PaymentResult)
        assert (found.transaction_id, found.status) == (tid, done.status)
        assert mw.hooks.hcm_bank_query(transaction_id=_tid()) is None

    def test_reversal_before_arrival_blocks_the_late_original(
        self, mw: Middleware, card: str
    ) -> None:
        tid = _tid()
        assert mw.hooks.hcm_bank_reverse(transaction_id=tid) is True
        assert mw.hooks.hcm_bank_reverse(transaction_id=tid) is True  # idempotent
        late = self._move(mw, MoneyKind.PAY, card, "5.00", tid)
        assert late.status is PaymentStatus.FAILED
        check = self._move(mw, MoneyKind.PAY, card, "0.01")
        assert check.balance_after == Decimal("99.99")

    def test_reversal_after_confirmation_gives_the_money_back(
        self, mw: Middleware, card: str
    ) -> None:
        tid = _tid()
        self._move(mw, MoneyKind.PAY, card, "40.00", tid)
        assert mw.hooks.hcm_bank_reverse(transaction_id=tid) is True
        check = self._move(mw, MoneyKind.PAY, card, "0.01")
        assert check.balance_after == Decimal("99.99")

    def test_refund_never_exceeds_the_payment(self, mw: Middleware, card: str) -> None:
        paid = self._move(mw, MoneyKind.PAY, card, "30.00")
        ok = self._move(mw, MoneyKind.REFUND, card, "20.00", original=paid.transaction_id)
        assert ok.status is PaymentStatus.CONFIRMED
        over = self._move(mw, MoneyKind.REFUND, card, "10.01", original=paid.transaction_id)
        assert over.status is PaymentStatus.FAILED

    def test_payment_above_balance_is_declined(self, mw: Middleware, card: str) -> None:
        result = self._move(mw, MoneyKind.PAY, card, "100.01")
        assert result.status is PaymentStatus.FAILED
        assert result.reason

    def test_statement_lists_confirmed_movements(self, mw: Middleware, card: str) -> None:
        paid = self._move(mw, MoneyKind.PAY, card, "3.21")
        statement = mw.hooks.hcm_bank_statement(day=datetime.now(UTC).date())
        assert isinstance(statement, Statement)
        lines = {line.transaction_id: line.amount for line in statement.lines}
        assert lines.get(paid.transaction_id) == Decimal("3.21")

    def test_unbind_then_bind_again(
        self, mw: Middleware, card: str, bank_account: tuple[str, str, str]
    ) -> None:
        _, bank_card, id_number = bank_account
        assert mw.hooks.hcm_bank_unbind(card_number=card, id_number=id_number) is True
        refused = self._move(mw, MoneyKind.PAY, card, "1.00")
        assert refused.status is PaymentStatus.FAILED
        mw.hooks.hcm_bank_bind(card_number=card, bank_card_number=bank_card, id_number=id_number)
        assert self._move(mw, MoneyKind.PAY, card, "1.00").status is PaymentStatus.CONFIRMED


class InsuranceConformance(PluginConformance):
    """What every insurance adapter must do (R-PAY-2, R-PAY-3)."""

    REQUIRED_HOOKS: ClassVar[tuple[str, ...]] = (
        "hcm_insurance_pre_settle",
        "hcm_insurance_settle",
        "hcm_insurance_cancel",
        "hcm_insurance_reverse",
        "hcm_insurance_reconcile",
    )

    @staticmethod
    def message_id(mw: Middleware) -> str:
        """A fresh message ID in the national format."""
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        code = mw.config.middleware.institution_code
        return f"{code}{stamp}{random.randrange(10_000):04d}"

    def _request(self, mw: Middleware, *amounts: str) -> SettlementRequest:
        charges = tuple(
            Charge(
                charge_id=f"c{i}", patient_id="P1", visit_id="V1", item_code=f"I{i}",
                item_name="item", quantity=Decimal(1), unit_price=Decimal(a), amount=Decimal(a),
            )
            for i, a in enumerate(amounts or ("60.00", "40.00"))
        )  # fmt: skip
        return SettlementRequest(
            message_id=self.message_id(mw),
            scheme="basic",
            insured_id="INS-" + uuid.uuid4().hex[:8],
            patient_id="P1",
            visit_id="V1",
            charges=charges,
            total=sum((c.amount for c in charges), Decimal(0)),
        )

    def test_implements_required_hooks(self, mw: Middleware) -> None:
        info = next(i for i in mw.plugins() if i.name == self.plugin_name)
        missing = sorted(set(self.REQUIRED_HOOKS) - set(info.hooks))
        assert not missing, f"an insurance adapter must implement {missing}"

    def test_pre_settlement_splits_the_whole_bill(self, mw: Middleware) -> None:
        request = self._request(mw)
        split = mw.hooks.hcm_insurance_pre_settle(request=request)
        assert isinstance(split, Settlement)
        assert split.status == "pre_settled"
        assert split.fund_paid + split.account_paid + split.patient_paid == request.total

    def test_settle_is_idempotent_per_message(self, mw: Middleware) -> None:
        request = self._request(mw)
        first = mw.hooks.hcm_insurance_settle(request=request)
        again = mw.hooks.hcm_insurance_settle(request=request)
        assert isinstance(first, Settlement)
        assert first.status == "settled"
        assert first.settlement_id
        assert again == first

    def test_cancel_a_settlement(self, mw: Middleware) -> None:
        settled = mw.hooks.hcm_insurance_settle(request=self._request(mw))
        cancelled = mw.hooks.hcm_insurance_cancel(
            settlement_id=settled.settlement_id, message_id=self.message_id(mw)
        )
        assert isinstance(cancelled, Settlement)
        assert cancelled.status == "cancelled"

    def test_reversal_before_arrival_blocks_the_late_original(self, mw: Middleware) -> None:
        request = self._request(mw)
        assert mw.hooks.hcm_insurance_reverse(
            original_message_id=request.message_id, message_id=self.message_id(mw)
        )
        late = mw.hooks.hcm_insurance_settle(request=request)
        assert late is None or late.status != "settled"

    def test_reconciliation_lists_settlements(self, mw: Middleware) -> None:
        settled = mw.hooks.hcm_insurance_settle(request=self._request(mw, "10.00"))
        today = datetime.now(UTC).date()
        statement = mw.hooks.hcm_insurance_reconcile(date_from=today, date_to=today)
        assert isinstance(statement, Statement)
        lines = {line.transaction_id: line.amount for line in statement.lines}
        assert lines.get(settled.message_id) == settled.fund_paid
