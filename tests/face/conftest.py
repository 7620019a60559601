"""Fixtures for the face tests: one backend per test run, real faces, cached templates."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import sample_faces as faces

from hcmiddleware.face.backend import Template
from hcmiddleware.face.dlib_backend import DlibBackend
from hcmiddleware.face.settings import FaceSettings
from hcmiddleware.face.verify import FaceService


@pytest.fixture(scope="session")
def backend() -> DlibBackend:
    """The default backend, shared: loading dlib's models takes about a second."""
    return DlibBackend()


@pytest.fixture(scope="session")
def settings() -> FaceSettings:
    """The shipped defaults: tests check the thresholds an operator gets."""
    return FaceSettings()


@pytest.fixture(scope="session")
def service(backend: DlibBackend, settings: FaceSettings) -> FaceService:
    """A FaceService on the shared backend with default settings."""
    return FaceService(settings, backend=backend)


@pytest.fixture(scope="session")
def people() -> dict[str, np.ndarray]:
    """One RGB portrait per person (see tests/face/faces.py for where each comes from)."""
    return faces.load_people()


@pytest.fixture(scope="session")
def encode_cached(service: FaceService) -> Callable[[str, bytes], Template]:
    """Encode a photo once per test run under a key; tests share the slow part."""
    cache: dict[str, Template] = {}

    def encode(key: str, photo: bytes) -> Template:
        if key not in cache:
            cache[key] = service.encode(photo)
        return cache[key]

    return encode
