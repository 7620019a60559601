"""Personal data encrypted at rest (R-SEC-2): envelope keys, AES-256-GCM, blind indexes.

Keys, from the outside in:

* **Master keys** (key-encryption keys) come from the configuration as secrets, each
  under a short id (``"2026a"``). One of them is *current*. They never touch the
  database; only their ids do.
* **Data keys** (one per *scope*, i.e. per table: ``empi_residents``, ...) are random
  256-bit keys stored in ``empi_data_keys`` wrapped (AES-256-GCM) by a master key, with
  that master key's id. Unwrapped data keys are kept in memory only.
* Every ciphertext starts with a format byte and its data key's row id, so any row can
  be read whichever key wrote it, and binds its table, column and row id as associated
  data, so a ciphertext copied into another row fails to decrypt.

Rotation without downtime: put the new master key in the configuration next to the old
one and make it current; new data keys are wrapped by it at once. :meth:`Protector.rewrap`
re-wraps every older data key under the current master key (a few rows, not the data);
when it reports none left, the old master key can be removed. :meth:`Protector.rotate_data_key`
starts a new data key for a scope: new rows use it, old rows stay readable.

Exact lookups and blocking never use plaintext: :meth:`Protector.blind_index` is
HMAC-SHA256, under a separate index key, of a domain label and the normalised value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import threading
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretBytes, model_validator
from sqlalchemy.engine import Connection, Engine

from hcmiddleware import storage
from hcmiddleware.empi.schema import DataKeyRow, utcnow
from hcmiddleware.errors import DecryptionError, KeyUnavailableError, ProtectionError

__all__ = [
    "KEY_BYTES",
    "MasterKey",
    "ProtectionSettings",
    "Protector",
]

KEY_BYTES = 32
_FORMAT = 1
_HEADER = struct.Struct(">BI")  # format byte, data key id
_NONCE = 12


class MasterKey:
    """A 256-bit key-encryption key with its id. Its bytes never appear in a repr."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key_id: str, key: bytes) -> None:
        if not key_id or len(key_id) > 64:
            raise ProtectionError(
                "a master key id must be 1-64 characters",
                hint="name each key in [empi.keys] with a short id such as 2026a",
            )
        if len(key) != KEY_BYTES:
            raise ProtectionError(
                f"master key {key_id!r} must be {KEY_BYTES} bytes (AES-256); got {len(key)}",
                hint='generate one with: python -c "import os,base64;'
                'print(base64.b64encode(os.urandom(32)).decode())"',
            )
        self.key_id = key_id
        self._key = key

    def __repr__(self) -> str:
        return f"MasterKey({self.key_id!r})"

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        """Encrypt a data key under this master key (nonce ‖ ciphertext ‖ tag)."""
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self._key).encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Decrypt a data key; :class:`DecryptionError` if this is not the key that wrapped it."""
        try:
            return AESGCM(self._key).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], aad)
        except InvalidTag:
            raise DecryptionError(
                f"master key {self.key_id!r} does not open a data key stored under its id",
                hint="the configured key bytes for this id are not the ones the index was "
                "created with; restore the right key in the configuration",
            ) from None


def _decode_key(value: Any) -> Any:
    # Keys arrive from TOML as base64 text; the integrator may also pass raw bytes.
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise ValueError("a key must be base64 text of 32 bytes") from None
    return value


KeyBytes = Annotated[SecretBytes, BeforeValidator(_decode_key)]


class ProtectionSettings(BaseModel):
    """The ``[empi]`` key settings: master keys by id, the current one, the index key.

    In the config file each key is a secret (``{env = "NAME"}`` or ``{file = "path"}``)
    holding base64 text; the loader resolves it and hands the text or the bytes here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    master_keys: dict[str, KeyBytes]
    current_key: str
    index_key: KeyBytes

    @model_validator(mode="after")
    def _current_is_known(self) -> ProtectionSettings:
        if self.current_key not in self.master_keys:
            raise ValueError(f"current_key {self.current_key!r} is not one of master_keys")
        for key_id, key in self.master_keys.items():
            if len(key.get_secret_value()) != KEY_BYTES:
                raise ValueError(f"master key {key_id!r} is not {KEY_BYTES} bytes")
        if len(self.index_key.get_secret_value()) != KEY_BYTES:
            raise ValueError(f"index_key is not {KEY_BYTES} bytes")
        return self


class Protector:
    """Encrypts, decrypts and blind-indexes personal data for one database.

    Create it with the master keys, the id of the current one and the (separate) index
    key, then :meth:`bind` it to an engine (``ResidentIndex`` does that). Thread-safe:
    data keys are loaded once under a lock and then only read.
    """

    def __init__(
        self,
        master_keys: Mapping[str, bytes],
        current_key: str,
        index_key: bytes,
    ) -> None:
        self._masters = {kid: MasterKey(kid, key) for kid, key in master_keys.items()}
        if current_key not in self._masters:
            raise KeyUnavailableError(
                f"the current master key {current_key!r} is not among the configured keys",
                key_id=current_key,
                hint="set [empi] current_key to the id of one of the configured master keys",
            )
        if len(index_key) != KEY_BYTES:
            raise ProtectionError(
                f"the blind-index key must be {KEY_BYTES} bytes",
                hint="configure [empi] index_key as base64 of 32 random bytes, "
                "different from every master key",
            )
        if any(hmac.compare_digest(index_key, m._key) for m in self._masters.values()):
            raise ProtectionError(
                "the blind-index key is also a master key",
                hint="use separate random keys: one leaked must not open the other",
            )
        self._current = current_key
        self._index_key = index_key
        # Keyed once; each blind index copies this state instead of re-keying HMAC.
        self._index_mac = hmac.new(index_key, digestmod=hashlib.sha256)
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._data_keys: dict[int, AESGCM] = {}
        self._active: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: ProtectionSettings) -> Protector:
        """Build a protector from the validated ``[empi]`` settings."""
        return cls(
            {k: v.get_secret_value() for k, v in settings.master_keys.items()},
            settings.current_key,
            settings.index_key.get_secret_value(),
        )

    def __repr__(self) -> str:
        return f"Protector(master_keys={sorted(self._masters)!r}, current={self._current!r})"

    @property
    def current_key_id(self) -> str:
        """Id of the master key new data keys are wrapped with."""
        return self._current

    # --- binding and data keys ----------------------------------------------------

    def bind(self, engine: Engine, scopes: Iterable[str] = ()) -> None:
        """Attach to a database and make sure each scope has an active data key."""
        self._engine = engine
        with storage.begin_write(engine) as conn:
            self._load(conn)
            for scope in scopes:
                if scope not in self._active:
                    self._create(conn, scope)

    def _aad(self, key_row_id: int, scope: str) -> bytes:
        return f"empi-data-key|{key_row_id}|{scope}".encode()

    def _master(self, key_id: str) -> MasterKey:
        try:
            return self._masters[key_id]
        except KeyError:
            raise KeyUnavailableError(
                f"data is protected by master key {key_id!r}, which is not configured",
                key_id=key_id,
            ) from None

    def _load(self, conn: Connection) -> None:
        rows = conn.execute(sa.select(DataKeyRow).order_by(DataKeyRow.id)).mappings()
        with self._lock:
            for row in rows:
                row_id, scope = row["id"], row["scope"]
                if row_id not in self._data_keys:
                    key = self._master(row["master_key_id"]).unwrap(
                        row["wrapped"], self._aad(row_id, scope)
                    )
                    self._data_keys[row_id] = AESGCM(key)
                if row["retired_at"] is None:
                    self._active[scope] = row_id

    def _create(self, conn: Connection, scope: str) -> int:
        key = AESGCM.generate_key(bit_length=256)
        row_id = conn.execute(
            sa.insert(DataKeyRow).values(
                scope=scope, master_key_id=self._current, wrapped=b"", created_at=utcnow()
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        wrapped = self._masters[self._current].wrap(key, self._aad(row_id, scope))
        conn.execute(sa.update(DataKeyRow).where(DataKeyRow.id == row_id).values(wrapped=wrapped))
        with self._lock:
            self._data_keys[row_id] = AESGCM(key)
            self._active[scope] = row_id
        return int(row_id)

    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise ProtectionError(
                "the protector is not bound to a database",
                hint="call Protector.bind(engine) or pass it to ResidentIndex",
            )
        return self._engine

    def rotate_data_key(self, scope: str) -> int:
        """Start a new data key for ``scope``; rows written before stay readable."""
        engine = self._require_engine()
        with storage.begin_write(engine) as conn:
            conn.execute(
                sa.update(DataKeyRow)
                .where(DataKeyRow.scope == scope, DataKeyRow.retired_at.is_(None))
                .values(retired_at=utcnow())
            )
            return self._create(conn, scope)

    def rewrap(self) -> int:
        """Re-wrap every data key not under the current master key; return how many.

        Safe while the index is in use: only the wrapped key changes, never the data.
        """
        engine = self._require_engine()
        current = self._masters[self._current]
        count = 0
        with storage.begin_write(engine) as conn:
            rows = conn.execute(
                sa.select(DataKeyRow).where(DataKeyRow.master_key_id != self._current)
            ).mappings()
            for row in list(rows):
                aad = self._aad(row["id"], row["scope"])
                key = self._master(row["master_key_id"]).unwrap(row["wrapped"], aad)
                conn.execute(
                    sa.update(DataKeyRow)
                    .where(DataKeyRow.id == row["id"])
                    .values(wrapped=current.wrap(key, aad), master_key_id=self._current)
                )
                count += 1
        return count

    def master_keys_in_use(self) -> set[str]:
        """Ids of the master keys some stored data key still depends on."""
        engine = self._require_engine()
        with engine.connect() as conn:
            return set(conn.scalars(sa.select(DataKeyRow.master_key_id).distinct()))

    # --- values ----------------------------------------------------------------------

    def encrypt(self, scope: str, plaintext: bytes, context: str) -> bytes:
        """Encrypt under ``scope``'s active data key, bound to ``context`` (table.column:row)."""
        try:
            key_id = self._active[scope]
        except KeyError:
            raise ProtectionError(
                f"no data key for {scope!r}",
                hint="bind the protector with this scope before writing",
            ) from None
        nonce = os.urandom(_NONCE)
        header = _HEADER.pack(_FORMAT, key_id)
        sealed = self._data_keys[key_id].encrypt(nonce, plaintext, header + context.encode())
        return header + nonce + sealed

    def decrypt(self, ciphertext: bytes, context: str) -> bytes:
        """Decrypt a value written by :meth:`encrypt` with the same ``context``."""
        if len(ciphertext) < _HEADER.size + _NONCE + 16:
            raise DecryptionError("a stored ciphertext is truncated")
        header = ciphertext[: _HEADER.size]
        fmt, key_id = _HEADER.unpack(header)
        if fmt != _FORMAT:
            raise DecryptionError(f"a stored ciphertext has unknown format {fmt}")
        aead = self._data_keys.get(key_id)
        if aead is None:
            # Written by another process after we loaded: load again, once.
            with self._require_engine().connect() as conn:
                self._load(conn)
            aead = self._data_keys.get(key_id)
            if aead is None:
                raise DecryptionError(f"a stored ciphertext names data key {key_id}, not found")
        body = ciphertext[_HEADER.size :]
        try:
            return aead.decrypt(body[:_NONCE], body[_NONCE:], header + context.encode())
        except InvalidTag:
            raise DecryptionError(
                "a stored ciphertext failed authentication (altered, or moved from another row)"
            ) from None

    def blind_index(self, domain: str, normalized: str) -> bytes:
        """HMAC-SHA256 of ``domain`` and an already normalised value: equal in, equal out."""
        mac = self._index_mac.copy()
        mac.update(domain.encode() + b"\x1f" + normalized.encode())
        return mac.digest()
