"""PC/SC transport through pyscard: real readers, or vpcd's virtual ones.

PC/SC failures become our error types: no pcscd (``0x8010001D``) and no reader are
:class:`~hcmiddleware.errors.ReaderError`; no card, or a card pulled mid-operation, is
:class:`~hcmiddleware.errors.CardAbsentError`. pyscard is an optional dependency
(``pip install hcmiddleware[pcsc]``), imported only when a PC/SC transport is opened.
"""

from __future__ import annotations

import contextlib
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


def _pyscard() -> Any:
    try:
        import smartcard.System
    except ImportError:
        raise ReaderError(
            "PC/SC support is not installed",
            hint="install it with `pip install 'hcmiddleware[pcsc]'` (needs libpcsclite-dev)",
        ) from None
    return smartcard.System


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
    first reader holding a card. The connection uses ``reader.createConnection()``
    (a connection from pyscard's ``CardRequest`` dies with the request object).

    ``exclusive`` (the default) keeps other programs off the card while it is open: the
    session's selected DF and authentications live on the card, and another program's
    SELECT in between would silently drop them. A second program then gets a
    :class:`ReaderError` ("in use") instead of corrupting the conversation.
    """

    def __init__(self, reader: str | None = None, *, exclusive: bool = True) -> None:
        self.exclusive = exclusive
        readers = _readers()
        if not readers:
            raise ReaderError(
                "no card reader is connected",
                hint="plug in the card reader and check its cable",
            )
        names = [str(r) for r in readers]
        if reader is not None:
            matches = [r for r in readers if str(r) == reader] or [
                r for r in readers if reader in str(r)
            ]
            if len(matches) != 1:
                raise ReaderError(
                    f"no single reader named {reader!r} (readers: {', '.join(names)})",
                    hint="pass one of the listed reader names",
                )
            candidates = matches
        else:
            candidates = readers
        busy: ReaderError | None = None
        for candidate in candidates:
            try:
                self._connect(candidate)
                return
            except ReaderError as exc:
                busy = busy or exc  # a card in a busy reader beats "no card anywhere"
            except CardAbsentError:
                pass
        if busy is not None:
            raise busy
        raise CardAbsentError(
            "no card in " + (f"reader {reader!r}" if reader else "any reader"),
        )

    def _connect(self, reader: Any) -> None:
        from smartcard.Exceptions import SmartcardException
        from smartcard.scard import SCARD_SHARE_EXCLUSIVE, SCARD_SHARE_SHARED

        connection = reader.createConnection()
        try:
            connection.connect(mode=SCARD_SHARE_EXCLUSIVE if self.exclusive else SCARD_SHARE_SHARED)
        except SmartcardException as exc:
            # Release now: pyscard's finaliser would do it later, maybe after pcscd is gone.
            with contextlib.suppress(SmartcardException):
                connection.release()
            code = _hresult(exc)
            if code == SCARD_E_NO_SERVICE:
                raise _no_service() from None
            if code == SCARD_E_SHARING_VIOLATION:
                raise ReaderError(
                    f"reader {reader} is in use by another program",
                    hint="close the other program using the card reader",
                ) from None
            raise CardAbsentError(f"no usable card in reader {reader}") from None
        self._connection = connection
        self.reader = str(reader)
        self._atr = bytes(connection.getATR())

    @property
    def atr(self) -> bytes:
        """The ATR the reader reported at connection."""
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        """Send one APDU; a pulled card is :class:`CardAbsentError`."""
        from smartcard.Exceptions import SmartcardException

        if self._connection is None:
            raise CardAbsentError("the card connection is closed")
        try:
            data, sw1, sw2 = self._connection.transmit(list(apdu))
        except SmartcardException as exc:
            code = _hresult(exc)
            if code == SCARD_E_NO_SERVICE:
                raise _no_service() from None
            if code in _ABSENT or code == SCARD_E_READER_UNAVAILABLE or self._card_gone():
                raise CardAbsentError("the card was removed during the operation") from None
            raise CardProtocolError(f"the reader failed to exchange an APDU ({exc})") from None
        return bytes(data) + bytes((sw1, sw2))

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
        """Disconnect from the card (idempotent)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            from smartcard.Exceptions import SmartcardException

            # the card or pcscd may already be gone
            with contextlib.suppress(SmartcardException):
                connection.disconnect()
            release = getattr(connection, "release", None)
            if callable(release):
                with contextlib.suppress(SmartcardException):
                    release()

    _connection: Any = None
