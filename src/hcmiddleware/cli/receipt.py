"""``hcm receipt``: reprint a receipt or a report, list what was printed or failed, save one."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hcmiddleware.cli.context import open_middleware
from hcmiddleware.errors import UnknownTransactionError
from hcmiddleware.models import PrintDocument
from hcmiddleware.printing import documents
from hcmiddleware.runtime import Middleware

__all__ = ["receipt_group"]


@click.group("receipt")
def receipt_group() -> None:
    """Receipts and reports: reprint from the journal, the print log, save as a file."""


@receipt_group.command("reprint")
@click.argument("document_id")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def receipt_reprint(ctx: click.Context, document_id: str, as_json: bool) -> None:
    """Print DOCUMENT_ID again: a transaction ID from the journal, or a printed
    report's or bill's ID. Marked as a copy when it was printed before; exit 1 when
    the printer fails (recorded, nothing else changes)."""
    mw = open_middleware(ctx)
    job = mw.receipts.reprint(document_id)
    if as_json:
        click.echo(json.dumps(job.as_dict(), indent=2))
        return
    copy = " (copy)" if job.reprint else ""
    click.echo(f"printed {job.kind} {job.document_id}{copy} on {job.printer}: {job.reference}")


@receipt_group.command("list")
@click.option("--failed", is_flag=True, help="only documents whose last print failed")
@click.option("--document", "document_id", help="only the attempts for this ID")
@click.option("--limit", type=click.IntRange(1), default=None, help="at most this many")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def receipt_list(
    ctx: click.Context, failed: bool, document_id: str | None, limit: int | None, as_json: bool
) -> None:
    """The print log, newest first: every receipt, list, bill and report printed or
    failed (``--failed``: what is still to be printed again)."""
    mw = open_middleware(ctx)
    jobs = mw.receipts.unprinted() if failed else mw.receipts.jobs(document_id=document_id)
    if limit is not None:
        jobs = jobs[:limit]
    if as_json:
        click.echo(json.dumps([j.as_dict() for j in jobs], indent=2))
        return
    if not jobs:
        click.echo("nothing to reprint" if failed else "nothing printed yet")
        return
    for j in jobs:
        what = j.reference if j.ok else f"FAILED: {j.error}"
        click.echo(
            f"{j.at:%Y-%m-%d %H:%M:%S}  {j.document_id}  {j.kind:<18} "
            f"{'copy ' if j.reprint else ''}{j.printer or '-'}  {what}"
        )


def _document(mw: Middleware, document_id: str) -> PrintDocument:
    stored = mw.receipts.document(document_id)
    if stored is not None:
        return stored
    try:
        moved = mw.journal.get(document_id)
    except UnknownTransactionError:
        raise UnknownTransactionError(
            f"nothing was printed as {document_id!r} and the journal has no such movement",
            transaction_id=document_id,
            hint="give a transaction ID (`hcm journal list`) or a printed document's ID "
            "(`hcm receipt list`)",
        ) from None
    return documents.movement_receipt(moved, site_name=mw.receipts.site_name)


@receipt_group.command("save")
@click.argument("document_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pdf", "escpos"]),
    default="pdf",
    show_default=True,
    help="a PDF, or the ESC/POS bytes the receipt printer would get",
)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.pass_context
def receipt_save(ctx: click.Context, document_id: str, fmt: str, out: Path) -> None:
    """Write DOCUMENT_ID's receipt or report to a file instead of a printer (nothing is
    recorded: the file is not a print)."""
    mw = open_middleware(ctx)
    document = _document(mw, document_id)
    if fmt == "pdf":
        from hcmiddleware.printing.pdf import pdf_bytes

        data = pdf_bytes(document, font=mw.config.printing.font)
    else:
        from hcmiddleware.printing.escpos import escpos_bytes

        data = escpos_bytes(
            document,
            width=mw.config.printing.line_width,
            profile=mw.config.printing.escpos_profile,
        )
    out.write_bytes(data)
    click.echo(f"wrote {document.kind} {document.document_id} to {out} ({len(data)} bytes)")
