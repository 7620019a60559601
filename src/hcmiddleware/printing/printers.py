"""The built-in printers, plugins implementing ``hcm_print``, set up from ``[printing]``.

* :class:`EscposPrinter` (``hcm.escpos-printer``): receipts, in ESC/POS, to the thermal
  printer's device file (``escpos_device``) or its raw TCP port (``escpos_host``),
  through python-escpos's ``File`` and ``Network`` printers. The whole receipt is made
  first and sent in one write, so a printer that fails takes nothing half-made.
* :class:`PdfPrinter` (``hcm.pdf-printer``): pages — reports, the inpatient bill — as
  PDF files in ``pdf_dir``, each handed to ``pdf_command`` when one is set; receipts
  too when no thermal printer is set up.

Any other printer is a plugin of its own implementing ``hcm_print``.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path

from hcmiddleware._optional import needs_extra
from hcmiddleware.config import PrintingSection
from hcmiddleware.errors import PrintError
from hcmiddleware.hookspecs import hookimpl
from hcmiddleware.models import PrintDocument
from hcmiddleware.printing.escpos import escpos_bytes
from hcmiddleware.printing.pdf import pdf_bytes

__all__ = ["ESCPOS_NAME", "PDF_NAME", "EscposPrinter", "PdfPrinter"]

ESCPOS_NAME = "hcm.escpos-printer"
PDF_NAME = "hcm.pdf-printer"

_UNSAFE = re.compile(r"[^0-9A-Za-z._-]+")


class EscposPrinter:
    """The thermal receipt printer (ESC/POS)."""

    def __init__(self, settings: PrintingSection) -> None:
        self.settings = settings

    @hookimpl
    def hcm_print(self, document: PrintDocument) -> str | None:
        """Print a receipt; pages are left to the page printer."""
        if document.medium != "receipt":
            return None
        s = self.settings
        data = escpos_bytes(document, width=s.line_width, profile=s.escpos_profile)
        with needs_extra("receipt printing"):
            from escpos.exceptions import Error as EscposError
            from escpos.printer import File, Network

        if s.escpos_host is not None:
            where = f"{s.escpos_host}:{s.escpos_port}"
            printer = Network(s.escpos_host, port=s.escpos_port, timeout=s.timeout)
        else:
            assert s.escpos_device is not None
            where = str(s.escpos_device)
            printer = File(devfile=where)
        try:
            printer.open()
            printer._raw(data)
        except (OSError, EscposError) as exc:
            raise PrintError(
                f"the receipt printer at {where} did not take the receipt: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                printer=ESCPOS_NAME,
                document_id=document.document_id,
            ) from exc
        finally:
            with contextlib.suppress(OSError, EscposError):
                printer.close()
        return f"{where} ({len(data)} bytes)"


class PdfPrinter:
    """Pages as PDF files (and receipts, when ``receipts`` is true)."""

    def __init__(self, settings: PrintingSection, *, receipts: bool) -> None:
        self.settings = settings
        self.receipts = receipts

    @hookimpl
    def hcm_print(self, document: PrintDocument) -> str | None:
        """Write the document's PDF and hand it to ``pdf_command``."""
        if document.medium == "receipt" and not self.receipts:
            return None
        s = self.settings
        assert s.pdf_dir is not None
        data = pdf_bytes(document, font=s.font)
        stamp = document.printed_at.strftime("%Y%m%d%H%M%S")
        name = _UNSAFE.sub("_", f"{document.kind}-{document.document_id}-{stamp}")
        path = s.pdf_dir / f"{name}{'-reprint' if document.reprint else ''}.pdf"
        try:
            s.pdf_dir.mkdir(parents=True, exist_ok=True)
            _write_new(path, data)
        except OSError as exc:
            raise PrintError(
                f"the PDF could not be written to {s.pdf_dir}: {exc.strerror or exc}",
                printer=PDF_NAME,
                document_id=document.document_id,
                hint="check that [printing] pdf_dir exists and the service may write there",
            ) from exc
        if s.pdf_command:
            _run(list(s.pdf_command), path, s.timeout, document.document_id)
        return str(path)


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it in: a spooler never sees half a file."""
    part = path.with_suffix(".part")
    part.write_bytes(data)
    part.replace(path)


def _run(command: list[str], path: Path, timeout: float, document_id: str) -> None:
    try:
        done = subprocess.run(  # noqa: S603 - the site's own command, from its config file
            [*command, str(path)], capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PrintError(
            f"the print command {command[0]!r} could not be run: {type(exc).__name__}",
            printer=PDF_NAME,
            document_id=document_id,
            hint="check [printing] pdf_command (the program, its path, the printer queue)",
        ) from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise PrintError(
            f"the print command {command[0]!r} failed (exit {done.returncode})"
            + (f": {said[-1][:120]}" if said else ""),
            printer=PDF_NAME,
            document_id=document_id,
            hint="check the printer queue (`lpstat -p`), then print again; the PDF is kept",
        )
