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
    │   ├── IdentityError             an ID number or identity field is invalid: .field
    │   │   ├── IdNumberFormatError   wrong length or characters
    │   │   ├── IdNumberChecksumError the check digit does not match
    │   │   ├── IdNumberDateError     the birth date in the number is impossible
    │   │   ├── IdentityMismatchError the number disagrees with a given birth date / sex
    │   │   └── RegionCodeError       the region part is no administrative region
    │   ├── ProtectionError           encryption at rest: keys, ciphertexts
    │   │   ├── KeyUnavailableError   a key id named by a row is not configured
    │   │   └── DecryptionError       a ciphertext fails authentication
    │   ├── ResidentNotFoundError     no resident with that id (or it was merged away)
    │   ├── IdentifierConflictError   an identifier already belongs to another resident
    │   ├── MergeError                a merge or unmerge is not possible as asked
    │   └── ImportFileError           an import file cannot be read: encoding, header
    ├── FaceError                     face checks: unusable photo, backend failure
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
    "DecryptionError",
    "FaceError",
    "ForeignCardError",
    "HcmError",
    "HisError",
    "IdNumberChecksumError",
    "IdNumberDateError",
    "IdNumberFormatError",
    "IdentifierConflictError",
    "IdentityError",
    "IdentityMismatchError",
    "ImportFileError",
    "KeyUnavailableError",
    "MergeError",
    "MoneyError",
    "NoHandlerError",
    "OutcomeUnknownError",
    "PluginCallError",
    "PluginError",
    "PluginLoadError",
    "PluginTimeoutError",
    "PluginUnavailableError",
    "ProtectionError",
    "ReaderError",
    "RegionCodeError",
    "RemoteFaultError",
    "ResidentIndexError",
    "ResidentNotFoundError",
    "SamError",
    "SecretError",
    "StorageError",
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


class IdNumberFormatError(IdentityError):
    """The ID number has the wrong length or characters that cannot be in one."""

    default_hint = "re-type the number from the identity document (18 characters)"


class IdNumberChecksumError(IdentityError):
    """The last character of an 18-digit ID number is not its ISO 7064 MOD 11-2 check."""

    default_hint = "one character was mistyped: compare the number with the document again"


class IdNumberDateError(IdentityError):
    """The birth date inside the ID number is impossible (no such day, or in the future)."""

    default_hint = "re-type the birth-date part (characters 7-14) from the identity document"


class IdentityMismatchError(IdentityError):
    """The ID number says another birth date or sex than the one given with it."""

    default_hint = "check the birth date and sex against the identity document"


class RegionCodeError(IdentityError):
    """A region code is not a GB/T 2260 administrative division, current or retired."""

    default_hint = "check the first six digits of the number against the identity document"


class ProtectionError(ResidentIndexError):
    """Personal data could not be encrypted or decrypted."""


class KeyUnavailableError(ProtectionError):
    """A row names a key id that is not in the configured key ring; ``key_id`` names it."""

    def __init__(self, message: str, *, key_id: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint
            or "add the retired master key back to [empi] keys until every row is re-wrapped",
        )
        self.key_id = key_id


class DecryptionError(ProtectionError):
    """A ciphertext failed authentication: wrong key, tampered or moved between rows."""

    default_hint = (
        "the stored data was altered or belongs to another row; restore it from a backup "
        "and check who can write to the database"
    )


class ResidentNotFoundError(ResidentIndexError):
    """No resident has that id, or it was merged into another one (``merged_into``)."""

    def __init__(
        self, message: str, *, merged_into: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(
            message,
            hint=hint
            or (
                f"use resident {merged_into}, which this one was merged into"
                if merged_into
                else "look the resident up again by card or ID number"
            ),
        )
        self.merged_into = merged_into


class IdentifierConflictError(ResidentIndexError):
    """An identifier is already held by another resident; ``kind`` names the identifier."""

    def __init__(self, message: str, *, kind: str, holder: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint
            or "if both records are the same person, merge them; otherwise check the number",
        )
        self.kind = kind
        self.holder = holder


class MergeError(ResidentIndexError):
    """A merge or unmerge cannot be done as asked (same resident, already merged ...)."""


class ImportFileError(ResidentIndexError):
    """An import file cannot be read as a whole (encoding, missing columns); nothing imported."""

    def __init__(self, message: str, *, file: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.file = file


class FaceError(HcmError):
    """A face check could not be made (unusable photo, backend failure)."""


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
