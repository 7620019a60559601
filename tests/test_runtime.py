"""The Middleware's own services: audit, doctor, database, the recorder fixture."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hcmiddleware import Middleware
from hcmiddleware.config import parse_config
from hcmiddleware.models import AuditEvent, CheckResult
from hcmiddleware.testing import HookRecorder


def test_audit_event_reaches_every_sink(
    hcm_middleware: Middleware, hcm_recorder: HookRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hcmiddleware.audit"):
        hcm_middleware.audit("card.read", actor="kiosk-7", subject="r-1", reader="R0")
    record = hcm_recorder.last("hcm_audit_event")
    event = record.kwargs["event"]
    assert isinstance(event, AuditEvent)
    assert (event.action, event.actor, event.subject) == ("card.read", "kiosk-7", "r-1")
    line = json.loads(caplog.records[-1].getMessage())
    assert line["action"] == "card.read"
    assert line["details"] == {"reader": "R0"}


def test_a_site_plugin_receives_audit_events_too(hcm_make_middleware: Any) -> None:
    seen: list[AuditEvent] = []

    class Siem:
        def hcm_audit_event(self, event: AuditEvent) -> None:
            seen.append(event)

    mw = hcm_make_middleware(plugins={"siem": Siem()})
    mw.audit("payment.confirmed", actor="cashier-2", subject="T-1")
    assert [e.action for e in seen] == ["payment.confirmed"]


def test_doctor_reports_each_plugins_checks(hcm_make_middleware: Any) -> None:
    class Checked:
        def hcm_doctor_checks(self) -> list[CheckResult]:
            return [CheckResult(name="link", ok=False, detail="down", hint="plug it in")]

    class Crashing:
        def hcm_doctor_checks(self) -> list[CheckResult]:
            raise RuntimeError("boom")

    mw = hcm_make_middleware(plugins={"checked": Checked(), "crashing": Crashing()})
    rows = {(p, r.name): r for p, r in mw.doctor()}
    assert rows[("checked", "link")].ok is False
    assert rows[("crashing", "checks")].ok is False
    assert "boom" in rows[("crashing", "checks")].detail
    assert rows[("hcm.core-checks", "database")].ok is True


def test_sqlite_database_is_created_in_the_data_dir(hcm_middleware: Middleware) -> None:
    with hcm_middleware.engine.connect() as conn:
        mode = conn.execute(sa.text("PRAGMA journal_mode")).scalar()
    assert mode == "wal"
    assert (hcm_middleware.config.middleware.data_dir / "hcm.db").exists()


def test_unreachable_database_fails_the_doctor_line() -> None:
    config = parse_config({"database": {"url": "postgresql+psycopg://nobody@127.0.0.1:1/none"}})
    with Middleware(config) as mw:
        rows = {r.name: r for _, r in mw.doctor()}
    assert rows["database"].ok is False
    assert "127.0.0.1:1" in rows["database"].detail
    assert rows["database"].hint


@pytest.mark.postgres
def test_postgresql_database_passes_the_doctor() -> None:
    admin = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT"
    )
    name = f"hcm_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        config = parse_config(
            {"database": {"url": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"}}
        )
        with Middleware(config) as mw:
            rows = {r.name: r for _, r in mw.doctor()}
            assert rows["database"].ok, rows["database"]
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_recorder_assertions(hcm_middleware: Middleware, hcm_recorder: HookRecorder) -> None:
    hcm_middleware.hooks.hcm_card_removed(reader="R1")
    hcm_recorder.assert_called("hcm_card_removed", reader="R1")
    with pytest.raises(AssertionError, match="not called with"):
        hcm_recorder.assert_called("hcm_card_removed", reader="R2")
    with pytest.raises(AssertionError, match="was not called"):
        hcm_recorder.last("hcm_card_inserted")


def test_the_library_configures_no_logging(tmp_path: Path) -> None:
    # in a fresh process: the CLI tests in this one configure logging, as the CLI should
    code = (
        "import logging\n"
        "from hcmiddleware import Middleware\n"
        "from hcmiddleware.testing.plugin import embedded_config\n"
        "from pathlib import Path\n"
        f"with Middleware(embedded_config(Path({str(tmp_path)!r}))) as mw:\n"
        "    mw.residents.count()\n"
        "logger = logging.getLogger('hcmiddleware')\n"
        "print(logger.level, [type(h).__name__ for h in logger.handlers],\n"
        "      logging.getLogger().handlers)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "['NullHandler']", "[]"]
