"""Receipts and reports: what the kiosk prints, on a thermal printer or a page printer.

``middleware.receipts`` is the service (:class:`Receipts`); the documents are built by
:mod:`~hcmiddleware.printing.documents` and laid out by :func:`escpos_bytes` (ESC/POS,
python-escpos) and :func:`pdf_bytes` (PDF, fpdf2) — both need the ``print`` extra.
A printer is a plugin implementing ``hcm_print``; the built-in ones are set up from
``[printing]`` (``docs/printing.md``).
"""

from hcmiddleware.printing.documents import (
    bill_document,
    movement_receipt,
    payment_list,
    report_document,
)
from hcmiddleware.printing.escpos import escpos_bytes, render_escpos
from hcmiddleware.printing.pdf import pdf_bytes
from hcmiddleware.printing.service import PrintJob, Receipts

__all__ = [
    "PrintJob",
    "Receipts",
    "bill_document",
    "escpos_bytes",
    "movement_receipt",
    "payment_list",
    "pdf_bytes",
    "render_escpos",
    "report_document",
]
