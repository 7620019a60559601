"""Medical insurance adapter: real-time settlement over SOAP, through zeep.

Enable it with ``[plugins] enabled = ["insurance-soap"]`` and configure::

    [plugins.insurance-soap]
    wsdl = "http://insurer.example:8092/insurance?wsdl"  # default: the packaged WSDL
    endpoint = "http://insurer.example:8092/insurance"   # default: the WSDL's address
    timeout = 5.0
    username = "210100000001"
    password = { file = "/etc/hcm/insurer.secret" }

Message IDs are made by the caller (the journal) except for reconciliation requests,
which move no money: those use ``[middleware] institution_code``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
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
    CheckResult,
    Settlement,
    SettlementRequest,
    Statement,
    StatementLine,
)

__all__ = ["BINDING", "NAME", "InsuranceSoap", "InsuranceSoapSettings", "packaged_wsdl"]

NAME = "insurance-soap"
BINDING = "{urn:hcm:insurance:1}SettlementBinding"


def packaged_wsdl() -> str:
    """Path of the reference WSDL shipped with this package."""
    return str(resources.files("hcm_insurance_soap").joinpath("wsdl/insurance.wsdl"))


class InsuranceSoapSettings(SettingsModel):
    """``[plugins.insurance-soap]``."""

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


def bill(request: SettlementRequest) -> dict[str, Any]:
    """The request as the WSDL's ``Bill`` (keyword arguments for zeep)."""
    return {
        "messageId": request.message_id,
        "scheme": request.scheme,
        "insuredId": request.insured_id,
        "patientId": request.patient_id,
        "visitId": request.visit_id,
        "total": request.total,
        "charge": [
            {
                "chargeId": c.charge_id,
                "itemCode": c.item_code,
                "itemName": c.item_name,
                "quantity": c.quantity,
                "unitPrice": c.unit_price,
                "amount": c.amount,
                "category": c.insurance_category,
            }
            for c in request.charges
        ],
    }


class InsuranceSoap:
    """The plugin object (created by its entry point with no arguments)."""

    hcm_plugin_name = NAME

    def __init__(self) -> None:
        self.settings = InsuranceSoapSettings()
        self.client: Client | None = None
        self._service: Any = None
        self._configured = False
        self._lock = threading.Lock()
        self._institution = "000000000000"
        self._sequence = itertools.count()
        #: the fund total of the last reconciliation summary (for the report)
        self.last_summary_total: Decimal | None = None

    @hookimpl
    def hcm_add_config(self, settings: Any) -> None:
        """Declare the ``[plugins.insurance-soap]`` settings model."""
        settings.add(NAME, InsuranceSoapSettings)

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        """Take the validated settings; the SOAP client is made on first use."""
        configured = middleware.plugin_settings(NAME)
        if isinstance(configured, InsuranceSoapSettings):
            self.settings = configured
        self._institution = middleware.config.middleware.institution_code
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
                        f"the insurer's service description cannot be loaded "
                        f"({type(exc).__name__})",
                        hint="check [plugins.insurance-soap] wsdl and the network; "
                        "nothing was sent",
                    ) from None
            return self._service

    @staticmethod
    def make_client(settings: InsuranceSoapSettings) -> Client:
        """A zeep client for ``settings`` (also used to render golden envelopes)."""
        transport = Transport(  # type: ignore[no-untyped-call]
            timeout=settings.timeout, operation_timeout=settings.timeout
        )
        wsse = None
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else ""
            wsse = UsernameToken(settings.username, password)  # type: ignore[no-untyped-call]
        return Client(  # type: ignore[no-untyped-call]
            settings.wsdl, transport=transport, wsse=wsse, settings=Settings(strict=True)
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
        """Whether the insurer answers (one harmless call)."""
        today = datetime.now(UTC).date()
        try:
            self._call(
                "ReconcileSummary", messageId=self._message_id(), dateFrom=today, dateTo=today
            )
        except MoneyError as exc:
            return [
                CheckResult(
                    name="insurer", ok=False, detail=exc.message,
                    hint="check [plugins.insurance-soap] endpoint, credentials and the network",
                )
            ]  # fmt: skip
        return [CheckResult(name="insurer", ok=True, detail="the insurer answers")]

    def _message_id(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        return f"{self._institution}{stamp}{8000 + next(self._sequence) % 1000:04d}"

    def _call(self, operation: str, transaction_id: str | None = None, **kwargs: Any) -> Any:
        if not self._configured:
            raise MoneyError(
                "the insurance adapter is not configured", hint="start the Middleware first"
            )
        method: Callable[..., Any] = getattr(self._ensure_service(), operation)
        try:
            return method(**kwargs)
        except Fault as fault:
            raise RemoteFaultError(
                f"the insurer refused {operation}: {fault.message}",
                fault_code=str(fault.code or "Server"),
                transaction_id=transaction_id,
            ) from None
        except (requests.ConnectTimeout, requests.ConnectionError) as exc:
            if _never_sent(exc):
                raise RemoteUnavailableError(
                    f"the insurer cannot be reached for {operation} ({type(exc).__name__})",
                    transaction_id=transaction_id,
                ) from None
            raise OutcomeUnknownError(
                f"no answer from the insurer to {operation} ({type(exc).__name__})",
                transaction_id=transaction_id,
            ) from None
        except requests.Timeout as exc:
            raise OutcomeUnknownError(
                f"no answer from the insurer to {operation} ({type(exc).__name__})",
                transaction_id=transaction_id,
            ) from None
        except (TransportError, ZeepError, etree.XMLSyntaxError, ValueError) as exc:
            raise MalformedResponseError(
                f"the insurer's answer to {operation} is not valid ({type(exc).__name__})",
                transaction_id=transaction_id,
            ) from None

    @staticmethod
    def _settlement(answer: Any, message_id: str) -> Settlement:
        try:
            return Settlement(
                message_id=answer.messageId,
                settlement_id=answer.settlementId,
                total=answer.total,
                fund_paid=answer.fundPaid,
                account_paid=answer.accountPaid,
                patient_paid=answer.patientPaid,
                status=answer.status,
            )
        except (AttributeError, TypeError, ValidationError) as exc:
            raise MalformedResponseError(
                f"the insurer's answer is incomplete ({type(exc).__name__})",
                transaction_id=message_id,
            ) from None

    @hookimpl
    def hcm_insurance_pre_settle(self, request: SettlementRequest) -> Settlement:
        """How the insurer would split the bill (PreSettle); nothing is paid."""
        answer = self._call("PreSettle", request.message_id, **bill(request))
        return self._settlement(answer, request.message_id)

    @hookimpl
    def hcm_insurance_settle(self, request: SettlementRequest) -> Settlement:
        """Settle the bill (Settle), idempotent per message ID."""
        answer = self._call("Settle", request.message_id, **bill(request))
        return self._settlement(answer, request.message_id)

    @hookimpl
    def hcm_insurance_cancel(self, settlement_id: str, message_id: str) -> Settlement:
        """Cancel a settlement (Cancel) under a new message ID."""
        answer = self._call("Cancel", message_id, messageId=message_id, settlementId=settlement_id)
        return self._settlement(answer, message_id)

    @hookimpl
    def hcm_insurance_reverse(self, original_message_id: str, message_id: str) -> bool:
        """Reverse (冲正) a message by its original message ID (Reverse)."""
        return bool(
            self._call(
                "Reverse",
                original_message_id,
                messageId=message_id,
                originalMessageId=original_message_id,
            )
        )

    @hookimpl
    def hcm_insurance_reconcile(self, date_from: date, date_to: date) -> Statement:
        """Detailed reconciliation, checked against the summary's line count."""
        period: dict[str, Any] = {"dateFrom": date_from, "dateTo": date_to}
        summary = self._call("ReconcileSummary", messageId=self._message_id(), **period)
        detail = self._call("ReconcileDetail", messageId=self._message_id(), **period)
        try:
            lines = tuple(
                StatementLine(
                    transaction_id=line.messageId,
                    reference=line.settlementId,
                    kind=line.kind,
                    amount=line.fundPaid,
                    occurred_at=_utc(line.occurredAt),
                )
                for line in (detail or [])
            )
            count, fund_total = int(summary.count), Decimal(summary.fundTotal)
        except (AttributeError, TypeError, ValidationError):
            raise MalformedResponseError("the insurer's reconciliation is incomplete") from None
        if count != len(lines):
            raise MalformedResponseError(
                f"the insurer's detail has {len(lines)} lines but its summary says {count}",
                hint="ask the insurer to regenerate the reconciliation for the period",
            )
        # the summary's total is kept against the detail's lines by the caller's
        # reconciliation report; a differing sum is an amount mismatch there
        self.last_summary_total = fund_total
        return Statement(source="insurer", date_from=date_from, date_to=date_to, lines=lines)
