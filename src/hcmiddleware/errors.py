"""Every error hcmiddleware raises, with the fields a caller needs to act on it.

The tree (a subclass is always caught by its parent's ``except``)::

    HcmError                          base: .message, .hint, .details()
    ├── ConfigError                   bad config file: .file, .key   (CLI exit code 2)
    │   └── SecretError               a secret's env var or file is missing
    ├── PluginError                   .plugin
    │   ├── PluginLoadError           not installed, misnamed, or raised on import
    │   ├── PluginCallError           a hook implementation raised: .hook, __cause__
    │   ├── PluginTimeoutError        a hook implementation took longer than allowed
    │   ├── PluginUnavailableError    the plugin still has hung calls; refused at once
    │   └── NoHandlerError            no enabled plugin answers a hook that needs one
    ├── StorageError                  the database cannot be opened or written
    ├── CardError                     the health card or its reader
    │   ├── ReaderError               no PC/SC service, no reader, reader busy
    │   ├── CardAbsentError           no card in the reader, or pulled mid-operation
    │   ├── CardProtocolError         the card answered something unparseable
    │   ├── CardDataError             a file's content does not decode (TLV, BCD, GBK)
    │   ├── ForeignCardError          the card is not a resident health card
    │   ├── CardStatusError           the card refused a command: .sw (status word)
    │   └── CardRefusedError          the card is on the blacklist (lost, cancelled)
    ├── SamError                      the security access module
    ├── ResidentIndexError            the master patient index (EMPI)
    │   └── IdentityError             an ID number or identity field is invalid
    ├── FaceError                     face checks: unusable photo, backend failure
    │   ├── FaceBackendError          backend not installed, unknown, or failed: .backend
    │   ├── UnusablePhotoError        a photo cannot be checked: .photo, .reason
    │   │   ├── UnreadableImageError  empty, corrupt or not an image
    │   │   ├── ImageTooLargeError    more pixels than may be decoded: .pixels
    │   │   ├── NoFaceError           no face found
    │   │   ├── MultipleFacesError    several faces, none picked: .count
    │   │   └── FaceTooSmallError     the face is too small: .face_px, .min_face_px
    │   ├── FaceTemplateError         a stored template is damaged or not this resident's
    │   └── GalleryError              1:N gallery misuse (duplicate id, wrong size)
    ├── HisError                      a hospital system refused or failed a request
    ├── MoneyError                    a money movement: .transaction_id
    │   ├── AmountError               amount invalid (sign, decimals, currency)
    │   ├── RemoteFaultError          bank or insurer answered with a fault: .fault_code
    │   └── OutcomeUnknownError       sent, but whether money moved is not known yet
    └── WardError                     ward devices (wristbands, handhelds, call buttons)

Messages are written for the person at the counter: what happened and what to do
next (``hint``). They never contain key material, and personal data only where the
person asking already holds it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AmountError",
    "CardAbsentError",
    "CardDataError",
    "CardError",
    "CardProtocolError",
    "CardRefusedError",
    "CardStatusError",
    "ConfigError",
    "FaceBackendError",
    "FaceError",
    "FaceTemplateError",
    "FaceTooSmallError",
    "ForeignCardError",
    "GalleryError",
    "HcmError",
    "HisError",
    "IdentityError",
    "ImageTooLargeError",
    "MoneyError",
    "MultipleFacesError",
    "NoFaceError",
    "NoHandlerError",
    "OutcomeUnknownError",
    "PluginCallError",
    "PluginError",
    "PluginLoadError",
    "PluginTimeoutError",
    "PluginUnavailableError",
    "ReaderError",
    "RemoteFaultError",
    "ResidentIndexError",
    "SamError",
    "SecretError",
    "StorageError",
    "UnreadableImageError",
    "UnusablePhotoError",
    "WardError",
]


class HcmError(Exception):
    """Base of every error raised on purpose by hcmiddleware.

    ``message`` says what happened, ``hint`` what the operator can do about it.
    Subclasses add structured fields; ``details()`` returns them as a dict for JSON
    output and logs.
    """

    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message

    def details(self) -> dict[str, Any]:
        """The error as plain data: type, message, hint and the subclass's fields."""
        fields = {k: v for k, v in vars(self).items() if k not in {"message", "hint"}}
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            **{k: v for k, v in fields.items() if not k.startswith("_")},
        }


# --- configuration ---------------------------------------------------------------


class ConfigError(HcmError):
    """The configuration file cannot be used as it is.

    ``file`` is the path of the file, ``key`` the dotted key at fault (``None`` when the
    file as a whole is at fault, e.g. it is not valid TOML).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f": {self.key}" if self.key else "")
        elif self.key:
            where = self.key
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} — {self.hint}" if self.hint else text


class SecretError(ConfigError):
    """A secret named in the configuration could not be resolved."""


# --- plugins ---------------------------------------------------------------------


class PluginError(HcmError):
    """A plugin failed; ``plugin`` is its name as enabled in the configuration."""

    def __init__(self, message: str, *, plugin: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.plugin = plugin


class PluginLoadError(PluginError):
    """A plugin could not be loaded: not installed, misnamed, or it raised on import."""

    def __init__(
        self,
        message: str,
        *,
        plugin: str,
        installed: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, plugin=plugin, hint=hint)
        self.installed = installed or []


class PluginCallError(PluginError):
    """A plugin's hook implementation raised; the original exception is ``__cause__``."""

    default_hint = "the operation was stopped; check the plugin's own log and its settings"

    def __init__(
        self, message: str, *, plugin: str, hook: str, hint: str | None = None
    ) -> None:
        super().__init__(message, plugin=plugin, hint=hint)
        self.hook = hook


class PluginTimeoutError(PluginCallError):
    """A plugin's hook implementation did not answer in time."""

    default_hint = (
        "the system behind the plugin is slow or down; try again, and if it persists "
        "check its connection or raise the timeout in [plugins] timeouts"
    )

    def __init__(self, message: str, *, plugin: str, hook: str, timeout: float) -> None:
        super().__init__(message, plugin=plugin, hook=hook)
        self.timeout = timeout


class PluginUnavailableError(PluginCallError):
    """Refused at once: the plugin has too many calls that never returned."""

    default_hint = "the plugin is stalled; restart the service after fixing what it talks to"


class NoHandlerError(PluginError):
    """No enabled plugin answered a hook whose answer the flow needs."""

    def __init__(self, hook: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"no enabled plugin handles {hook}",
            plugin="",
            hint=hint
            or "enable a plugin that implements it in the config file's [plugins] enabled list",
        )
        self.hook = hook


# --- storage ---------------------------------------------------------------------


class StorageError(HcmError):
    """The database could not be opened, migrated or written."""


# --- card ------------------------------------------------------------------------


class CardError(HcmError):
    """The health card or its reader."""


class ReaderError(CardError):
    """No PC/SC service, no such reader, or the reader is in use."""


class CardAbsentError(CardError):
    """No card in the reader, or the card was pulled during the operation."""

    default_hint = "insert the card fully and keep it in the reader until told to remove it"


class CardProtocolError(CardError):
    """The card's answer breaks the protocol (too short, wrong length, garbage)."""

    default_hint = "remove and reinsert the card; if it happens again the card may be faulty"


class CardDataError(CardError):
    """A file on the card does not decode (bad TLV, bad BCD, undecodable text)."""

    default_hint = "the card's data is damaged; send the resident to the card issuer"


class ForeignCardError(CardError):
    """The card in the reader is not a resident health card."""

    default_hint = "check that the resident gave you their health card, not another card"


class CardStatusError(CardError):
    """The card refused a command; ``sw`` is the 2-byte status word (e.g. 0x6A82)."""

    def __init__(self, message: str, *, sw: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.sw = sw

    def details(self) -> dict[str, Any]:
        data = super().details()
        data["sw"] = f"{self.sw:04X}"
        return data


class CardRefusedError(CardError):
    """The card is on the blacklist: reported lost or cancelled."""

    default_hint = "keep the card and send the resident to the issuer's counter"


# --- other domains (each issue adds its subclasses) --------------------------------


class SamError(HcmError):
    """The security access module (SAM) failed or refused."""


class ResidentIndexError(HcmError):
    """The resident master index (EMPI) failed or refused."""


class IdentityError(ResidentIndexError):
    """An ID number or another identity field is invalid; ``field`` names it."""

    def __init__(self, message: str, *, field: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field


class FaceError(HcmError):
    """A face check could not be made (unusable photo, backend failure)."""


class FaceBackendError(FaceError):
    """The face backend is not installed, not known, or failed; ``backend`` names it."""

    def __init__(self, message: str, *, backend: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.backend = backend


class UnusablePhotoError(FaceError):
    """A photo cannot be used for a face check.

    ``photo`` says which one (``"live"``, ``"reference"``, ``"probe"``); ``reason`` is a
    stable code (``unreadable``, ``too_large``, ``no_face``, ``multiple_faces``,
    ``face_too_small``) for screens and logs. Never carries the image itself.
    """

    reason: str = "unusable"

    def __init__(self, message: str, *, photo: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.photo = photo

    def details(self) -> dict[str, Any]:
        data = super().details()
        data["reason"] = self.reason
        return data


class UnreadableImageError(UnusablePhotoError):
    """The photo is empty, truncated, corrupt or not an image format we read."""

    reason = "unreadable"
    default_hint = "take the photo again; if it comes from a file, check it is a JPEG or PNG"


class ImageTooLargeError(UnusablePhotoError):
    """The photo has more pixels than may be decoded safely; ``pixels`` is its count."""

    reason = "too_large"

    def __init__(self, message: str, *, photo: str, pixels: int, hint: str | None = None) -> None:
        super().__init__(
            message,
            photo=photo,
            hint=hint or "send a smaller photo (a few megapixels is plenty for a face check)",
        )
        self.pixels = pixels


class NoFaceError(UnusablePhotoError):
    """No face was found in the photo."""

    reason = "no_face"
    default_hint = (
        "ask the person to look straight at the camera, without hat, mask or dark glasses, "
        "in even light, and take the photo again"
    )


class MultipleFacesError(UnusablePhotoError):
    """Several faces were found; none is picked, because the wrong one could be checked."""

    reason = "multiple_faces"
    default_hint = "make sure only one person is in front of the camera and take the photo again"

    def __init__(self, message: str, *, photo: str, count: int, hint: str | None = None) -> None:
        super().__init__(message, photo=photo, hint=hint)
        self.count = count


class FaceTooSmallError(UnusablePhotoError):
    """The face found is smaller than the configured minimum (pixels on its short side)."""

    reason = "face_too_small"
    default_hint = "ask the person to come closer to the camera and take the photo again"

    def __init__(
        self,
        message: str,
        *,
        photo: str,
        face_px: int,
        min_face_px: int,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, photo=photo, hint=hint)
        self.face_px = face_px
        self.min_face_px = min_face_px


class FaceTemplateError(FaceError):
    """A stored face template cannot be used: it does not decrypt, is damaged, belongs to
    another resident, or was made by another backend."""

    default_hint = (
        "re-enrol the resident's face; if many templates fail, check the template key "
        "and that nobody altered the face_templates table"
    )


class GalleryError(FaceError):
    """The 1:N gallery was asked something impossible (duplicate id, wrong vector size)."""


class HisError(HcmError):
    """A hospital information system refused or failed a request."""


class MoneyError(HcmError):
    """A money movement failed; ``transaction_id`` identifies it in the journal."""

    def __init__(
        self, message: str, *, transaction_id: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.transaction_id = transaction_id


class AmountError(MoneyError):
    """An amount is invalid: not positive, more than two decimals, wrong currency."""


class RemoteFaultError(MoneyError):
    """The bank or the insurer answered with a fault; ``fault_code`` is theirs."""

    def __init__(
        self,
        message: str,
        *,
        fault_code: str,
        transaction_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, transaction_id=transaction_id, hint=hint)
        self.fault_code = fault_code


class OutcomeUnknownError(MoneyError):
    """The request was sent but its outcome is not known; the journal will resolve it."""

    default_hint = (
        "do not repeat the payment by hand: the transaction is journalled and will be "
        "confirmed or reversed automatically"
    )


class WardError(HcmError):
    """A ward device (wristband, handheld, call button) failed or refused."""
