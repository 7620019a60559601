"""The card's lifecycle at the terminal: signed lists of refused cards, loss reports."""

from __future__ import annotations

import json
import random
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
from hcmiddleware.errors import CardListError, CardRefusedError, ConfigError, IdentityError
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


def test_the_most_final_state_of_all_sources_decides(
    make: Any, issuer: ListPublisher, bank_list: ListPublisher
) -> None:
    mw = make()
    issuer.list_card("21010000000000000001", "loss_reported")
    bank_list.list_card("21010000000000000001", "frozen")
    issuer.publish()
    bank_list.publish()
    assert mw.cards.sync().ok
    assert mw.cards.state("21010000000000000001") is CardState.LOSS_REPORTED
    assert mw.cards.state("21010000000000000002") is CardState.ACTIVE


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


# --- fuzzed updates ------------------------------------------------------------------------


def _mutate(text: str, rng: random.Random) -> str:
    data = bytearray(text.encode())
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
    return data.decode("utf-8", errors="replace")


def test_fuzzed_updates_give_only_typed_errors_and_change_nothing(
    make: Any, issuer: ListPublisher
) -> None:
    mw = make()
    mw.cards.apply(signed(issuer, version=1, added=[one("21010000000000000001", "cancelled")]))
    before = entries(mw)
    good = signed(
        issuer,
        kind="delta",
        version=2,
        base_version=1,
        added=[one("21010000000000000002", "loss_reported")],
        removed=["21010000000000000001"],
    )
    text = good.model_dump_json()
    rng = random.Random(20261203)
    outcomes: dict[str, int] = {}
    for _ in range(3000):
        mutated = _mutate(text, rng)
        try:
            update = parse_update(mutated)
            if (signed_bytes(update), update.signature) == (signed_bytes(good), good.signature):
                continue  # what the source signed, written another way: authentic
            mw.cards.apply(update)
        except CardListError as exc:
            outcomes[exc.reason] = outcomes.get(exc.reason, 0) + 1
            continue
        pytest.fail(f"a mutated update was applied: {mutated[:200]!r}")
    assert entries(mw) == before
    assert outcomes["malformed"] > 1000
    assert outcomes.get("bad_signature", 0) > 0
    with pytest.raises(CardListError, match="malformed at version"):
        parse_update(json.dumps({**json.loads(text), "version": "seven"}))


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
    with Middleware(load_config(cfg)) as mw:
        mw.cards.apply(issuer.publish())
    listed = runner.invoke(main, ["--config", str(cfg), "cards", "status", "21010000000000000009"])
    assert listed.exit_code == 1
    assert "cancelled, listed by issuer:2101" in listed.output
    assert "21010000000000000009" not in listed.output  # masked
    active = runner.invoke(main, ["--config", str(cfg), "cards", "status", "21010000000000000008"])
    assert (active.exit_code, "active" in active.output) == (0, True)
    lists = runner.invoke(main, ["--config", str(cfg), "cards", "lists", "--json"])
    assert lists.exit_code == 0, lists.output
    assert [(s["source"], s["version"], s["entries"]) for s in json.loads(lists.output)] == [
        (ISSUER, 1, 1)
    ]
    synced = runner.invoke(main, ["--config", str(cfg), "cards", "sync"])  # no feed enabled
    assert synced.exit_code == 0, synced.output
