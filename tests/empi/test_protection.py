"""Envelope encryption: round trips, binding to rows, rotation, re-wrap, no key in reprs."""

from __future__ import annotations

import base64
import logging
import os

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from hcmiddleware import storage
from hcmiddleware.empi.protection import ProtectionSettings, Protector
from hcmiddleware.empi.schema import DataKeyRow
from hcmiddleware.errors import DecryptionError, KeyUnavailableError, ProtectionError


@pytest.fixture
def bound(engine: Engine, keys: dict[str, bytes]) -> Protector:
    storage.upgrade(engine)
    p = Protector({"2026a": keys["2026a"]}, "2026a", keys["index"])
    p.bind(engine, ["t"])
    return p


def test_round_trip_and_randomised(bound: Protector) -> None:
    a = bound.encrypt("t", "张三".encode(), "t.c:1")
    b = bound.encrypt("t", "张三".encode(), "t.c:1")
    assert a != b
    assert "张三".encode() not in a
    assert bound.decrypt(a, "t.c:1").decode() == "张三"


def test_ciphertext_is_bound_to_its_row(bound: Protector) -> None:
    sealed = bound.encrypt("t", b"13800138000", "t.c:1")
    with pytest.raises(DecryptionError):
        bound.decrypt(sealed, "t.c:2")


def test_tampering_is_detected(bound: Protector) -> None:
    sealed = bytearray(bound.encrypt("t", b"13800138000", "t.c:1"))
    sealed[-1] ^= 1
    with pytest.raises(DecryptionError):
        bound.decrypt(bytes(sealed), "t.c:1")
    with pytest.raises(DecryptionError):
        bound.decrypt(b"\x01\x00", "t.c:1")


def test_master_key_rotation_without_downtime(engine: Engine, keys: dict[str, bytes]) -> None:
    storage.upgrade(engine)
    old = Protector({"2026a": keys["2026a"]}, "2026a", keys["index"])
    old.bind(engine, ["t"])
    before = old.encrypt("t", b"old row", "t.c:1")

    # Both keys configured, the new one current: old rows read, new data keys wrapped by it.
    both = Protector({"2026a": keys["2026a"], "2026b": keys["2026b"]}, "2026b", keys["index"])
    both.bind(engine, ["t", "u"])
    assert both.decrypt(before, "t.c:1") == b"old row"
    assert both.master_keys_in_use() == {"2026a", "2026b"}
    assert both.rewrap() == 1
    assert both.master_keys_in_use() == {"2026b"}
    assert both.rewrap() == 0

    # The old master key can now go.
    new_only = Protector({"2026b": keys["2026b"]}, "2026b", keys["index"])
    new_only.bind(engine, ["t"])
    assert new_only.decrypt(before, "t.c:1") == b"old row"


def test_missing_master_key_is_a_clear_error(engine: Engine, keys: dict[str, bytes]) -> None:
    storage.upgrade(engine)
    Protector({"2026a": keys["2026a"]}, "2026a", keys["index"]).bind(engine, ["t"])
    stranger = Protector({"2026b": keys["2026b"]}, "2026b", keys["index"])
    with pytest.raises(KeyUnavailableError) as info:
        stranger.bind(engine, ["t"])
    assert info.value.key_id == "2026a"


def test_wrong_bytes_under_a_known_id_are_refused(engine: Engine, keys: dict[str, bytes]) -> None:
    storage.upgrade(engine)
    Protector({"2026a": keys["2026a"]}, "2026a", keys["index"]).bind(engine, ["t"])
    impostor = Protector({"2026a": os.urandom(32)}, "2026a", keys["index"])
    with pytest.raises(DecryptionError):
        impostor.bind(engine, ["t"])


def test_data_key_rotation_keeps_old_rows_readable(bound: Protector, engine: Engine) -> None:
    first = bound.encrypt("t", b"first", "t.c:1")
    new_key = bound.rotate_data_key("t")
    second = bound.encrypt("t", b"second", "t.c:2")
    assert first[1:5] != second[1:5]
    assert int.from_bytes(second[1:5], "big") == new_key
    assert bound.decrypt(first, "t.c:1") == b"first"
    with engine.connect() as conn:
        active = conn.scalars(
            sa.select(DataKeyRow.id).where(DataKeyRow.scope == "t", DataKeyRow.retired_at.is_(None))
        ).all()
    assert active == [new_key]


def test_another_process_data_key_is_loaded_on_demand(
    engine: Engine, keys: dict[str, bytes], bound: Protector
) -> None:
    other = Protector({"2026a": keys["2026a"]}, "2026a", keys["index"])
    other.bind(engine, ["t"])
    other.rotate_data_key("t")
    sealed = other.encrypt("t", b"fresh", "t.c:9")
    assert bound.decrypt(sealed, "t.c:9") == b"fresh"


def test_blind_index_is_keyed_and_domain_separated(keys: dict[str, bytes]) -> None:
    p = Protector({"2026a": keys["2026a"]}, "2026a", keys["index"])
    q = Protector({"2026a": keys["2026a"]}, "2026a", os.urandom(32))
    assert p.blind_index("id", "110") == p.blind_index("id", "110")
    assert p.blind_index("id", "110") != p.blind_index("card", "110")
    assert p.blind_index("id", "110") != q.blind_index("id", "110")
    assert len(p.blind_index("id", "110")) == 32


def test_key_bytes_never_in_reprs_or_logs(
    keys: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = ProtectionSettings(
        master_keys={"2026a": base64.b64encode(keys["2026a"]).decode()},
        current_key="2026a",
        index_key=keys["index"],
    )
    p = Protector.from_settings(settings)
    texts = [repr(p), str(p), repr(settings), str(settings), caplog.text]
    for key in (keys["2026a"], keys["index"]):
        for form in (key.hex(), base64.b64encode(key).decode(), repr(key)):
            assert all(form not in t for t in texts)


@pytest.mark.parametrize(
    "settings",
    [
        {"master_keys": {"a": "AAAA"}, "current_key": "a", "index_key": "A" * 44},
        {
            "master_keys": {"a": base64.b64encode(b"k" * 32).decode()},
            "current_key": "b",
            "index_key": base64.b64encode(b"i" * 32).decode(),
        },
        {"master_keys": {"a": "not base64!"}, "current_key": "a", "index_key": "x"},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ProtectionSettings.model_validate(settings)


def test_bad_keys_are_refused(keys: dict[str, bytes]) -> None:
    with pytest.raises(ProtectionError):
        Protector({"a": b"short"}, "a", keys["index"])
    with pytest.raises(KeyUnavailableError):
        Protector({"a": keys["2026a"]}, "b", keys["index"])
    with pytest.raises(ProtectionError):
        Protector({"a": keys["2026a"]}, "a", keys["2026a"])
    with pytest.raises(ProtectionError):
        Protector({"a": keys["2026a"]}, "a", b"short")
