"""The [face] config section: defaults, bounds, unknown keys."""

from __future__ import annotations

import pydantic
import pytest

from hcmiddleware.face.settings import FaceSettings, FaceThresholds


def test_defaults_are_strict_to_loose_in_the_right_order() -> None:
    t = FaceSettings().thresholds
    # 1:1 against an enrolled template (taken at the counter) is the strictest; the
    # 1:N duplicate search is the loosest, because a hit there goes to review.
    assert t.enrolled <= t.card_photo <= t.duplicate
    assert t.for_source("card_photo") == t.card_photo
    assert t.for_source("enrolled") == t.enrolled


def test_read_from_a_config_mapping() -> None:
    s = FaceSettings.model_validate(
        {
            "backend": "dlib",
            "min_face_px": 48,
            "gallery_engine": "faiss-sq8",
            "thresholds": {"card_photo": 0.3},
        }
    )
    assert s.thresholds.card_photo == 0.3
    assert s.thresholds.enrolled == FaceThresholds().enrolled
    assert s.gallery_engine == "faiss-sq8"


@pytest.mark.parametrize(
    "bad",
    [
        {"thresholds": {"card_photo": 0}},
        {"thresholds": {"enrolled": 2.5}},
        {"thresholds": {"card": 0.3}},
        {"min_face_px": 2},
        {"max_image_side": 10},
        {"gallery_engine": "annoy"},
        {"backend": ""},
        {"treshold": 0.3},
    ],
)
def test_bad_values_and_unknown_keys_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        FaceSettings.model_validate(bad)


def test_frozen_after_startup() -> None:
    s = FaceSettings()
    with pytest.raises(pydantic.ValidationError):
        s.min_face_px = 10  # type: ignore[misc]
