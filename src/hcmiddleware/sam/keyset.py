"""The issuer's key set: the JSON file of docs/card-spec.md loaded into typed, masked objects.

Format (docs/card-spec.md, "Key sets")::

    {"city_code": "21",
     "comment": "optional free text",
     "keys": [{"ref": "01", "alg": "SM4", "master": "<32 hex>"}, ...]}

``ref`` is the key reference as two hex digits (the byte the card's commands carry),
``alg`` is ``"SM4"`` or ``"3DES"``, ``master`` the 16-byte master key in hex.

Key bytes are held in :class:`SecretKey`, whose ``repr``/``str`` and pydantic dumps show
only a mask, and every error raised here names the file and the key reference but never
a key's value. Python cannot wipe ``bytes`` from memory; keeping keys in one object type
at least keeps them out of logs, tracebacks and serialised models.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hcmiddleware.errors import KeySetError, SamInputError, UnknownKeyError
from hcmiddleware.sam import crypto
from hcmiddleware.sam.crypto import Algorithm

__all__ = ["MASK", "KeyEntry", "KeyRef", "KeySet", "MasterKey", "SecretKey", "load_keyset"]

log = logging.getLogger(__name__)

_SAMPLES_DIR = (Path(__file__).parent / "samples").resolve()

#: What a key looks like wherever it is shown or serialised.
MASK = "**********"


class SecretKey:
    """Key bytes that never show themselves: ``repr``/``str`` give a mask.

    ``reveal()`` returns the bytes for the crypto functions; call it at the point of
    use and keep the result local. Equality is constant-time. Pickling is refused so a
    key cannot leave the process by accident (a cache, a multiprocessing queue).
    """

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise SamInputError(f"a key must be bytes, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> bytes:
        """The key bytes, for the crypto functions only."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def check_value(self, alg: Algorithm) -> str:
        """The key check value: first 3 bytes of ``E_K(00..)`` in hex.

        The usual way to confirm two parties hold the same key without showing it.
        """
        zero = bytes(crypto.block_size(alg))
        return crypto.encrypt_ecb(alg, self._value, zero)[:3].hex().upper()

    def __repr__(self) -> str:
        return f"SecretKey({MASK}, {len(self._value)} bytes)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        # Python's bytes hash is SipHash under a per-process random key: consistent with
        # __eq__ and no use for recovering a 128-bit key.
        return hash(self._value)

    def __copy__(self) -> SecretKey:
        return self  # immutable: a copy may share the bytes

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretKey:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("SecretKey cannot be pickled: key material stays in the process")

    def __format__(self, spec: str) -> str:
        return repr(self)


def _parse_master(value: object) -> SecretKey:
    if isinstance(value, SecretKey):
        return value
    if isinstance(value, bytes):
        return SecretKey(value)
    if not isinstance(value, str):
        raise ValueError("master key must be a hex string")
    text = value.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError("master key is not hexadecimal") from None
    return SecretKey(raw)


#: A master key field: parsed from hex, shown and dumped as a mask.
MasterKey = Annotated[
    SecretKey,
    PlainValidator(_parse_master),
    PlainSerializer(lambda _key: MASK, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "description": "master key, hex", "writeOnly": True}),
]


def _parse_ref(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFF:
        return value
    if isinstance(value, str) and len(value) == 2:
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise ValueError('key ref must be two hex digits, e.g. "01"')


#: A key reference: the byte the card's commands carry, written as two hex digits.
KeyRef = Annotated[
    int,
    PlainValidator(_parse_ref),
    PlainSerializer(lambda ref: f"{ref:02X}", return_type=str, when_used="always"),
]


class KeyEntry(BaseModel):
    """One master key of the issuer: its reference, algorithm and (masked) value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: KeyRef
    alg: Algorithm
    master: MasterKey

    @model_validator(mode="after")
    def _key_length(self) -> Self:
        size = crypto.key_size(self.alg)
        if len(self.master) != size:
            raise ValueError(
                f"{self.alg.value} master key must be {size} bytes "
                f"({2 * size} hex digits), got {len(self.master)}"
            )
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Show the ref as the key set writes it ("11"), not as an int (17).
        for name, value in super().__repr_args__():
            yield name, (self.ref_hex if name == "ref" else value)

    @property
    def ref_hex(self) -> str:
        """The reference as the key set writes it, e.g. ``"01"``."""
        return f"{self.ref:02X}"


class KeySet(BaseModel):
    """The issuer's master keys for one city, one entry per key reference."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    city_code: str
    comment: str | None = None
    keys: tuple[KeyEntry, ...] = Field(min_length=1)

    @field_validator("city_code")
    @classmethod
    def _city_code(cls, value: str) -> str:
        try:
            crypto.city_factor(value)
        except SamInputError as exc:
            raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _unique_refs(self) -> Self:
        seen: set[int] = set()
        for entry in self.keys:
            if entry.ref in seen:
                raise PydanticCustomError(
                    "duplicate_ref",
                    "key ref {ref} appears more than once",
                    {"ref": entry.ref_hex},
                )
            seen.add(entry.ref)
        return self

    @property
    def refs(self) -> tuple[int, ...]:
        """The key references held, in file order."""
        return tuple(entry.ref for entry in self.keys)

    def entry(self, ref: int) -> KeyEntry:
        """The entry for ``ref``; :class:`UnknownKeyError` when the set has none."""
        for entry in self.keys:
            if entry.ref == ref:
                return entry
        held = " ".join(f"{r:02X}" for r in self.refs)
        raise UnknownKeyError(
            f"the key set holds no key {ref:02X} (it holds {held})",
            key_ref=f"{ref:02X}",
        )

    def card_key(self, ref: int, card_factor: bytes) -> SecretKey:
        """The key ``ref`` of the card with ``card_factor``: the issuer's derivation.

        Used to personalise cards; a terminal never needs it (its SAM derives inside).
        """
        entry = self.entry(ref)
        return SecretKey(
            crypto.card_key(entry.alg, entry.master.reveal(), card_factor, self.city_code)
        )

    def card_keys(self, card_factor: bytes) -> dict[int, SecretKey]:
        """Every key of the card with ``card_factor``, by ref: what personalisation writes."""
        return {entry.ref: self.card_key(entry.ref, card_factor) for entry in self.keys}

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<key set>") -> KeySet:
        """Parse a key set from JSON text; ``source`` names it in errors."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # The decoder's message gives the position, never the content.
            raise KeySetError(
                f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                file=source,
                hint="fix the JSON syntax of the key-set file",
            ) from None
        except UnicodeDecodeError:
            raise KeySetError(
                f"{source} is not UTF-8 text", file=source, hint="save the file as UTF-8"
            ) from None
        return cls.from_data(data, source=source)

    @classmethod
    def from_data(cls, data: object, *, source: str = "<key set>") -> KeySet:
        """Validate already-parsed JSON data; ``source`` names it in errors."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _keyset_error(exc, data, source) from None


def _keyset_error(exc: ValidationError, data: object, source: str) -> KeySetError:
    """One :class:`KeySetError` for the first problem, naming the file and key ref.

    Built from pydantic's location and message only: its default text quotes the
    input value, which here would be key material.
    """
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    loc = first["loc"]
    message = first["msg"].removeprefix("Value error, ")
    key_ref: str | None = None
    where = ".".join(str(part) for part in loc) or "the top level"
    if len(loc) >= 2 and loc[0] == "keys" and isinstance(loc[1], int):
        key_ref = _ref_at(data, loc[1])
        label = f"key ref {key_ref}" if key_ref else f"key #{loc[1] + 1}"
        field = ".".join(str(part) for part in loc[2:])
        where = f"{label}, field {field}" if field else label
    elif first["type"] == "duplicate_ref":
        key_ref = str(first.get("ctx", {}).get("ref"))
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return KeySetError(
        f"{source}: {where}: {message}{more}",
        file=source,
        key_ref=key_ref,
        hint="correct the key-set file; it must match the format in docs/sam.md",
    )


def _ref_at(data: object, index: int) -> str | None:
    if isinstance(data, dict):
        keys = data.get("keys")
        if isinstance(keys, list) and 0 <= index < len(keys) and isinstance(keys[index], dict):
            ref = keys[index].get("ref")
            if isinstance(ref, str) and len(ref) <= 4:
                return ref
    return None


def load_keyset(path: str | Path) -> KeySet:
    """Load the key-set JSON file at ``path``; :class:`KeySetError` names what is wrong."""
    file = Path(path)
    try:
        text = file.read_bytes()
    except FileNotFoundError:
        raise KeySetError(
            f"key-set file {file} does not exist",
            file=str(file),
            hint="check the path given with --sam-keys or in the configuration",
        ) from None
    except IsADirectoryError:
        raise KeySetError(
            f"key-set path {file} is a directory, not a file",
            file=str(file),
            hint="give the path of the JSON file itself",
        ) from None
    except PermissionError:
        raise KeySetError(
            f"key-set file {file} cannot be read (permission denied)",
            file=str(file),
            hint="let the service's user read the file (and nobody else)",
        ) from None
    keyset = KeySet.from_json(text, source=str(file))
    _warn_if_shared(file)
    return keyset


def _warn_if_shared(file: Path) -> None:
    """Warn when other users may read a file of master keys (not an error: test sets are)."""
    if os.name != "posix":
        return
    try:
        if file.resolve().parent == _SAMPLES_DIR:
            return  # the published test sets are meant to be readable
        mode = file.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "key-set file %s can be read by other users (mode %03o); "
            "restrict it to the service's user (chmod 600) unless it holds test keys",
            file,
            stat.S_IMODE(mode),
        )
