"""Where a private pcscd's vpcd readers listen: outside the ephemeral range, on free ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hcmiddleware.card.vpcd import DEFAULT_PORT
from hcmiddleware.testing import pcscd as daemon


def test_pairs_avoid_the_ephemeral_range() -> None:
    low, high = daemon._ephemeral_range()
    first = next(daemon._port_pairs())
    assert first + 1 < low or first > high
    if low <= DEFAULT_PORT <= high:
        assert first >= daemon.PRIVATE_PORT


def test_a_port_in_use_is_skipped() -> None:
    first = next(daemon._port_pairs())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", first + 1))
        holder.listen()
        assert not daemon._bindable(first + 1)
        assert next(daemon._port_pairs()) not in (first, first + 1)
    assert daemon._bindable(first + 1)


def test_ephemeral_range_defaults_when_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(self: Path, *args: object, **kwargs: object) -> str:
        raise OSError("no /proc here")

    monkeypatch.setattr(Path, "read_text", unreadable)
    assert daemon._ephemeral_range() == (32768, 60999)


def test_channel_id_is_read_from_the_vpcd_reader_config(tmp_path: Path) -> None:
    (tmp_path / "other").write_text(
        'FRIENDLYNAME "Other"\nLIBPATH /usr/lib/other.so\nCHANNELID 0x0001\n', encoding="ascii"
    )
    assert daemon._channel_id(tmp_path) is None
    (tmp_path / "vpcd").write_text(
        daemon._CONFIG.format(port=25963, driver=daemon.VPCD_DRIVER), encoding="ascii"
    )
    assert daemon._channel_id(tmp_path) == 25963
    assert daemon._channel_id(tmp_path / "missing") is None


@pytest.mark.pcsc
def test_vpcd_that_cannot_bind_moves_to_the_next_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    # The port is taken between the probe and vpcd's bind (the probe is told it is
    # free): pcscd logs "Address already in use", and the next pair is tried at once.
    if daemon.Pcscd.running():
        pytest.skip("a pcscd already runs on this machine; this test starts its own")
    first = next(daemon._port_pairs())
    monkeypatch.setattr(daemon, "_bindable", lambda port: True)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        # a pcscd stopped with a card linked leaves the port in TIME_WAIT for a minute:
        # a listener may still bind it, and then holds it as surely
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", first))
        holder.listen()
        with daemon.Pcscd() as started:
            assert started.started
            assert started.user_port == first + 2
            assert daemon.USER_READER in started.readers()
            assert daemon._running_vpcd_port() == first + 2
