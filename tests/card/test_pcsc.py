"""End to end through the real PC/SC stack: pcscd + vpcd + pyscard, and its failures."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from card_checks import check_against_profile
from card_samples import KEYS, SAMPLES

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.monitor import CardEvents
from hcmiddleware.card.pcsc import PcscTransport, list_readers
from hcmiddleware.card.session import CardSession
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.errors import CardAbsentError, ForeignCardError, ReaderError
from hcmiddleware.sam.software import SoftwareSam
from hcmiddleware.testing.pcscd import SAM_READER, USER_READER, Pcscd

pytestmark = pytest.mark.pcsc


@pytest.fixture(scope="module")
def pcscd() -> Iterator[Pcscd]:
    with Pcscd() as daemon:
        yield daemon


@pytest.fixture
def inserted(pcscd: Pcscd, card: EmulatedCard) -> Iterator[VpcdCard]:
    pcscd.wait_card(False)  # the previous test's card must be gone first
    link = VpcdCard(card, pcscd.user_port)
    link.start()
    pcscd.wait_card(True)
    yield link
    link.stop()
    pcscd.wait_card(False)


@pytest.fixture
def transport(inserted: VpcdCard) -> Iterator[PcscTransport]:
    t = PcscTransport(USER_READER)
    yield t
    t.close()


def test_two_readers(pcscd: Pcscd) -> None:
    assert {USER_READER, SAM_READER} <= set(list_readers())


def test_read_everything_through_pcscd(
    transport: PcscTransport, card: EmulatedCard, profile: dict[str, Any]
) -> None:
    assert transport.atr == card.atr
    session = CardSession(transport, SoftwareSam.from_file(KEYS))
    check_against_profile(session.read_all(), profile)


def test_same_apdus_as_in_process(transport: PcscTransport, card: EmulatedCard) -> None:
    over_pcsc = CardSession(transport, SoftwareSam.from_file(KEYS))
    over_pcsc.read_issuer()
    over_pcsc.read_cardholder()
    local = CardSession(
        EmulatedCard.from_files(SAMPLES / "resident-profile.json", KEYS),
        SoftwareSam.from_file(KEYS),
    )
    local.read_issuer()
    local.read_cardholder()
    assert over_pcsc.apdu_count == local.apdu_count


def test_first_reader_with_a_card(inserted: VpcdCard) -> None:
    other = PcscTransport()
    try:
        assert other.reader == USER_READER
    finally:
        other.close()


def test_card_pulled_mid_read(pcscd: Pcscd, transport: PcscTransport, card: EmulatedCard) -> None:
    events = pcscd.event_count()
    card.pull_after(30)
    session = CardSession(transport, SoftwareSam.from_file(KEYS))
    with pytest.raises(CardAbsentError) as info:
        session.read_all()
    assert info.value.hint
    pcscd.wait_event(events)  # let pcscd finish the removal before the next insertion


def test_no_card_in_the_reader(pcscd: Pcscd) -> None:
    pcscd.wait_card(False)
    with pytest.raises(CardAbsentError):
        PcscTransport(USER_READER)


def test_unknown_reader(pcscd: Pcscd) -> None:
    with pytest.raises(ReaderError) as info:
        PcscTransport("No Such Reader 99")
    assert USER_READER in info.value.message


def test_a_reader_named_by_a_unique_part(inserted: VpcdCard) -> None:
    t = PcscTransport(USER_READER[-5:])  # "00 00": the user reader's slot, not the SAM's
    try:
        assert t.reader == USER_READER
    finally:
        t.close()
    with pytest.raises(ReaderError) as info:
        PcscTransport(USER_READER.split()[0])  # "Virtual": both readers
    assert "no single reader" in info.value.message


def test_one_pcsc_context_per_connection(
    inserted: VpcdCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader named exactly is connected to on the transport's own context: no second
    context for a list of the readers, and no list at all; closing releases it."""
    from smartcard import scard

    calls: list[str] = []
    for name in ("SCardEstablishContext", "SCardReleaseContext", "SCardListReaders"):
        real = getattr(scard, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(*args)

        monkeypatch.setattr(scard, name, counted)
    t = PcscTransport(USER_READER)
    assert t.atr == inserted.card.atr
    t.close()
    t.close()  # idempotent
    assert calls == ["SCardEstablishContext", "SCardReleaseContext"]


class ForeignCard:
    """A bank card, as far as the health application is concerned."""

    atr = bytes.fromhex("3B6A0000") + b"0123456789"

    def transmit(self, apdu: bytes) -> bytes:
        return b"\x6a\x82"


def test_foreign_card_through_pcscd(pcscd: Pcscd) -> None:
    pcscd.wait_card(False)
    with VpcdCard(ForeignCard(), pcscd.user_port):
        pcscd.wait_card(True)
        t = PcscTransport(USER_READER)
        try:
            with pytest.raises(ForeignCardError):
                CardSession(t).read_issuer()
        finally:
            t.close()
    pcscd.wait_card(False)


def test_no_pcscd_is_a_reader_error() -> None:
    # libpcsclite reads the socket path from this variable: none listens there.
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}
    code = (
        "from hcmiddleware.card.pcsc import PcscTransport\n"
        "from hcmiddleware.errors import ReaderError\n"
        "try:\n    PcscTransport()\n"
        "except ReaderError as e:\n    print('ReaderError', e.message)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert out.startswith("ReaderError")
    assert "0x8010001D" in out


def test_vpcd_not_listening() -> None:
    with pytest.raises(ReaderError):
        VpcdCard(ForeignCard(), port=1, connect_timeout=0.2).start()


@pytest.mark.parametrize("monitor", ["first", "again after one was stopped"])
def test_insert_and_remove_events(pcscd: Pcscd, card: EmulatedCard, monitor: str) -> None:
    # pyscard starts its monitoring thread once per process; the second run checks
    # that a monitor started after another one was stopped still sees events.
    pcscd.wait_card(False)
    inserted = threading.Event()
    removed = threading.Event()
    seen: list[tuple[str, bytes]] = []

    def on_inserted(reader: str, atr: bytes) -> None:
        seen.append((reader, atr))
        inserted.set()

    with CardEvents(on_inserted, lambda reader: removed.set()):
        link = VpcdCard(card, pcscd.user_port)
        link.start()
        assert inserted.wait(5)
        link.stop()
        assert removed.wait(5)
    assert seen == [(USER_READER, card.atr)]


def test_two_slot_terminal_with_a_sam_card(
    pcscd: Pcscd, card: EmulatedCard, profile: dict[str, Any]
) -> None:
    """User card in reader 0, SAM card in reader 1, both through pcscd, as on a terminal."""
    from hcmiddleware.sam.emulated import DEFAULT_TEST_PIN, EmulatedSam
    from hcmiddleware.sam.keyset import load_keyset
    from hcmiddleware.sam.pcsc import PcscSam

    pcscd.wait_card(False)
    pcscd.wait_card(False, SAM_READER)
    with VpcdCard(card, pcscd.user_port), VpcdCard(EmulatedSam(load_keyset(KEYS)), pcscd.sam_port):
        pcscd.wait_card(True)
        pcscd.wait_card(True, SAM_READER)
        sam_slot = PcscTransport(SAM_READER)
        user_slot = PcscTransport(USER_READER)
        try:
            with PcscSam(sam_slot, DEFAULT_TEST_PIN) as sam:
                check_against_profile(CardSession(user_slot, sam).read_all(), profile)
        finally:
            user_slot.close()
            sam_slot.close()
    pcscd.wait_card(False)
    pcscd.wait_card(False, SAM_READER)


def test_a_second_program_is_kept_off_the_card(transport: PcscTransport) -> None:
    with pytest.raises(ReaderError) as info:
        PcscTransport(USER_READER)
    assert "in use" in info.value.message
    with pytest.raises(ReaderError):  # asking for shared access does not get in either
        PcscTransport(USER_READER, exclusive=False)
    with pytest.raises(ReaderError):  # nor does "the first reader with a card"
        PcscTransport()
