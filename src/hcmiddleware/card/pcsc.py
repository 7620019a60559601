"""PC/SC transport through pyscard: real readers, or vpcd's virtual ones.

PC/SC failures become our error types: no pcscd (``0x8010001D``) and no reader are
:class:`~hcmiddleware.errors.ReaderError`; no card, or a card pulled mid-operation, is
:class:`~hcmiddleware.errors.CardAbsentError`. pyscard is an optional dependency
(``pip install hcmiddleware[pcsc]``), imported only when a PC/SC transport is opened.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from typing import Any

from hcmiddleware.errors import CardAbsentError, CardProtocolError, ReaderError

__all__ = ["PcscTransport", "list_readers"]

SCARD_E_NO_SERVICE = 0x8010001D
SCARD_E_NO_SMARTCARD = 0x8010000C
SCARD_W_REMOVED_CARD = 0x80100069
SCARD_W_RESET_CARD = 0x80100068
SCARD_E_READER_UNAVAILABLE = 0x80100017
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
SCARD_E_UNKNOWN_READER = 0x80100009
SCARD_E_SHARING_VIOLATION = 0x8010000B
_ABSENT = {SCARD_E_NO_SMARTCARD, SCARD_W_REMOVED_CARD, SCARD_W_RESET_CARD}


def _hresult(exc: BaseException) -> int:
    value = int(getattr(exc, "hresult", -1))
    return value + 0x100000000 if value < 0 and value != -1 else value


def _no_service() -> ReaderError:
    return ReaderError(
        "the PC/SC service (pcscd) is not running (0x8010001D)",
        hint="start pcscd (e.g. `systemctl start pcscd`), then try again",
    )


class _UnknownReaderError(Exception):
    """pcscd knows no reader by this exact name (a part of one is looked up in the list)."""


def _unsigned(hresult: int) -> int:
    return hresult + 0x100000000 if hresult < 0 else hresult


def _message(scard: Any, hresult: int) -> str:
    return f"{str(scard.SCardGetErrorMessage(hresult)).strip()} (0x{_unsigned(hresult):08X})"


def _pcsc_module(name: str) -> Any:
    """``smartcard.<name>``, or the ReaderError that says how to install pyscard."""
    try:
        return importlib.import_module(f"smartcard.{name}")
    except ImportError:
        raise ReaderError(
            "PC/SC support is not installed",
            hint="install it with `pip install 'hcmiddleware[pcsc]'` (needs libpcsclite-dev)",
        ) from None


def _scard() -> Any:
    return _pcsc_module("scard")


def _pyscard() -> Any:
    return _pcsc_module("System")


def _readers() -> list[Any]:
    system = _pyscard()
    try:
        return list(system.readers())
    except Exception as exc:  # pyscard raises unrelated classes (EstablishContextException…)
        if _hresult(exc) in (SCARD_E_NO_READERS_AVAILABLE,):
            return []
        if _hresult(exc) == SCARD_E_NO_SERVICE or "0x8010001D" in str(exc):
            raise _no_service() from None
        raise ReaderError(
            f"the PC/SC service could not list readers ({exc})",
            hint="check the reader is plugged in and pcscd is healthy",
        ) from None


def list_readers() -> list[str]:
    """Names of the PC/SC readers; :class:`ReaderError` when pcscd is not running."""
    return [str(r) for r in _readers()]


class PcscTransport:
    """A connection to the card in one PC/SC reader.

    ``reader`` is a reader's name (exact, or a unique part of it); ``None`` picks the
    first reader holding a card.

    ``exclusive`` (the default) keeps other programs off the card while it is open: the
    session's selected DF and authentications live on the card, and another program's
    SELECT in between would silently drop them. A second program then gets a
    :class:`ReaderError` ("in use") instead of corrupting the conversation. Closing
    powers the card down (``SCARD_UNPOWER_CARD``), so nothing of the session outlives it.

    One PC/SC context per connection, used for the reader list too; a reader named
    exactly is connected to without listing the readers first. pcscd serves every
    context on a socket and a thread of its own: the list on a context of its own and
    pyscard's connection object cost two of each per card read, and a round trip to
    pcscd per step (establish, list, release twice) — 8 calls to pcscd besides the
    APDUs, now 4 (establish, connect, status, disconnect) and the release.
    """

    def __init__(self, reader: str | None = None, *, exclusive: bool = True) -> None:
        self.exclusive = exclusive
        self._scard = _scard()
        self._context = self._establish()
        try:
            self._open(reader)
        except BaseException:
            self._release()
            raise

    def _establish(self) -> Any:
        scard = self._scard
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            if _unsigned(hresult) == SCARD_E_NO_SERVICE:
                raise _no_service()
            raise ReaderError(
                f"the PC/SC service could not list readers ({_message(scard, hresult)})",
                hint="check the reader is plugged in and pcscd is healthy",
            )
        return context

    def _list(self) -> list[str]:
        scard = self._scard
        hresult, readers = scard.SCardListReaders(self._context, [])
        code = _unsigned(hresult)
        if code == SCARD_E_NO_READERS_AVAILABLE:
            return []
        if code == SCARD_E_NO_SERVICE:
            raise _no_service()
        if hresult != scard.SCARD_S_SUCCESS:
            raise ReaderError(
                f"the PC/SC service could not list readers ({_message(scard, hresult)})",
                hint="check the reader is plugged in and pcscd is healthy",
            )
        return [str(r) for r in readers]

    def _open(self, reader: str | None) -> None:
        if reader is not None:
            # a reader named exactly (the configured one) needs no list
            try:
                self._connect(reader)
                return
            except _UnknownReaderError:
                pass
            except ReaderError:
                raise
            except CardAbsentError:
                raise CardAbsentError(f"no card in reader {reader!r}") from None
        names = self._list()
        if not names:
            raise ReaderError(
                "no card reader is connected",
                hint="plug in the card reader and check its cable",
            )
        if reader is not None:
            matches = [n for n in names if n == reader] or [n for n in names if reader in n]
            if len(matches) != 1:
                raise ReaderError(
                    f"no single reader named {reader!r} (readers: {', '.join(names)})",
                    hint="pass one of the listed reader names",
                )
            candidates = matches
        else:
            candidates = names
        busy: ReaderError | None = None
        for candidate in candidates:
            try:
                self._connect(candidate)
                return
            except ReaderError as exc:
                busy = busy or exc  # a card in a busy reader beats "no card anywhere"
            except (CardAbsentError, _UnknownReaderError):
                pass
        if busy is not None:
            raise busy
        raise CardAbsentError(
            "no card in " + (f"reader {reader!r}" if reader else "any reader"),
        )

    def _connect(self, reader: str) -> None:
        scard = self._scard
        mode = scard.SCARD_SHARE_EXCLUSIVE if self.exclusive else scard.SCARD_SHARE_SHARED
        hresult, card, protocol = scard.SCardConnect(
            self._context, reader, mode, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        if hresult != scard.SCARD_S_SUCCESS:
            code = _unsigned(hresult)
            if code == SCARD_E_NO_SERVICE:
                raise _no_service()
            if code == SCARD_E_SHARING_VIOLATION:
                raise ReaderError(
                    f"reader {reader} is in use by another program",
                    hint="close the other program using the card reader",
                )
            if code in (SCARD_E_UNKNOWN_READER, SCARD_E_READER_UNAVAILABLE):
                raise _UnknownReaderError(reader)  # looked up in the list
            raise CardAbsentError(f"no usable card in reader {reader}")
        pci = {
            scard.SCARD_PROTOCOL_T0: scard.SCARD_PCI_T0,
            scard.SCARD_PROTOCOL_T1: scard.SCARD_PCI_T1,
        }
        self._pci = pci.get(protocol, scard.SCARD_PCI_RAW)
        self._connection = card
        self.reader = reader
        hresult, _name, _state, _protocol, atr = scard.SCardStatus(card)
        if hresult != scard.SCARD_S_SUCCESS:
            self.close()
            raise CardAbsentError(f"no usable card in reader {reader}")
        self._atr = bytes(atr)

    @property
    def atr(self) -> bytes:
        """The ATR the reader reported at connection."""
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        """Send one APDU; a pulled card is :class:`CardAbsentError`."""
        if self._connection is None:
            raise CardAbsentError("the card connection is closed")
        scard = self._scard
        hresult, response = scard.SCardTransmit(self._connection, self._pci, list(apdu))
        if hresult == scard.SCARD_S_SUCCESS and len(response) >= 2:
            return bytes(b & 0xFF for b in response)
        code = _unsigned(hresult)
        if code == SCARD_E_NO_SERVICE:
            raise _no_service()
        if code in _ABSENT or code == SCARD_E_READER_UNAVAILABLE or self._card_gone():
            raise CardAbsentError("the card was removed during the operation")
        what = _message(scard, hresult) if hresult else "the card returned no valid response"
        raise CardProtocolError(f"the reader failed to exchange an APDU ({what})")

    def _card_gone(self, wait: float = 2.0) -> bool:
        """After a failed exchange: does pcscd report the reader empty within ``wait`` s?

        A card pulled mid-APDU first fails the exchange with no specific code; the
        reader's state turns empty a moment later.
        """
        from smartcard import scard

        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            return False
        try:
            deadline = time.monotonic() + wait
            while True:
                hresult, states = scard.SCardGetStatusChange(
                    context, 0, [(self.reader, scard.SCARD_STATE_UNAWARE)]
                )
                if (
                    hresult == scard.SCARD_S_SUCCESS
                    and not states[0][1] & scard.SCARD_STATE_PRESENT
                ):
                    return True
                if hresult != scard.SCARD_S_SUCCESS or time.monotonic() > deadline:
                    return bool(hresult != scard.SCARD_S_SUCCESS)
                time.sleep(0.05)
        finally:
            scard.SCardReleaseContext(context)

    def close(self) -> None:
        """Power the card down and disconnect; release the context (idempotent)."""
        card, self._connection = self._connection, None
        if card is not None:
            # the card or pcscd may already be gone: nothing to report
            self._scard.SCardDisconnect(card, self._scard.SCARD_UNPOWER_CARD)
        self._release()

    def _release(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            self._scard.SCardReleaseContext(context)

    def __del__(self) -> None:
        # a transport dropped without close(): give pcscd its context and thread back
        with contextlib.suppress(Exception):
            self.close()

    _context: Any = None
    _pci: Any = None
    _atr: bytes = b""
    reader: str = ""
    _connection: Any = None
