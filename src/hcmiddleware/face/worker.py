"""A warm helper process that checks and encodes the reference photo of a 1:1 check
while this process checks and encodes the live photo.

dlib's encoder holds Python's global interpreter lock for its whole run (~80 ms), so
two encodings in two threads take as long as one after the other; in two processes
they run on two cores. :class:`ReferenceWorker` keeps one such process, started in the
background (``python -m hcmiddleware.face.worker``: a fresh interpreter, so nothing of
the calling program is imported or run again) and kept loaded, with the dlib models
and BlazeFace ready.

A job carries the photo, the :class:`~hcmiddleware.face.settings.FaceSettings` and the
dlib backend's parameters, and the process runs the same cascade and gates as this one
(:func:`~hcmiddleware.face.quality.check_photo`), so its answers are the same: a
template and the tier that found the face, or the same typed
:class:`~hcmiddleware.errors.UnusablePhotoError`. While the process is starting, busy
with another thread's check, or gone, :meth:`ReferenceWorker.submit` answers None and
the caller checks the reference itself. A process that stops or does not answer in
``timeout`` seconds during a job is a :class:`~hcmiddleware.errors.FaceBackendError`
for that check (never a hang); it is started again for the next one.

Messages are length-prefixed pickles on the process's own stdin and stdout: both ends
are this module, in the same installation.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from hcmiddleware import errors
from hcmiddleware.errors import FaceBackendError, HcmError
from hcmiddleware.face.backend import Template
from hcmiddleware.face.settings import FaceSettings

__all__ = ["ReferenceWorker", "shared_worker"]

_log = logging.getLogger(__name__)
_HEADER = struct.Struct(">I")
# A worker that stops before it is ready this many times in a row is not started again.
_MAX_FAILED_STARTS = 3

#: the dlib backend's parameters: (upsample, small_image_side, jitters)
BackendSpec = tuple[int | None, int, int]


def _send(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    """The next message, or None at the end of the stream."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)  # noqa: S301 - our own process, on its private pipe


def _rebuild(name: str, message: str, state: dict[str, Any]) -> HcmError:
    """An error the worker raised, as the same class with the same fields (a class
    this module does not know becomes a FaceBackendError saying what it was)."""
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, HcmError)):
        return FaceBackendError(
            f"the face worker failed: {name}: {message}",
            backend="dlib",
            hint=str(state.get("hint") or "") or None,
        )
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


@dataclass
class _Job:
    """A job sent to the worker; ``reply`` is set by the reader thread."""

    number: int
    done: threading.Event = field(default_factory=threading.Event)
    reply: Any = None


class PendingReference:
    """The reference photo's check running in the worker; :meth:`result` waits for it."""

    def __init__(self, worker: ReferenceWorker, job: _Job, timeout: float) -> None:
        self._worker = worker
        self._job = job
        self._timeout = timeout

    def result(self) -> tuple[Template, str]:
        """The reference's template and the tier that found its face.

        :raises UnusablePhotoError: the reference photo failed a gate (the same error,
            with the same fields, the check in this process gives); any other
            :class:`~hcmiddleware.errors.HcmError` the check raised likewise.
        :raises FaceBackendError: the worker stopped, failed or did not answer in time.
        """
        late = not self._job.done.wait(self._timeout)
        if late:
            self._worker._abandon(self._job)
        reply = self._job.reply if self._job.done.is_set() else None
        if reply is None or (late and reply[0] == "stopped"):
            raise FaceBackendError(
                f"the face worker did not answer within {self._timeout:g} s",
                backend="dlib",
                hint="take the photo again (the worker is restarted); if it recurs, set "
                "[face] reference_worker = false and report it",
            )
        kind = reply[0]
        self._worker.last_cpu = reply[-1]
        if kind == "ok":
            # The encoder's unit vector, bit for bit: not normalised a second time.
            template: Template = np.frombuffer(reply[2], dtype=np.float32).copy()
            return template, reply[3]
        if kind == "raised":
            raise _rebuild(reply[2], reply[3], reply[4])
        if kind == "stopped":
            raise FaceBackendError(
                f"the face worker process stopped while checking the reference photo "
                f"(exit code {reply[1]})",
                backend="dlib",
                hint="take the photo again (the worker is restarted); if it recurs, set "
                "[face] reference_worker = false and report it",
            )
        raise FaceBackendError(
            f"the face worker failed: {reply[2]}",
            backend="dlib",
            hint="take the photo again; if it recurs, set [face] reference_worker = false "
            "and report it",
        )


class ReferenceWorker:
    """One warm helper process for reference photos (see the module's docstring).

    Safe to share between threads: one job at a time; a thread that finds it busy is
    told to do the work itself.
    """

    def __init__(self, *, command: Sequence[str] | None = None) -> None:
        """``command`` starts the process (default: this Python, ``-m
        hcmiddleware.face.worker``)."""
        #: the worker's CPU seconds for the last job it answered (for benchmarks)
        self.last_cpu = 0.0
        #: how many jobs it answered
        self.answered = 0
        self._command = list(command or [sys.executable, "-m", "hcmiddleware.face.worker"])
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = 0  # the process that started the worker (a fork must not use it)
        self._ready = threading.Event()
        self._job: _Job | None = None
        self._numbers = 0
        self._failed_starts = 0
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)

    @property
    def ready(self) -> bool:
        """The process is up, its models loaded."""
        return self._ready.is_set() and self._pid == os.getpid()

    def start(self) -> None:
        """Start the process in the background, unless it runs or gave up."""
        with self._lock:
            self._start_locked()

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Start the process if needed and wait until it is ready; False on timeout or
        when it cannot start."""
        self.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready:
                return True
            with self._lock:
                if self._proc is None and self._failed_starts >= _MAX_FAILED_STARTS:
                    return False
                if self._proc is None:
                    self._start_locked()
            self._ready.wait(0.05)
        return self.ready

    def _start_locked(self) -> None:
        if self._pid != os.getpid():
            # A forked copy of the object: the process and its pipes belong to the parent.
            self._proc, self._job = None, None
            self._ready = threading.Event()
        if self._proc is not None or self._failed_starts >= _MAX_FAILED_STARTS:
            return
        env = dict(os.environ)
        # The same hcmiddleware as this process, wherever it was imported from.
        here = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own module, or the caller's command
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            self._failed_starts = _MAX_FAILED_STARTS
            _log.warning("face worker not started (%s): checks run in this process", exc)
            return
        self._proc, self._pid = proc, os.getpid()
        self._ready = threading.Event()
        threading.Thread(
            target=self._read, args=(proc, self._ready), name="hcm-face-worker", daemon=True
        ).start()
        threading.Thread(
            target=self._drain, args=(proc,), name="hcm-face-worker-stderr", daemon=True
        ).start()

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    def _read(self, proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
        """Deliver the worker's replies; on its end, fail the job it had."""
        assert proc.stdout is not None
        while True:
            try:
                message = _receive(proc.stdout)
            except (OSError, pickle.UnpicklingError, EOFError):
                message = None
            if message is None:
                break
            if message[0] == "ready":
                with self._lock:
                    self._failed_starts = 0
                ready.set()
                continue
            with self._lock:
                job = self._job
                if job is not None and job.number == message[1]:
                    self._job = None
                    self.answered += 1
                    job.reply = message
                    job.done.set()
        code = proc.wait()
        with self._lock:
            unexpected = self._proc is proc
            job = None
            if unexpected:
                if not ready.is_set():
                    self._failed_starts += 1
                self._proc = None
                self._ready = threading.Event()
                job, self._job = self._job, None
        if job is not None:
            job.reply = ("stopped", code, 0.0)
            job.done.set()
        if unexpected:
            _log.warning(
                "face worker stopped (exit code %s)%s",
                code,
                "; its last output: " + " | ".join(self._stderr) if self._stderr else "",
            )

    def submit(
        self, photo: bytes, settings: FaceSettings, backend: BackendSpec
    ) -> PendingReference | None:
        """Send the reference photo's check to the worker; None when the caller should
        do it itself (the worker is starting, busy or gone: it is started again). The
        answer is waited for at most ``settings.worker_timeout`` seconds."""
        with self._lock:
            if self._pid != os.getpid() or self._proc is None:
                self._start_locked()
                return None
            if not self._ready.is_set() or self._job is not None:
                return None
            self._numbers += 1
            job = _Job(self._numbers)
            proc = self._proc
            assert proc.stdin is not None
            try:
                _send(proc.stdin, ("check", job.number, photo, settings, backend))
            except (OSError, ValueError):
                return None  # it just stopped: the reader thread notices
            self._job = job
        return PendingReference(self, job, settings.worker_timeout)

    def _abandon(self, job: _Job) -> None:
        """A job that took too long: the process is stopped (and started again later)."""
        with self._lock:
            if self._job is not job or self._proc is None:
                return
            proc = self._proc
        proc.kill()

    def close(self) -> None:
        """Stop the process (it also stops by itself when this process ends)."""
        with self._lock:
            proc, self._proc = self._proc, None
            ready = self._ready.is_set()
            self._ready = threading.Event()
            self._failed_starts = _MAX_FAILED_STARTS  # closed: not started again
        if proc is None or self._pid != os.getpid():
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()  # a ready worker ends at the end of its input
            proc.wait(timeout=0.5 if ready else 0.0)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int | None:
        """The worker process's id, when it runs."""
        proc = self._proc
        return proc.pid if proc is not None else None


_shared: ReferenceWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> ReferenceWorker:
    """The process-wide worker every FaceService with ``reference_worker`` uses (one
    process: the machine has few cores, and a kiosk checks one person at a time)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ReferenceWorker()
            atexit.register(_shared.close)
        return _shared


# --- the worker process ------------------------------------------------------------


def _serve(inp: IO[bytes], out: IO[bytes]) -> None:
    from hcmiddleware.face.detectors import load_fallback
    from hcmiddleware.face.dlib_backend import DlibBackend, _face_recognition
    from hcmiddleware.face.quality import check_photo

    _face_recognition()  # the models load now, not during the first check
    with contextlib.suppress(FaceBackendError):
        # a missing model is reported by the check that needs it, as in the caller
        load_fallback("blazeface")
    backends: dict[BackendSpec, DlibBackend] = {}
    _send(out, ("ready", os.getpid()))
    while True:
        message = _receive(inp)
        if message is None or message[0] != "check":
            return
        _, number, photo, settings, spec = message
        started = time.thread_time()
        try:
            backend = backends.get(spec)
            if backend is None:
                upsample, small_side, jitters = spec
                backend = backends[spec] = DlibBackend(
                    upsample=upsample, small_image_side=small_side, jitters=jitters
                )
            face = check_photo(photo, backend, settings, role="reference")
            template = backend.encode(face.photo.image, face.box)
            reply: tuple[Any, ...] = (
                "ok",
                number,
                np.asarray(template, np.float32).tobytes(),
                face.detector,
            )
        except HcmError as exc:  # an unusable photo, a missing detector model, ...
            reply = ("raised", number, type(exc).__name__, exc.message, dict(vars(exc)))
        except Exception as exc:  # every failure goes back as an answer
            reply = ("error", number, f"{type(exc).__name__}: {exc}")
        _send(out, (*reply, time.thread_time() - started))


def _main() -> None:
    # Ctrl-C at a terminal reaches the whole process group: the caller decides what it
    # means, and the helper ends when the caller does (its input ends).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol has stdout to itself: anything a library prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    _main()
