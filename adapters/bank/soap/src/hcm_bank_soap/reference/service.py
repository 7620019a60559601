"""The reference bank's SOAP operations: XML in, ledger, XML out (document/literal)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources

from lxml import etree  # type: ignore[import-untyped]
from lxml.builder import ElementMaker  # type: ignore[import-untyped]

from hcm_bank_soap.reference.ledger import BankLedger, LedgerResult
from hcmiddleware.testing.soap import SoapFaultError

__all__ = ["NS", "BankService"]

NS = "urn:hcm:bank:1"
E = ElementMaker(namespace=NS, nsmap={"bank": NS})
MOVEMENTS = {"TopUp": "top_up", "Pay": "pay", "Refund": "refund"}


def _text(el: etree._Element, name: str, required: bool = True) -> str | None:
    value: str | None = el.findtext(f"{{{NS}}}{name}")
    if required and not value:
        raise SoapFaultError("Client", f"{name} is required")
    return value


def _amount(text: str | None) -> Decimal:
    try:
        value = Decimal(text or "")
    except InvalidOperation:
        raise SoapFaultError("Client", "amount is not a decimal number") from None
    if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01")):
        raise SoapFaultError("Client", "amount must be positive with at most two decimals")
    return value.quantize(Decimal("0.01"))


def _result(tag: str, r: LedgerResult) -> etree._Element:
    el = E(tag, E.transactionId(r.transaction_id), E.status(r.status))
    if r.reference != "-":
        el.append(E.bankReference(r.reference))
    if r.balance_after is not None:
        el.append(E.balanceAfter(f"{r.balance_after:.2f}"))
    el.append(E.completedAt(r.occurred_at.isoformat() + "Z"))
    if r.reason:
        el.append(E.reason(r.reason))
    return el


class BankService:
    """Maps each WSDL operation onto :class:`BankLedger`."""

    namespace = NS

    def __init__(self, ledger: BankLedger) -> None:
        self.ledger = ledger
        self._wsdl = resources.files("hcm_bank_soap").joinpath("wsdl/bank.wsdl").read_bytes()

    def wsdl(self, address: str) -> bytes:
        """The packaged WSDL with its address set to where this server listens."""
        return self._wsdl.replace(b"http://127.0.0.1:8091/bank", address.encode())

    def handle(self, operation: str, body: etree._Element, tamper: bool) -> etree._Element:
        """Answer one operation."""
        if operation in MOVEMENTS:
            currency = _text(body, "currency")
            if currency != "CNY":
                raise SoapFaultError("Client", f"currency {currency} is not accepted")
            result = self.ledger.move(
                MOVEMENTS[operation],
                str(_text(body, "transactionId")),
                str(_text(body, "cardNumber")),
                _amount(_text(body, "amount")),
                _text(body, "originalTransactionId", required=False),
            )
            return _result(operation + "Response", result)
        if operation == "Query":
            found = self.ledger.query(str(_text(body, "transactionId")))
            answer = E.QueryResponse(E.found("true" if found else "false"))
            if found is not None:
                answer.append(_result("result", found))
            return answer
        if operation == "Reverse":
            done = self.ledger.reverse(str(_text(body, "transactionId")))
            return E.ReverseResponse(E.reversed("true" if done else "false"))
        if operation == "Statement":
            day = date.fromisoformat(str(_text(body, "day"))[:10])
            answer = E.StatementResponse(E.day(day.isoformat()))
            for i, line in enumerate(self.ledger.statement(day)):
                amount = line.amount + (Decimal("0.01") if tamper and i == 0 else 0)
                answer.append(
                    E.line(
                        E.transactionId(line.transaction_id),
                        E.bankReference(line.reference),
                        E.kind(line.kind),
                        E.amount(f"{amount:.2f}"),
                        E.occurredAt(line.occurred_at.isoformat() + "Z"),
                    )
                )
            return answer
        if operation == "Bind":
            try:
                masked, at = self.ledger.bind(
                    str(_text(body, "cardNumber")),
                    str(_text(body, "bankCardNumber")),
                    str(_text(body, "idNumber")),
                )
            except PermissionError as exc:
                raise SoapFaultError("Client", str(exc)) from None
            return E.BindResponse(
                E.cardNumber(str(_text(body, "cardNumber"))),
                E.bankAccountMasked(masked),
                E.boundAt(at.isoformat() + "Z"),
            )
        if operation == "Unbind":
            done = self.ledger.unbind(str(_text(body, "cardNumber")), str(_text(body, "idNumber")))
            return E.UnbindResponse(E.unbound("true" if done else "false"))
        raise SoapFaultError("Client", f"unknown operation {operation}")
