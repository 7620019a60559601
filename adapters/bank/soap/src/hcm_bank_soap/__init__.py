"""Bank adapter: the health card's bank account over SOAP, through zeep.

Enable it with ``[plugins] enabled = ["bank-soap"]`` and configure::

    [plugins.bank-soap]
    wsdl = "http://bank.example:8091/bank?wsdl"   # default: the packaged reference WSDL
    endpoint = "http://bank.example:8091/bank"    # default: the WSDL's address
    timeout = 5.0                                 # seconds per call
    username = "HOSP0001"
    password = { env = "HCM_BANK_PASSWORD" }

Every money call is idempotent per transaction ID on the bank's side, so the journal
may ask again after a lost answer. A lost answer (timeout, dropped connection) raises
:class:`~hcmiddleware.errors.OutcomeUnknownError`, a SOAP fault
:class:`~hcmiddleware.errors.RemoteFaultError`, an unreadable answer
:class:`~hcmiddleware.errors.MalformedResponseError`: the journal settles all three by
query or reversal.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

from pydantic import Field, ValidationError

from hcmiddleware import Middleware, hookimpl
from hcmiddleware.errors import (
    MalformedResponseError,
    MoneyError,
)
from hcmiddleware.models import (
    BankBinding,
    CheckResult,
    MoneyKind,
    PaymentRequest,
    PaymentResult,
    PaymentStatus,
    Statement,
    StatementLine,
)
from hcmiddleware.soap import SoapAdapter, SoapSettings

__all__ = ["BINDING", "NAME", "BankSoap", "BankSoapSettings", "packaged_wsdl"]

NAME = "bank-soap"
BINDING = "{urn:hcm:bank:1}HealthCardBankBinding"
_OPERATIONS = {MoneyKind.TOP_UP: "TopUp", MoneyKind.PAY: "Pay", MoneyKind.REFUND: "Refund"}


def packaged_wsdl() -> str:
    """Path of the reference WSDL shipped with this package."""
    return str(resources.files("hcm_bank_soap").joinpath("wsdl/bank.wsdl"))


class BankSoapSettings(SoapSettings):
    """``[plugins.bank-soap]``."""

    wsdl: str = Field(default_factory=packaged_wsdl, description="WSDL URL or file")


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class BankSoap(SoapAdapter):
    """The plugin object (created by its entry point with no arguments)."""

    hcm_plugin_name = NAME
    NAME = NAME
    BINDING = BINDING
    PARTY = "bank"
    KIND = "bank"
    SETTINGS = BankSoapSettings

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        """Take the validated settings; the SOAP client is made on first use."""
        self._take_settings(middleware)

    @hookimpl
    def hcm_doctor_checks(self) -> list[CheckResult]:
        """Whether the bank answers (one harmless call)."""
        try:
            self._call("Query", transactionId="doctor-probe")
        except MoneyError as exc:
            return [
                CheckResult(
                    name="bank", ok=False, detail=exc.message,
                    hint="check [plugins.bank-soap] endpoint, credentials and the network",
                )
            ]  # fmt: skip
        return [CheckResult(name="bank", ok=True, detail="the bank answers queries")]

    # -- calls -----------------------------------------------------------------------

    def _result(self, answer: Any, transaction_id: str) -> PaymentResult:
        try:
            status = answer.status
            return PaymentResult(
                transaction_id=answer.transactionId,
                status=PaymentStatus.CONFIRMED if status == "CONFIRMED" else PaymentStatus.FAILED,
                bank_reference=answer.bankReference,
                balance_after=answer.balanceAfter,
                completed_at=_utc(answer.completedAt),
                reason=answer.reason if status != "REVERSED" else "reversed",
            )
        except (AttributeError, TypeError, ValidationError) as exc:
            raise MalformedResponseError(
                f"the bank's answer is incomplete ({type(exc).__name__})",
                transaction_id=transaction_id,
            ) from None

    def _movement(self, request: PaymentRequest) -> PaymentResult:
        answer = self._call(
            _OPERATIONS[request.kind],
            request.transaction_id,
            transactionId=request.transaction_id,
            cardNumber=request.card_number,
            amount=request.amount,
            currency=request.currency,
            originalTransactionId=request.original_transaction_id,
            terminalId=request.terminal_id,
        )
        return self._result(answer, request.transaction_id)

    # -- hooks -----------------------------------------------------------------------

    @hookimpl
    def hcm_bank_bind(self, card_number: str, bank_card_number: str, id_number: str) -> BankBinding:
        """Bind a bank card to the health card's account (Bind)."""
        answer = self._call(
            "Bind", cardNumber=card_number, bankCardNumber=bank_card_number, idNumber=id_number
        )
        try:
            return BankBinding(
                card_number=answer.cardNumber,
                bank_account_masked=answer.bankAccountMasked,
                bound_at=_utc(answer.boundAt),
            )
        except (AttributeError, ValidationError):
            raise MalformedResponseError("the bank's answer to Bind is incomplete") from None

    @hookimpl
    def hcm_bank_unbind(self, card_number: str, id_number: str) -> bool:
        """Unbind the bank card (Unbind); ``False`` if none was bound."""
        return bool(self._call("Unbind", cardNumber=card_number, idNumber=id_number))

    @hookimpl
    def hcm_bank_top_up(self, request: PaymentRequest) -> PaymentResult:
        """Top up the account (TopUp), idempotent per transaction ID."""
        return self._movement(request)

    @hookimpl
    def hcm_bank_pay(self, request: PaymentRequest) -> PaymentResult:
        """Pay from the account (Pay), idempotent per transaction ID."""
        return self._movement(request)

    @hookimpl
    def hcm_bank_refund(self, request: PaymentRequest) -> PaymentResult:
        """Refund against a payment (Refund), idempotent per transaction ID."""
        return self._movement(request)

    @hookimpl
    def hcm_bank_query(self, transaction_id: str) -> PaymentResult | None:
        """What the bank did with a transaction (Query); ``None`` if it never saw it."""
        answer = self._call("Query", transaction_id, transactionId=transaction_id)
        if answer is None or not hasattr(answer, "found"):
            raise MalformedResponseError(
                "the bank's answer to Query is incomplete", transaction_id=transaction_id
            )
        if not answer.found:
            return None
        return self._result(answer.result, transaction_id)

    @hookimpl
    def hcm_bank_reverse(self, transaction_id: str) -> bool:
        """Reverse (冲正) a transaction (Reverse); an unseen ID becomes a tombstone."""
        return bool(self._call("Reverse", transaction_id, transactionId=transaction_id))

    @hookimpl
    def hcm_bank_statement(self, day: date) -> Statement:
        """The bank's statement of confirmed movements for one day (Statement)."""
        answer = self._call("Statement", day=day)
        try:
            lines = tuple(
                StatementLine(
                    transaction_id=line.transactionId,
                    reference=line.bankReference,
                    kind=line.kind,
                    amount=line.amount,
                    occurred_at=_utc(line.occurredAt),
                )
                for line in (answer.line or [])
            )
        except (AttributeError, TypeError, ValidationError):
            raise MalformedResponseError("the bank's statement is incomplete") from None
        return Statement(source="bank", date_from=day, date_to=day, lines=lines)
