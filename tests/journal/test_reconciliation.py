"""Daily reconciliation: matched, missing on either side, amount mismatch; the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hcm_bank_soap.reference import SoapServer
from money_peers import CARD, ID_NUMBER, bank_plan, charges, insurer_plan

from hcmiddleware.cli import main
from hcmiddleware.flows import payment
from hcmiddleware.journal import Journal, reconcile
from hcmiddleware.journal.reconciliation import compare
from hcmiddleware.models import Statement, StatementLine
from hcmiddleware.runtime import Middleware

TODAY = datetime.now(UTC).date()


def _day(journal: Journal) -> None:
    payment.top_up(journal, key="up", card_number=CARD, amount="100.00")
    payment.pay(journal, key="p1", card_number=CARD, amount="12.50")
    journal.settle(
        key="s", scheme="basic", insured_id=ID_NUMBER, patient_id="P1", visit_id="V1",
        charges=charges("20.00"), total="20.00",
    )  # fmt: skip


def test_clean_day_matches_everything(journal: Journal) -> None:
    _day(journal)
    report = reconcile(journal, TODAY)
    assert report.ok
    bank, insurer = report.sources
    assert (bank.source, len(bank.matched), bank.journal_total) == ("bank", 2, Decimal("112.50"))
    assert (insurer.source, len(insurer.matched), insurer.remote_total) == (
        "insurer", 1, Decimal("14.00"),
    )  # fmt: skip


def test_wrong_statement_amounts_are_mismatches(
    journal: Journal, bank: SoapServer, insurer: Any
) -> None:
    _day(journal)
    bank.set_faults(bank_plan(statement=1.0, operations=frozenset({"Statement"})))
    insurer.set_faults(insurer_plan(statement=1.0, operations=frozenset({"ReconcileDetail"})))
    report = reconcile(journal, TODAY)
    assert not report.ok
    kinds = [(s.source, d.kind, d.remote_amount - d.journal_amount) for s in report.sources
             for d in s.discrepancies]  # fmt: skip
    assert kinds == [
        ("bank", "amount_mismatch", Decimal("0.01")),
        ("insurer", "amount_mismatch", Decimal("0.01")),
    ]


def test_missing_on_either_side() -> None:
    journal_side = [_movement("A", "10.00"), _movement("B", "5.00")]
    statement = Statement(
        source="bank", date_from=TODAY, date_to=TODAY,
        lines=(_line("A", "10.00"), _line("C", "7.00")),
    )  # fmt: skip
    report = compare("bank", journal_side, statement)
    assert report.matched == ["A"]
    assert [(d.kind, d.transaction_id) for d in report.discrepancies] == [
        ("missing_at_remote", "B"),
        ("missing_in_journal", "C"),
    ]


def test_money_moved_on_a_reversed_entry_is_flagged() -> None:
    statement = Statement(
        source="bank", date_from=TODAY, date_to=TODAY, lines=(_line("A", "1.00"),)
    )
    report = compare("bank", [_movement("A", "1.00", state="reversed")], statement)
    assert [(d.kind, d.journal_state) for d in report.discrepancies] == [
        ("missing_in_journal", "reversed"),
    ]


def _movement(tid: str, amount: str, state: str = "confirmed") -> Any:
    from hcmiddleware.journal import Movement
    from hcmiddleware.models import PaymentStatus

    now = datetime.now(UTC).replace(tzinfo=None)
    return Movement(
        transaction_id=tid, idempotency_key=tid, channel="bank", kind="pay",
        state=PaymentStatus(state), amount=Decimal(amount), currency="CNY",
        created_at=now, updated_at=now,
    )  # fmt: skip


def _line(tid: str, amount: str) -> StatementLine:
    return StatementLine(
        transaction_id=tid, kind="pay", amount=Decimal(amount), occurred_at=datetime.now(UTC)
    )


def _config(tmp_path: Path, bank: SoapServer, insurer: Any) -> Path:
    path = tmp_path / "hcm.toml"
    path.write_text(
        f"""
[middleware]
data_dir = "{tmp_path / "cli-data"}"
institution_code = "210100000001"

[plugins]
enabled = ["bank-soap", "insurance-soap"]

[plugins.bank-soap]
wsdl = "{bank.wsdl_url}"

[plugins.insurance-soap]
wsdl = "{insurer.wsdl_url}"
""",
        encoding="utf-8",
    )
    return path


def test_cli_list_show_reconcile(
    tmp_path: Path, bank: SoapServer, insurer: Any, money_mw: Callable[..., Middleware]
) -> None:
    config = _config(tmp_path, bank, insurer)
    journal = Journal(Middleware.from_file(config))
    _day(journal)
    journal.mw.close()
    runner = CliRunner()
    listed = runner.invoke(main, ["--config", str(config), "journal", "list"])
    assert listed.exit_code == 0, listed.output
    assert len(listed.output.splitlines()) == 3
    assert CARD not in listed.output  # no card numbers on screen
    only = runner.invoke(
        main, ["--config", str(config), "journal", "list", "--state", "failed", "--json"]
    )
    assert json.loads(only.output) == []
    tid = listed.output.split()[0]
    shown = runner.invoke(main, ["--config", str(config), "journal", "show", tid, "--json"])
    data = json.loads(shown.output)
    assert data["state"] == "confirmed"
    assert [h["state"] for h in data["history"]] == ["pending", "sent", "confirmed"]
    assert CARD not in shown.output
    missing = runner.invoke(main, ["--config", str(config), "journal", "show", "nope"])
    assert missing.exit_code == 1
    assert "no journal entry" in missing.output
    day = TODAY.isoformat()
    ok = runner.invoke(main, ["--config", str(config), "journal", "reconcile", "--date", day])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output
    bank.set_faults(bank_plan(statement=1.0, operations=frozenset({"Statement"})))
    bad = runner.invoke(
        main, ["--config", str(config), "journal", "reconcile", "--date", day, "--json"]
    )
    assert bad.exit_code == 1
    assert json.loads(bad.output)["sources"][0]["discrepancies"][0]["kind"] == "amount_mismatch"
    text = runner.invoke(main, ["--config", str(config), "journal", "reconcile", "--date", day])
    assert "amount mismatch" in text.output


def test_cli_recover(tmp_path: Path, bank: SoapServer, insurer: Any) -> None:
    config = _config(tmp_path, bank, insurer)
    journal = Journal(Middleware.from_file(config))
    payment.top_up(journal, key="up", card_number=CARD, amount="10.00")
    bank.set_faults(bank_plan(drop=1.0, operations=frozenset({"Pay", "Query", "Reverse"})))
    stuck = journal.pay(key="p", card_number=CARD, amount="1.00")
    journal.mw.close()
    runner = CliRunner()
    young = runner.invoke(main, ["--config", str(config), "journal", "recover"])
    assert young.exit_code == 0  # changed seconds ago: maybe still in a live call
    assert "nothing in flight" in young.output
    recover = ["--config", str(config), "journal", "recover", "--min-age", "0"]
    still = runner.invoke(main, recover)
    assert still.exit_code == 1
    assert stuck.transaction_id in still.output
    bank.set_faults(bank_plan())
    done = runner.invoke(main, recover)
    assert done.exit_code == 0, done.output
    assert "confirmed" in done.output
    listed = runner.invoke(
        main, ["--config", str(config), "journal", "list", "--state", "unknown", "--json"]
    )
    assert json.loads(listed.output) == []
