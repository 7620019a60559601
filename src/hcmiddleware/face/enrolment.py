"""Enrolment (R-FACE-2): a new face is searched against everyone enrolled before it is
stored, so one person cannot hold two records; store and gallery stay in step."""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict

from hcmiddleware.face.backend import Template
from hcmiddleware.face.gallery import FaceGallery, GalleryHit
from hcmiddleware.face.store import TemplateStore
from hcmiddleware.face.verify import FaceService

__all__ = ["DuplicateCandidate", "FaceEnrolment", "FaceEnrolmentResult"]


class DuplicateCandidate(BaseModel):
    """An enrolled resident whose face is closer than the duplicate threshold."""

    model_config = ConfigDict(frozen=True)

    resident_id: str
    distance: float


class FaceEnrolmentResult(BaseModel):
    """What ``enrol`` did: ``enrolled``, or ``duplicate`` (nothing stored) with the
    residents the face is too close to, nearest first, for a person to review."""

    model_config = ConfigDict(frozen=True)

    status: Literal["enrolled", "duplicate"]
    resident_id: str
    threshold: float
    duplicates: list[DuplicateCandidate]


class FaceEnrolment:
    """The template store (the truth) and the in-memory gallery (its index) together.

    Every change is written to the store first and applied to the gallery only once it
    is committed, so a failed write leaves both as they were. Enrolments in one process
    are serialised, so two threads cannot both enrol one face under two residents. The
    gallery sees only this process's changes: where several processes enrol into one
    database, give enrolment to one of them, or ``reload()`` the others.
    """

    def __init__(self, service: FaceService, store: TemplateStore, gallery: FaceGallery) -> None:
        self.service = service
        self.store = store
        self.gallery = gallery
        self._enrol_lock = threading.Lock()

    @classmethod
    def open(cls, service: FaceService, store: TemplateStore) -> FaceEnrolment:
        """Load every stored template of the service's backend into a new gallery."""
        gallery = FaceGallery.from_templates(
            store.iter_templates(),
            dimension=service.backend.dimension,
            engine=service.settings.gallery_engine,
        )
        return cls(service, store, gallery)

    def reload(self) -> None:
        """Replace the gallery with a fresh load of the store (changes made elsewhere)."""
        fresh = FaceGallery.from_templates(
            self.store.iter_templates(),
            dimension=self.service.backend.dimension,
            engine=self.service.settings.gallery_engine,
        )
        with self._enrol_lock:
            self.gallery = fresh

    def search(self, photo: bytes, *, top: int = 5) -> list[GalleryHit]:
        """The ``top`` enrolled residents nearest to the face in ``photo``; raises an
        UnusablePhotoError subclass if the photo fails a quality gate."""
        return self.gallery.search(self.service.encode(photo, role="probe"), top=top)

    def enrol(
        self, resident_id: str, photo: bytes, *, allow_duplicates: bool = False
    ) -> FaceEnrolmentResult:
        """Enrol (or re-enrol) the resident's face from ``photo``.

        Another resident closer than the ``duplicate`` threshold stops the enrolment
        (status ``duplicate``, nothing stored) unless ``allow_duplicates`` — set once
        a person has reviewed the candidates and found them to be different people.
        The resident's own earlier template never counts as a duplicate.
        """
        template = self.service.encode(photo, role="probe")
        with self._enrol_lock:
            return self._enrol(resident_id, template, allow_duplicates)

    def _enrol(
        self, resident_id: str, template: Template, allow_duplicates: bool
    ) -> FaceEnrolmentResult:
        threshold = self.service.settings.thresholds.duplicate
        # One more than needed, because the resident's own template may be among them.
        hits = self.gallery.search(template, top=6)
        duplicates = [
            DuplicateCandidate(resident_id=h.resident_id, distance=h.distance)
            for h in hits
            if h.resident_id != resident_id and h.distance <= threshold
        ][:5]
        if duplicates and not allow_duplicates:
            return FaceEnrolmentResult(
                status="duplicate",
                resident_id=resident_id,
                threshold=threshold,
                duplicates=duplicates,
            )
        self.store.save(resident_id, template)
        self.gallery.replace(resident_id, template)
        return FaceEnrolmentResult(
            status="enrolled", resident_id=resident_id, threshold=threshold, duplicates=duplicates
        )

    def remove(self, resident_id: str) -> bool:
        """Forget the resident's face; False if none was enrolled."""
        with self._enrol_lock:
            stored = self.store.delete(resident_id)
            in_gallery = self.gallery.remove(resident_id)
        return stored or in_gallery
