"""The card's lifecycle at the terminal: signed lists of refused cards, loss reports."""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.cards.lists import parse_update, signed_bytes
from hcmiddleware.cards.reference import ListPublisher, ReferenceListPlugin
from hcmiddleware.errors import (
    CardListError,
    CardNotActivatedError,
    CardRefusedError,
    ConfigError,
    IdentityError,
)
from hcmiddleware.hookspecs import hookimpl
from hcmiddleware.models import BlacklistUpdate, CardState, IdentifierKind, Sex
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS
from hcmiddleware.testing import HookRecorder
from hcmiddleware.testing.plugin import MiddlewareFactory

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
ISSUER = "issuer:2101"
BANK = "bank:ICBC"


@pytest.fixture
def issuer() -> ListPublisher:
    return ListPublisher(ISSUER)


@pytest.fixture
def bank_list() -> ListPublisher:
    return ListPublisher(BANK, algorithm="ecdsa-p256")


@pytest.fixture
def make(
    hcm_make_middleware: MiddlewareFactory,
    issuer: ListPublisher,
    bank_list: ListPublisher,
    tmp_path: Path,
    fresh_database: str,
) -> Any:
    """A Middleware that trusts both sources' keys, fed by the reference plugin."""
    keys = {}
    for publisher in (issuer, bank_list):
        pem = tmp_path / f"{publisher.source.replace(':', '-')}.pem"
        pem.write_bytes(publisher.public_pem())
        keys[publisher.source] = str(pem)

    def build(**cards: Any) -> Middleware:
        plugin = ReferenceListPlugin(issuer, bank_list)
        mw = hcm_make_middleware(
            plugins={"lists": plugin},
            sam={"keys": str(TEST_ISSUER_KEYS)},
            database={"url": fresh_database},
            cards={"list_keys": keys, **cards},
        )
        mw.test_plugin = plugin  # type: ignore[attr-defined]
        return mw

    return build


def sample_card() -> EmulatedCard:
    return EmulatedCard.from_files(PROFILE, TEST_ISSUER_KEYS)


def card_number(mw: Middleware) -> str:
    return mw.terminal.read_issuer(sample_card()).card_number


def entries(mw: Middleware) -> list[tuple[str, str, str]]:
    mw.cards.status()  # the tables exist from the first use
    with mw.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT source, card_number, state FROM card_list_entries ORDER BY 1, 2")
        ).all()
    return [tuple(r) for r in rows]


# --- refusing a card -------------------------------------------------------------------


@pytest.mark.parametrize("state", ["loss_reported", "cancelled", "replaced"])
def test_a_listed_card_is_refused_at_the_read_with_its_state_and_date(
    make: Any, issuer: ListPublisher, state: str
) -> None:
    mw = make()
    number = card_number(mw)
    mw.terminal.read(sample_card())  # on no list: read as usual
    listed = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    issuer.list_card(number, state, listed_at=listed)  # type: ignore[arg-type]
    issuer.publish()
    assert mw.cards.sync().ok
    recorder = HookRecorder(mw)
    with pytest.raises(CardRefusedError) as caught:
        mw.terminal.read(sample_card())
    err = caught.value
    assert (err.state, err.source, err.listed_at) == (state, ISSUER, listed.isoformat())
    assert "2026-11-30" in str(err)
    assert number not in str(err)  # masked
    assert err.card == number[:4] + "*" * (len(number) - 8) + number[-4:]
    assert not recorder.calls("hcm_card_read")  # the refused card goes no further
    audit = [c.kwargs["event"] for c in recorder.calls("hcm_audit_event")]
    assert [(e.action, e.outcome) for e in audit] == [("card.refused", "refused")]
    assert mw.cards.state(number) is CardState(state)


def test_a_frozen_card_reads_but_moves_no_money(make: Any, bank_list: ListPublisher) -> None:
    mw = make()
    number = card_number(mw)
    bank_list.list_card(number, "frozen")
    bank_list.publish()
    assert mw.cards.sync().ok
    mw.terminal.read(sample_card())  # the patient can still be identified
    with pytest.raises(CardRefusedError) as caught:
        mw.cards.check(number, for_payment=True)
    assert caught.value.state == "frozen"


def test_an_issued_card_reads_but_moves_no_money_until_it_is_activated(
    make: Any, issuer: ListPublisher
) -> None:
    mw = make()
    number = card_number(mw)
    issuer.issue(number, issued_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    issuer.publish()
    assert mw.cards.sync().ok
    assert mw.cards.state(number) is CardState.ISSUED
    card = mw.terminal.read(sample_card())  # read and identified as usual
    assert mw.residents.enrol_from_card(card).resident_id
    recorder = HookRecorder(mw)
    with pytest.raises(CardNotActivatedError) as caught:
        mw.cards.check(number, for_payment=True, actor="cashier-3")
    err = caught.value
    assert isinstance(err, CardRefusedError)  # a caller catching refusals catches it too
    assert (err.state, err.source, err.listed_at) == ("issued", ISSUER, "2026-12-01T09:30:00+00:00")
    assert "not activated" in err.message
    assert "hcm cards sync" in (err.hint or "")
    assert number not in str(err)
    [event] = [c.kwargs["event"] for c in recorder.calls("hcm_audit_event")]
    assert (event.action, event.details["state"]) == ("card.refused", "issued")
    issuer.activate(number)
    issuer.publish()
    assert mw.cards.sync().ok
    mw.cards.check(number, for_payment=True)  # activated: it pays
    assert mw.cards.state(number) is CardState.ACTIVE


def test_the_most_final_state_of_all_sources_decides(
    make: Any, issuer: ListPublisher, bank_list: ListPublisher
) -> None:
    mw = make()
    cases = [
        ("issued", "frozen", CardState.FROZEN),
        ("loss_reported", "frozen", CardState.LOSS_REPORTED),
        ("issued", "cancelled", CardState.CANCELLED),
    ]
    for i, (issuer_says, bank_says, _decides) in enumerate(cases):
        issuer.list_card(f"2101000000000000000{i}", issuer_says)  # type: ignore[arg-type]
        bank_list.list_card(f"2101000000000000000{i}", bank_says)  # type: ignore[arg-type]
    issuer.publish()
    bank_list.publish()
    assert mw.cards.sync().ok
    assert [mw.cards.state(f"2101000000000000000{i}") for i in range(3)] == [
        decides for _i, _b, decides in cases
    ]
    assert mw.cards.state("21010000000000000009") is CardState.ACTIVE


# --- applying lists ----------------------------------------------------------------------


def test_full_then_deltas_follow_the_source(make: Any, issuer: ListPublisher) -> None:
    mw = make()
    issuer.list_many([(f"2101{i:016d}", "cancelled") for i in range(5)])
    issuer.publish()  # v1, the full list
    recorder = HookRecorder(mw)
    report = mw.cards.sync()
    asked = recorder.last("hcm_card_blacklist_updates").kwargs["since"]
    assert asked == {}  # nothing held: each source sends its full list
    assert report.ok
    assert [(s.source, s.version, s.entries) for s in report.applied] == [(ISSUER, 1, 5)]
    issuer.lift("21010000000000000000")
    issuer.list_card("21019999999999999999", "loss_reported")
    issuer.publish()  # v2
    issuer.list_card("21010000000000000001", "replaced")
    issuer.publish()  # v3
    recorder = HookRecorder(mw)
    report = mw.cards.sync()
    assert report.ok
    applied = [c.kwargs["event"].details for c in recorder.calls("hcm_audit_event")]
    assert [(d["kind"], d["version"]) for d in applied] == [("delta", "2"), ("delta", "3")]
    assert mw.cards.state("21010000000000000000") is CardState.ACTIVE
    assert mw.cards.state("21019999999999999999") is CardState.LOSS_REPORTED
    assert mw.cards.state("21010000000000000001") is CardState.REPLACED
    assert [(s.version, s.entries) for s in mw.cards.status()] == [(3, 5)]
    assert mw.cards.sync().applied[0].version == 3  # nothing new: nothing applied


def signed(publisher: ListPublisher, **fields: Any) -> BlacklistUpdate:
    base: dict[str, Any] = {
        "source": publisher.source,
        "kind": "full",
        "version": 1,
        "base_version": None,
        "issued_at": datetime.now(UTC),
        "added": [],
        "removed": [],
    }
    base.update(fields)
    return BlacklistUpdate.model_validate({**base, "signature": publisher.sign(base)})


def one(card: str, state: str, source: str = ISSUER) -> dict[str, Any]:
    return {
        "card_number": card,
        "reason": state,
        "listed_at": datetime.now(UTC),
        "source": source,
    }


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("signed by another key", "bad_signature"),
        ("altered after signing", "bad_signature"),
        ("unknown source", "unknown_source"),
        ("old version", "old_version"),
        ("delta that skips a version", "skipped_version"),
        ("delta with nothing held", "skipped_version"),
    ],
)
def test_a_bad_update_is_refused_and_the_previous_list_stays(
    make: Any, issuer: ListPublisher, case: str, reason: str
) -> None:
    mw = make()
    held = signed(issuer, version=4, added=[one("21010000000000000001", "cancelled")])
    if case != "delta with nothing held":
        mw.cards.apply(held)
    before = (entries(mw), [(s.version, s.entries) for s in mw.cards.status()])
    added = [one("21010000000000000002", "loss_reported")]
    if case == "signed by another key":
        update = signed(ListPublisher(ISSUER), version=5, added=added)
    elif case == "altered after signing":
        good = signed(issuer, version=5, added=added)
        update = good.model_copy(update={"version": 6})
    elif case == "unknown source":
        stranger = ListPublisher("issuer:9999")
        stray = [one("21010000000000000002", "loss_reported", stranger.source)]
        update = signed(stranger, version=5, added=stray)
    elif case == "old version":
        update = signed(issuer, version=4, added=added)
    else:
        update = signed(issuer, kind="delta", version=7, base_version=5, added=added)
    with pytest.raises(CardListError) as caught:
        mw.cards.apply(update)
    assert caught.value.reason == reason
    assert (entries(mw), [(s.version, s.entries) for s in mw.cards.status()]) == before


def test_an_update_is_applied_whole_or_not_at_all(
    make: Any, issuer: ListPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    mw = make()
    mw.cards.apply(signed(issuer, version=1, added=[one("21010000000000000001", "cancelled")]))
    before = entries(mw)
    update = signed(
        issuer,
        kind="delta",
        version=2,
        base_version=1,
        added=[one(f"2102{i:016d}", "cancelled") for i in range(1200)],
        removed=["21010000000000000001"],
    )

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(type(mw.cards), "_store_version", staticmethod(crash))
    with pytest.raises(RuntimeError):
        mw.cards.apply(update)  # the deletes and 1,200 inserts ran, the last write did not
    assert entries(mw) == before
    monkeypatch.undo()
    mw.cards.apply(update)
    assert mw.cards.status()[0].entries == 1200


def test_a_sync_keeps_other_sources_when_one_is_bad(
    make: Any, issuer: ListPublisher, bank_list: ListPublisher, tmp_path: Path
) -> None:
    mw = make()
    bank_list.list_card("21010000000000000003", "frozen")
    bank_list.publish()
    issuer.list_card("21010000000000000004", "cancelled")
    issuer.publish()
    plugin = mw.test_plugin
    plugin.publishers[ISSUER] = ListPublisher(ISSUER)  # a feed signing with another key
    plugin.publishers[ISSUER].list_card("21010000000000000004", "cancelled")
    plugin.publishers[ISSUER].publish()
    report = mw.cards.sync()
    assert not report.ok
    assert [e.reason for e in report.refused] == ["bad_signature"]
    assert [s.source for s in report.applied] == [BANK]
    assert mw.cards.state("21010000000000000004") is CardState.ACTIVE


class _BrokenFeed:
    hcm_plugin_name = "broken-feed"

    @hookimpl
    def hcm_card_blacklist_updates(self, since: dict[str, int]) -> list[BlacklistUpdate]:
        raise ConnectionError("the issuer's feed is down")


def test_a_feed_that_fails_makes_the_sync_fail_and_keeps_the_lists(
    make: Any, issuer: ListPublisher
) -> None:
    mw = make()
    issuer.list_card("21010000000000000004", "cancelled")
    issuer.publish()
    assert mw.cards.sync().ok
    held = [(s.source, s.version, s.entries) for s in mw.cards.status()]
    mw.register(_BrokenFeed(), "broken-feed")
    issuer.list_card("21010000000000000005", "cancelled")
    issuer.publish()
    recorder = HookRecorder(mw)
    report = mw.cards.sync()
    assert not report.ok  # a failed feed is not an empty one
    assert [e.reason for e in report.refused] == ["no_answer"]
    assert "broken-feed" in report.refused[0].message
    assert report.refused[0].hint
    # the working feed's delta was still applied; observers saw the call and the failure
    assert [(s.version, s.entries) for s in report.applied] == [(held[0][1] + 1, 2)]
    call = recorder.last("hcm_card_blacklist_updates")
    assert [name for name, _ in call.errors] == ["broken-feed"]


def test_the_count_of_entries_follows_every_delta(make: Any, issuer: ListPublisher) -> None:
    """The entries held are counted from each statement's rows, never recounted."""
    mw = make()
    rng = random.Random(13)
    cards = [f"2101{i:016d}" for i in range(60)]
    issuer.list_many((c, "cancelled") for c in cards[:30])
    issuer.publish()
    assert mw.cards.sync().ok
    for _ in range(12):
        for c in rng.sample(cards, 10):
            issuer.list_card(c, rng.choice(["cancelled", "loss_reported", "frozen"]))  # type: ignore[arg-type]
        for c in rng.sample(cards, 8):
            issuer.lift(c)  # some were never listed: nothing to remove
        issuer.publish()
        assert mw.cards.sync().ok
        held = mw.cards.status()[0].entries
        assert held == len(entries(mw)) == len(issuer.full().added)
    full = issuer.full()
    assert sorted((e.card_number, e.reason) for e in full.added) == [
        (c, state) for _source, c, state in entries(mw)
    ]


def test_a_listing_time_in_another_zone_is_kept_as_the_same_moment(
    make: Any, issuer: ListPublisher
) -> None:
    mw = make()
    beijing = timezone(timedelta(hours=8))
    listed = datetime(2026, 12, 1, 8, 30, tzinfo=beijing)  # 00:30 UTC
    issuer.list_card("21010000000000000007", "loss_reported", listed_at=listed)
    issuer.publish()
    assert mw.cards.sync().ok
    found = mw.cards.entry("21010000000000000007")
    assert found is not None
    assert found.listed_at == listed
    assert found.listed_at.utcoffset() == timedelta(0)


def test_list_keys_that_are_not_keys_are_a_config_error(make: Any, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello", encoding="utf-8")
    mw = make(list_keys={ISSUER: str(bad)})
    with pytest.raises(ConfigError) as caught:
        mw.cards.apply(signed(ListPublisher(ISSUER)))
    assert caught.value.key == f"cards.list_keys.{ISSUER}"


def _signed_bytes_as_documented(data: dict[str, Any]) -> bytes:
    """docs/cards.md "What is signed", spelled out the slow, obvious way."""

    def utc(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    body = {
        "source": data["source"],
        "kind": data["kind"],
        "version": data["version"],
        "base_version": data.get("base_version"),
        "issued_at": utc(data["issued_at"]),
        "added": [
            {
                "card_number": e["card_number"],
                "state": e["reason"],
                "listed_at": utc(e["listed_at"]),
                "replaced_by": e.get("replaced_by"),
            }
            for e in sorted(data["added"], key=lambda e: e["card_number"])
        ],
        "removed": sorted(data["removed"]),
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b"hcm-card-list-v1\n" + text.encode("utf-8")


def test_the_signed_bytes_are_the_documented_encoding() -> None:
    """The fast encoding is byte for byte the one sources sign (random updates)."""
    rng = random.Random(42)
    zones = [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-3, minutes=-30))]
    alphabet = '0123456789ABCXYZ中文"é'
    for _ in range(200):
        numbers = {"".join(rng.choices(alphabet, k=rng.randint(1, 32))) for _ in range(20)}
        added = [
            {
                "card_number": number,
                "reason": rng.choice(["issued", "frozen", "cancelled", "replaced"]),
                "listed_at": datetime(
                    rng.choice([1, 999, 2026, 9999]), rng.randint(1, 12), rng.randint(1, 28),
                    rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
                    rng.choice([0, 1, 999_999]), tzinfo=rng.choice(zones),
                ).astimezone(UTC) + timedelta(hours=12),
                "source": ISSUER,
                "replaced_by": rng.choice([None, "21019999999999999999"]),
            }
            for number in sorted(numbers)[:12]
        ]  # fmt: skip
        data: dict[str, Any] = {
            "source": ISSUER,
            "kind": "delta",
            "version": rng.randint(2, 2**40),
            "base_version": 1,
            "issued_at": datetime.now(rng.choice(zones)),
            "added": rng.sample(added, len(added)),
            "removed": sorted(numbers)[12:],
        }
        expected = _signed_bytes_as_documented(data)
        update = BlacklistUpdate.model_validate({**data, "signature": "x"})
        assert signed_bytes(data) == expected
        assert signed_bytes(update) == expected
        assert signed_bytes(parse_update(update.model_dump_json())) == expected


# --- the in-memory index ------------------------------------------------------------------------


@contextlib.contextmanager
def _no_database_lookups(mw: Middleware) -> Iterator[None]:
    """Meanwhile, a card lookup in the database fails loudly."""

    def refuse() -> None:
        raise AssertionError("the database was asked")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mw.engine, "raw_connection", refuse)
        yield


def test_a_card_on_no_list_is_answered_from_memory(make: Any, issuer: ListPublisher) -> None:
    mw = make()
    issuer.list_many((f"2101{i:016d}", "cancelled") for i in range(0, 2000, 2))
    issuer.publish()
    assert mw.cards.sync().ok
    held = mw.cards.load_index()
    assert (held.current, held.entries, held.versions) == (True, 1000, {ISSUER: 1})
    assert held.nbytes == 8 * held.entries
    with _no_database_lookups(mw):
        for i in range(1, 2000, 2):
            mw.cards.check(f"2101{i:016d}", for_payment=True)  # on no list: memory only
        with pytest.raises(AssertionError, match="database was asked"):
            mw.cards.check("21010000000000000002")  # listed: the database says how and when


def test_an_update_applied_here_joins_the_index_at_once(make: Any, issuer: ListPublisher) -> None:
    mw = make()
    issuer.list_card("21010000000000000001", "cancelled")
    issuer.publish()
    assert mw.cards.sync().ok
    assert mw.cards.load_index().entries == 1
    issuer.list_many((f"2102{i:016d}", "loss_reported") for i in range(300))
    issuer.lift("21010000000000000001")
    issuer.publish()
    assert mw.cards.sync().ok
    held = mw.cards.index_status()
    # current without a rebuild: the lifted card stays in it until one (more is allowed)
    assert (held.current, held.entries, held.versions) == (True, 301, {ISSUER: 2})
    assert mw.cards.state("21020000000000000299") is CardState.LOSS_REPORTED
    assert mw.cards.state("21010000000000000001") is CardState.ACTIVE  # the database decides
    with _no_database_lookups(mw):
        mw.cards.check("21030000000000000000")


def test_a_list_changed_by_another_process_is_seen_at_the_next_check(
    make: Any, issuer: ListPublisher
) -> None:
    mw, other = make(), make()  # two installations' processes on one database
    issuer.list_card("21010000000000000001", "cancelled")
    issuer.publish()
    assert mw.cards.sync().ok
    assert mw.cards.load_index().current
    mw.cards.check("21010000000000000002")
    issuer.list_card("21010000000000000002", "loss_reported")
    issuer.lift("21010000000000000001")
    issuer.publish()
    assert other.cards.sync().ok
    _refused_at_the_next_check(mw, "21010000000000000002")
    mw.cards.check("21010000000000000001")
    # brought up to date in the background meanwhile (checks ask the database until then),
    # from the entries version 2 wrote: the lifted card stays in it until a rebuild
    _wait_for(lambda: mw.cards.index_status().versions == {ISSUER: 2})
    assert mw.cards.index_status().entries == 2
    with pytest.raises(CardRefusedError):
        mw.cards.check("21010000000000000002")
    mw.cards.check("21010000000000000001")


def test_a_failed_update_leaves_the_index_right(
    make: Any, issuer: ListPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    mw = make()
    mw.cards.apply(signed(issuer, version=1, added=[one("21010000000000000001", "cancelled")]))
    assert mw.cards.load_index().current
    update = signed(
        issuer, kind="delta", version=2, base_version=1,
        added=[one("21010000000000000002", "cancelled")],
    )  # fmt: skip

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("power cut")

    with monkeypatch.context() as patch:
        patch.setattr(type(mw.cards), "_store_version", staticmethod(crash))
        with pytest.raises(RuntimeError):
            mw.cards.apply(update)
    assert mw.cards.index_status().versions == {ISSUER: 1}
    mw.cards.check("21010000000000000002")  # in the index, not listed: it passes
    mw.cards.apply(update)
    with pytest.raises(CardRefusedError):
        mw.cards.check("21010000000000000002")


def test_a_lost_watch_means_the_database_is_asked_until_the_index_is_rebuilt(
    make: Any, issuer: ListPublisher
) -> None:
    mw, other = make(), make()
    issuer.list_card("21010000000000000001", "cancelled")
    issuer.publish()
    assert mw.cards.sync().ok
    assert mw.cards.load_index().current
    watch: Any = mw.cards._index._watch
    if mw.engine.dialect.name == "postgresql":  # the server drops the listening connection
        with mw.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"),
                         {"p": watch._con.info.backend_pid})  # fmt: skip
    else:
        watch._con.close()
    issuer.list_card("21010000000000000002", "cancelled")
    issuer.publish()
    assert other.cards.sync().ok
    _refused_at_the_next_check(mw, "21010000000000000002")
    _wait_for(lambda: mw.cards.index_status().versions == {ISSUER: 2})
    issuer.list_card("21010000000000000003", "cancelled")
    issuer.publish()
    assert other.cards.sync().ok  # the new watch sees it too
    _refused_at_the_next_check(mw, "21010000000000000003")


def test_a_watch_that_hears_nothing_is_caught_by_the_periodic_version_read(
    make: Any, issuer: ListPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hcmiddleware.cards import index

    mw, other = make(), make()
    issuer.publish()
    assert mw.cards.sync().ok
    assert mw.cards.load_index().current
    watch: Any = mw.cards._index._watch
    monkeypatch.setattr(watch, "changed", lambda: False)  # a network cut: no word
    monkeypatch.setattr(index, "_VERIFY_EVERY", 0.2)
    issuer.list_card("21010000000000000002", "cancelled")
    issuer.publish()
    assert other.cards.sync().ok
    time.sleep(0.3)
    with pytest.raises(CardRefusedError):
        mw.cards.check("21010000000000000002")


def test_an_in_memory_database_has_no_index(
    hcm_make_middleware: MiddlewareFactory, issuer: ListPublisher, tmp_path: Path
) -> None:
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(issuer.public_pem())
    mw = hcm_make_middleware(database={"url": "sqlite://"}, cards={"list_keys": {ISSUER: str(pem)}})
    issuer.list_card("21010000000000000001", "cancelled")
    mw.cards.apply(issuer.publish())
    held = mw.cards.load_index()
    assert not held.current
    assert "in-memory" in (held.unavailable or "")
    with pytest.raises(CardRefusedError):
        mw.cards.check("21010000000000000001")
    mw.cards.check("21010000000000000002")


def _refused_at_the_next_check(mw: Middleware, number: str) -> None:
    """SQLite: at the very next check. PostgreSQL: at the next one after the commit's
    notification arrived (it travels on its own connection, so it may trail the
    committing call's return by a moment)."""
    if mw.engine.dialect.name == "postgresql":
        watch: Any = mw.cards._index._watch
        if watch is not None:
            select.select([watch._con.pgconn.socket], [], [], 2.0)
    with pytest.raises(CardRefusedError):
        mw.cards.check(number)


def _wait_for(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


# --- fuzzed updates ------------------------------------------------------------------------

#: fuzzed updates per run: ``tox -e fuzz`` runs 100,000 (HCM_FUZZ_CASES); the suite runs
#: 10,000 on SQLite and 2,000 on PostgreSQL, with the same seed (the database is reached
#: only by the few that parse and carry their source's signature)
FUZZ_CASES = int(os.environ.get("HCM_FUZZ_CASES", "0"))


def _byte_mutation(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        what = rng.random()
        at = rng.randrange(len(data))
        if what < 0.4:
            data[at] = rng.randrange(256)
        elif what < 0.6:
            del data[at : at + rng.randint(1, 40)]
        elif what < 0.8:
            data[at:at] = rng.choice([b'"', b"{", b"]", b"99999999999999999999", b"\\u0000"])
        else:
            data = data[: rng.randrange(len(data))]  # truncated
        if not data:
            break
    return bytes(data)


_LONG_LIST = [
    {
        "card_number": f"2109{i:016d}",
        "reason": "cancelled",
        "listed_at": "2026-12-01T00:00:00Z",
        "source": ISSUER,
    }
    for i in range(3000)
]


def _field_mutation(raw: bytes, rng: random.Random) -> Any:
    """A change to one field of the parsed update (most still parse)."""
    data = json.loads(raw)
    what = rng.randrange(8)
    if what == 0:  # a field of the wrong type, or gone
        key = rng.choice(list(data))
        if rng.random() < 0.5:
            del data[key]
        else:
            data[key] = rng.choice([None, [], {}, "x", -1, 1.5, True, "9" * 400])
    elif what == 1:  # another version
        data["version"] = rng.choice([0, 1, 2, 3, 4, 2**40, -5])
        data["base_version"] = rng.choice([None, 0, 1, 2, 3, 5, 99])
    elif what == 2 and data["added"]:  # an entry of the wrong shape
        entry = rng.choice(data["added"])
        entry[rng.choice(["card_number", "reason", "listed_at", "source", "replaced_by"])] = (
            rng.choice(["", "2" * 33, "2" * 32, "stolen", "2026-13-01T00:00:00Z",
                        "2026-12-01T00:00:00", 7, None])
        )  # fmt: skip
    elif what == 3:  # a signature that is not base64, cut short, or another update's
        data["signature"] = rng.choice(
            ["", "!!!!", data["signature"][:-4], data["signature"][::-1], "A" * 1025]
        )
    elif what == 4:  # a card twice, or added and removed at once
        if data["added"]:
            twice = dict(data["added"][0])
            data["added"].append(twice)
            data["removed"] = [twice["card_number"]]
    elif what == 5:  # an extra field
        data[rng.choice(["note", "Version", "sig"])] = "x"
    elif what == 6:  # huge: a list far longer than what was signed (made once)
        data["added"] = _LONG_LIST if rng.random() < 0.02 else _LONG_LIST[:10]
    else:  # white space around: the same content, still the source's signature
        return raw + b" " * rng.choice([1, 100_000])
    return data if rng.random() < 0.5 else json.dumps(data)


@pytest.mark.fuzz
def test_fuzzed_updates_give_only_typed_errors_and_leave_the_list_in_force(
    make: Any, issuer: ListPublisher, fresh_database: str
) -> None:
    cases = FUZZ_CASES or (10_000 if fresh_database.startswith("sqlite") else 2_000)
    mw = make()
    mw.cards.apply(signed(issuer, version=1, added=[one("21010000000000000001", "cancelled")]))
    stranger = ListPublisher("issuer:9999")
    genuine = signed(
        issuer,
        kind="delta",
        version=2,
        base_version=1,
        added=[one("21010000000000000002", "loss_reported")],
        removed=["21010000000000000001"],
    )
    candidates = [
        genuine,  # applies once; then it is an old version
        signed(ListPublisher(ISSUER), version=5, added=[one("21010000000000000003", "frozen")]),
        signed(issuer, kind="delta", version=4, base_version=3,
               added=[one("21010000000000000004", "cancelled")]),  # skips version 3
        signed(issuer, version=1, added=[one("21010000000000000001", "cancelled")]),
        signed(stranger, version=1,
               added=[one("21010000000000000005", "cancelled", stranger.source)]),
    ]  # fmt: skip
    raws = [c.model_dump_json().encode() for c in candidates]
    genuine_bytes = signed_bytes(genuine)
    in_force = [(entries(mw), [(s.source, s.version) for s in mw.cards.status()])]
    rng = random.Random(20261203)
    outcomes: dict[str, int] = {}
    for n in range(cases):
        raw = raws[n % len(raws)]
        mutated = _byte_mutation(raw, rng) if rng.random() < 0.85 else _field_mutation(raw, rng)
        try:
            update = parse_update(mutated)
            mw.cards.apply(update)
        except CardListError as exc:
            outcomes[exc.reason] = outcomes.get(exc.reason, 0) + 1
            if n % 5000 == 0:  # the list in force is unchanged (on a sample: a query each)
                assert (entries(mw), [(s.source, s.version) for s in mw.cards.status()]) == (
                    in_force[-1]
                )
            continue
        # applied: only the genuine delta's content, signed by its source, and only once
        assert signed_bytes(update) == genuine_bytes, mutated[:200]
        outcomes["applied"] = outcomes.get("applied", 0) + 1
        in_force.append((entries(mw), [(s.source, s.version) for s in mw.cards.status()]))
    assert outcomes.get("applied", 0) <= 1
    assert entries(mw) == in_force[-1][0]
    assert in_force[-1][0] in (
        [(ISSUER, "21010000000000000001", "cancelled")],
        [(ISSUER, "21010000000000000002", "loss_reported")],
    )
    assert outcomes["malformed"] > cases * 0.75  # most fail at parsing
    for reason in ("bad_signature", "old_version", "skipped_version", "unknown_source"):
        assert outcomes.get(reason, 0) > 0, (reason, outcomes)
    with pytest.raises(CardListError, match="malformed at version"):
        parse_update(json.dumps({**json.loads(raws[0]), "version": "seven"}))


# --- replacement, loss reports, health ---------------------------------------------------------


def test_a_replacement_card_is_linked_to_the_same_resident(
    make: Any, issuer: ListPublisher
) -> None:
    mw = make()
    card = mw.terminal.read(sample_card())
    resident = mw.residents.enrol_from_card(card)
    old = card.issuer.card_number
    issuer.list_card(old, "replaced", replaced_by="21010000009999999999")
    issuer.publish()
    assert mw.cards.sync().ok
    found = mw.residents.lookup(IdentifierKind.CARD_NUMBER, "21010000009999999999")
    assert found is not None
    assert found.resident_id == resident.resident_id


def _enrolled_holder(mw: Middleware) -> tuple[str, str, str]:
    card = mw.terminal.read(sample_card())
    resident = mw.residents.enrol_from_card(card)
    id_number = resident.identifier(IdentifierKind.ID_NUMBER)
    assert id_number is not None
    return card.issuer.card_number, resident.resident_id, id_number


def test_a_loss_reported_at_the_kiosk_is_refused_at_once_and_sent_to_the_issuer(
    make: Any,
) -> None:
    mw = make()
    number, resident_id, id_number = _enrolled_holder(mw)
    recorder = HookRecorder(mw)
    reference = mw.cards.report_loss(
        number, resident_id=resident_id, id_number=id_number, terminal="kiosk-7"
    )
    assert reference == "LR00000001"
    [call] = recorder.calls("hcm_card_report_loss")
    [sent] = mw.test_plugin.loss_reports
    assert call.kwargs["report"] == sent
    assert (sent.card_number, sent.resident_id, sent.identified_by, sent.terminal) == (
        number,
        resident_id,
        "id_number",
        "kiosk-7",
    )
    with pytest.raises(CardRefusedError) as caught:
        mw.terminal.read(sample_card())
    assert (caught.value.state, caught.value.source) == ("loss_reported", "local")


@pytest.mark.parametrize("who", ["wrong id number", "someone else's card", "nobody"])
def test_a_loss_report_needs_the_cardholder_identified(make: Any, who: str) -> None:
    mw = make()
    number, resident_id, _ = _enrolled_holder(mw)
    other = mw.residents.enrol(name="陈静", sex=Sex.FEMALE, id_number="11010519491231002X")
    kwargs: dict[str, Any] = {"resident_id": resident_id}
    if who == "wrong id number":
        kwargs["id_number"] = "11010519491231002X"
    elif who == "someone else's card":
        kwargs = {"resident_id": other.resident_id, "id_number": "11010519491231002X"}
    with pytest.raises(IdentityError):
        mw.cards.report_loss(number, **kwargs)
    assert mw.cards.state(number) is CardState.ACTIVE
    assert mw.test_plugin.loss_reports == []
    mw.terminal.read(sample_card())


def test_doctor_fails_for_a_list_never_synced_or_too_old(
    make: Any, issuer: ListPublisher, bank_list: ListPublisher
) -> None:
    mw = make(max_list_age_hours=1)
    assert mw.cards.notice() is not None  # the terminal shows it: nothing synced yet
    checks = {r.name: r for p, r in mw.doctor() if r.name.startswith("card list")}
    assert {n: r.ok for n, r in checks.items()} == {
        f"card list {BANK}": False,
        f"card list {ISSUER}": False,
    }
    assert "hcm cards sync" in checks[f"card list {ISSUER}"].hint
    issuer.publish()
    bank_list.publish()
    assert mw.cards.sync().ok
    assert all(r.ok for p, r in mw.doctor() if r.name.startswith("card list"))
    assert mw.cards.notice() is None
    with mw.engine.begin() as conn:  # the sync stopped two hours ago
        conn.execute(
            sa.text("UPDATE card_list_versions SET synced_at = :t WHERE source = :s"),
            {"t": datetime.now(UTC) - timedelta(hours=2), "s": ISSUER},
        )
    stale = {r.name: r for p, r in mw.doctor() if r.name.startswith("card list")}
    assert not stale[f"card list {ISSUER}"].ok
    assert stale[f"card list {BANK}"].ok
    assert [s.stale for s in mw.cards.status()] == [False, True]
    shown = mw.cards.notice()
    assert shown is not None
    assert f"card list {ISSUER}" in shown
    assert BANK not in shown


def test_hcm_cards_commands(tmp_path: Path, issuer: ListPublisher) -> None:
    from click.testing import CliRunner

    from hcmiddleware.cli import main
    from hcmiddleware.config import load_config
    from hcmiddleware.testing import empi_keys

    pem = tmp_path / "issuer.pem"
    pem.write_bytes(issuer.public_pem())
    keys = empi_keys(tmp_path / "keys")
    cfg = tmp_path / "hcm.toml"
    cfg.write_text(
        '[middleware]\ndata_dir = "data"\n[empi]\n'
        f'master_keys = {{ k1 = {{ file = "{keys["master_keys"]["k1"]["file"]}" }} }}\n'
        f'index_key = {{ file = "{keys["index_key"]["file"]}" }}\n'
        f'[cards]\nlist_keys = {{ "{ISSUER}" = "issuer.pem" }}\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    empty = runner.invoke(main, ["--config", str(cfg), "cards", "lists"])
    assert empty.exit_code == 0, empty.output
    assert "hcm cards sync" in empty.output
    issuer.list_card("21010000000000000009", "cancelled")
    issuer.issue("21010000000000000007")
    with Middleware(load_config(cfg)) as mw:
        mw.cards.apply(issuer.publish())
    listed = runner.invoke(main, ["--config", str(cfg), "cards", "status", "21010000000000000009"])
    assert listed.exit_code == 1
    assert "cancelled, listed by issuer:2101" in listed.output
    assert "refused" in listed.output
    assert "21010000000000000009" not in listed.output  # masked
    issued = runner.invoke(
        main, ["--config", str(cfg), "cards", "status", "21010000000000000007", "--json"]
    )
    assert issued.exit_code == 1, issued.output
    shown = json.loads(issued.output)
    assert (shown["state"], shown["source"], shown["card"]) == (
        "issued",
        ISSUER,
        "2101************0007",
    )
    assert "moves no money until activated" in shown["meaning"]
    active = runner.invoke(main, ["--config", str(cfg), "cards", "status", "21010000000000000008"])
    assert (active.exit_code, "active" in active.output) == (0, True)
    lists = runner.invoke(main, ["--config", str(cfg), "cards", "lists", "--json"])
    assert lists.exit_code == 0, lists.output
    assert [(s["source"], s["version"], s["entries"]) for s in json.loads(lists.output)] == [
        (ISSUER, 1, 2)
    ]
    synced = runner.invoke(main, ["--config", str(cfg), "cards", "sync"])  # no feed enabled
    assert synced.exit_code == 0, synced.output
