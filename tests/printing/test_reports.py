"""Lab and exam reports from the HIS on the self-service page printer (PDF)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from hcm_his_sample import SampleHis

from hcmiddleware.errors import NothingToPrintError, PrintError
from hcmiddleware.models import HospitalPatient

PATIENT = HospitalPatient(hospital_code="H0001", patient_id="H000000001", resident_id="r-1")


def _text(pdf: Path) -> str:
    document = pdfium.PdfDocument(pdf)
    try:
        return "".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


def test_the_kiosk_prints_each_signed_report_once(tmp_path: Path, hcm_make_middleware: Any) -> None:
    his = SampleHis()
    mw = hcm_make_middleware(
        plugins={"sample-his": his}, printing={"pdf_dir": str(tmp_path / "spool")}
    )
    assert mw.receipts.reports(PATIENT, "V1") == [], "a pending report waits for the lab"
    his.sign_off_report("V1-L1")
    [job] = mw.receipts.reports(PATIENT, "V1")
    assert (job.state, job.kind, job.printer, job.reprint) == (
        "printed", "lab_report", "hcm.pdf-printer", False,
    )  # fmt: skip
    pdf = Path(str(job.reference))
    assert pdf.parent == tmp_path / "spool"
    text = _text(pdf)
    for expected in ("检验报告单", "白细胞计数", "血红蛋白", "130-175", "↓", "↑", "请结合临床"):
        assert expected in text, expected
    assert mw.receipts.reports(PATIENT, "V1") == [], "printed already"
    [again] = mw.receipts.reports(PATIENT, "V1", again=True)
    assert again.reprint
    assert "重打" in _text(Path(str(again.reference)))
    copy = mw.receipts.reprint("V1-L1")
    assert copy.reprint
    assert copy.kind == "lab_report"


def test_a_pending_report_is_not_printed_by_hand_either(hcm_make_middleware: Any) -> None:
    mw = hcm_make_middleware(plugins={"sample-his": SampleHis()})
    [report] = mw.his.reports(PATIENT, "V2")
    with pytest.raises(NothingToPrintError, match="not ready"):
        mw.receipts.report(report)
    assert mw.receipts.jobs() == [], "nothing was sent to a printer"


def test_the_print_command_hands_over_the_pdf_and_its_failure_is_recorded(
    tmp_path: Path, hcm_make_middleware: Any
) -> None:
    his = SampleHis()
    queue = tmp_path / "queue"
    queue.mkdir()
    copy_to_queue = [sys.executable, "-c",
                     f"import shutil, sys; shutil.copy(sys.argv[1], {str(queue)!r})"]  # fmt: skip
    mw = hcm_make_middleware(
        plugins={"sample-his": his},
        printing={"pdf_dir": str(tmp_path / "spool"), "pdf_command": copy_to_queue},
    )
    his.sign_off_report("V3-L1")
    [job] = mw.receipts.reports(PATIENT, "V3")
    assert job.ok
    assert [p.name for p in queue.iterdir()] == [Path(str(job.reference)).name]

    refusing = hcm_make_middleware(
        plugins={"sample-his": SampleHis()},
        printing={
            "pdf_dir": str(tmp_path / "spool2"),
            "pdf_command": [sys.executable, "-c", "import sys; sys.exit('queue kiosk-a4 is off')"],
        },
    )
    [report] = refusing.his.reports(PATIENT, "V3")
    report = report.model_copy(update={"status": "final"})
    with pytest.raises(PrintError, match="queue kiosk-a4 is off") as caught:
        refusing.receipts.report(report)
    assert "lpstat" in caught.value.hint
    [failed] = refusing.receipts.unprinted()
    assert failed.document_id == "V3-L1"
    assert list((tmp_path / "spool2").glob("*.pdf")), "the PDF is kept for the reprint"


def test_no_printer_set_up_is_a_typed_error_and_is_recorded(hcm_make_middleware: Any) -> None:
    his = SampleHis()
    mw = hcm_make_middleware(plugins={"sample-his": his})
    his.sign_off_report("V4-L1")
    [report] = mw.his.reports(PATIENT, "V4")
    with pytest.raises(PrintError, match="no printer is set up") as caught:
        mw.receipts.report(report)
    assert "[printing]" in caught.value.hint
    assert [j.state for j in mw.receipts.jobs()] == ["failed"]
    # a receipt printer alone does not take pages
    receipts_only = hcm_make_middleware(
        plugins={"sample-his": SampleHis()}, printing={"escpos_device": "/dev/null"}
    )
    with pytest.raises(PrintError, match="no printer takes page documents"):
        receipts_only.receipts.report(report)


def test_the_receipt_printer_is_one_or_the_other(hcm_make_middleware: Any) -> None:
    from hcmiddleware.errors import ConfigError

    with pytest.raises(ConfigError, match="escpos_device or escpos_host"):
        hcm_make_middleware(printing={"escpos_device": "/dev/null", "escpos_host": "10.0.0.9"})
