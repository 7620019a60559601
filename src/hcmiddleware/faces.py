"""Face checks in the runtime (``middleware.faces``).

It builds the :class:`~hcmiddleware.face.verify.FaceService` from ``[face]`` with the
backend a plugin provides (``hcm_face_backend``) or the built-in one, asks
``hcm_face_liveness`` before any 1:1 pass, keeps enrolled templates encrypted with the
resident index's keys, and announces results through ``hcm_face_verified`` and
``hcm_face_duplicates_found``.
"""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING

from hcmiddleware._optional import needs_extra

if TYPE_CHECKING:
    from hcmiddleware.card.data import CardRead
    from hcmiddleware.empi.protection import Protector
    from hcmiddleware.face.enrolment import FaceEnrolment, FaceEnrolmentResult
    from hcmiddleware.face.gallery import GalleryHit
    from hcmiddleware.face.settings import ReferenceSource
    from hcmiddleware.face.verify import FaceService, FaceVerification
    from hcmiddleware.runtime import Middleware

__all__ = ["Faces", "TemplateSealer"]

SCOPE = "face_templates"
_where: contextvars.ContextVar[str] = contextvars.ContextVar("hcm_face_context", default="")


class TemplateSealer:
    """Encrypts face templates with the resident index's keys (its own data-key scope)."""

    def __init__(self, protector: Protector) -> None:
        self._protector = protector

    @property
    def key_id(self) -> str:
        """The master key new templates are protected under."""
        return self._protector.current_key_id

    def encrypt(self, plaintext: bytes) -> bytes:
        """Seal a template."""
        return self._protector.encrypt(SCOPE, plaintext, "face_templates.template")

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Open a sealed template; raises if it was altered."""
        return self._protector.decrypt(ciphertext, "face_templates.template")


class Faces:
    """The face service and the enrolment gallery of one Middleware, built on first use.

    Everything goes through here — the flows, a HIS and ``hcm face`` alike — so the
    ``hcm_face_*`` hooks fire and every check, enrolment, search and removal is
    audited. ``enrolment`` may name another template store (``hcm face --db``).
    """

    def __init__(self, middleware: Middleware, enrolment: FaceEnrolment | None = None) -> None:
        self._mw = middleware
        self._service: FaceService | None = enrolment.service if enrolment else None
        self._enrolment: FaceEnrolment | None = enrolment
        self._lock = threading.Lock()

    def _liveness(self, image: bytes) -> bool | None:
        verdict = self._mw.hooks.hcm_face_liveness(image=image, context=_where.get())
        return None if verdict is None else bool(verdict.live)

    @property
    def service(self) -> FaceService:
        """The :class:`FaceService` (the backend is loaded on first use).

        :raises MissingExtraError: the face extra is not installed.
        """
        with self._lock:
            if self._service is None:
                with needs_extra("face checks"):
                    from hcmiddleware.face.verify import FaceService

                    settings = self._mw.config.face
                    backend = self._mw.hooks.hcm_face_backend(name=settings.backend)
                self._service = FaceService(settings, backend=backend, liveness=self._liveness)
            return self._service

    def verify_card(
        self, live: bytes, card: CardRead, *, resident_id: str, context: str = "kiosk"
    ) -> FaceVerification:
        """Is the person at ``context`` the cardholder? Live photo vs the card's photo.

        Never raises for an unusable photo: the answer says why (status ``unusable``).
        Announced through ``hcm_face_verified`` and audited.
        """
        return self.verify(
            live, card.photo, source="card_photo", resident_id=resident_id, context=context
        )

    def verify(
        self,
        live: bytes,
        reference: bytes,
        *,
        source: ReferenceSource = "card_photo",
        resident_id: str | None = None,
        context: str = "desk",
        threshold: float | None = None,
    ) -> FaceVerification:
        """Is the person in ``live`` the person in ``reference`` (a card or enrolled photo)?

        The installation's ``[face]`` thresholds apply unless ``threshold`` overrides the
        one for ``source``. Never raises for an unusable photo (status ``unusable``).
        """
        token = _where.set(context)
        try:
            service = self.service
            if threshold is not None:
                from hcmiddleware.face.verify import FaceService

                settings = service.settings.model_copy(
                    update={
                        "thresholds": service.settings.thresholds.model_copy(
                            update={source: threshold}
                        )
                    }
                )
                service = FaceService(settings, backend=service.backend, liveness=self._liveness)
            result = service.verify(live, reference, source=source)
        finally:
            _where.reset(token)
        if resident_id is not None:
            self._mw.hooks.hcm_face_verified(resident_id=resident_id, result=result)
        self._mw.audit(
            "face.verify",
            actor=context,
            subject=resident_id,
            outcome="ok" if result.matched else "refused",
            status=result.status,
        )
        return result

    @property
    def enrolment(self) -> FaceEnrolment:
        """Enrolled templates (encrypted at rest) and the 1:N gallery, loaded on first use."""
        service = self.service
        with self._lock:
            if self._enrolment is None:
                from hcmiddleware.face.enrolment import FaceEnrolment
                from hcmiddleware.face.store import TemplateStore

                index = self._mw.residents.index  # migrates the database, binds the keys
                protector = index.protector
                protector.bind(self._mw.engine, [SCOPE])
                sealer = TemplateSealer(protector)
                store = TemplateStore(
                    self._mw.engine,
                    sealer,
                    key_id=sealer.key_id,
                    backend=service.backend.name,
                    dimension=service.backend.dimension,
                )
                self._enrolment = FaceEnrolment.open(service, store)
            return self._enrolment

    def enrol(
        self,
        resident_id: str,
        photo: bytes,
        *,
        allow_duplicates: bool = False,
        actor: str = "enrolment",
    ) -> FaceEnrolmentResult:
        """Enrol a resident's face; a face too close to another's is not stored.

        Duplicates are announced through ``hcm_face_duplicates_found`` for review;
        ``allow_duplicates`` stores it anyway once a person has found them to be
        different people.
        """
        result = self.enrolment.enrol(resident_id, photo, allow_duplicates=allow_duplicates)
        if result.status == "duplicate":
            self._mw.hooks.hcm_face_duplicates_found(
                resident_id=resident_id,
                candidates=[(d.resident_id, d.distance) for d in result.duplicates],
            )
        self._mw.audit(
            "face.enrol",
            actor=actor,
            subject=resident_id,
            outcome="ok" if result.status == "enrolled" else "refused",
        )
        return result

    def search(self, photo: bytes, *, top: int = 5, actor: str = "search") -> list[GalleryHit]:
        """The ``top`` enrolled residents whose faces are nearest to the one in ``photo``.

        :raises UnusablePhotoError: the photo fails a quality gate.
        """
        hits = self.enrolment.search(photo, top=top)
        self._mw.audit("face.search", actor=actor, results=str(len(hits)))
        return hits

    def remove(self, resident_id: str, *, actor: str = "enrolment") -> bool:
        """Forget the resident's face (consent withdrawn, record merged); False if none."""
        removed = self.enrolment.remove(resident_id)
        self._mw.audit(
            "face.remove", actor=actor, subject=resident_id, outcome="ok" if removed else "refused"
        )
        return removed
