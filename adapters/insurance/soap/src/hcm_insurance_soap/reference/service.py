"""The reference insurer's SOAP operations: XML in, ledger, XML out (document/literal)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources

from lxml import etree  # type: ignore[import-untyped]
from lxml.builder import ElementMaker  # type: ignore[import-untyped]

from hcm_insurance_soap.reference.ledger import InsurerLedger, SettlementRecord, split
from hcmiddleware.testing.soap import SoapFaultError

__all__ = ["NS", "InsuranceService"]

NS = "urn:hcm:insurance:1"
E = ElementMaker(namespace=NS, nsmap={"mi": NS})
CENT = Decimal("0.01")


def _text(el: etree._Element, name: str) -> str:
    value: str | None = el.findtext(f"{{{NS}}}{name}")
    if not value:
        raise SoapFaultError("Client", f"{name} is required")
    return value


def _money(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SoapFaultError("Client", "an amount is not a decimal number") from None
    if not value.is_finite() or value <= 0 or value != value.quantize(CENT):
        raise SoapFaultError("Client", "amounts must be positive with at most two decimals")
    return value


def _bill_total(body: etree._Element) -> Decimal:
    total = _money(_text(body, "total"))
    charges = body.findall(f"{{{NS}}}charge")
    if not charges:
        raise SoapFaultError("Client", "a bill has at least one charge")
    if sum((_money(_text(c, "amount")) for c in charges), Decimal(0)) != total:
        raise SoapFaultError("Client", "the charges do not add up to the total")
    if _text(body, "scheme") not in ("basic", "rural"):
        raise SoapFaultError("Client", "unknown scheme")
    return total


def _result(
    tag: str, message_id: str, record: SettlementRecord | None, **split_: Decimal
) -> etree._Element:
    if record is not None:
        total, fund, patient = record.total, record.fund_paid, record.patient_paid
        status, settlement_id = record.status, record.settlement_id
        if record.kind == "cancel":
            status = "cancelled"
    else:
        total, fund, patient = split_["total"], split_["fund"], split_["patient"]
        status, settlement_id = "pre_settled", None
    el = E(tag, E.messageId(message_id))
    if settlement_id:
        el.append(E.settlementId(settlement_id))
    el.extend(
        [
            E.total(f"{total:.2f}"),
            E.fundPaid(f"{fund:.2f}"),
            E.accountPaid("0.00"),
            E.patientPaid(f"{patient:.2f}"),
            E.status(status),
        ]
    )
    return el


class InsuranceService:
    """Maps each WSDL operation onto :class:`InsurerLedger`."""

    namespace = NS

    def __init__(self, ledger: InsurerLedger) -> None:
        self.ledger = ledger
        self._wsdl = (
            resources.files("hcm_insurance_soap").joinpath("wsdl/insurance.wsdl").read_bytes()
        )

    def wsdl(self, address: str) -> bytes:
        """The packaged WSDL with its address set to where this server listens."""
        return self._wsdl.replace(b"http://127.0.0.1:8092/insurance", address.encode())

    def handle(self, operation: str, body: etree._Element, tamper: bool) -> etree._Element:
        """Answer one operation."""
        message_id = _text(body, "messageId")
        if operation == "PreSettle":
            total = _bill_total(body)
            fund, patient = split(_text(body, "scheme"), total)
            return _result(
                "PreSettleResponse", message_id, None, total=total, fund=fund, patient=patient
            )
        if operation == "Settle":
            record = self.ledger.settle(message_id, _text(body, "scheme"), _bill_total(body))
            return _result("SettleResponse", message_id, record)
        if operation == "Cancel":
            cancelled = self.ledger.cancel(message_id, _text(body, "settlementId"))
            if cancelled is None:
                raise SoapFaultError("Client", "no settlement with that ID can be cancelled")
            return _result("CancelResponse", message_id, cancelled)
        if operation == "Reverse":
            done = self.ledger.reverse(_text(body, "originalMessageId"))
            return E.ReverseResponse(E.reversed("true" if done else "false"))
        if operation in ("ReconcileSummary", "ReconcileDetail"):
            lines = self.ledger.lines(
                date.fromisoformat(_text(body, "dateFrom")[:10]),
                date.fromisoformat(_text(body, "dateTo")[:10]),
            )
            if operation == "ReconcileSummary":
                total = sum((r.fund_paid for r in lines), Decimal("0.00"))
                return E.ReconcileSummaryResponse(
                    E.count(str(len(lines))), E.fundTotal(f"{total:.2f}")
                )
            answer = E.ReconcileDetailResponse()
            for i, r in enumerate(lines):
                fund = r.fund_paid + (CENT if tamper and i == 0 else 0)
                answer.append(
                    E.line(
                        E.messageId(r.message_id),
                        E.settlementId(r.settlement_id or ""),
                        E.kind(r.kind),
                        E.fundPaid(f"{fund:.2f}"),
                        E.occurredAt(r.occurred_at.isoformat() + "Z"),
                    )
                )
            return answer
        raise SoapFaultError("Client", f"unknown operation {operation}")
