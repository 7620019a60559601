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

if TYPE_CHECKING:
    from hcmiddleware.card.data import CardRead
    from hcmiddleware.empi.protection import Protector
    from hcmiddleware.face.enrolment import FaceEnrolment, FaceEnrolmentResult
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
    """The face service and the enrolment gallery of one Middleware, built on first use."""

    def __init__(self, middleware: Middleware) -> None:
        self._mw = middleware
        self._service: FaceService | None = None
        self._enrolment: FaceEnrolment | None = None
        self._lock = threading.Lock()

    def _liveness(self, image: bytes) -> bool | None:
        verdict = self._mw.hooks.hcm_face_liveness(image=image, context=_where.get())
        return None if verdict is None else bool(verdict.live)

    @property
    def service(self) -> FaceService:
        """The :class:`FaceService` (the backend is loaded on first use)."""
        with self._lock:
            if self._service is None:
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
        token = _where.set(context)
        try:
            result = self.service.verify(live, card.photo, source="card_photo")
        finally:
            _where.reset(token)
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

    def enrol(self, resident_id: str, photo: bytes) -> FaceEnrolmentResult:
        """Enrol a resident's face; a face too close to another's is not stored.

        Duplicates are announced through ``hcm_face_duplicates_found`` for review.
        """
        result = self.enrolment.enrol(resident_id, photo)
        if result.status == "duplicate":
            self._mw.hooks.hcm_face_duplicates_found(
                resident_id=resident_id,
                candidates=[(d.resident_id, d.distance) for d in result.duplicates],
            )
        self._mw.audit(
            "face.enrol",
            actor="enrolment",
            subject=resident_id,
            outcome="ok" if result.status == "enrolled" else "refused",
        )
        return result
