"""1:1 verification: is the person at the kiosk the cardholder?"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hcmiddleware.errors import FaceError, UnusablePhotoError
from hcmiddleware.face.advice import FaceAdvice
from hcmiddleware.face.backend import FaceBackend, Template, as_template, load_backend
from hcmiddleware.face.dlib_backend import DlibBackend
from hcmiddleware.face.quality import check_photo
from hcmiddleware.face.settings import FaceSettings, ReferenceSource
from hcmiddleware.face.worker import ReferenceWorker, shared_worker

__all__ = ["FaceService", "FaceVerification", "LivenessCheck", "VerificationStatus"]

#: A liveness check on the live photo's bytes: True = a live person, False = not
#: (a print, a screen, a mask), None = no opinion. The runtime wires it to the
#: ``hcm_face_liveness`` hook.
LivenessCheck = Callable[[bytes], "bool | None"]

VerificationStatus = Literal["match", "no_match", "unusable", "refused"]

_log = logging.getLogger(__name__)


class FaceVerification(BaseModel):
    """The answer of a 1:1 check.

    ``status`` is ``match`` or ``no_match`` when both photos were usable (then
    ``distance`` and ``threshold`` are set; a match is ``distance <= threshold``),
    ``unusable`` when a photo failed a quality gate (``photo`` says which, ``reason``
    the gate's code, ``message``/``hint`` what to tell the operator, ``advice`` what
    the person should change, in Chinese and English), and ``refused`` when the
    liveness check said the live photo is not of a live person.

    ``detector`` and ``reference_detector`` name the cascade tier that found the face
    in the live and the reference photo (``hog``, ``hog-upsampled``, ``blazeface``,
    ``cnn``, ``hog-crop``); ``reference_detector`` is None against an enrolled template.
    """

    model_config = ConfigDict(frozen=True)

    status: VerificationStatus
    source: ReferenceSource
    distance: float | None = None
    threshold: float | None = None
    liveness: bool | None = Field(None, description="the liveness check's answer, if asked")
    photo: str | None = Field(None, description="which photo was unusable")
    reason: str | None = Field(None, description="stable code of why it was unusable/refused")
    message: str | None = None
    hint: str | None = None
    advice: FaceAdvice | None = Field(None, description="what the person should change")
    detector: str | None = Field(None, description="tier that found the live face")
    reference_detector: str | None = Field(
        None, description="tier that found the reference photo's face"
    )
    backend: str

    @property
    def matched(self) -> bool:
        """True only for a match; every other status is not a pass."""
        return self.status == "match"


def _liveness_verdict(value: object) -> bool | None:
    """A liveness answer as True/False/None; anything unexpected counts as "not live",
    so a vendor's odd return value can never become a pass."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    _log.warning(
        "face liveness check returned %s, not a bool: treated as not live", type(value).__name__
    )
    return False


class FaceService:
    """Face checks with one backend and one set of settings.

    Holds no per-call state, so threads may share one; the default backend serialises
    its dlib calls (one model set per process), so parallel checks need processes. With
    ``reference_worker`` (the default) a 1:1 check against a reference photo checks it
    in a helper process meanwhile (see :mod:`hcmiddleware.face.worker`); ``worker``
    chooses that process's :class:`ReferenceWorker` (default: one for the whole process).
    """

    def __init__(
        self,
        settings: FaceSettings | None = None,
        *,
        backend: FaceBackend | None = None,
        liveness: LivenessCheck | None = None,
        reference_cache: int = 16,
        worker: ReferenceWorker | None = None,
    ) -> None:
        self.settings = settings or FaceSettings()
        self.backend = backend if backend is not None else load_backend(self.settings.backend)
        self._liveness = liveness
        # The reference photo is checked in a helper process while the live one is
        # checked here (the built-in backend only: its parameters are all the helper
        # needs to build the same). The first check against a photo starts it and runs
        # here meanwhile; worker.start() starts it ahead.
        self._worker: ReferenceWorker | None = None
        if self.settings.reference_worker and type(self.backend) is DlibBackend:
            self._worker = worker if worker is not None else shared_worker()
        # Reference photos' templates by SHA-256 of their bytes: a resident asked to
        # retake the live photo is checked against the same card photo again, and its
        # encoding is half the time of a check. Small and in memory only.
        self._cache_size = reference_cache
        self._cache: OrderedDict[bytes, tuple[Template, str]] = OrderedDict()
        self._cache_lock = threading.Lock()

    @property
    def worker(self) -> ReferenceWorker | None:
        """The helper process reference photos are checked in, if any."""
        return self._worker

    def _cached(self, key: bytes) -> tuple[Template, str] | None:
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        return None

    def _remember(self, key: bytes, found: tuple[Template, str]) -> None:
        if self._cache_size > 0:
            with self._cache_lock:
                self._cache[key] = found
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)

    def _reference_template(self, photo: bytes, key: bytes) -> tuple[Template, str]:
        face = check_photo(photo, self.backend, self.settings, role="reference")
        found = (self.backend.encode(face.photo.image, face.box), face.detector)
        self._remember(key, found)
        return found

    def encode(self, photo: bytes, *, role: str = "probe") -> Template:
        """The template of the one face in ``photo``; raises an UnusablePhotoError
        subclass when a quality gate fails (with ``advice`` for the person)."""
        face = check_photo(photo, self.backend, self.settings, role=role)
        return self.backend.encode(face.photo.image, face.box)

    def verify(
        self,
        live: bytes,
        reference: bytes,
        *,
        source: ReferenceSource = "card_photo",
    ) -> FaceVerification:
        """Check the ``live`` photo against a ``reference`` photo (the card photo by
        default). The reference's template is kept for the next few checks, so a retake
        against the same card photo costs one encoding.

        With ``reference_worker``, the reference is checked in the helper process while
        the live photo is checked here; the answer is the one the checks in turn give
        (the live photo's failure first, then the liveness check's, then the
        reference's). A helper that stops or takes longer than ``worker_timeout``
        raises :class:`~hcmiddleware.errors.FaceBackendError`.
        """
        key = hashlib.sha256(reference).digest()
        cached = self._cached(key)
        if cached is not None:
            found = cached
            return self._verify(live, lambda: found, source)
        pending = None
        if self._worker is not None:
            assert isinstance(self.backend, DlibBackend)
            pending = self._worker.submit(reference, self.settings, self.backend.parameters)
        if pending is None:
            return self._verify(live, lambda: self._reference_template(reference, key), source)
        ready = pending

        def collect() -> tuple[Template, str]:
            found = ready.result()
            self._remember(key, found)
            return found

        return self._verify(live, collect, source, encode_first=True)

    def verify_template(
        self,
        live: bytes,
        template: Template,
        *,
        source: ReferenceSource = "enrolled",
    ) -> FaceVerification:
        """Check the ``live`` photo against an enrolled ``template``."""
        ref = as_template(template, dimension=self.backend.dimension)
        return self._verify(live, lambda: (ref, None), source)

    def _verify(
        self,
        live: bytes,
        reference: Callable[[], tuple[Template, str | None]],
        source: ReferenceSource,
        *,
        encode_first: bool = False,
    ) -> FaceVerification:
        """The check; ``encode_first``: the live face is encoded before the reference
        is asked for (it is being made elsewhere meanwhile), with the same answer."""
        base: dict[str, object] = {"source": source, "backend": self.backend.name}
        alive: bool | None = None
        probe: Template | None = None
        probe_failed: FaceError | None = None
        try:
            live_face = check_photo(live, self.backend, self.settings, role="live")
            base["detector"] = live_face.detector
            if self._liveness is not None:
                # Asked only once the photo is usable, so a vendor's check never sees
                # garbage; an exception from it propagates (the runtime contains it).
                alive = _liveness_verdict(self._liveness(live))
                if alive is False:
                    _log.warning("face 1:1 refused: the liveness check said not live")
                    return FaceVerification(
                        status="refused",
                        liveness=False,
                        photo="live",
                        reason="not_live",
                        message="the liveness check says the live photo is not of a live person",
                        hint="ask the person to face the camera themselves; a photo, "
                        "screen or mask is not accepted",
                        **base,
                    )
            if encode_first:
                try:
                    probe = self.backend.encode(live_face.photo.image, live_face.box)
                except FaceError as exc:
                    probe_failed = exc  # raised after the reference, as in turn
            ref, base["reference_detector"] = reference()
        except UnusablePhotoError as exc:
            _log.info("face 1:1 unusable: %s photo, %s", exc.photo, exc.reason)
            return FaceVerification(
                status="unusable",
                liveness=alive,
                photo=exc.photo,
                reason=exc.reason,
                message=exc.message,
                hint=exc.hint,
                advice=FaceAdvice(**exc.advice) if exc.advice else None,
                **base,
            )
        if probe_failed is not None:
            raise probe_failed
        if probe is None:
            probe = self.backend.encode(live_face.photo.image, live_face.box)
        distance = self.backend.compare(probe, ref)
        threshold = self.settings.thresholds.for_source(source)
        # Outcome figures only: never an image, a template or who it is.
        _log.info(
            "face 1:1 %s: distance %.4f threshold %.4f source %s backend %s",
            "match" if distance <= threshold else "no match",
            distance,
            threshold,
            source,
            self.backend.name,
        )
        return FaceVerification(
            status="match" if distance <= threshold else "no_match",
            distance=distance,
            threshold=threshold,
            liveness=alive,
            **base,
        )
