"""Revocation lists: signed, versioned, applied atomically, a bad update changes nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware, hookimpl
from hcmiddleware.ehc.codes import new_ecard_id
from hcmiddleware.ehc.revocations import card_digest, signed_bytes
from hcmiddleware.errors import EhcRevocationListError, NoAdapterError
from hcmiddleware.models import EhcRevocation, EhcRevocationList, Resident

from .conftest import MakeMw, other_signer, signer

AT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def listed(mw: Middleware, ids: list[str]) -> list[bool]:
    return [mw.ehc.revocations.revoked(i) is not None for i in ids]


def revoke(*ids: str) -> list[EhcRevocation]:
    return [EhcRevocation(ecard_id=i, revoked_at=AT, reason="lost") for i in ids]


def test_full_list_then_deltas(mw: Middleware) -> None:
    a, b, c = (new_ecard_id() for _ in range(3))
    issuer = signer(mw)
    state = mw.ehc.apply_revocations(issuer.revocation_list(version=1, revoked=revoke(a, b)))
    assert (state.issuer, state.version, state.entries) == ("TEST", 1, 2)
    assert listed(mw, [a, b, c]) == [True, True, False]
    state = mw.ehc.apply_revocations(
        issuer.revocation_list(version=2, base_version=1, revoked=revoke(c), restored=[a])
    )
    assert (state.version, state.entries) == (2, 2)
    assert listed(mw, [a, b, c]) == [False, True, True]
    # one delta may carry several versions' changes, as long as it starts from ours
    state = mw.ehc.apply_revocations(
        issuer.revocation_list(version=5, base_version=2, restored=[b])
    )
    assert (state.version, state.entries) == (5, 1)
    assert listed(mw, [a, b, c]) == [False, False, True]
    # a newer full list replaces everything
    state = mw.ehc.apply_revocations(issuer.revocation_list(version=7, revoked=revoke(a)))
    assert listed(mw, [a, b, c]) == [True, False, False]
    assert mw.ehc.revocations.state("TEST") == state
    # the digest, never the ID, is stored
    with mw.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT card_digest FROM ehc_revoked_cards").scalars().all()
    assert stored == [card_digest(a)]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("delta skipping a version", "version"),
        ("delta from another version", "version"),
        ("older full list", "version"),
        ("same version again", "version"),
        ("signed by another key", "signature"),
        ("altered after signing", "signature"),
        ("unknown issuer", "issuer"),
        ("key of another issuer", "issuer"),
    ],
)
def test_a_bad_update_leaves_the_list_in_force(
    mw: Middleware, key_dir: Path, bad: str, reason: str
) -> None:
    a, b = new_ecard_id(), new_ecard_id()
    issuer = signer(mw)
    mw.ehc.apply_revocations(issuer.revocation_list(version=3, revoked=revoke(a)))
    updates = {
        "delta skipping a version": issuer.revocation_list(
            version=5, base_version=4, revoked=revoke(b), restored=[a]
        ),
        "delta from another version": issuer.revocation_list(
            version=4, base_version=2, revoked=revoke(b), restored=[a]
        ),
        "older full list": issuer.revocation_list(version=2, revoked=revoke(b)),
        "same version again": issuer.revocation_list(version=3, revoked=revoke(b)),
        "signed by another key": other_signer(key_dir, "ed25519").revocation_list(
            version=4, revoked=revoke(b)
        ),
        "altered after signing": issuer.revocation_list(
            version=4, base_version=3, revoked=revoke(b)
        ).model_copy(update={"restored": (a,)}),
        "unknown issuer": issuer.revocation_list(version=4, revoked=revoke(b)).model_copy(
            update={"issuer": "XJ"}
        ),
        "key of another issuer": other_signer(key_dir, "ed25519", key_id="XJ1").revocation_list(
            version=4, revoked=revoke(b)
        ),
    }
    with pytest.raises(EhcRevocationListError) as caught:
        mw.ehc.apply_revocations(updates[bad])
    assert caught.value.reason == reason
    assert listed(mw, [a, b]) == [True, False]
    state = mw.ehc.revocations.state("TEST")
    assert state is not None
    assert state.version == 3


def test_the_signed_bytes_are_canonical(mw: Middleware) -> None:
    made = signer(mw).revocation_list(version=1, revoked=revoke(new_ecard_id()))
    again = EhcRevocationList.model_validate_json(made.model_dump_json())
    assert signed_bytes(again) == signed_bytes(made)
    assert b" " not in signed_bytes(made)
    assert b'"issued_at":"' in signed_bytes(made)
    assert made.signature not in signed_bytes(made).decode()


def test_a_delta_applies_whole_or_not_at_all(mw: Middleware) -> None:
    """A failure half-way through the writes leaves the previous list (one transaction)."""
    issuer = signer(mw)
    old = new_ecard_id()
    mw.ehc.apply_revocations(issuer.revocation_list(version=1, revoked=revoke(old)))
    many = [new_ecard_id() for _ in range(2000)]
    delta = issuer.revocation_list(version=2, base_version=1, revoked=revoke(*many), restored=[old])
    store = mw.ehc.revocations

    class BoomError(Exception):
        pass

    import sqlalchemy as sa

    def fail_on_state_write(conn: object, clauseelement: object, *args: object) -> None:
        if isinstance(clauseelement, sa.Update) and "ehc_revocation_lists" in str(clauseelement):
            raise BoomError

    sa.event.listen(mw.engine, "before_execute", fail_on_state_write)
    try:
        with pytest.raises(BoomError):
            store.apply(delta, mw.ehc.keys)
    finally:
        sa.event.remove(mw.engine, "before_execute", fail_on_state_write)
    assert listed(mw, [old, many[0], many[-1]]) == [True, False, False]
    assert mw.ehc.apply_revocations(delta).entries == 2000


class Feed:
    """An issuer's feed as the platform adapter would give it."""

    def __init__(self) -> None:
        self.updates: dict[int | None, EhcRevocationList | None] = {}
        self.asked: list[tuple[str, int | None]] = []

    @hookimpl
    def hcm_ehc_revocations(
        self, issuer: str, since_version: int | None
    ) -> EhcRevocationList | None:
        self.asked.append((issuer, since_version))
        return self.updates.get(since_version)


def test_sync_asks_each_issuer_for_what_changed(make_mw: MakeMw) -> None:
    feed = Feed()
    mw = make_mw(plugins={"feed": feed})
    issuer = signer(mw)
    a, b = new_ecard_id(), new_ecard_id()
    feed.updates[None] = issuer.revocation_list(version=1, revoked=revoke(a))
    feed.updates[1] = issuer.revocation_list(version=2, base_version=1, revoked=revoke(b))
    assert [s.version for s in mw.ehc.sync_revocations()] == [1]
    assert [s.version for s in mw.ehc.sync_revocations()] == [2]
    first = mw.ehc.revocations.state("TEST")
    assert first is not None
    assert [s.version for s in mw.ehc.sync_revocations()] == [2]  # nothing new: touched
    later = mw.ehc.revocations.state("TEST")
    assert later is not None
    assert later.synced_at >= first.synced_at
    assert feed.asked == [("TEST", None), ("TEST", 1), ("TEST", 2)]
    assert listed(mw, [a, b]) == [True, True]
    feed.updates[2] = issuer.revocation_list(version=9, base_version=7, restored=[a])  # skips
    with pytest.raises(EhcRevocationListError):
        mw.ehc.sync_revocations()
    assert listed(mw, [a, b]) == [True, True]


def test_sync_needs_an_adapter(mw: Middleware) -> None:
    with pytest.raises(NoAdapterError) as caught:
        mw.ehc.sync_revocations()
    assert caught.value.hook == "hcm_ehc_revocations"


class Registry:
    """A platform that opens e-cards and signs codes (the issuer's side)."""

    def __init__(self, ecard_id: str, code: str) -> None:
        self.ecard_id, self.code = ecard_id, code
        self.registered: list[tuple[str, str | None]] = []

    @hookimpl
    def hcm_ehc_register(self, resident: Resident, card_number: str | None) -> str:
        self.registered.append((resident.resident_id, card_number))
        return self.ecard_id.lower()

    @hookimpl
    def hcm_ehc_generate_code(self, ecard_id: str) -> str:
        assert ecard_id == self.ecard_id
        return self.code


def test_issuing_through_the_platform(make_mw: MakeMw) -> None:
    ecard_id = new_ecard_id()
    registry = Registry(ecard_id, "a code from the platform")
    mw = make_mw(plugins={"registry": registry})
    resident = mw.residents.enrol(name="王芳", sex=2, card_number="H1")
    assert mw.ehc.issue(resident.resident_id) == ecard_id
    assert registry.registered == [(resident.resident_id, "H1")]
    assert mw.ehc.dynamic_code(ecard_id) == "a code from the platform"


def test_doctor_says_when_the_lists_are_stale(make_mw: MakeMw) -> None:
    feed = Feed()
    mw = make_mw(plugins={"feed": feed})
    rows = {r.name: r for r in mw.ehc.check()}
    assert rows["e-card keys"].ok
    assert "TEST1 (TEST)" in rows["e-card keys"].detail
    never = rows["e-card revocations of TEST"]
    assert (never.ok, never.detail) == (False, "never synced")
    assert "hcm ehc sync" in never.hint
    feed.updates[None] = signer(mw).revocation_list(version=1)
    mw.ehc.sync_revocations()
    doctor = {r.name: r for p, r in mw.doctor() if p == "hcm.core-checks"}
    assert doctor["e-card revocations of TEST"].ok
    later = datetime.now(UTC) + timedelta(seconds=86400 + 60)  # [ehc] revocations_max_age
    stale = {r.name: r for r in mw.ehc.check(now=later)}["e-card revocations of TEST"]
    assert not stale.ok
    assert "version 1, 0 closed e-cards" in stale.detail


def test_doctor_names_an_unusable_key(make_mw: MakeMw, key_dir: Path) -> None:
    mw = make_mw()
    (key_dir / "ehc-test1.pub.pem").write_text("not a key")
    [row] = mw.ehc.check()
    assert (row.name, row.ok) == ("e-card keys", False)
    assert "ehc.keys.TEST1.public_key" not in row.detail
    assert "public key cannot be used" in row.detail


def test_a_list_applied_by_another_process_is_seen_within_a_second(
    hcm_make_middleware: Any, tmp_path: Path
) -> None:
    """Two terminals on one database: the in-memory filter follows the other's apply."""
    from hcmiddleware.testing import ehc_keys, empi_keys

    shared = {
        "database": {"url": f"sqlite:///{tmp_path / 'shared.db'}"},
        "empi": empi_keys(tmp_path / "index-keys"),
        "ehc": ehc_keys(tmp_path / "ehc-keys", algorithm="ed25519"),
    }
    one, other = hcm_make_middleware(**shared), hcm_make_middleware(**shared)
    ecard = new_ecard_id()
    assert other.ehc.revocations.revoked(ecard) is None  # builds its (empty) filter
    one.ehc.apply_revocations(signer(one).revocation_list(version=1, revoked=revoke(ecard)))
    assert one.ehc.revocations.revoked(ecard) is not None  # its own apply: at once
    deadline = time.monotonic() + 3
    while other.ehc.revocations.revoked(ecard) is None:
        assert time.monotonic() < deadline, "the other terminal never saw the list"
        time.sleep(0.05)


def test_a_delta_applied_here_joins_the_filter_without_reading_the_list(
    make_mw: MakeMw, fresh_database: str
) -> None:
    """The checks after a sync do not read a million digests again; counts stay exact."""
    import sqlalchemy as sa

    mw = make_mw("ed25519", database={"url": fresh_database})
    issuer = signer(mw)
    a, b, c, d = (new_ecard_id() for _ in range(4))
    mw.ehc.apply_revocations(issuer.revocation_list(version=1, revoked=revoke(a, b)))
    assert listed(mw, [a, b, c, d]) == [True, True, False, False]  # the filter is built
    reads: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "FROM ehc_revoked_cards" in statement and "WHERE" not in statement:
            reads.append(statement)

    sa.event.listen(mw.engine, "before_cursor_execute", seen)
    try:
        state = mw.ehc.apply_revocations(
            issuer.revocation_list(version=2, base_version=1, revoked=revoke(c, b), restored=[a])
        )
        assert listed(mw, [a, b, c, d]) == [False, True, True, False]
    finally:
        sa.event.remove(mw.engine, "before_cursor_execute", seen)
    assert reads == []  # no statement read the whole list
    assert (state.version, state.entries) == (2, 2)
    with mw.engine.connect() as conn:
        counted = conn.exec_driver_sql("SELECT count(*) FROM ehc_revoked_cards").scalar()
    assert counted == 2
    assert mw.ehc.revocations.revoked(c) == AT.replace(tzinfo=None)
    assert mw.ehc.revocations.revoked(c, ["TEST"]) == AT.replace(tzinfo=None)
    assert mw.ehc.revocations.revoked(c, ["ELSEWHERE"]) is None
    # a new full list is read again on the next check
    mw.ehc.apply_revocations(issuer.revocation_list(version=3, revoked=revoke(d)))
    assert listed(mw, [a, b, c, d]) == [False, False, False, True]
