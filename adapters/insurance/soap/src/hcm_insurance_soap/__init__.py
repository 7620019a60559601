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
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

from pydantic import Field, ValidationError

from hcmiddleware import Middleware, hookimpl
from hcmiddleware.errors import (
    MalformedResponseError,
    MoneyError,
)
from hcmiddleware.models import (
    CheckResult,
    Settlement,
    SettlementRequest,
    Statement,
    StatementLine,
)
from hcmiddleware.soap import SoapAdapter, SoapSettings

__all__ = ["BINDING", "NAME", "InsuranceSoap", "InsuranceSoapSettings", "packaged_wsdl"]

NAME = "insurance-soap"
BINDING = "{urn:hcm:insurance:1}SettlementBinding"


def packaged_wsdl() -> str:
    """Path of the reference WSDL shipped with this package."""
    return str(resources.files("hcm_insurance_soap").joinpath("wsdl/insurance.wsdl"))


class InsuranceSoapSettings(SoapSettings):
    """``[plugins.insurance-soap]``."""

    wsdl: str = Field(default_factory=packaged_wsdl, description="WSDL URL or file")


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


class InsuranceSoap(SoapAdapter):
    """The plugin object (created by its entry point with no arguments)."""

    hcm_plugin_name = NAME
    NAME = NAME
    BINDING = BINDING
    PARTY = "insurer"
    KIND = "insurance"
    SETTINGS = InsuranceSoapSettings

    def __init__(self) -> None:
        super().__init__()
        self._institution = "000000000000"
        self._sequence = itertools.count()
        #: the fund total of the last reconciliation summary (for the report)
        self.last_summary_total: Decimal | None = None

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        """Take the validated settings; the SOAP client is made on first use."""
        self._take_settings(middleware)
        self._institution = middleware.config.middleware.institution_code

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
