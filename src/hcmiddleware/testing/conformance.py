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

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from hcmiddleware.config import SettingsModel
from hcmiddleware.errors import ConfigError, HcmError
from hcmiddleware.models import (
    BankBinding,
    Charge,
    CheckResult,
    HospitalPatient,
    MoneyKind,
    PaymentRequest,
    PaymentResult,
    PaymentStatus,
    QueuePosition,
    Registration,
    RegistrationRequest,
    Resident,
    Settlement,
    SettlementRequest,
    Sex,
    Statement,
)
from hcmiddleware.registry import hook_names
from hcmiddleware.runtime import Middleware

__all__ = ["BankConformance", "HisConformance", "InsuranceConformance", "PluginConformance"]


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
        id_number="110105198001010032",
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
