"""Card images: a card profile personalised with the card's own diversified keys.

What an issuer's personalisation machine writes into a chip, as one JSON file, so that
a software card (:class:`~hcmiddleware.card.emulator.EmulatedCard`, ``hcm card
emulate --image``) can run without the issuer's master keys::

    {"format": "hcm-card-image/1",
     "comment": "...",
     "atr": "<hex>",
     "profile": {...the card profile, photo left out...},
     "photo": "<base64 JPEG, or empty>",
     "keys": [{"ref": "01", "alg": "SM4", "key": "<32 hex>", "kcv": "<6 hex>"}, ...]}

Each key is the issuer's master key of the same ref diversified twice (docs/card-spec.md,
"Key diversification"):
with the card factor (the last 8 bytes of the ATR's historical bytes, which end with
the chip serial) and then with the city factor of the card's city code (item 57).
``kcv`` is the key check value, for comparing keys without showing them.

An image holds key material: :func:`write_image` writes it with mode 600 (atomically,
through a private temporary file), keys are :class:`~hcmiddleware.sam.keyset.SecretKey`
in memory, and no message or log line carries them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hcmiddleware.card.atr import build_atr, card_factor
from hcmiddleware.errors import CardDataError, SamError
from hcmiddleware.sam import crypto
from hcmiddleware.sam.crypto import Algorithm
from hcmiddleware.sam.keyset import KeyRef, KeySet, MasterKey, SecretKey

__all__ = ["IMAGE_FORMAT", "CardImage", "CardKey", "load_image", "personalise", "write_image"]

log = logging.getLogger(__name__)

#: The ``format`` field of a card image this version reads and writes.
IMAGE_FORMAT: Literal["hcm-card-image/1"] = "hcm-card-image/1"
#: Historical bytes before the chip serial (the emulator's choice, see emulator.py).
_ATR_PREFIX = b"HC"
_COMMENT = (
    "CARD KEYS - this file holds the diversified keys of one card; keep it like a key "
    "file (mode 600), never attach it to a ticket or a log."
)


class CardKey(BaseModel):
    """One key of the card: reference, algorithm, the (masked) key and its check value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: KeyRef
    alg: Algorithm
    key: MasterKey
    kcv: str = ""


class CardImage(BaseModel):
    """A personalised card: its ATR, profile, photo and card keys (masked in dumps)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["hcm-card-image/1"] = IMAGE_FORMAT
    comment: str = _COMMENT
    atr: str
    profile: dict[str, Any]
    photo: str = ""
    keys: tuple[CardKey, ...] = Field(min_length=1)

    def __repr_args__(self) -> Any:
        # The profile is personal data: a repr names the keys' refs only.
        yield "atr", self.atr
        yield "keys", " ".join(f"{k.ref:02X}" for k in self.keys)

    @property
    def atr_bytes(self) -> bytes:
        """The card's ATR."""
        return bytes.fromhex(self.atr)

    @property
    def photo_bytes(self) -> bytes:
        """The JPEG of the photo file, ``b""`` when none."""
        return base64.b64decode(self.photo) if self.photo else b""

    def card_keys(self) -> dict[int, tuple[Algorithm, SecretKey]]:
        """The keys by ref, for the emulator."""
        return {k.ref: (k.alg, k.key) for k in self.keys}


def _atr_of(profile: Mapping[str, Any]) -> bytes:
    if "atr" in profile:
        try:
            return bytes.fromhex(str(profile["atr"]))
        except ValueError:
            raise CardDataError("the profile's atr is not hexadecimal") from None
    serial = str(dict(profile.get("items", {})).get("chip_serial", ""))
    if len(serial.encode("ascii", "replace")) != 10:
        raise CardDataError("the profile's chip_serial must be 10 ASCII characters")
    return build_atr(_ATR_PREFIX + serial.encode("ascii"))


def personalise(
    profile: Mapping[str, Any], keyset: KeySet, *, base_dir: str | Path = "."
) -> CardImage:
    """The image of the card ``profile`` describes, with its keys diversified from ``keyset``.

    The card's city (item 57) must be the key set's: an issuer's keys are for one city.
    The photo named by the profile (relative to ``base_dir``) is embedded.
    """
    items = dict(profile.get("items", {}))
    city = str(items.get("city_code", ""))
    try:
        same_city = crypto.city_factor(city) == crypto.city_factor(keyset.city_code)
    except SamError:
        raise CardDataError(
            "the profile's city_code (item 57) must be 2, 4 or 6 digits",
            hint='set items.city_code in the profile, e.g. "210000"',
        ) from None
    if not same_city:
        raise CardDataError(
            f"the profile's city {city} is not the key set's city {keyset.city_code}",
            hint="personalise the card with the issuer keys of its own city",
        )
    atr = _atr_of(profile)
    factor = card_factor(atr)
    keys = []
    for entry in keyset.keys:
        key = crypto.card_key(entry.alg, entry.master.reveal(), factor, city)
        secret = SecretKey(key)
        keys.append(
            CardKey(ref=entry.ref, alg=entry.alg, key=secret, kcv=secret.check_value(entry.alg))
        )
    photo = b""
    plain_profile = dict(profile)
    if plain_profile.get("photo"):
        path = Path(base_dir) / str(plain_profile.pop("photo"))
        try:
            photo = path.read_bytes()
        except OSError as exc:
            raise CardDataError(
                f"the profile's photo {path} cannot be read ({type(exc).__name__})",
                hint="the photo path is relative to the profile file",
            ) from None
    plain_profile.pop("atr", None)
    image = CardImage(
        atr=atr.hex().upper(),
        profile=plain_profile,
        photo=base64.b64encode(photo).decode("ascii"),
        keys=tuple(keys),
    )
    log.info("card image personalised with keys %s", " ".join(f"{k.ref:02X}" for k in keys))
    return image


def _document(image: CardImage) -> dict[str, Any]:
    """The JSON document of ``image`` with the key bytes in the clear (for the file only)."""
    data = image.model_dump(mode="json")
    data["keys"] = [
        {
            "ref": f"{k.ref:02X}",
            "alg": k.alg.value,
            "key": k.key.reveal().hex().upper(),
            "kcv": k.kcv,
        }
        for k in image.keys
    ]
    return data


def write_image(image: CardImage, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``image`` to ``path`` with mode 600, atomically; the path written.

    An existing file is kept unless ``overwrite`` (:class:`CardDataError`).
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise CardDataError(
            f"{target} already exists; a card image is not overwritten by default",
            hint="choose another --out path or pass --force",
        )
    text = json.dumps(_document(image), ensure_ascii=False, indent=2) + "\n"
    # mkstemp creates the file 0600, so the keys are never readable by others,
    # not even between the write and the rename.
    fd, tmp = tempfile.mkstemp(prefix=".card-image-", dir=target.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_image(path: str | Path) -> CardImage:
    """Read a card image; :class:`CardDataError` names what is wrong, never a key."""
    file = Path(path)
    try:
        data = json.loads(file.read_bytes())
    except OSError as exc:
        raise CardDataError(
            f"the card image {file} cannot be read ({type(exc).__name__})",
            hint="check the path given with --image",
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise CardDataError(
            f"the card image {file} is not JSON",
            hint="give a file written by hcm card personalise",
        ) from None
    if not isinstance(data, dict) or data.get("format") != IMAGE_FORMAT:
        raise CardDataError(
            f"{file} is not a card image of format {IMAGE_FORMAT}",
            hint="make one with hcm card personalise",
        )
    try:
        image = CardImage.model_validate(data)
        image.atr_bytes  # noqa: B018 - validates the hex
        image.photo_bytes  # noqa: B018
        for k in image.keys:
            if len(k.key) != crypto.key_size(k.alg):
                raise ValueError(f"key {k.ref:02X} has the wrong length for {k.alg.value}")
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "the top level"
        raise CardDataError(
            f"the card image {file} is invalid at {where}: {first['msg']}",
            hint="give a file written by hcm card personalise",
        ) from None
    except (ValueError, binascii.Error) as exc:
        # Our own messages and the hex/base64 decoders' name no value.
        raise CardDataError(
            f"the card image {file} is invalid: {exc}",
            hint="give a file written by hcm card personalise",
        ) from None
    _warn_if_shared(file)
    return image


def _warn_if_shared(file: Path) -> None:
    if os.name != "posix":
        return
    try:
        mode = file.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "card image %s can be read by other users (mode %03o); it holds card keys: chmod 600",
            file,
            stat.S_IMODE(mode),
        )
