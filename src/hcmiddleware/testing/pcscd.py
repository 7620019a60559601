"""A private pcscd with two vpcd readers, for tests and demos.

pcscd's socket is fixed (``/run/pcscd/pcscd.comm``), so there is one pcscd per machine:
:class:`Pcscd` reuses one that already runs with the vpcd readers, otherwise starts its
own (``pcscd --foreground -c DIR``) with a reader config in a private folder, and stops
only what it started. The two readers are ``Virtual PCD 00 00`` (user card) and
``Virtual PCD 00 01`` (SAM): the two slots of a real terminal.

vpcd's usual ports (35963 and 35964) lie inside Linux's ephemeral range (32768–60999):
any outgoing connection on the machine (a database pool, an HTTP client) may be given
one of them as its local port, and vpcd then cannot listen there ("Address already in
use"). A private pcscd therefore listens on a free pair of ports *outside* the ephemeral
range, tries the next pair if vpcd still cannot bind, and says which in
:attr:`Pcscd.user_port` and :attr:`Pcscd.sam_port`; cards are served there. A reused
pcscd is assumed to have vpcd's usual ports.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from hcmiddleware.card.vpcd import DEFAULT_PORT
from hcmiddleware.errors import ReaderError

__all__ = ["PRIVATE_PORT", "SAM_READER", "USER_READER", "VPCD_DRIVER", "Pcscd"]

USER_READER = "Virtual PCD 00 00"
SAM_READER = "Virtual PCD 00 01"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
# The driver serves reader 0 on CHANNELID and reader 1 on the next port.
_CONFIG = """FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x{port:04X}
LIBPATH      {driver}
CHANNELID    0x{port:04X}
"""
#: Where a private pcscd looks first for a free pair of ports when vpcd's usual ones are
#: inside the ephemeral range.
PRIVATE_PORT = 25963
_PORT_TRIES = 4
_ADDRESS_IN_USE = "Address already in use"


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux default if unknown)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    """True when a listening socket could be bound to ``port`` now (as vpcd binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - vpcd binds INADDR_ANY too
        except OSError:
            return False
    return True


def _channel_id(folder: Path) -> int | None:
    """The vpcd CHANNELID (its first port) in a pcscd reader-config folder, if any."""
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
            lines = [line.split(None, 1) for line in path.read_text().splitlines()]
            fields = {f[0].upper(): f[1].strip() for f in lines if len(f) == 2}
            if "vpcd" in fields.get("LIBPATH", "") and "CHANNELID" in fields:
                return int(fields["CHANNELID"], 0)
    return None


def _running_vpcd_port() -> int:
    """The user-card port of the pcscd that runs (read from its reader config)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
            if not args or Path(args[0]).name != "pcscd":
                continue
            folder = Path("/etc/reader.conf.d")
            for flag, value in itertools.pairwise(args):
                if flag in ("-c", "--config"):
                    folder = Path(value)
            port = _channel_id(folder)
            if port is not None:
                return port
    return DEFAULT_PORT


def _port_pairs() -> Iterator[int]:
    """First ports of pairs vpcd could listen on, best first, skipping busy ones."""
    low, high = _ephemeral_range()

    def outside(port: int) -> bool:
        return port + 1 < low or port > high

    first = DEFAULT_PORT if outside(DEFAULT_PORT) else PRIVATE_PORT
    for port in range(first, 65534, 2):
        if outside(port) and _bindable(port) and _bindable(port + 1):
            yield port


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
        #: vpcd's port of the user-card reader (serve cards there); the SAM's is the next.
        self.user_port = DEFAULT_PORT

    @property
    def sam_port(self) -> int:
        """vpcd's port of the SAM reader (``Virtual PCD 00 01``)."""
        return self.user_port + 1

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
            self.user_port = _running_vpcd_port()
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
        if not self.vpcd:
            self._launch(binary, None)
            self._wait_up(self.running)
            return self
        for attempt, port in enumerate(itertools.islice(_port_pairs(), _PORT_TRIES), start=1):
            self.user_port = port
            self._launch(binary, port)
            try:
                self._wait_up(lambda: USER_READER in self.readers())
            except ReaderError as exc:
                # something took the port between the probe and vpcd's bind: next pair
                if _ADDRESS_IN_USE not in str(exc) or attempt == _PORT_TRIES:
                    raise
                continue
            return self
        raise ReaderError(
            "no free pair of TCP ports outside the ephemeral range for vpcd",
            hint="free a port pair above 1024 (see /proc/sys/net/ipv4/ip_local_port_range)",
        )

    def _launch(self, binary: str, port: int | None) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="hcm-pcscd-"))
        conf = self._dir / "reader.conf.d"
        conf.mkdir()
        if port is not None:
            (conf / "vpcd").write_text(
                _CONFIG.format(port=port, driver=VPCD_DRIVER), encoding="ascii"
            )
        self.log_path = self._dir / "pcscd.log"
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [binary, "--foreground", "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # its own session: a Ctrl-C at the terminal reaches the program that
                # started it, which stops it in order, not pcscd mid-transaction
                start_new_session=True,
            )
        self.started = True

    def _wait_up(self, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()``; on failure stop the daemon and raise with its log."""
        assert self._process is not None
        assert self.log_path is not None
        deadline = time.monotonic() + self.startup_timeout
        while not ready():
            text = self.log_path.read_text(errors="replace")[-2000:]
            if (
                self._process.poll() is not None
                or time.monotonic() > deadline
                or _ADDRESS_IN_USE in text
            ):
                self.stop()
                raise ReaderError(
                    f"pcscd did not come up as asked; its log ends: {text}",
                    hint="another pcscd may hold /run/pcscd; stop it and retry",
                )
            time.sleep(0.1)

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
