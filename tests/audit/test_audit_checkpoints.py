"""Checkpoints: when they are made, signed with the terminal's key, pushed out, and doctor."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware.audit.signing import check_signature, key_id, public_key_from_file
from hcmiddleware.models import AuditCheckpoint
from hcmiddleware.testing import HookRecorder

from .conftest import MakeAudited, fill


class Collector:
    """A site plugin that keeps the checkpoints it is handed (the HIS, a syslog relay …)."""

    def __init__(self) -> None:
        self.seen: list[AuditCheckpoint] = []

    def hcm_audit_checkpoint(self, checkpoint: AuditCheckpoint) -> None:
        self.seen.append(checkpoint)


def test_every_n_entries_a_signed_checkpoint_is_pushed_out(
    audited: MakeAudited, tmp_path: Path
) -> None:
    collector = Collector()
    file = tmp_path / "elsewhere" / "checkpoints.jsonl"
    mw = audited(plugins={"records-office": collector}, checkpoint_every=5, checkpoint_file=file)
    recorder = HookRecorder(mw)
    fill(mw, 12)
    # the first entry anchors the chain; then every fifth
    assert [c.seq for c in collector.seen] == [1, 6, 11]
    assert [r.kwargs["checkpoint"].seq for r in recorder.calls("hcm_audit_checkpoint")] == [
        1,
        6,
        11,
    ]
    assert [c.seq for c in mw.audit.checkpoints()] == [1, 6, 11]
    written = [json.loads(line) for line in file.read_text().splitlines()]
    assert [c["seq"] for c in written] == [1, 6, 11]
    # each is the entry's hash, signed with the key hcm init-style files hold
    public = public_key_from_file(tmp_path / "hcm-data-0" / "keys" / "audit-signing.pub")
    entries = {e.seq: e for e in mw.audit.entries()}
    for checkpoint in collector.seen:
        assert checkpoint.hash == entries[checkpoint.seq].hash
        assert checkpoint.key_id == key_id(public)
        assert check_signature(checkpoint, {key_id(public): public}) is None
    # nothing new: no checkpoint; closing covers the tail
    assert mw.audit.checkpoint() is not None
    assert mw.audit.checkpoint() is None
    fill(mw, 2, start=12)
    mw.close()
    assert [c.seq for c in collector.seen] == [1, 6, 11, 12, 14]


def test_after_t_minutes_the_next_entry_makes_a_checkpoint(audited: MakeAudited) -> None:
    collector = Collector()
    mw = audited(plugins={"c": collector}, checkpoint_every=1000, checkpoint_minutes=0.002)
    fill(mw, 3)
    assert [c.seq for c in collector.seen] == [1]
    time.sleep(0.2)  # 0.002 minutes is 0.12 s
    fill(mw, 1, start=3)
    assert [c.seq for c in collector.seen] == [1, 4]


def test_without_a_key_checkpoints_are_unsigned_and_doctor_says_so(
    audited: MakeAudited,
) -> None:
    collector = Collector()
    mw = audited(plugins={"c": collector}, signing_key=None)
    fill(mw, 3)
    assert collector.seen[0].signature is None
    assert collector.seen[0].key_id is None
    report = mw.audit.verify()
    assert report.ok
    assert report.unsigned_checkpoints == 1
    rows = {r.name: r for _, r in mw.doctor()}
    assert rows["audit checkpoints signed"].ok is False
    assert "unsigned" in rows["audit checkpoints signed"].detail
    assert "openssl genpkey -algorithm ed25519" in rows["audit checkpoints signed"].hint
    assert rows["audit log"].ok is True


def test_doctor_reports_a_damaged_log(audited: MakeAudited) -> None:
    mw = audited()
    fill(mw, 5)
    with mw.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'someone' WHERE seq = 3")
    rows = {r.name: r for _, r in mw.doctor()}
    assert rows["audit checkpoints signed"].ok is True
    assert rows["audit log"].ok is False
    assert rows["audit log"].detail.startswith("entry 3: changed")


def test_a_failing_checkpoint_sink_loses_nothing(audited: MakeAudited) -> None:
    class Broken:
        def hcm_audit_checkpoint(self, checkpoint: AuditCheckpoint) -> None:
            raise OSError("the share is gone")

    mw = audited(plugins={"broken": Broken()})
    entry = mw.audit("card.read", actor="kiosk-03")
    assert mw.dispatcher.health["broken"].failures == 1
    assert [c.seq for c in mw.audit.checkpoints()] == [entry.seq]
    assert mw.audit.verify().ok


def test_a_key_that_is_not_an_ed25519_key_stops_the_config(
    hcm_make_middleware: Any, tmp_path: Path
) -> None:
    from hcmiddleware.errors import ConfigError

    bad = tmp_path / "not-a-key"
    bad.write_text("c2hvcnQ=\n")  # base64 of 5 bytes
    with pytest.raises(ConfigError) as caught:
        hcm_make_middleware(audit={"signing_key": {"file": str(bad)}})
    assert caught.value.key == "audit.signing_key"
    assert "32" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        hcm_make_middleware(audit={"verify_keys": [str(tmp_path / "missing.pub")]})
    assert caught.value.key is not None
    assert caught.value.key.startswith("audit.verify_keys")
    with pytest.raises(ConfigError) as caught:
        hcm_make_middleware(audit={"hash": "md5"})
    assert caught.value.key == "audit.hash"


def test_a_pem_key_from_openssl_signs_too(hcm_make_middleware: Any, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "audit.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    mw = hcm_make_middleware(audit={"signing_key": {"file": str(pem)}})
    mw.audit("card.read", actor="kiosk-03")
    checkpoint = mw.audit.checkpoints()[0]
    assert checkpoint.key_id == key_id(key)
    assert check_signature(checkpoint, {key_id(key): key.public_key()}) is None
