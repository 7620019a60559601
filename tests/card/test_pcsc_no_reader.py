"""A terminal whose reader is unplugged: pcscd runs, but knows no reader."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hcmiddleware.card.monitor import CardEvents
from hcmiddleware.card.pcsc import PcscTransport, list_readers
from hcmiddleware.errors import ReaderError
from hcmiddleware.testing.pcscd import Pcscd

pytestmark = pytest.mark.pcsc


@pytest.fixture(scope="module")
def readerless() -> Iterator[Pcscd]:
    with Pcscd(vpcd=False) as daemon:
        yield daemon


def test_no_reader_is_a_reader_error(readerless: Pcscd) -> None:
    assert list_readers() == []
    with pytest.raises(ReaderError) as info:
        PcscTransport()
    assert info.value.message == "no card reader is connected"
    assert info.value.hint


def test_named_reader_missing(readerless: Pcscd) -> None:
    with pytest.raises(ReaderError):
        PcscTransport("Virtual PCD 00 00")


def test_monitor_starts_without_readers(readerless: Pcscd) -> None:
    with CardEvents(lambda reader, atr: None, lambda reader: None):
        pass
