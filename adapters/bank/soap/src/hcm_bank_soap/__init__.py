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

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

import requests
from lxml import etree  # type: ignore[import-untyped]
from pydantic import Field, ValidationError
from urllib3.exceptions import NewConnectionError
from zeep import Client, Settings
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from hcmiddleware import Middleware, Secret, SettingsModel, hookimpl
from hcmiddleware.errors import (
    MalformedResponseError,
    MoneyError,
    OutcomeUnknownError,
    RemoteFaultError,
    RemoteUnavailableError,
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

__all__ = ["BINDING", "NAME", "BankSoap", "BankSoapSettings", "packaged_wsdl"]

NAME = "bank-soap"
BINDING = "{urn:hcm:bank:1}HealthCardBankBinding"
_OPERATIONS = {MoneyKind.TOP_UP: "TopUp", MoneyKind.PAY: "Pay", MoneyKind.REFUND: "Refund"}


def packaged_wsdl() -> str:
    """Path of the reference WSDL shipped with this package."""
    return str(resources.files("hcm_bank_soap").joinpath("wsdl/bank.wsdl"))


class BankSoapSettings(SettingsModel):
    """``[plugins.bank-soap]``."""

    wsdl: str = Field(default_factory=packaged_wsdl, description="WSDL URL or file")
    endpoint: str | None = Field(None, description="service address; default the WSDL's")
    timeout: float = Field(5.0, gt=0, le=120, description="seconds per SOAP call")
    username: str | None = None
    password: Secret | None = None


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was refused or never established: nothing left."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class BankSoap:
    """The plugin object (created by its entry point with no arguments)."""

    hcm_plugin_name = NAME

    def __init__(self) -> None:
        self.settings = BankSoapSettings()
        self._service: Any = None
        self.client: Client | None = None
        self._configured = False
        self._lock = threading.Lock()

    # -- setup -----------------------------------------------------------------------

    @hookimpl
    def hcm_add_config(self, settings: Any) -> None:
        """Declare the ``[plugins.bank-soap]`` settings model."""
        settings.add(NAME, BankSoapSettings)

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        """Take the validated settings; the SOAP client is made on first use."""
        configured = middleware.plugin_settings(NAME)
        if isinstance(configured, BankSoapSettings):
            self.settings = configured
        # the client (and its WSDL) is made on first use: a bank that is down when the
        # hospital system starts must not stop the middleware from starting
        self.client = None
        self._service = None
        self._configured = True

    def _ensure_service(self) -> Any:
        with self._lock:
            if self._service is None:
                try:
                    self.client = self.make_client(self.settings)
                    self._service = (
                        self.client.create_service(BINDING, self.settings.endpoint)  # type: ignore[no-untyped-call]
                        if self.settings.endpoint
                        else self.client.service
                    )
                except (requests.RequestException, OSError, ZeepError, etree.XMLSyntaxError) as exc:
                    self.client = None
                    raise RemoteUnavailableError(
                        f"the bank's service description cannot be loaded ({type(exc).__name__})",
                        hint="check [plugins.bank-soap] wsdl and the network; nothing was sent",
                    ) from None
            return self._service

    @staticmethod
    def make_client(settings: BankSoapSettings) -> Client:
        """A zeep client for ``settings`` (also used to render golden envelopes)."""
        transport = Transport(  # type: ignore[no-untyped-call]
            timeout=settings.timeout, operation_timeout=settings.timeout
        )
        wsse = None
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else ""
            wsse = UsernameToken(settings.username, password)  # type: ignore[no-untyped-call]
        return Client(  # type: ignore[no-untyped-call]
            settings.wsdl,
            transport=transport,
            wsse=wsse,
            settings=Settings(strict=True, xml_huge_tree=False),
        )

    @hookimpl
    def hcm_unconfigure(self) -> None:
        """Close the HTTP session and forget the client."""
        with self._lock:
            if self.client is not None:
                self.client.transport.session.close()
            self._service = self.client = None
            self._configured = False

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

    def _call(self, operation: str, transaction_id: str | None = None, **kwargs: Any) -> Any:
        if not self._configured:
            raise MoneyError(
                "the bank adapter is not configured", hint="start the Middleware first"
            )
        method: Callable[..., Any] = getattr(self._ensure_service(), operation)
        try:
            return method(**kwargs)
        except Fault as fault:
            raise RemoteFaultError(
                f"the bank refused {operation}: {fault.message}",
                fault_code=str(fault.code or "Server"),
                transaction_id=transaction_id,
            ) from None
        except (requests.ConnectTimeout, requests.ConnectionError) as exc:
            if _never_sent(exc):
                raise RemoteUnavailableError(
                    f"the bank cannot be reached for {operation} ({type(exc).__name__})",
                    transaction_id=transaction_id,
                ) from None
            raise OutcomeUnknownError(
                f"no answer from the bank to {operation} ({type(exc).__name__})",
                transaction_id=transaction_id,
            ) from None
        except requests.Timeout as exc:
            raise OutcomeUnknownError(
                f"no answer from the bank to {operation} ({type(exc).__name__})",
                transaction_id=transaction_id,
            ) from None
        except (TransportError, ZeepError, etree.XMLSyntaxError, ValueError) as exc:
            raise MalformedResponseError(
                f"the bank's answer to {operation} is not valid ({type(exc).__name__})",
                transaction_id=transaction_id,
            ) from None

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
