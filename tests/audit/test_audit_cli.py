"""``hcm audit`` as hospital IT runs it: a site made by ``hcm init``, real exit codes.

One test runs the installed ``hcm`` as a process; the others call the same command line
in-process (click's runner), which is many times faster and exits with the same codes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent

from hcmiddleware.cli import main
from hcmiddleware.runtime import Middleware

from .conftest import Rsyslog, fill

HCM = shutil.which("hcm", path=str(Path(sys.executable).parent)) or "hcm"


@dataclass
class Ran:
    """What a command printed and how it exited."""

    returncode: int
    stdout: str
    stderr: str


def hcm(*args: str, config: Path) -> Ran:
    """``hcm --config CONFIG ARGS…`` in-process."""
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def hcm_process(*args: str, config: Path) -> Any:
    """The installed ``hcm`` as a process of its own."""
    return subprocess.run(
        [HCM, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site from ``hcm init`` with a checkpoint file and 30 entries in its log."""
    made = CliRunner().invoke(main, ["init", str(tmp_path / "site")])
    assert made.exit_code == 0, made.output
    config = tmp_path / "site" / "hcm.toml"
    text = config.read_text().replace(
        '# checkpoint_file = "/mnt/audit/hcm-checkpoints.jsonl"',
        'checkpoint_file = "../other-disk/checkpoints.jsonl"\ncheckpoint_every = 10',
    )
    config.write_text(text)
    with Middleware.from_file(config) as mw:
        fill(mw, 30)
    return config


def test_verify_passes_then_names_the_first_bad_entry(site: Path) -> None:
    ok = hcm_process("audit", "verify", config=site)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok: every entry is intact" in ok.stdout
    assert "entries 1–30 checked (sha256)" in ok.stdout
    database = site.parent / "data" / "hcm.db"
    with sqlite3.connect(database) as db:
        db.execute("UPDATE audit_log SET subject = 'r-4242' WHERE seq = 12")
        db.execute("DELETE FROM audit_log WHERE seq = 20")
    bad = hcm_process("audit", "verify", config=site)
    assert bad.returncode == 1
    assert "FAILED: first bad entry 12 (changed)" in bad.stdout
    assert "entry 20: missing" in bad.stdout
    # a range, and JSON: the entry just before a range anchors it
    tail = hcm("audit", "verify", "--from", "22", "--to", "30", "--json", config=site)
    assert tail.returncode == 0, tail.stdout
    assert json.loads(tail.stdout)["entries"] == 9
    anchorless = hcm("audit", "verify", "--from", "21", "--to", "30", config=site)
    assert anchorless.returncode == 1
    assert "first bad entry 20 (missing): the entry before the range is gone" in anchorless.stdout
    report = json.loads(hcm("audit", "verify", "--json", config=site).stdout)
    assert report["first"] == {
        "seq": 12,
        "kind": "changed",
        "message": "its content does not match its hash: it was edited",
    }


def test_verify_against_a_checkpoint_file_kept_elsewhere(site: Path, tmp_path: Path) -> None:
    kept = tmp_path / "usb-stick.jsonl"
    shutil.copy(site.parent.parent / "other-disk" / "checkpoints.jsonl", kept)
    database = site.parent / "data" / "hcm.db"
    with sqlite3.connect(database) as db:  # the last entries cut off, the head put back
        db.execute("DELETE FROM audit_log WHERE seq > 25")
        db.execute("DELETE FROM audit_checkpoints WHERE seq > 25")
        db.execute(
            "UPDATE audit_head SET seq = 25, hash = (SELECT hash FROM audit_log WHERE seq = 25)"
        )
    (site.parent.parent / "other-disk" / "checkpoints.jsonl").unlink()
    fooled = hcm("audit", "verify", config=site)
    assert fooled.returncode == 0  # with every trace in the database gone
    # (that check appended its own entry, number 26)
    caught = hcm("audit", "verify", "--checkpoints", str(kept), config=site)
    assert caught.returncode == 1
    assert "first bad entry 27 (truncated)" in caught.stdout
    assert "shows the log held 30 entries; the table ends at 26" in caught.stdout


def test_list_filters_entries(site: Path) -> None:
    listed = hcm("audit", "list", "--resident", "r-0001", "--json", config=site)
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert [e["seq"] for e in entries] == [2, 12, 17, 27]  # i = 1, 11, 16, 26
    assert {e["subject"] for e in entries} == {"r-0001"}
    text = hcm("audit", "list", "--action", "card.*", "--limit", "2", config=site)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[0] == "25"
    assert "card.read" in lines[1]
    assert "reader=Virtual PCD 00 00" in lines[1]
    assert hcm("audit", "list", "--since", "2999-01-01", config=site).stdout == "no entries\n"


def test_export_fhir_to_a_file(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit.ndjson"
    done = hcm("audit", "export", "--format", "fhir", "--out", str(out), config=site)
    assert done.returncode == 0, done.stderr
    assert "exported 30 entries" in done.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 30
    for line in lines:
        FhirAuditEvent.model_validate(json.loads(line))


def test_export_atna_to_rsyslog(site: Path, rsyslog: Rsyslog) -> None:
    sent = hcm(
        "audit", "export", "--format", "atna", "--resident", "r-0002",
        "--syslog", f"127.0.0.1:{rsyslog.port}", config=site,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert "sent 4 messages" in sent.stderr  # i = 2, 7, 17, 22
    lines = rsyslog.lines(4)
    assert len(lines) == 4
    assert all('ParticipantObjectID="r-0002"' in line for line in lines)
    wrong = hcm("audit", "export", "--format", "fhir", "--syslog", "127.0.0.1:1", config=site)
    assert wrong.returncode == 2


def test_checkpoint_now(site: Path) -> None:
    first = hcm("audit", "checkpoint", config=site)
    assert first.returncode == 0, first.stderr
    # the last command's own close already checkpointed the fill; 'audit checkpoint'
    # itself appends nothing
    assert first.stdout == "nothing new since the last checkpoint\n"
    hcm("audit", "verify", config=site)  # appends audit.verify, checkpointed at close
    with Middleware.from_file(site) as mw:
        fill(mw, 1)
        mw.audit.flush()
        seq = mw.audit.head()[0]
        made = mw.audit.checkpoint()
    assert made is not None
    assert made.seq == seq
    assert made.signature is not None


def test_a_config_with_another_hash_is_refused(site: Path) -> None:
    site.write_text(site.read_text().replace('hash = "sha256"', 'hash = "sm3"'))
    refused = hcm("audit", "verify", config=site)
    assert refused.returncode == 2
    assert "audit.hash" in refused.stderr
    assert 'set [audit] hash = "sha256"' in refused.stderr
