"""1:1 verification on real faces: genuine pairs match, impostor pairs never do."""

from __future__ import annotations

import io
import itertools
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import sample_faces as faces
from PIL import Image

from hcmiddleware.errors import FaceTemplateError
from hcmiddleware.face.backend import FaceBox, Template
from hcmiddleware.face.dlib_backend import DlibBackend
from hcmiddleware.face.settings import FaceSettings, FaceThresholds
from hcmiddleware.face.verify import FaceService

# Every augmentation keeps a detectable face for these people. The two lowest-
# resolution faces of the group photo (t1_4, t1_5) lose it under some (a tight crop,
# a 10° turn): they take part as originals, card photos and impostors.
SHARP = ["astronaut", "hopper", "hanks", "t1_0", "t1_1", "t1_2", "t1_3"]
SOFT = ["t1_4", "t1_5"]
LIVE_VARIANTS = ["orig", *faces.AUGMENTATIONS]


def _live(img: np.ndarray, variant: str) -> bytes:
    return faces.to_jpeg(img if variant == "orig" else faces.AUGMENTATIONS[variant](img))


@pytest.fixture(scope="module")
def live_templates(
    people: dict[str, np.ndarray], encode_cached: Callable[[str, bytes], Template]
) -> dict[tuple[str, str], Template]:
    """Templates of every live variant of every person."""
    out = {}
    for name in SHARP:
        for variant in LIVE_VARIANTS:
            out[name, variant] = encode_cached(f"{name}/{variant}", _live(people[name], variant))
    for name in SOFT:
        out[name, "orig"] = encode_cached(f"{name}/orig", _live(people[name], "orig"))
    return out


@pytest.fixture(scope="module")
def card_templates(
    people: dict[str, np.ndarray], encode_cached: Callable[[str, bytes], Template]
) -> dict[str, Template]:
    """Templates of each person's card photo (~100×125, JPEG quality 60)."""
    return {
        name: encode_cached(f"{name}/card", faces.card_photo(img)) for name, img in people.items()
    }


def test_genuine_pairs_match_at_the_card_photo_threshold(
    live_templates: dict[tuple[str, str], Template],
    card_templates: dict[str, Template],
    backend: DlibBackend,
    settings: FaceSettings,
) -> None:
    threshold = settings.thresholds.card_photo
    misses = [
        (name, variant, round(backend.compare(t, card_templates[name]), 3))
        for (name, variant), t in live_templates.items()
        if backend.compare(t, card_templates[name]) > threshold
    ]
    assert misses == []
    assert len(live_templates) == len(SHARP) * len(LIVE_VARIANTS) + len(SOFT)


def test_no_false_accept_between_different_people(
    live_templates: dict[tuple[str, str], Template],
    card_templates: dict[str, Template],
    backend: DlibBackend,
    settings: FaceSettings,
) -> None:
    loosest = max(
        settings.thresholds.card_photo,
        settings.thresholds.enrolled,
        settings.thresholds.duplicate,
    )
    pairs = 0
    accepts = []
    for (name, variant), live in live_templates.items():
        for other, card in card_templates.items():
            if other != name:
                pairs += 1
                if backend.compare(live, card) <= loosest:
                    accepts.append((name, variant, other))
    for (a, va), (b, vb) in itertools.combinations(live_templates, 2):
        if a != b:
            pairs += 1
            if backend.compare(live_templates[a, va], live_templates[b, vb]) <= loosest:
                accepts.append((a, va, b))
    assert accepts == []
    assert pairs > 1000


def test_verify_end_to_end_match_and_no_match(
    people: dict[str, np.ndarray], service: FaceService, settings: FaceSettings
) -> None:
    card = faces.card_photo(people["hopper"])
    same = service.verify(_live(people["hopper"], "noise"), card)
    assert same.status == "match"
    assert same.matched
    assert same.source == "card_photo"
    assert same.threshold == settings.thresholds.card_photo
    assert same.distance is not None
    assert same.distance <= same.threshold
    other = service.verify(_live(people["astronaut"], "orig"), card)
    assert other.status == "no_match"
    assert not other.matched
    assert other.distance is not None
    assert other.distance > other.threshold
    assert other.backend == "dlib"


def test_card_photo_reference_down_to_card_size(
    people: dict[str, np.ndarray], service: FaceService
) -> None:
    # Reference as small as the card holds, live photo a tilted kiosk frame.
    for name in ("astronaut", "hanks", "t1_2"):
        answer = service.verify(_live(people[name], "rotate"), faces.card_photo(people[name]))
        assert answer.status == "match", (name, answer.distance)


def test_verify_against_an_enrolled_template_uses_its_threshold(
    people: dict[str, np.ndarray], service: FaceService, settings: FaceSettings
) -> None:
    template = service.encode(faces.to_jpeg(people["t1_0"]))
    answer = service.verify_template(_live(people["t1_0"], "dark"), template)
    assert answer.status == "match"
    assert answer.source == "enrolled"
    assert answer.threshold == settings.thresholds.enrolled
    answer = service.verify_template(_live(people["t1_3"], "orig"), template)
    assert answer.status == "no_match"


def test_thresholds_are_per_source(people: dict[str, np.ndarray], backend: DlibBackend) -> None:
    # The same pair, judged under two sources with thresholds either side of its
    # distance, gets two different answers.
    live, card = _live(people["hanks"], "bright"), faces.card_photo(people["hanks"])
    d = FaceService(backend=backend).verify(live, card).distance
    assert d is not None
    split = FaceThresholds(card_photo=d + 0.01, enrolled=d - 0.01)
    svc = FaceService(FaceSettings(thresholds=split), backend=backend)
    template = svc.encode(card)
    assert svc.verify(live, card, source="card_photo").status == "match"
    assert svc.verify_template(live, template, source="enrolled").status == "no_match"


def test_unusable_live_photo_is_an_answer_saying_why(
    people: dict[str, np.ndarray], service: FaceService
) -> None:
    answer = service.verify(b"\x00garbage", faces.card_photo(people["hopper"]))
    assert answer.status == "unusable"
    assert answer.photo == "live"
    assert answer.reason == "unreadable"
    assert answer.distance is None
    assert answer.hint
    assert not answer.matched


def test_unusable_reference_photo_is_named(
    people: dict[str, np.ndarray], service: FaceService
) -> None:
    answer = service.verify(
        _live(people["hopper"], "orig"), faces.to_jpeg(np.zeros((125, 100, 3), np.uint8))
    )
    assert answer.status == "unusable"
    assert answer.photo == "reference"
    assert answer.reason == "no_face"


def test_several_faces_in_the_live_photo(service: FaceService, backend: DlibBackend) -> None:
    full = FaceService(FaceSettings(max_image_side=1280), backend=backend)
    answer = full.verify(faces.group_photo(), faces.group_photo())
    assert answer.status == "unusable"
    assert answer.reason == "multiple_faces"
    assert answer.message is not None
    assert "6 faces" in answer.message


def test_liveness_no_refuses_even_a_perfect_match(
    people: dict[str, np.ndarray], backend: DlibBackend
) -> None:
    seen: list[bytes] = []

    def spoof_detected(image: bytes) -> bool:
        seen.append(image)
        return False

    live = _live(people["hopper"], "orig")
    svc = FaceService(backend=backend, liveness=spoof_detected)
    answer = svc.verify(live, live)
    assert answer.status == "refused"
    assert answer.reason == "not_live"
    assert answer.liveness is False
    assert answer.distance is None
    assert seen == [live]


@pytest.mark.parametrize("verdict", [True, None])
def test_liveness_yes_or_no_opinion_lets_the_check_run(
    verdict: bool | None, people: dict[str, np.ndarray], backend: DlibBackend
) -> None:
    svc = FaceService(backend=backend, liveness=lambda _image: verdict)
    answer = svc.verify(_live(people["hanks"], "orig"), faces.card_photo(people["hanks"]))
    assert answer.status == "match"
    assert answer.liveness is verdict


def test_liveness_is_not_asked_about_an_unusable_photo(backend: DlibBackend) -> None:
    calls: list[bytes] = []
    svc = FaceService(backend=backend, liveness=lambda image: calls.append(image) or True)
    answer = svc.verify(b"", b"")
    assert answer.status == "unusable"
    assert calls == []


def test_liveness_failure_propagates_rather_than_passing(
    people: dict[str, np.ndarray], backend: DlibBackend
) -> None:
    def broken(_image: bytes) -> bool:
        raise ConnectionError("liveness service down")

    svc = FaceService(backend=backend, liveness=broken)
    with pytest.raises(ConnectionError):
        svc.verify(_live(people["hanks"], "orig"), faces.card_photo(people["hanks"]))


def test_wrong_size_template_is_refused(
    people: dict[str, np.ndarray], service: FaceService
) -> None:
    with pytest.raises(FaceTemplateError):
        service.verify_template(_live(people["hanks"], "orig"), np.ones(64, np.float32))


def test_answer_is_plain_json(people: dict[str, np.ndarray], service: FaceService) -> None:
    answer = service.verify(_live(people["hanks"], "orig"), faces.card_photo(people["hanks"]))
    data = json.loads(answer.model_dump_json())
    assert data["status"] == "match"
    assert set(data) >= {"status", "distance", "threshold", "source", "reason", "photo"}


def test_threads_sharing_a_service_get_the_serial_answers(
    people: dict[str, np.ndarray], service: FaceService
) -> None:
    jobs = [
        (_live(people[name], variant), faces.card_photo(people[other]))
        for name, other, variant in [
            ("hopper", "hopper", "dark"),
            ("hanks", "hanks", "noise"),
            ("astronaut", "hopper", "orig"),
            ("t1_1", "t1_1", "crop"),
            ("t1_2", "t1_0", "orig"),
            ("t1_3", "t1_3", "bright"),
        ]
    ]
    serial = [service.verify(live, ref) for live, ref in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda job: service.verify(*job), jobs * 2))
    assert threaded == serial * 2
    assert [a.status for a in serial] == [
        "match",
        "match",
        "no_match",
        "match",
        "no_match",
        "match",
    ]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grey_transparent_and_palette_photos_are_read(
    mode: str, people: dict[str, np.ndarray], service: FaceService
) -> None:
    card = Image.fromarray(faces.card_size(people["hopper"])).convert(mode)
    buf = io.BytesIO()
    card.save(buf, format="PNG")
    answer = service.verify(_live(people["hopper"], "orig"), buf.getvalue())
    assert answer.status == "match", answer


def test_log_says_the_outcome_and_nothing_about_the_person(
    people: dict[str, np.ndarray], service: FaceService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hcmiddleware.face")
    service.verify(_live(people["hanks"], "orig"), faces.card_photo(people["hanks"]))
    service.verify(b"", faces.card_photo(people["hanks"]))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("face 1:1 match: distance ")
    assert messages[1] == "face 1:1 unusable: live photo, unreadable"
    assert all("hanks" not in m for m in messages)


@pytest.mark.parametrize(
    ("returned", "status", "recorded"),
    [
        (np.bool_(True), "match", True),
        (np.bool_(False), "refused", False),
        (1, "match", True),
        (0, "refused", False),
        ("yes", "refused", False),
        (0.97, "refused", False),
    ],
)
def test_odd_liveness_answers_never_become_a_pass(
    returned: object,
    status: str,
    recorded: bool,
    people: dict[str, np.ndarray],
    backend: DlibBackend,
) -> None:
    svc = FaceService(backend=backend, liveness=lambda _image: returned)  # type: ignore[arg-type,return-value]
    answer = svc.verify(_live(people["hanks"], "orig"), faces.card_photo(people["hanks"]))
    assert answer.status == status
    assert answer.liveness is recorded


class _CountingBackend(DlibBackend):
    """The dlib backend, counting encodings."""

    def __init__(self) -> None:
        super().__init__()
        self.encodings = 0

    def encode(self, image: np.ndarray, box: FaceBox) -> Template:  # type: ignore[override]
        self.encodings += 1
        return super().encode(image, box)


def test_a_retake_against_the_same_card_photo_encodes_it_once(
    people: dict[str, np.ndarray],
) -> None:
    counting = _CountingBackend()
    svc = FaceService(backend=counting, reference_cache=2)
    card = faces.card_photo(people["hopper"])
    first = svc.verify(_live(people["hopper"], "dark"), card)
    second = svc.verify(_live(people["hopper"], "bright"), card)
    assert (first.status, second.status) == ("match", "match")
    assert counting.encodings == 3  # two live photos, one card photo
    # Two other cards push it out of the two-entry cache: encoded again.
    svc.verify(_live(people["hanks"], "orig"), faces.card_photo(people["hanks"]))
    svc.verify(_live(people["t1_0"], "orig"), faces.card_photo(people["t1_0"]))
    svc.verify(_live(people["hopper"], "orig"), card)
    assert counting.encodings == 3 + 4 + 2


def test_reference_cache_can_be_switched_off(people: dict[str, np.ndarray]) -> None:
    counting = _CountingBackend()
    svc = FaceService(backend=counting, reference_cache=0)
    card = faces.card_photo(people["hanks"])
    live = _live(people["hanks"], "orig")
    svc.verify(live, card)
    svc.verify(live, card)
    assert counting.encodings == 4
