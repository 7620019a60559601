"""Receipts of real movements through the reference bank: printed, failed, reprinted.

A failed print never loses the transaction: the movement is confirmed in the journal
and at the bank, the failure is in the print log, and the receipt is printed again
from the journal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hcm_bank_soap.reference import SoapServer
from money_peers import CARD, charges

from hcmiddleware.cli import main
from hcmiddleware.errors import NothingToPrintError, PrintError, UnknownTransactionError
from hcmiddleware.flows.payment import charges_payment, top_up
from hcmiddleware.hookspecs import hookimpl
from hcmiddleware.models import PaymentStatus, PrintDocument
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.plugin import embedded_config

GB = "gb18030"
HCM = shutil.which("hcm", path=str(Path(sys.executable).parent)) or "hcm"


def printing(tmp_path: Path, device: Path | None = None, **more: Any) -> dict[str, Any]:
    return {"escpos_device": str(device or tmp_path / "lp0"), **more}


def test_a_top_up_prints_its_receipt(
    tmp_path: Path, money_mw: Callable[..., Middleware], bank: SoapServer
) -> None:
    mw = money_mw(printing=printing(tmp_path))
    moved = top_up(mw.journal, key="up-1", card_number=CARD, amount="100.00", terminal_id="K1")
    paper = (tmp_path / "lp0").read_bytes()
    assert "充值凭条".encode(GB) in paper
    assert moved.transaction_id.encode() in paper
    [job] = mw.receipts.jobs()
    assert (job.state, job.kind, job.printer, job.transaction_id, job.reprint) == (
        "printed", "top_up_receipt", "hcm.escpos-printer", moved.transaction_id, False,
    )  # fmt: skip
    assert [e.action for e in mw.audit.entries(action="print.*")] == ["print.printed"]
    # the same request again (a retry) moves nothing and prints nothing more
    again = top_up(mw.journal, key="up-1", card_number=CARD, amount="100.00", terminal_id="K1")
    assert again.transaction_id == moved.transaction_id
    assert len(mw.receipts.jobs()) == 1


def test_a_failed_print_loses_nothing_and_the_receipt_is_printed_again(
    tmp_path: Path, money_mw: Callable[..., Middleware], bank: SoapServer
) -> None:
    unplugged = tmp_path / "no-such-port" / "lp0"  # the device is not there
    mw = money_mw(printing=printing(tmp_path, unplugged))
    before = bank.service.ledger.balance(CARD)  # type: ignore[attr-defined]
    moved = top_up(mw.journal, key="up-2", card_number=CARD, amount="50.00")
    assert moved.state is PaymentStatus.CONFIRMED, "the top-up stands"
    assert mw.journal.get(moved.transaction_id).state is PaymentStatus.CONFIRMED
    assert bank.service.ledger.balance(CARD) == before + 50  # type: ignore[attr-defined]
    [failed] = mw.receipts.unprinted()
    assert (failed.state, failed.document_id, failed.printer) == (
        "failed", moved.transaction_id, "hcm.escpos-printer",
    )  # fmt: skip
    assert "did not take the receipt" in (failed.error or "")
    assert mw.audit.entries(action="print.failed")[0].outcome == "failed"

    # asked by hand while the printer is still away: recorded, typed, with a hint
    with pytest.raises(PrintError) as caught:
        mw.receipts.reprint(moved.transaction_id)
    assert caught.value.hint
    assert caught.value.document_id == moved.transaction_id
    assert len(mw.receipts.jobs(state="failed")) == 2

    # the printer is back: the first paper is not a copy, the next one is
    unplugged.parent.mkdir()
    first = mw.receipts.reprint(moved.transaction_id)
    assert first.ok
    assert not first.reprint
    assert "重打凭条".encode(GB) not in unplugged.read_bytes()
    copy = mw.receipts.reprint(moved.transaction_id)
    assert copy.ok
    assert copy.reprint
    assert "重打凭条".encode(GB) in unplugged.read_bytes()
    assert mw.receipts.unprinted() == []


class _BrokenPrinter:
    """A printer plugin that fails the way drivers do: raising, or hanging."""

    def __init__(self, hang: threading.Event | None = None) -> None:
        self.hang = hang

    @hookimpl
    def hcm_print(self, document: PrintDocument) -> str | None:
        if self.hang is not None:
            self.hang.wait(5)
            return "late"
        raise RuntimeError("paper jam")


@pytest.mark.parametrize("hangs", [False, True])
def test_a_printer_plugin_that_raises_or_hangs_loses_nothing(
    tmp_path: Path, bank: SoapServer, hangs: bool
) -> None:
    from hcm_bank_soap import BankSoap

    release = threading.Event()
    config = embedded_config(
        tmp_path / "data",
        plugins={
            "bank-soap": {"wsdl": bank.wsdl_url},
            "timeouts": {"kiosk-printer": 0.3},
        },
    )
    printer = _BrokenPrinter(release if hangs else None)
    mw = Middleware(config, plugins={"bank-soap": BankSoap(), "kiosk-printer": printer})
    try:
        moved = top_up(mw.journal, key="up-3", card_number=CARD, amount="10.00")
        assert mw.journal.get(moved.transaction_id).state is PaymentStatus.CONFIRMED
        [job] = mw.receipts.jobs()
        assert (job.state, job.printer) == ("failed", "kiosk-printer")
        assert job.error
    finally:
        release.set()
        mw.close()


def test_the_payment_list_is_reprinted_with_its_items(
    tmp_path: Path, money_mw: Callable[..., Middleware]
) -> None:
    mw = money_mw(printing=printing(tmp_path))
    top_up(mw.journal, key="up-4", card_number=CARD, amount="500.00")
    visit = charges("25.00", "12.50", visit="V9")
    pay = charges_payment(mw.journal, card_number=CARD, terminal_id="K2")
    tid = pay(sum(c.amount for c in visit), list(visit))
    listed = mw.receipts.document(tid)
    assert listed is not None
    assert listed.kind == "payment_list"
    assert listed.table is not None
    assert len(listed.table.rows) == 2
    copy = mw.receipts.reprint(tid)
    assert copy.reprint
    assert copy.kind == "payment_list"
    paper = (tmp_path / "lp0").read_bytes()  # the device file holds the last job
    assert "缴费清单".encode(GB) in paper
    assert "重打凭条".encode(GB) in paper
    assert b"12.50" in paper
    assert b"37.50" in paper


def test_receipts_off_prints_nothing_and_a_declined_movement_has_no_receipt(
    tmp_path: Path, money_mw: Callable[..., Middleware]
) -> None:
    mw = money_mw(printing=printing(tmp_path, receipts=False))
    moved = top_up(mw.journal, key="up-5", card_number=CARD, amount="20.00")
    assert mw.receipts.jobs() == []
    assert not (tmp_path / "lp0").exists()
    assert mw.receipts.movement(moved.transaction_id).ok, "printed when asked"
    with pytest.raises(UnknownTransactionError, match="hcm receipt list"):
        mw.receipts.reprint("210100000001209901010000")
    declined = mw.journal.pay(key="pay-too-much", card_number=CARD, amount="99999.00")
    assert declined.state is PaymentStatus.FAILED
    with pytest.raises(NothingToPrintError):
        mw.receipts.reprint(declined.transaction_id)


def test_reprint_from_the_command_line(tmp_path: Path, money_mw: Callable[..., Middleware]) -> None:
    mw = money_mw(printing=printing(tmp_path, tmp_path / "away" / "lp0"))
    moved = top_up(mw.journal, key="up-6", card_number=CARD, amount="30.00")
    data_dir = mw.config.middleware.data_dir
    mw.close()
    config = tmp_path / "hcm.toml"
    config.write_text(
        f'[middleware]\ndata_dir = "{data_dir}"\ninstitution_code = "210100000001"\n'
        f'[printing]\nescpos_device = "{tmp_path / "lp1"}"\n',
        encoding="utf-8",
    )

    env = {"HCM_CONFIG": str(config)}
    runner = CliRunner()
    out = runner.invoke(main, ["receipt", "list", "--failed", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert [j["document_id"] for j in json.loads(out.output)] == [moved.transaction_id]
    # the documented command, as a real process with its exit code
    done = subprocess.run(
        [HCM, "receipt", "reprint", moved.transaction_id],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "printed top_up_receipt" in done.stdout
    assert "充值凭条".encode(GB) in (tmp_path / "lp1").read_bytes()
    out = runner.invoke(main, ["receipt", "list", "--failed", "--json"], env=env)
    assert json.loads(out.output) == []
    listed = runner.invoke(main, ["receipt", "list"], env=env)
    assert listed.output.count(moved.transaction_id) == 2
    assert "FAILED" in listed.output
    saved = tmp_path / "r.bin"
    out = runner.invoke(
        main, ["receipt", "save", moved.transaction_id, "--format", "escpos", "-o", str(saved)],
        env=env,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert saved.read_bytes().startswith(b"\x1b@")
    out = runner.invoke(main, ["receipt", "reprint", "NO-SUCH-ID"], env=env)
    assert out.exit_code == 1
    assert "hcm receipt list" in out.output
