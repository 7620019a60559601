"""The documents the kiosk prints, built from the journal, a bill or a HIS report.

Each builder returns a :class:`~hcmiddleware.models.PrintDocument`: what is printed,
not how. The printers lay it out (:mod:`hcmiddleware.printing.escpos` for thermal
receipt printers, :mod:`hcmiddleware.printing.pdf` for pages). Labels are in Chinese,
as the patient reads them; amounts in yuan with two decimals; times in the machine's
local time. No document holds a name, an ID number or a full card number.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from hcmiddleware.errors import NothingToPrintError
from hcmiddleware.journal.records import Movement
from hcmiddleware.models import (
    Admission,
    Bill,
    Charge,
    MoneyKind,
    PaymentStatus,
    PrintDocument,
    PrintKind,
    PrintTable,
    Report,
)

__all__ = [
    "RECEIPT_KINDS",
    "bill_document",
    "movement_receipt",
    "payment_list",
    "report_document",
    "yuan",
]

#: a journal entry's (channel, kind) → the receipt printed for it, and its title
RECEIPT_KINDS: dict[tuple[str, str], tuple[PrintKind, str]] = {
    ("bank", MoneyKind.TOP_UP.value): ("top_up_receipt", "充值凭条"),
    ("bank", MoneyKind.PAY.value): ("payment_receipt", "缴费凭条"),
    ("bank", MoneyKind.REFUND.value): ("refund_receipt", "退款凭条"),
    ("insurer", "settle"): ("settlement_receipt", "医保结算凭条"),
    ("insurer", "cancel"): ("cancellation_receipt", "医保结算撤销凭条"),
}

_REPORT_TITLES = {"lab": "检验报告单", "exam": "检查报告单", "pathology": "病理报告单"}
_STATUS = {"preliminary": "初步报告", "final": "正式报告", "amended": "更正报告"}
_FLAGS = {"H": "↑", "L": "↓", "A": "异常", "N": ""}
_CATEGORY = {"A": "甲类", "B": "乙类", "C": "丙类"}


def yuan(amount: Decimal | None) -> str:
    """``¥12.50``: an amount as printed."""
    return "" if amount is None else f"¥{Decimal(amount).quantize(Decimal('0.01')):,}"


def _local(at: datetime | None) -> str:
    """A naive-UTC (journal) or aware time, shown in the machine's local time."""
    if at is None:
        return ""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def movement_receipt(
    movement: Movement,
    *,
    site_name: str,
    patient_id: str | None = None,
    printed_at: datetime | None = None,
    reprint: bool = False,
) -> PrintDocument:
    """The receipt of a confirmed journal movement: top-up, payment, refund, settlement
    or its cancellation.

    :raises NothingToPrintError: the movement did not (yet) move money.
    """
    if movement.state is not PaymentStatus.CONFIRMED:
        raise NothingToPrintError(
            f"movement {movement.transaction_id} is {movement.state.value}: no receipt is "
            "printed for money that did not move",
            document_id=movement.transaction_id,
        )
    try:
        kind, title = RECEIPT_KINDS[(movement.channel, movement.kind)]
    except KeyError:
        raise NothingToPrintError(
            f"no receipt is made for a {movement.channel} {movement.kind} movement",
            document_id=movement.transaction_id,
        ) from None
    fields: list[tuple[str, str]] = [("交易流水号", movement.transaction_id)]
    if patient_id:
        fields.append(("患者号", patient_id))
    if movement.card_masked:
        fields.append(("卡号", movement.card_masked))
    if movement.original_transaction_id and movement.kind == MoneyKind.REFUND.value:
        fields.append(("原交易流水号", movement.original_transaction_id))
    if movement.remote_reference:
        fields.append(("银行参考号" if movement.channel == "bank" else "医保流水号",
                       movement.remote_reference))  # fmt: skip
    if movement.settlement_id:
        fields.append(("医保结算号", movement.settlement_id))
    if movement.terminal_id:
        fields.append(("终端号", movement.terminal_id))
    fields.append(("交易时间", _local(movement.updated_at)))
    if movement.channel == "insurer":
        totals = [("医疗费用总额", yuan(movement.amount))]
        if movement.fund_paid is not None:
            totals.append(("医保统筹支付", yuan(movement.fund_paid)))
        if movement.patient_paid is not None:
            totals.append(("个人支付", yuan(movement.patient_paid)))
    else:
        label = {"top_up": "充值金额", "pay": "缴费金额", "refund": "退款金额"}[movement.kind]
        totals = [(label, yuan(movement.amount))]
    return PrintDocument(
        document_id=movement.transaction_id,
        kind=kind,
        medium="receipt",
        title=title,
        site_name=site_name,
        fields=tuple(fields),
        totals=tuple(totals),
        footer=("请妥善保管此凭条", "凭条遗失可凭交易流水号补打"),
        transaction_id=movement.transaction_id,
        code=movement.transaction_id,
        printed_at=printed_at or _now(),
        reprint=reprint,
    )


def _charge_table(charges: Sequence[Charge], *, with_status: bool) -> PrintTable:
    rows = []
    for c in charges:
        name = c.item_name
        if c.insurance_category:
            name = f"{name}({_CATEGORY[c.insurance_category]})"
        row = (name, f"{c.quantity.normalize():f}", f"{c.unit_price:.2f}", f"{c.amount:.2f}")
        rows.append((*row, "已付" if c.paid else "未付") if with_status else row)
    columns = ("项目", "数量", "单价", "金额", *(("状态",) if with_status else ()))
    align: tuple[str, ...] = (
        "left",
        "right",
        "right",
        "right",
        *(("right",) if with_status else ()),
    )
    widths = (5, 2, 3, 3, *((2,) if with_status else ()))
    return PrintTable(columns=columns, rows=tuple(rows), align=align, widths=widths)


def payment_list(
    movement: Movement,
    charges: Sequence[Charge],
    *,
    site_name: str,
    patient_id: str | None = None,
    printed_at: datetime | None = None,
    reprint: bool = False,
) -> PrintDocument:
    """The payment list (缴费清单): the charges one confirmed payment paid, item by item.

    :raises NothingToPrintError: the payment is not confirmed, or no charge was given.
    """
    receipt = movement_receipt(
        movement, site_name=site_name, patient_id=patient_id, printed_at=printed_at
    )
    if not charges:
        raise NothingToPrintError(
            "a payment list needs the charges the payment paid",
            document_id=movement.transaction_id,
        )
    visits = sorted({c.visit_id for c in charges})
    total = sum((c.amount for c in charges), Decimal("0.00"))
    fields = list(receipt.fields)
    fields.insert(1, ("就诊号", "、".join(visits)))
    if patient_id is None:
        fields.insert(1, ("患者号", charges[0].patient_id))
    return receipt.model_copy(
        update={
            "kind": "payment_list",
            "title": "缴费清单",
            "fields": tuple(fields),
            "table": _charge_table(charges, with_status=False),
            "totals": (("项目合计", yuan(total)), *receipt.totals),
            "reprint": reprint,
        }
    )


def bill_document(
    bill: Bill,
    *,
    site_name: str,
    admission: Admission | None = None,
    printed_at: datetime | None = None,
    reprint: bool = False,
) -> PrintDocument:
    """The inpatient bill (住院费用清单) as the patient takes it home: every charge of
    the stay, what insurance pays, the deposits, and what is owed or refunded."""
    stay = bill.admission_id or (admission.admission_id if admission else None)
    fields: list[tuple[str, str]] = [("患者号", bill.patient_id)]
    if stay:
        fields.append(("住院号", stay))
    if admission is not None:
        fields.append(("病区床位", f"{admission.ward} / {admission.bed}"))
        fields.append(("入院时间", _local(admission.admitted_at)))
        if admission.discharged_at is not None:
            fields.append(("出院时间", _local(admission.discharged_at)))
    elif bill.visit_id:
        fields.append(("就诊号", bill.visit_id))
    totals = [
        ("费用总额", yuan(bill.total)),
        ("医保支付", yuan(bill.insured)),
        ("预交金", yuan(bill.deposits)),
    ]
    if bill.balance > 0:
        totals.append(("应补缴", yuan(bill.balance)))
    elif bill.balance < 0:
        totals.append(("应退还", yuan(-bill.balance)))
    else:
        totals.append(("结清", yuan(Decimal("0.00"))))
    at = printed_at or _now()
    return PrintDocument(
        document_id=f"{stay or bill.visit_id or bill.patient_id}@{at:%Y%m%d%H%M%S}",
        kind="inpatient_bill",
        medium="page",
        title="住院费用清单",
        site_name=site_name,
        fields=tuple(fields),
        table=_charge_table(bill.items, with_status=True),
        totals=tuple(totals),
        footer=("费用以医院信息系统结算为准",),
        code=stay,
        printed_at=at,
        reprint=reprint,
    )


def report_document(
    report: Report,
    *,
    site_name: str,
    printed_at: datetime | None = None,
    reprint: bool = False,
) -> PrintDocument:
    """A lab or exam report as the self-service printer prints it.

    :raises NothingToPrintError: the report is still pending (not signed off).
    """
    if report.status == "pending":
        raise NothingToPrintError(
            f"report {report.report_id} is not ready yet",
            document_id=report.report_id,
            hint="the laboratory or the exam department has not signed it off: come back later",
        )
    fields: list[tuple[str, str]] = [
        ("报告单号", report.report_id),
        ("患者号", report.patient_id),
        ("就诊号", report.visit_id),
        ("检验项目" if report.kind == "lab" else "检查项目", report.title),
    ]
    if report.department:
        fields.append(("申请科室", report.department))
    if report.issued_at is not None:
        fields.append(("报告时间", _local(report.issued_at)))
    if report.signed_by:
        fields.append(("审核者", report.signed_by))
    fields.append(("报告状态", _STATUS[report.status]))
    table = None
    if report.results:
        table = PrintTable(
            columns=("项目", "结果", "提示", "单位", "参考范围"),
            rows=tuple(
                (
                    r.name,
                    r.value,
                    _FLAGS.get(r.flag or "N", ""),
                    r.unit or "",
                    r.reference_range or "",
                )
                for r in report.results
            ),
            align=("left", "right", "left", "left", "left"),
            widths=(6, 3, 2, 3, 4),
        )
    text = tuple(p.strip() for p in (report.summary or "").split("\n") if p.strip())
    footer = ["本报告仅对所检标本负责"] if report.kind == "lab" else []
    if report.status == "preliminary":
        footer.insert(0, "初步报告，以正式报告为准")
    return PrintDocument(
        document_id=report.report_id,
        kind="lab_report" if report.kind == "lab" else "exam_report",
        medium="page",
        title=_REPORT_TITLES.get(report.kind, "报告单"),
        site_name=site_name,
        fields=tuple(fields),
        table=table,
        text=text,
        footer=tuple(footer),
        code=report.report_id,
        printed_at=printed_at or _now(),
        reprint=reprint,
    )
