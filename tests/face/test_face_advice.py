"""Advice for the person at the kiosk when a live photo is unusable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sample_faces as faces
from PIL import Image, ImageFilter

from hcmiddleware.errors import NoFaceError, UnreadableImageError
from hcmiddleware.face.advice import ADVICE, advice_for, measure_photo
from hcmiddleware.face.backend import FaceBox
from hcmiddleware.face.dlib_backend import DlibBackend
from hcmiddleware.face.kiosk_set import build_kiosk_set, load_people
from hcmiddleware.face.quality import check_photo
from hcmiddleware.face.settings import FaceSettings
from hcmiddleware.face.verify import FaceService


def test_every_advice_has_chinese_and_english() -> None:
    assert {"move_closer", "more_light", "hold_still", "face_camera"} <= set(ADVICE)
    for code, advice in ADVICE.items():
        assert advice.code == code
        assert advice.en
        assert advice.zh
        assert any("\u4e00" <= ch <= "\u9fff" for ch in advice.zh)


@pytest.fixture(scope="module")
def face_region() -> tuple[np.ndarray, FaceBox]:
    """A clean portrait and where its face is."""
    img = load_people()["t1_2"]
    return img, FaceBox(top=54, right=135, bottom=158, left=31)


def _advice(img: np.ndarray, box: FaceBox | None, keypoints: tuple = ()) -> str:
    return advice_for("no_face", "live", measure_photo(img, box, keypoints)).code


def test_clean_face_measures_in_range(face_region: tuple[np.ndarray, FaceBox]) -> None:
    img, box = face_region
    m = measure_photo(img, box)
    assert m.brightness > 70
    assert m.contrast > 60
    assert m.sharpness is not None
    assert m.sharpness > 3.0
    assert m.face_px == box.size


def test_dark_photo_asks_for_more_light(face_region: tuple[np.ndarray, FaceBox]) -> None:
    img, box = face_region
    assert _advice((img * 0.25).astype(np.uint8), box) == "more_light"


def test_washed_out_photo_asks_for_more_light(face_region: tuple[np.ndarray, FaceBox]) -> None:
    img, box = face_region
    flat = ((img.astype(np.float32) - 128) * 0.3 + 150).astype(np.uint8)
    assert _advice(flat, box) == "more_light"


def test_blurred_photo_asks_to_hold_still(face_region: tuple[np.ndarray, FaceBox]) -> None:
    img, box = face_region
    blurred = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(3)))
    assert _advice(blurred, box) == "hold_still"


def test_tilted_or_turned_head_asks_to_face_the_camera(
    face_region: tuple[np.ndarray, FaceBox],
) -> None:
    img, box = face_region
    # eyes 40 px apart: one 14 px higher (≈19° tilt), or the nose far to one side; the
    # face is 104 px, large enough not to be told to come closer first
    tilted = ((60.0, 90.0), (100.0, 76.0), (80.0, 110.0))
    turned = ((60.0, 90.0), (100.0, 90.0), (98.0, 110.0))
    upright = ((60.0, 90.0), (100.0, 90.0), (81.0, 110.0))
    assert _advice(img, box, tilted) == "face_camera"
    assert _advice(img, box, turned) == "face_camera"
    assert measure_photo(img, box, upright).roll_degrees == pytest.approx(0.0)
    assert measure_photo(img, box, tilted).roll_degrees == pytest.approx(-19.3, abs=0.2)


def test_gate_specific_advice() -> None:
    assert advice_for("face_too_small", "live").code == "move_closer"
    assert advice_for("multiple_faces", "live").code == "one_person"
    assert advice_for("unreadable", "live").code == "retake"
    # the card's photo cannot be retaken at the kiosk
    assert advice_for("no_face", "reference").code == "see_staff"


def test_dark_frame_without_a_face_found_says_more_light(
    backend: DlibBackend, settings: FaceSettings
) -> None:
    dark = np.full((480, 640, 3), 12, np.uint8)
    with pytest.raises(NoFaceError) as info:
        check_photo(faces.to_jpeg(dark), backend, settings, role="live")
    assert info.value.advice is not None
    assert info.value.advice["code"] == "more_light"
    assert info.value.details()["advice"]["code"] == "more_light"


def test_unreadable_photo_says_retake(backend: DlibBackend, settings: FaceSettings) -> None:
    with pytest.raises(UnreadableImageError) as info:
        check_photo(b"not a photo", backend, settings, role="live")
    assert info.value.advice == ADVICE["retake"].model_dump()


def test_verification_answer_carries_the_advice_in_both_languages(
    backend: DlibBackend,
) -> None:
    kiosk = build_kiosk_set(people=["hanks"], sizes=(110,), conditions=("clean",))
    # A site asking for larger faces than this frame holds.
    service = FaceService(FaceSettings(min_face_px=150), backend=backend)
    answer = service.verify(kiosk.live[0].data, kiosk.cards["hanks"])
    assert answer.status == "unusable"
    assert answer.reason == "face_too_small"
    assert answer.advice is not None
    assert answer.advice.code == "move_closer"
    data = json.loads(answer.model_dump_json())
    assert data["advice"]["zh"] == ADVICE["move_closer"].zh
    assert data["advice"]["en"] == ADVICE["move_closer"].en


def test_small_guessed_face_asks_to_come_closer(
    face_region: tuple[np.ndarray, FaceBox],
) -> None:
    img, _box = face_region
    small = np.asarray(Image.fromarray(img).resize((img.shape[1] // 2, img.shape[0] // 2)))
    box = FaceBox(top=27, right=67, bottom=79, left=15)  # the face, halved: 52 px
    assert _advice(small, box) == "move_closer"


def test_without_a_guess_the_middle_is_measured_and_blur_is_not_judged(
    face_region: tuple[np.ndarray, FaceBox],
) -> None:
    img, _box = face_region
    m = measure_photo(img)
    assert m.sharpness is None
    assert m.face_px is None
    assert advice_for("no_face", "live", m).code == "face_camera"
