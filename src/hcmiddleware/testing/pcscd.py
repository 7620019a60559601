"""A private pcscd with two vpcd readers, for tests and demos.

pcscd's socket is fixed (``/run/pcscd/pcscd.comm``), so there is one pcscd per machine:
:class:`Pcscd` reuses one that already runs with the vpcd readers, otherwise starts its
own (``pcscd --foreground -c DIR``) with a reader config in a private folder, and stops
only what it started. The two readers are ``Virtual PCD 00 00`` (user card, port 35963)
and ``Virtual PCD 00 01`` (SAM, port 35964): the two slots of a real terminal.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from hcmiddleware.errors import ReaderError

__all__ = ["SAM_READER", "USER_READER", "VPCD_DRIVER", "Pcscd"]

USER_READER = "Virtual PCD 00 00"
SAM_READER = "Virtual PCD 00 01"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
# 0x8C7B = 35963; the driver serves reader 0 there and reader 1 on the next port.
_CONFIG = f"""FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      {VPCD_DRIVER}
CHANNELID    0x8C7B
"""


def _scard_states(readers: list[str]) -> dict[str, int]:
    from smartcard import scard

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise ReaderError("the PC/SC service (pcscd) is not running (0x8010001D)")
    try:
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(r, scard.SCARD_STATE_UNAWARE) for r in readers]
        )
        if hresult != scard.SCARD_S_SUCCESS:
            raise ReaderError(f"pcscd could not report the state of {readers}")
        return {name: int(event) for name, event, _atr in states}
    finally:
        scard.SCardReleaseContext(context)


class Pcscd:
    """Start (or reuse) pcscd with the vpcd readers; a context manager."""

    def __init__(self, *, startup_timeout: float = 10.0, vpcd: bool = True) -> None:
        self.startup_timeout = startup_timeout
        self.vpcd = vpcd
        self.started = False
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self.log_path: Path | None = None

    def __enter__(self) -> Pcscd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def readers() -> list[str]:
        """The readers pcscd knows; ``[]`` when pcscd is not running."""
        try:
            from smartcard.System import readers
        except ImportError:
            raise ReaderError(
                "pyscard is not installed", hint="pip install 'hcmiddleware[pcsc]'"
            ) from None
        try:
            return [str(r) for r in readers()]
        except Exception:  # pyscard raises several types for "no service"
            return []

    @staticmethod
    def running() -> bool:
        """True when a pcscd answers on the machine's socket."""
        try:
            _scard_states([])
        except ReaderError:
            return False
        return True

    def start(self) -> Pcscd:
        """Reuse a pcscd that shows the vpcd readers, or start a private one.

        With ``vpcd=False`` a pcscd without any reader is started, for testing what the
        software does on a terminal whose reader is unplugged; that needs the machine's
        one pcscd socket, so it refuses when another pcscd runs.
        """
        if self.vpcd and USER_READER in self.readers():
            return self
        if not self.vpcd and self.running():
            raise ReaderError(
                "a pcscd is already running; a reader-less one cannot be started beside it",
                hint="stop the other pcscd (it owns /run/pcscd/pcscd.comm) and run again",
            )
        binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
        if not Path(binary).exists() or not VPCD_DRIVER.exists():
            raise ReaderError(
                "pcscd or the vpcd driver is not installed",
                hint="apt-get install pcscd vsmartcard-vpcd",
            )
        self._dir = Path(tempfile.mkdtemp(prefix="hcm-pcscd-"))
        conf = self._dir / "reader.conf.d"
        conf.mkdir()
        if self.vpcd:
            (conf / "vpcd").write_text(_CONFIG, encoding="ascii")
        self.log_path = self._dir / "pcscd.log"
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [binary, "--foreground", "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.started = True
        deadline = time.monotonic() + self.startup_timeout
        while not (USER_READER in self.readers() if self.vpcd else self.running()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                text = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise ReaderError(
                    f"pcscd did not come up as asked; its log ends: {text}",
                    hint="another pcscd may hold /run/pcscd; stop it and retry",
                )
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """Stop pcscd if this object started it (release PC/SC connections first)."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.started = False

    @staticmethod
    def card_present(reader: str = USER_READER) -> bool:
        """True when pcscd reports a card in ``reader``."""
        from smartcard import scard

        state = _scard_states([reader]).get(reader, 0)
        return bool(state & scard.SCARD_STATE_PRESENT)

    @staticmethod
    def event_count(reader: str = USER_READER) -> int:
        """pcscd's event counter of ``reader`` (bumped on every insertion and removal)."""
        return _scard_states([reader]).get(reader, 0) >> 16

    def wait_event(self, after: int, reader: str = USER_READER, timeout: float = 5.0) -> None:
        """Block until the event counter of ``reader`` passes ``after``.

        A card dropped in the middle of an APDU shows as empty at once, but pcscd's
        reader thread processes the removal a moment later; inserting the next card
        before that confuses vpcd, so tests that pull a card wait for the event.
        """
        deadline = time.monotonic() + timeout
        while self.event_count(reader) <= after:
            if time.monotonic() > deadline:
                raise ReaderError(f"pcscd reported no card event on {reader} in {timeout} s")
            time.sleep(0.05)

    def wait_card(self, present: bool, reader: str = USER_READER, timeout: float = 5.0) -> None:
        """Block until pcscd reports the card in ``reader`` present (or absent)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(ReaderError):
                if self.card_present(reader) == present:
                    return
            if time.monotonic() > deadline:
                raise ReaderError(
                    f"pcscd did not see the card {'inserted' if present else 'removed'} "
                    f"in {reader} within {timeout} s"
                )
            time.sleep(0.05)
