"""Face templates at rest: one per resident, encrypted, in the ``face_templates`` table.

A template is biometric data: it is stored only as ciphertext made by the ``cipher``
the integrator passes in (the product's AES-GCM protector). What is encrypted binds
the template to its resident and its backend, so a ciphertext copied onto another
resident's row, or read with another backend, is refused instead of silently letting
one person pass as another.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from hcmiddleware.errors import FaceTemplateError, StorageError
from hcmiddleware.face.backend import Template, as_template
from hcmiddleware.storage import Base

__all__ = ["FaceTemplateRow", "TemplateCipher", "TemplateStore"]

_MAGIC = b"HCMFT1"
_LOAD_BATCH = 1000
_RESIDENT_ID_MAX = 64


class TemplateCipher(Protocol):
    """Authenticated encryption of template bytes (e.g. AES-256-GCM)."""

    def encrypt(self, plaintext: bytes) -> bytes:
        """Ciphertext of ``plaintext``, carrying whatever it needs to be decrypted."""
        ...

    def decrypt(self, ciphertext: bytes) -> bytes:
        """The plaintext; raises if the ciphertext was altered or the key is wrong."""
        ...


class FaceTemplateRow(Base):
    """One resident's face template, encrypted."""

    __tablename__ = "face_templates"

    resident_id: Mapped[str] = mapped_column(sa.String(_RESIDENT_ID_MAX), primary_key=True)
    backend: Mapped[str] = mapped_column(sa.String(32))
    template: Mapped[bytes] = mapped_column(sa.LargeBinary)
    key_id: Mapped[str] = mapped_column(sa.String(64))
    created: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))

    def __repr__(self) -> str:
        # Never the template, not even encrypted.
        return f"FaceTemplateRow(backend={self.backend!r}, key_id={self.key_id!r})"


def _field(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">H", data, offset)
    start = offset + 2
    if start + length > len(data):
        raise ValueError("field runs past the end")
    return data[start : start + length], start + length


def _pack(resident_id: str, backend: str, template: Template) -> bytes:
    rid, name = resident_id.encode(), backend.encode()
    vec = np.asarray(template, dtype="<f4")
    return b"".join(
        [
            _MAGIC,
            struct.pack(">H", len(rid)),
            rid,
            struct.pack(">H", len(name)),
            name,
            struct.pack(">H", vec.shape[0]),
            vec.tobytes(),
        ]
    )


def _unpack(data: bytes) -> tuple[str, str, np.ndarray]:
    if not data.startswith(_MAGIC):
        raise ValueError("unknown template format")
    rid, offset = _field(data, len(_MAGIC))
    name, offset = _field(data, offset)
    (dim,) = struct.unpack_from(">H", data, offset)
    offset += 2
    if len(data) - offset != 4 * dim:
        raise ValueError("template length does not match its dimension")
    return rid.decode(), name.decode(), np.frombuffer(data, dtype="<f4", offset=offset)


class TemplateStore:
    """Encrypted face templates of one backend, one per resident.

    ``key_id`` names the key ``cipher`` encrypts with now; it is stored with each row
    so that rows written under an older key can be found and re-encrypted.
    """

    def __init__(
        self,
        engine: Engine,
        cipher: TemplateCipher,
        *,
        key_id: str,
        backend: str,
        dimension: int,
    ) -> None:
        self._engine = engine
        self._cipher = cipher
        self.key_id = key_id
        self.backend = backend
        self.dimension = dimension

    def __repr__(self) -> str:
        return f"TemplateStore(backend={self.backend!r}, key_id={self.key_id!r})"

    def _storage_error(self, action: str, exc: SQLAlchemyError) -> StorageError:
        return StorageError(
            f"cannot {action} face templates: {type(exc).__name__}",
            hint="check the database is reachable and migrated (table face_templates)",
        )

    def save(self, resident_id: str, template: Template) -> None:
        """Store the resident's template, replacing any earlier one."""
        self.save_many([(resident_id, template)])

    def save_many(self, items: Iterable[tuple[str, Template]]) -> int:
        """Store many ``(resident_id, template)`` in one transaction (an import from
        another system), replacing earlier ones; all or nothing. Returns the count."""
        sealed: dict[str, bytes] = {}
        for resident_id, template in items:
            if not 0 < len(resident_id) <= _RESIDENT_ID_MAX:
                raise FaceTemplateError(
                    f"a resident id must be 1 to {_RESIDENT_ID_MAX} characters, "
                    f"not {len(resident_id)}",
                    hint="pass the resident index's own id, not a name or a document number",
                )
            vec = as_template(template, dimension=self.dimension)
            sealed[resident_id] = self._cipher.encrypt(_pack(resident_id, self.backend, vec))
        now = dt.datetime.now(dt.UTC)
        try:
            with Session(self._engine) as session, session.begin():
                ids = list(sealed)
                for start in range(0, len(ids), _LOAD_BATCH):
                    chunk = ids[start : start + _LOAD_BATCH]
                    existing = {
                        row.resident_id: row
                        for row in session.scalars(
                            sa.select(FaceTemplateRow).where(FaceTemplateRow.resident_id.in_(chunk))
                        )
                    }
                    for resident_id in chunk:
                        row = existing.get(resident_id)
                        if row is None:
                            row = FaceTemplateRow(resident_id=resident_id)
                            session.add(row)
                        row.backend = self.backend
                        row.template = sealed[resident_id]
                        row.key_id = self.key_id
                        row.created = now
        except SQLAlchemyError as exc:
            raise self._storage_error("save", exc) from exc
        return len(sealed)

    def delete(self, resident_id: str) -> bool:
        """Delete the resident's template; False if there was none."""
        try:
            with Session(self._engine) as session, session.begin():
                result = session.execute(
                    sa.delete(FaceTemplateRow).where(FaceTemplateRow.resident_id == resident_id)
                )
                return bool(getattr(result, "rowcount", 0))
        except SQLAlchemyError as exc:
            raise self._storage_error("delete", exc) from exc

    def load(self, resident_id: str) -> Template | None:
        """The resident's template, or None if they have none."""
        try:
            with Session(self._engine) as session:
                row = session.get(FaceTemplateRow, resident_id)
                if row is None:
                    return None
                return self._open(row.resident_id, row.backend, row.template)
        except SQLAlchemyError as exc:
            raise self._storage_error("read", exc) from exc

    def count(self) -> int:
        """How many templates are stored (of every backend)."""
        try:
            with self._engine.connect() as conn:
                return int(
                    conn.execute(
                        sa.select(sa.func.count()).select_from(FaceTemplateRow)
                    ).scalar_one()
                )
        except SQLAlchemyError as exc:
            raise self._storage_error("count", exc) from exc

    def iter_templates(self) -> Iterator[tuple[str, Template]]:
        """Every ``(resident_id, template)`` of this store's backend, streamed in
        batches: what a :class:`~hcmiddleware.face.gallery.FaceGallery` loads at start.

        A row that does not decrypt or does not belong to its resident raises
        :class:`FaceTemplateError` naming no one: a tampered table must be looked at,
        not skipped over.
        """
        query = (
            sa.select(
                FaceTemplateRow.resident_id, FaceTemplateRow.backend, FaceTemplateRow.template
            )
            .where(FaceTemplateRow.backend == self.backend)
            .order_by(FaceTemplateRow.resident_id)
            .execution_options(yield_per=_LOAD_BATCH)
        )
        try:
            with Session(self._engine) as session:
                for resident_id, backend, ciphertext in session.execute(query):
                    yield resident_id, self._open(resident_id, backend, ciphertext)
        except SQLAlchemyError as exc:
            raise self._storage_error("read", exc) from exc

    def reencrypt(self, *, batch: int = 500) -> int:
        """Re-encrypt every row not written under the current ``key_id`` (after a key
        rotation: the cipher must still decrypt the old rows). Returns how many rows
        were rewritten; each batch is its own transaction, so it can run while kiosks
        keep working and be resumed after an interruption."""
        done = 0
        while True:
            try:
                with Session(self._engine) as session, session.begin():
                    rows = session.scalars(
                        sa.select(FaceTemplateRow)
                        .where(FaceTemplateRow.key_id != self.key_id)
                        .order_by(FaceTemplateRow.resident_id)
                        .limit(batch)
                    ).all()
                    for row in rows:
                        # Every backend's rows: only the key changes, not the payload.
                        plaintext, _, _ = self._decrypt_checked(
                            row.resident_id, row.backend, row.template
                        )
                        row.template = self._cipher.encrypt(plaintext)
                        row.key_id = self.key_id
                    done += len(rows)
            except SQLAlchemyError as exc:
                raise self._storage_error("re-encrypt", exc) from exc
            if len(rows) < batch:
                return done

    def _open(self, resident_id: str, backend: str, ciphertext: bytes) -> Template:
        if backend != self.backend:
            raise FaceTemplateError(
                f"the stored face template was made by backend {backend!r}, not {self.backend!r}",
                hint="re-enrol the face with the configured backend",
            )
        _, _, vector = self._decrypt_checked(resident_id, backend, ciphertext)
        return as_template(vector, dimension=self.dimension)

    def _decrypt_checked(
        self, resident_id: str, backend: str, ciphertext: bytes
    ) -> tuple[bytes, str, np.ndarray]:
        """Plaintext, owner and vector of a row, refused unless it is this row's."""
        try:
            plaintext = self._cipher.decrypt(ciphertext)
        except Exception:
            # The cipher's own exception may describe key material; say only what
            # happened.
            raise FaceTemplateError(
                "a stored face template does not decrypt (wrong key, or altered)"
            ) from None
        try:
            owner, made_by, vector = _unpack(plaintext)
        except (ValueError, struct.error, UnicodeDecodeError):
            raise FaceTemplateError("a stored face template is damaged") from None
        if owner != resident_id or made_by != backend:
            raise FaceTemplateError(
                "a stored face template belongs to another row (copied or swapped)",
            )
        return plaintext, owner, vector
