"""The dlib backend: detection, templates, distances, and how it is chosen by name."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import sample_faces as faces

from hcmiddleware.errors import FaceBackendError, FaceTemplateError
from hcmiddleware.face import backend as backend_module
from hcmiddleware.face import dlib_backend
from hcmiddleware.face.backend import (
    BACKEND_ENTRY_POINT_GROUP,
    FaceBackend,
    FaceBox,
    as_template,
    load_backend,
)
from hcmiddleware.face.dlib_backend import DlibBackend


def test_dlib_backend_satisfies_the_protocol(backend: DlibBackend) -> None:
    assert isinstance(backend, FaceBackend)
    assert backend.name == "dlib"
    assert backend.dimension == 128


def test_load_backend_by_name_builds_the_builtin() -> None:
    assert isinstance(load_backend("dlib"), DlibBackend)


def test_unknown_backend_name_lists_the_known_ones() -> None:
    with pytest.raises(FaceBackendError) as info:
        load_backend("no-such-backend")
    assert info.value.backend == "no-such-backend"
    assert "dlib" in info.value.hint


def test_detects_one_face_per_portrait(backend: DlibBackend, people: dict[str, np.ndarray]) -> None:
    for name, img in people.items():
        boxes = backend.detect(img)
        assert len(boxes) == 1, name
        box = boxes[0]
        assert 0 <= box.left < box.right <= img.shape[1]
        assert 0 <= box.top < box.bottom <= img.shape[0]


def test_small_images_are_upsampled_large_ones_not(backend: DlibBackend) -> None:
    assert backend.upsample_for(np.zeros((125, 100, 3), np.uint8)) == 2
    assert backend.upsample_for(np.zeros((200, 240, 3), np.uint8)) == 1
    assert backend.upsample_for(np.zeros((480, 640, 3), np.uint8)) == 0
    assert DlibBackend(upsample=1).upsample_for(np.zeros((480, 640, 3), np.uint8)) == 1


def test_card_sized_face_is_found_thanks_to_upsampling(people: dict[str, np.ndarray]) -> None:
    card = faces.card_size(people["hopper"])
    assert DlibBackend(upsample=0).detect(card) == []
    assert len(DlibBackend().detect(card)) == 1


def test_templates_are_unit_float32_and_distances_symmetric(
    backend: DlibBackend, people: dict[str, np.ndarray]
) -> None:
    a_img, b_img = people["astronaut"], people["hopper"]
    a = backend.encode(a_img, backend.detect(a_img)[0])
    b = backend.encode(b_img, backend.detect(b_img)[0])
    assert a.dtype == np.float32
    assert a.shape == (128,)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert backend.compare(a, a) == pytest.approx(0.0, abs=1e-6)
    assert backend.compare(a, b) == pytest.approx(backend.compare(b, a))
    assert 0.0 < backend.compare(a, b) <= 2.0


def test_encoding_is_deterministic(backend: DlibBackend, people: dict[str, np.ndarray]) -> None:
    img = people["hanks"]
    box = backend.detect(img)[0]
    assert np.array_equal(backend.encode(img, box), backend.encode(img, box))


def test_facebox_size_is_the_short_side() -> None:
    box = FaceBox(top=10, right=60, bottom=80, left=20)
    assert (box.width, box.height, box.size) == (40, 70, 40)


@pytest.mark.parametrize(
    ("vector", "why"),
    [(np.zeros(128), "zero"), (np.full(128, np.nan), "not finite"), (np.ones(127), "127 values")],
)
def test_broken_templates_are_refused(vector: np.ndarray, why: str) -> None:
    with pytest.raises(FaceTemplateError, match=why):
        as_template(vector, dimension=128)


def test_missing_library_is_a_clear_error_with_the_install_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the next import of that name fail as if not installed.
    monkeypatch.setattr(dlib_backend, "_module", None)
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(FaceBackendError) as info:
        DlibBackend().detect(np.zeros((64, 64, 3), np.uint8))
    assert info.value.backend == "dlib"
    assert "--no-deps face_recognition" in info.value.hint


def test_library_quitting_on_import_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # face_recognition calls quit() when its models package fails to import (e.g.
    # setuptools>=81 without pkg_resources); that must not end the process.
    def quits(name: str) -> types.ModuleType:
        raise SystemExit(None)

    monkeypatch.setattr(dlib_backend, "_module", None)
    monkeypatch.setattr(dlib_backend.importlib, "import_module", quits)
    with pytest.raises(FaceBackendError, match="not installed"):
        DlibBackend().detect(np.zeros((64, 64, 3), np.uint8))


def test_importing_the_backend_keeps_truncated_images_refused(backend: DlibBackend) -> None:
    from PIL import ImageFile

    backend.detect(np.zeros((64, 64, 3), np.uint8))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


class _ShiftedBackend(DlibBackend):
    """A third-party backend as a plugin would ship it (here: dlib under a new name)."""

    @property
    def name(self) -> str:
        return "shifted"


def _good_factory() -> DlibBackend:
    return _ShiftedBackend()


def _not_a_backend() -> object:
    return object()


def _raises_on_build() -> DlibBackend:
    raise RuntimeError("licence server unreachable")


@pytest.fixture
def plugin_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        EntryPoint(name=name, value=f"{__name__}:{attr}", group=BACKEND_ENTRY_POINT_GROUP)
        for name, attr in (
            ("shifted", "_good_factory"),
            ("broken", "_not_a_backend"),
            ("failing", "_raises_on_build"),
        )
    ]

    def fake_entry_points(*, group: str, name: str | None = None) -> list[EntryPoint]:
        return [ep for ep in eps if ep.group == group and (name is None or ep.name == name)]

    monkeypatch.setattr(backend_module, "entry_points", fake_entry_points)


@pytest.mark.usefixtures("plugin_entry_points")
def test_backend_from_an_entry_point() -> None:
    assert load_backend("shifted").name == "shifted"


@pytest.mark.usefixtures("plugin_entry_points")
def test_entry_point_returning_something_else_is_refused() -> None:
    with pytest.raises(FaceBackendError, match="does not implement") as info:
        load_backend("broken")
    assert info.value.backend == "broken"


@pytest.mark.usefixtures("plugin_entry_points")
def test_entry_point_failing_to_build_is_a_backend_error() -> None:
    with pytest.raises(FaceBackendError, match="RuntimeError") as info:
        load_backend("failing")
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.usefixtures("plugin_entry_points")
def test_unknown_name_lists_plugins_too() -> None:
    with pytest.raises(FaceBackendError) as info:
        load_backend("nope")
    assert "dlib" in info.value.hint
    assert "shifted" in info.value.hint
