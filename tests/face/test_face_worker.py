"""The reference photo checked in a helper process while the live photo is checked here.

One real worker process for the module (it loads dlib's models: a few seconds); the
ways a worker can fail are played by tests/face/fake_worker.py, which speaks the same
protocol and starts in a moment.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hcmiddleware.errors import FaceBackendError, MultipleFacesError
from hcmiddleware.face.dlib_backend import DlibBackend
from hcmiddleware.face.kiosk_set import KioskSet, build_kiosk_set, group_photo
from hcmiddleware.face.settings import FaceSettings
from hcmiddleware.face.verify import FaceService, FaceVerification
from hcmiddleware.face.worker import ReferenceWorker

FAKE = str(Path(__file__).with_name("fake_worker.py"))


@pytest.fixture(scope="module")
def worker() -> Iterator[ReferenceWorker]:
    helper = ReferenceWorker()
    assert helper.wait_ready(180), "the face worker did not start"
    yield helper
    helper.close()


@pytest.fixture(scope="module")
def kiosk() -> KioskSet:
    return build_kiosk_set(people=["astronaut", "t1_2", "t1_4"], sizes=(52,), conditions=("clean",))


def _in_turn(backend: DlibBackend) -> FaceService:
    return FaceService(FaceSettings(reference_worker=False), backend=backend, reference_cache=0)


def _fake(mode: str) -> ReferenceWorker:
    return ReferenceWorker(command=[sys.executable, FAKE, mode])


def test_the_worker_gives_the_answers_checks_in_turn_give(
    worker: ReferenceWorker, kiosk: KioskSet, backend: DlibBackend
) -> None:
    parallel = FaceService(backend=backend, reference_cache=0, worker=worker)
    in_turn = _in_turn(backend)
    frame = next(p for p in kiosk.live if p.person == "t1_2").data
    pairs = [
        (frame, kiosk.cards["t1_2"]),  # the same person: match
        (frame, kiosk.cards["astronaut"]),  # another: no match
        (frame, kiosk.cards["t1_4"]),  # a faded card photo: found by the fallback
        (frame, group_photo()),  # several faces in the reference
        (frame, kiosk.cards["t1_2"][:900]),  # a truncated reference
        (b"not a photo", kiosk.cards["t1_2"]),  # the live photo fails first
    ]
    before = worker.answered
    answers: list[FaceVerification] = []
    for live, reference in pairs:
        answer = parallel.verify(live, reference)
        assert answer == in_turn.verify(live, reference)
        answers.append(answer)
    assert [a.status for a in answers] == [
        "match",
        "no_match",
        "no_match",
        "unusable",
        "unusable",
        "unusable",
    ]
    assert answers[2].reference_detector == "blazeface"
    assert (answers[3].photo, answers[3].reason) == ("reference", "multiple_faces")
    assert (answers[4].photo, answers[4].reason) == ("reference", "unreadable")
    assert answers[5].photo == "live"
    # The five checks whose live photo was usable waited for the worker's answer; the
    # sixth sent one too (the reference goes out before the live photo is looked at).
    deadline = time.monotonic() + 30
    while worker.answered < before + 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.answered == before + 6


def test_the_workers_unusable_photo_error_keeps_its_fields(
    worker: ReferenceWorker, settings: FaceSettings, backend: DlibBackend
) -> None:
    pending = worker.submit(group_photo(), settings, backend.parameters)
    assert pending is not None
    with pytest.raises(MultipleFacesError) as info:
        pending.result()
    assert info.value.photo == "reference"
    assert info.value.count > 1
    assert info.value.advice is not None


def test_ctrl_c_at_the_terminal_leaves_the_worker_to_its_caller(
    worker: ReferenceWorker, settings: FaceSettings, kiosk: KioskSet, backend: DlibBackend
) -> None:
    pid = worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)  # what Ctrl-C sends to the caller's process group
    pending = worker.submit(kiosk.cards["t1_2"], settings, backend.parameters)
    assert pending is not None
    template, tier = pending.result()
    assert tier == "hog-upsampled"
    assert template.shape == (128,)
    assert worker.pid == pid


def test_a_worker_killed_during_a_check_is_a_typed_error(
    worker: ReferenceWorker, kiosk: KioskSet, backend: DlibBackend
) -> None:
    def kill_the_worker(image: bytes) -> bool:
        # Asked while the worker checks the reference: the worker is killed meanwhile.
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        return True

    killed = worker.pid
    service = FaceService(
        backend=backend, reference_cache=0, worker=worker, liveness=kill_the_worker
    )
    frame = next(p for p in kiosk.live if p.person == "t1_2").data
    started = time.monotonic()
    with pytest.raises(FaceBackendError) as info:
        service.verify(frame, kiosk.cards["t1_2"])
    assert time.monotonic() - started < 20
    assert "stopped" in info.value.message
    assert "reference_worker = false" in info.value.hint
    # The next check does not wait for the worker: it starts it again and checks the
    # reference here meanwhile.
    again = FaceService(backend=backend, reference_cache=0, worker=worker)
    assert again.verify(frame, kiosk.cards["t1_2"]).status == "match"
    assert worker.pid not in (None, killed)


def test_a_worker_that_stops_mid_job_fails_the_check_not_hangs(
    kiosk: KioskSet, backend: DlibBackend
) -> None:
    fake = _fake("die")
    try:
        assert fake.wait_ready(30)
        service = FaceService(backend=backend, reference_cache=0, worker=fake)
        frame = next(p for p in kiosk.live if p.person == "t1_2").data
        with pytest.raises(FaceBackendError, match=r"stopped .* \(exit code 3\)"):
            service.verify(frame, kiosk.cards["t1_2"])
    finally:
        fake.close()


def test_a_worker_that_does_not_answer_in_time_is_stopped(
    kiosk: KioskSet, backend: DlibBackend
) -> None:
    fake = _fake("hang")
    try:
        assert fake.wait_ready(30)
        settings = FaceSettings(worker_timeout=0.5)
        pending = fake.submit(kiosk.cards["t1_2"], settings, backend.parameters)
        assert pending is not None
        # One job at a time: another thread would check its reference itself.
        assert fake.submit(kiosk.cards["t1_2"], settings, backend.parameters) is None
        hung = fake.pid
        started = time.monotonic()
        with pytest.raises(FaceBackendError, match=r"did not answer within 0\.5 s"):
            pending.result()
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 10
        while fake.pid == hung and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.pid != hung  # the stuck process was stopped
    finally:
        fake.close()


def test_a_worker_that_cannot_start_leaves_the_checks_here(
    kiosk: KioskSet, backend: DlibBackend
) -> None:
    fake = _fake("fail")
    try:
        assert not fake.wait_ready(30)
        assert fake.pid is None  # three starts failed: no fourth
        service = FaceService(backend=backend, reference_cache=0, worker=fake)
        frame = next(p for p in kiosk.live if p.person == "t1_2").data
        answer = service.verify(frame, kiosk.cards["t1_2"])
        assert answer == _in_turn(backend).verify(frame, kiosk.cards["t1_2"])
        assert fake.answered == 0
    finally:
        fake.close()


def test_only_the_built_in_backend_and_the_setting_use_a_worker(backend: DlibBackend) -> None:
    class Subclassed(DlibBackend):
        pass

    fake = _fake("fail")
    assert FaceService(backend=backend, worker=fake).worker is fake
    assert FaceService(FaceSettings(reference_worker=False), backend=backend).worker is None
    assert FaceService(backend=Subclassed(), worker=fake).worker is None
    assert fake.pid is None  # building a service starts nothing
