"""PDF receipts and reports: what the Chinese font costs per document.

A Chinese font holds tens of thousands of glyphs; parsing it is most of a PDF's time.
The renderer parses a TrueType font once per process and gives each document a copy
(``hcmiddleware.printing.pdf``). Printed per document kind (an 80 mm top-up receipt,
an A4 lab report): the first document in the process (it parses the font), the second,
the median of the next ones, and next to them fpdf2 parsing the font for every
document, as the renderer did before.

    python benchmarks/bench_print.py [RUNS]
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal

from hcmiddleware.journal.records import Movement
from hcmiddleware.models import PaymentStatus, Report, ReportResult
from hcmiddleware.printing import movement_receipt, pdf, pdf_bytes, report_document

SITE = "沈阳市第一医院"
AT = datetime(2026, 12, 3, 8, 30, tzinfo=UTC)


def documents() -> dict[str, object]:
    top_up = Movement(
        transaction_id="2101000000012026120308300001",
        idempotency_key="bench",
        channel="bank",
        kind="top_up",
        state=PaymentStatus.CONFIRMED,
        amount=Decimal("100.00"),
        currency="CNY",
        created_at=datetime(2026, 12, 3, 8, 30),
        updated_at=datetime(2026, 12, 3, 8, 30, 1),
        remote_reference="B77",
        terminal_id="KIOSK-01",
        card_masked="1100********0001",
    )
    report = Report(
        report_id="V1-L1",
        patient_id="P0001",
        visit_id="V1",
        kind="lab",
        title="血常规",
        status="final",
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
            ReportResult(
                code="HGB",
                name="血红蛋白",
                value="98",
                unit="g/L",
                reference_range="130-175",
                flag="L",
            ),
        ),
        summary="白细胞偏高\n请结合临床",
    )
    return {
        "top-up receipt (80 mm)": movement_receipt(top_up, site_name=SITE, printed_at=AT),
        "lab report (A4)": report_document(report, site_name=SITE, printed_at=AT),
    }


def ms(document: object) -> float:
    started = time.perf_counter()
    pdf_bytes(document)  # type: ignore[arg-type]
    return (time.perf_counter() - started) * 1000


def main(runs: int) -> None:
    docs = documents()
    print(f"font: {pdf.find_font()}")
    head = f"{'first':>10}{'second':>10}{'next (median)':>15}{'parsed each time':>18}"
    print(f"{'document':<26}{head}")
    shared = pdf._shared_font
    for name, document in docs.items():
        pdf._parsed.clear()  # as in a fresh process
        first, second = ms(document), ms(document)
        following = statistics.median(ms(document) for _ in range(runs))
        pdf._shared_font = lambda _font: None  # type: ignore[assignment]
        try:
            each = statistics.median(ms(document) for _ in range(runs))
        finally:
            pdf._shared_font = shared  # type: ignore[assignment]
        print(f"{name:<26}{first:>10.0f}{second:>10.0f}{following:>15.0f}{each:>18.0f}")
    print("(ms per document)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
