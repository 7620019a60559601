"""Fixtures for the face tests: one backend per session, real faces, cached templates."""

from __future__ import annotations

import numpy as np
import pytest
import sample_faces as faces

from hcmiddleware.face.dlib_backend import DlibBackend
from hcmiddleware.face.settings import FaceSettings


@pytest.fixture(scope="session")
def backend() -> DlibBackend:
    """The default backend, shared: loading dlib's models takes about a second."""
    return DlibBackend()


@pytest.fixture(scope="session")
def settings() -> FaceSettings:
    """The shipped defaults: tests check the thresholds an operator gets."""
    return FaceSettings()


@pytest.fixture(scope="session")
def people() -> dict[str, np.ndarray]:
    """One RGB portrait per person (see tests/face/faces.py for where each comes from)."""
    return faces.load_people()
