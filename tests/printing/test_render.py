"""Receipts and reports as the printers get them: ESC/POS bytes and PDF pages.

The ESC/POS bytes come from python-escpos's own Dummy and File printers and are read
back command by command; the PDFs are rendered to pictures with PDFium to see that the
Chinese text is drawn with real glyphs, not empty boxes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pypdfium2 as pdfium
import pytest
from escpos.printer import Dummy, File

from hcmiddleware.errors import NothingToPrintError
from hcmiddleware.journal.records import Movement
from hcmiddleware.models import (
    Admission,
    Bill,
    Charge,
    PaymentStatus,
    PrintDocument,
    Report,
    ReportResult,
)
from hcmiddleware.printing import (
    bill_document,
    escpos_bytes,
    movement_receipt,
    payment_list,
    pdf_bytes,
    render_escpos,
    report_document,
)
from hcmiddleware.printing.escpos import CHINESE_ON, text_width, wrap

SITE = "沈阳市第一医院"
AT = datetime(2026, 12, 3, 8, 30, tzinfo=UTC)
GB = "gb18030"


def movement(kind: str = "top_up", state: str = "confirmed", **more: object) -> Movement:
    values: dict[str, object] = {
        "transaction_id": "2101000000012026120308300001",
        "idempotency_key": "k1",
        "channel": "bank",
        "kind": kind,
        "state": PaymentStatus(state),
        "amount": Decimal("100.00"),
        "currency": "CNY",
        "created_at": datetime(2026, 12, 3, 8, 30),
        "updated_at": datetime(2026, 12, 3, 8, 30, 1),
        "remote_reference": "B77",
        "terminal_id": "KIOSK-01",
        "card_masked": "1100********0001",
    }
    values.update(more)
    return Movement(**values)  # type: ignore[arg-type]


def charge(i: int, amount: str, name: str = "血常规检查") -> Charge:
    return Charge(
        charge_id=f"V1-C{i}",
        patient_id="P0001",
        visit_id="V1",
        item_code=f"X{i}",
        item_name=name,
        quantity=Decimal(1),
        unit_price=Decimal(amount),
        amount=Decimal(amount),
        insurance_category="A",
    )


def lab_report(status: str = "final") -> Report:
    return Report(
        report_id="V1-L1",
        patient_id="P0001",
        visit_id="V1",
        kind="lab",
        title="血常规",
        status=status,  # type: ignore[arg-type]
        issued_at=AT,
        results=(
            ReportResult(
                code="WBC",
                name="白细胞计数",
                value="11.2",
                unit="10^9/L",
                reference_range="3.5-9.5",
                flag="H",
            ),
            ReportResult(code="HGB", name="血红蛋白", value="128", unit="g/L", flag="L"),
        ),
        summary="白细胞偏高\n请结合临床",
    )


# --- ESC/POS -----------------------------------------------------------------------------


def test_a_top_up_receipt_in_escpos_bytes() -> None:
    doc = movement_receipt(movement(), site_name=SITE, printed_at=AT)
    data = escpos_bytes(doc)
    assert data.startswith(b"\x1b@"), "the printer is initialised first"
    assert data.index(CHINESE_ON) < data.index("充值凭条".encode(GB)), "Chinese mode, then text"
    for text in (SITE, "充值金额", "¥100.00", "1100********0001", "KIOSK-01", "B77"):
        assert text.encode(GB) in data, text
    assert b"1100000000000001" not in data, "never the full card number"
    # the title in double width and height (GS ! 0x11 or ESC ! 0x30), emphasised
    assert b"\x1bE\x01" in data
    # the transaction ID as a QR code the printer draws: GS ( k … store the data
    tid = doc.document_id.encode()
    assert b"\x1d(k" + (len(tid) + 3).to_bytes(2, "little") + b"1P0" + tid in data
    assert data.rstrip(b"\n").endswith((b"\x1dV\x00", b"\x1dVA\x00", b"\x1dV\x01", b"\x1dVB\x00"))


def test_every_printed_line_fits_the_roll() -> None:
    doc = payment_list(
        movement("pay"),
        [charge(1, "25.00"), charge(2, "1280.50", name="头颅磁共振平扫加增强（MRI）检查费用")],
        site_name=SITE,
        printed_at=AT,
    )
    for width in (32, 48):
        data = escpos_bytes(doc, width=width)
        for raw in data.split(b"\n"):
            text = _printable(raw)
            assert text_width(text) <= width, (width, text)
    data = escpos_bytes(doc, width=32)
    assert "缴费清单".encode(GB) in data
    assert "¥1,305.50".encode(GB) in data, "the items' total"


def _printable(line: bytes) -> str:
    """A line's text without its ESC/POS commands (they come before the text)."""
    line = line.rsplit(b"\x1d(k\x03\x001Q0", 1)[-1]  # after printing a QR code
    for marker in (b"\x1ba\x00", b"\x1ba\x01", b"\x1ba\x02"):
        if marker in line:
            line = line.rsplit(marker, 1)[1]
    if line.startswith(b"\x1c&"):
        line = line[2:]
    return line.decode(GB, errors="ignore")


def test_wrap_cuts_by_columns_never_inside_a_character() -> None:
    assert wrap("白细胞计数ABC", 5) == ["白细", "胞计", "数ABC"]
    assert all(text_width(part) <= 7 for part in wrap("中a文b" * 10, 7))
    assert "".join(wrap("中a文b" * 10, 7)) == "中a文b" * 10


def test_a_reprint_is_marked_as_a_copy() -> None:
    doc = movement_receipt(movement(), site_name=SITE, printed_at=AT, reprint=True)
    assert "重打凭条".encode(GB) in escpos_bytes(doc)
    assert "重打凭条".encode(GB) not in escpos_bytes(doc.model_copy(update={"reprint": False}))


def test_the_file_printer_gets_the_same_bytes(tmp_path: object) -> None:
    from pathlib import Path

    target = Path(str(tmp_path)) / "lp0"
    doc = movement_receipt(movement("refund", original_transaction_id="T0"), site_name=SITE)
    printer = File(devfile=str(target))
    printer.open()
    render_escpos(doc, printer, width=48)
    printer.close()
    dummy = Dummy()
    render_escpos(doc, dummy, width=48)
    assert target.read_bytes() == dummy.output
    assert "退款凭条".encode(GB) in dummy.output
    assert b"T0" in dummy.output


# --- what is printed -----------------------------------------------------------------


@pytest.mark.parametrize("state", ["failed", "reversed", "unknown", "sent", "pending"])
def test_no_receipt_for_money_that_did_not_move(state: str) -> None:
    with pytest.raises(NothingToPrintError) as caught:
        movement_receipt(movement(state=state), site_name=SITE)
    assert caught.value.document_id == movement().transaction_id
    assert caught.value.hint


def test_no_report_before_it_is_signed_off() -> None:
    with pytest.raises(NothingToPrintError, match="not ready"):
        report_document(lab_report("pending"), site_name=SITE)
    preliminary = report_document(lab_report("preliminary"), site_name=SITE)
    assert any("初步报告" in line for line in preliminary.footer)


def test_a_settlement_receipt_shows_the_split() -> None:
    settled = movement(
        "settle",
        channel="insurer",
        settlement_id="S1",
        fund_paid=Decimal("70.00"),
        patient_paid=Decimal("30.00"),
        card_masked=None,
    )
    doc = movement_receipt(settled, site_name=SITE, patient_id="P0001")
    assert doc.kind == "settlement_receipt"
    assert dict(doc.totals) == {
        "医疗费用总额": "¥100.00",
        "医保统筹支付": "¥70.00",
        "个人支付": "¥30.00",
    }
    assert ("医保结算号", "S1") in doc.fields


def test_the_inpatient_bill_says_what_is_owed_or_returned() -> None:
    stay = Admission(admission_id="A1", patient_id="P0001", ward="5A", bed="12", admitted_at=AT)
    items = (charge(1, "300.00"), charge(2, "200.00").model_copy(update={"paid": True}))
    owed = Bill(
        patient_id="P0001",
        admission_id="A1",
        items=items,
        total=Decimal("500.00"),
        insured=Decimal("100.00"),
        deposits=Decimal("300.00"),
        balance=Decimal("100.00"),
    )
    doc = bill_document(owed, site_name=SITE, admission=stay)
    assert ("应补缴", "¥100.00") in doc.totals
    assert doc.table is not None
    assert [r[-1] for r in doc.table.rows] == ["未付", "已付"]
    back = owed.model_copy(update={"deposits": Decimal("1000.00"), "balance": Decimal("-600.00")})
    assert ("应退还", "¥600.00") in bill_document(back, site_name=SITE).totals


# --- PDF -------------------------------------------------------------------------------


def _title_boxes(pdf: bytes, title: str, scale: float = 4.0) -> tuple[list[object], object]:
    """Each title character's picture, cut from the page rendered at ``scale``."""
    document = pdfium.PdfDocument(pdf)
    try:
        page = document[0]
        text = page.get_textpage()
        whole = text.get_text_range()
        start = whole.index(title)
        picture = page.render(scale=scale).to_pil().convert("L")
        height = page.get_height()
        crops = []
        for i in range(start, start + len(title)):
            left, bottom, right, top = text.get_charbox(i)
            box = (int(left * scale), int((height - top) * scale),
                   int(right * scale), int((height - bottom) * scale))  # fmt: skip
            crops.append(picture.crop(box))
        return crops, picture
    finally:
        document.close()


def _ink(picture: object) -> int:
    return sum(picture.histogram()[:128])  # type: ignore[attr-defined]


@pytest.mark.parametrize("medium", ["receipt", "page"])
def test_the_pdf_draws_the_chinese_glyphs(medium: str) -> None:
    up = movement_receipt(movement("top_up"), site_name=SITE, printed_at=AT)
    back = movement_receipt(movement("refund"), site_name=SITE, printed_at=AT)
    up, back = (d.model_copy(update={"medium": medium}) for d in (up, back))
    first, _ = _title_boxes(pdf_bytes(up), "充值凭条")
    second, _ = _title_boxes(pdf_bytes(back), "退款凭条")
    assert all(_ink(c) > 30 for c in first + second), "every character leaves ink"
    # 充 and 退 are different pictures; 凭条 is the same picture in both titles — an
    # empty-box fallback would draw all four characters alike
    assert first[0].tobytes() != second[0].tobytes()
    assert first[2].tobytes() == second[2].tobytes()
    assert first[3].tobytes() == second[3].tobytes()
    assert first[2].tobytes() != first[3].tobytes()


def test_a_lab_report_page_holds_its_results() -> None:
    pdf = pdf_bytes(report_document(lab_report(), site_name=SITE, printed_at=AT))
    document = pdfium.PdfDocument(pdf)
    try:
        page = document[0]
        assert round(page.get_width()), round(page.get_height()) == (595, 842)  # A4
        text = page.get_textpage().get_text_range()
    finally:
        document.close()
    for expected in ("检验报告单", SITE, "白细胞计数", "11.2", "↑", "3.5-9.5", "血红蛋白",
                     "↓", "请结合临床", "正式报告", "V1-L1"):  # fmt: skip
        assert expected in text, expected
    assert b"WenQuanYi" in pdf, "the font is embedded"


def test_a_receipt_pdf_is_an_80_mm_roll_as_long_as_it_needs() -> None:
    short = movement_receipt(movement(), site_name=SITE, printed_at=AT)
    long = payment_list(movement("pay"), [charge(i, "1.00") for i in range(40)], site_name=SITE)
    sizes = []
    for doc in (short, long):
        document = pdfium.PdfDocument(pdf_bytes(doc))
        try:
            assert len(document) == 1
            sizes.append(document[0].get_size())
        finally:
            document.close()
    assert all(round(w / 72 * 25.4) == 80 for w, _h in sizes)
    assert sizes[1][1] > sizes[0][1] * 2


def test_a_document_carries_no_full_card_number() -> None:
    doc = movement_receipt(movement(), site_name=SITE)
    assert "1100000000000001" not in doc.model_dump_json()
    assert isinstance(doc, PrintDocument)


def test_the_font_parsed_once_prints_what_a_font_parsed_per_document_prints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared font gives each document the very bytes fpdf2's own loading gives, and
    a document printed in between (other glyphs, other subset) changes nothing."""
    from hcmiddleware.printing import pdf as pdf_module

    parsed = pdf_module._shared_font(pdf_module.find_font())
    if parsed is None:
        pytest.skip("the system's Chinese font is not TrueType: it is parsed per document")
    glyphs = parsed.ttfont["glyf"].glyphs
    before = {name: dict(vars(glyph)) for name, glyph in glyphs.items()}
    receipt = movement_receipt(movement("top_up"), site_name=SITE, printed_at=AT)
    listing = payment_list(
        movement("pay"), [charge(i, "1.00", f"项目{i}号") for i in range(12)], site_name=SITE,
        printed_at=AT,
    )  # fmt: skip
    report = report_document(lab_report(), site_name=SITE, printed_at=AT)
    shared = [pdf_bytes(doc) for doc in (receipt, listing, report, receipt)]
    assert shared[0] == shared[3], "a document printed in between changed the font"
    after = {name: dict(vars(glyph)) for name, glyph in glyphs.items()}
    assert after == before, "the parsed font is only read, never edited"
    monkeypatch.setattr(pdf_module, "_shared_font", lambda _font: None)
    own = [pdf_bytes(doc) for doc in (receipt, listing, report)]
    assert shared[:3] == own


def test_documents_printed_at_once_from_threads_are_each_whole() -> None:
    from concurrent.futures import ThreadPoolExecutor

    docs = [
        movement_receipt(movement(kind), site_name=SITE, printed_at=AT)
        for kind in ("top_up", "refund", "pay")
    ] + [report_document(lab_report(), site_name=SITE, printed_at=AT)]
    alone = [pdf_bytes(doc) for doc in docs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(pdf_bytes, docs * 3))
    assert together == alone * 3
