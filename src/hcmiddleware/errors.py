"""Every error hcmiddleware raises, with the fields a caller needs to act on it.

The tree (a subclass is always caught by its parent's ``except``)::

    HcmError                          base: .message, .hint, .details()
    ├── ConfigError                   bad config file: .file, .key, .related  (CLI exit 2)
    │   ├── SecretError               a secret's env var or file is missing
    │   └── AuditAlgorithmError       [audit] hash is not the hash the chain was built with
    ├── PluginError                   .plugin
    │   ├── PluginLoadError           not installed, misnamed, or raised on import
    │   ├── PluginCallError           a hook implementation raised: .hook, __cause__
    │   ├── PluginTimeoutError        a hook implementation took longer than allowed
    │   ├── PluginUnavailableError    the plugin still has hung calls; refused at once
    │   ├── PluginResultError         a plugin answered with the wrong type: .hook
    │   └── NoHandlerError            no enabled plugin answers a hook that needs one
    │       └── NoAdapterError        no enabled adapter provides a capability: .capability
    ├── MissingExtraError             an optional part is not installed: .extra  (CLI exit 2)
    ├── StorageError                  the database cannot be opened or written
    ├── CardError                     the health card or its reader
    │   ├── ReaderError               no PC/SC service, no reader, reader busy
    │   ├── CardAbsentError           no card in the reader, or pulled mid-operation
    │   ├── CardProtocolError         the card answered something unparseable
    │   ├── CardDataError             a file's content does not decode (TLV, BCD, GBK)
    │   ├── ForeignCardError          the card is not a resident health card
    │   ├── CardStatusError           the card refused a command: .sw (status word)
    │   │   ├── CardFileNotFoundError     6A82/6A83: no such file or record
    │   │   │   └── CardFileMissingError  a file or item every health card carries is
    │   │   │                             absent: .path
    │   │   ├── CardSecurityError         6982/6985: access condition not satisfied
    │   │   ├── CardAuthError             63Cx: authentication failed, .tries_left
    │   │   ├── CardKeyBlockedError       6983: the key is blocked for good
    │   │   ├── CardMacError              6988: secure-messaging MAC rejected
    │   │   ├── CardLengthError           6700/6Cxx/6B00: wrong length or offset
    │   │   └── CardParameterError        6A86/6A88/6D00/6E00…: command not understood
    │   ├── CardRefusedError          the card is on a refused list: .state, .listed_at
    │   │   └── CardNotActivatedError issued, not activated yet: reads, moves no money
    │   ├── CardListError             an update of a refused list was refused: .reason
    │   ├── CardKeyAtRiskError        a key with 2 tries or fewer left is not tried again
    │   ├── CardCityError             the card is of another city than the SAM's keys
    │   ├── CardPartNotReadError      a part of the card was not read: .part, .field
    │   └── CardPartError             an unknown part name was asked for (also a
    │                                 ValueError): .part
    ├── SamError                      the security access module
    │   ├── SamInputError             a key, factor, challenge or city code of the wrong
    │   │                             shape (also a ValueError)
    │   ├── KeySetError               the key-set file cannot be used: .file, .key_ref
    │   ├── UnknownKeyError           no key with that reference in the SAM: .key_ref
    │   ├── SecureMessagingError      an SM command's MAC, length or padding is wrong
    │   ├── CardAuthenticityError     the card's internal-authentication answer is wrong
    │   ├── SamPinError               the SAM refused its PIN: .tries_left
    │   ├── SamBlockedError           the SAM's PIN is blocked
    │   ├── SamStatusError            the SAM refused a command: .sw (status word)
    │   └── SamUnavailableError       no SAM, the SAM was pulled, or the SAM is closed
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
    │   ├── HisRejectedError          the HIS refused it (HL7 NAK, FHIR OperationOutcome):
    │   │                             .code, .status
    │   ├── HisUnavailableError       the HIS is down or did not answer in time
    │   └── HisProtocolError          the HIS answered something unparseable (garbage,
    │                                 truncated, wrong encoding)
    ├── MoneyError                    a money movement: .transaction_id
    │   ├── AmountError               amount invalid (sign, decimals, currency)
    │   ├── RemoteFaultError          bank or insurer answered with a fault: .fault_code
    │   ├── RemoteUnavailableError    bank or insurer unreachable; nothing was sent
    │   ├── MalformedResponseError    bank or insurer answered something unparseable
    │   ├── OutcomeUnknownError       sent, but whether money moved is not known yet
    │   ├── IdempotencyConflictError  a key already used for a different movement
    │   ├── UnknownTransactionError   no journal entry with that transaction ID
    │   ├── RefundRefusedError        refund above the amount paid, or not refundable
    │   ├── PaymentDeclinedError      the movement ended failed or reversed: .state
    │   └── IdentityDocumentError     the identity document does not match the holder
    ├── WardError                     ward devices (wristbands, handhelds, call buttons)
    ├── EhcError                      the electronic health card (QR codes)
    │   ├── EhcFormatError            the text is no e-card code: .reason (too_long, card_id …)
    │   ├── EhcRefusedError           a well-formed code refused: .reason
    │   │   ├── EhcExpiredError       expired, not yet valid, or valid for too long
    │   │   ├── EhcSignatureError     forged or altered: the signature does not verify
    │   │   ├── EhcReplayError        already used at this terminal and care step
    │   │   ├── EhcRevokedError       the e-card was closed by its issuer: .revoked_at
    │   │   ├── EhcUnknownIssuerError no key with the code's key id: .key_id
    │   │   ├── EhcSecondFactorError  a static code without a second factor, or a wrong one
    │   │   └── EhcUnknownCardError   nobody in the index holds the e-card ID
    │   ├── EhcRevocationListError    a revocation update was refused; the old list stays
    │   └── EhcPlatformError          the e-card platform refused or failed: .code
    │   ├── WristbandError            a band that cannot be used: .wristband_id
    │   │   ├── UnknownWristbandError     never bound here
    │   │   ├── WristbandDeadError        replaced (lost, broken): .replaced_by
    │   │   ├── WristbandReleasedError    the patient was discharged
    │   │   └── WristbandInUseError       bound to another stay, or the stay has one
    │   ├── VerificationFailedError   a bedside check failed: .failed, .reasons, .check
    │   ├── AlreadyExecutedError      the order was executed already: .execution_id
    │   ├── ExecutionStateError       a check asked out of order: .state
    │   ├── OrderNotExecutableError   the HIS shows it cancelled or done: .status
    │   ├── UnknownAlarmError         no alarm with that ID
    │   ├── DeviceMessageError        a device message that cannot be read: .source
    │   └── LabelError                a band label cannot be made
    ├── AgentError                    the local HTTP agent refused a request: .status
    │   ├── AgentAuthError            no token, or a token no workstation holds (401)
    │   ├── AgentOriginError          the page's origin is not in [agent] allowed_origins (403)
    │   ├── AgentRequestError         the request cannot be used: too large (413),
    │   │                             malformed JSON (400), fields invalid (422)
    │   ├── AgentRateLimitError       too many requests from one workstation (429):
    │   │                             .retry_after
    │   └── AgentBusyError            the reader is busy with another read (409)
    ├── AccessDeniedError             a caller's role may not do this or see this: .role,
    │   │                             .operation, .reason
    │   ├── UnknownRoleError          the caller names a role that is not configured
    │   ├── UnknownTerminalError      the caller's terminal is not in [access] terminals
    │   ├── FieldWithheldError        a field outside the role's categories was read:
    │   │                             .field, .category
    │   ├── NotIdentifiedHereError    clinical data before the resident was identified at
    │   │                             this terminal in this visit: .category
    │   └── BreakGlassError           emergency access refused (role, reason, length)
    ├── AuditError                    the tamper-evident audit log cannot be written or read
    │   ├── AuditInputError           an entry the log must not hold (personal data,
    │   │                             control characters, too long); nothing was done
    │   └── CheckpointFileError       a checkpoint file cannot be read: .file, .line
    ├── PrintError                    a receipt or report was not printed: .printer,
    │   │                             .document_id (the transaction it belongs to stands)
    │   └── NothingToPrintError       no printable document: a movement that moved no
    │                                 money, a report not yet signed off
    └── FlowError                     a patient journey cannot go on: .step, .plugin
        ├── FlowInputError            a step was given something unusable (slot over an
        │                             hour, no identifier, no unpaid charge named)
        ├── NotIdentifiedError        no resident holds the e-card ID / ID number given
        ├── FaceMismatchError         the person at the kiosk is not the cardholder: .status
        ├── PaymentNotRecordedError   the money moved but the HIS has not recorded it:
        │                             .transaction_id (record it again; never pay again)
        └── DischargeRefusedError     the stay still owes money: .balance

Messages are written for the person at the counter: what happened and what to do
next (``hint``). They never contain key material, and personal data only where the
person asking already holds it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDeniedError",
    "AgentAuthError",
    "AgentBusyError",
    "AgentError",
    "AgentListenError",
    "AgentOriginError",
    "AgentRateLimitError",
    "AgentRequestError",
    "AlreadyExecutedError",
    "AmountError",
    "AuditAlgorithmError",
    "AuditError",
    "AuditInputError",
    "BreakGlassError",
    "CardAbsentError",
    "CardAuthError",
    "CardAuthenticityError",
    "CardCityError",
    "CardDataError",
    "CardError",
    "CardFileMissingError",
    "CardFileNotFoundError",
    "CardKeyAtRiskError",
    "CardKeyBlockedError",
    "CardLengthError",
    "CardListError",
    "CardMacError",
    "CardNotActivatedError",
    "CardParameterError",
    "CardPartError",
    "CardPartNotReadError",
    "CardProtocolError",
    "CardRefusedError",
    "CardSecurityError",
    "CardStatusError",
    "CheckpointFileError",
    "ConfigError",
    "DecryptionError",
    "DeviceMessageError",
    "DischargeRefusedError",
    "EhcError",
    "EhcExpiredError",
    "EhcFormatError",
    "EhcPlatformError",
    "EhcRefusedError",
    "EhcReplayError",
    "EhcRevocationListError",
    "EhcRevokedError",
    "EhcSecondFactorError",
    "EhcSignatureError",
    "EhcUnknownCardError",
    "EhcUnknownIssuerError",
    "ExecutionStateError",
    "FaceBackendError",
    "FaceError",
    "FaceMismatchError",
    "FaceTemplateError",
    "FaceTooSmallError",
    "FieldWithheldError",
    "FlowError",
    "FlowInputError",
    "ForeignCardError",
    "GalleryError",
    "HcmError",
    "HisError",
    "HisProtocolError",
    "HisRejectedError",
    "HisUnavailableError",
    "IdNumberChecksumError",
    "IdNumberDateError",
    "IdNumberFormatError",
    "IdempotencyConflictError",
    "IdentifierConflictError",
    "IdentityDocumentError",
    "IdentityError",
    "IdentityMismatchError",
    "ImageTooLargeError",
    "ImportFileError",
    "KeySetError",
    "KeyUnavailableError",
    "LabelError",
    "MalformedResponseError",
    "MergeError",
    "MissingExtraError",
    "MoneyError",
    "MultipleFacesError",
    "NoAdapterError",
    "NoFaceError",
    "NoHandlerError",
    "NotIdentifiedError",
    "NotIdentifiedHereError",
    "NothingToPrintError",
    "OrderNotExecutableError",
    "OutcomeUnknownError",
    "PaymentDeclinedError",
    "PaymentNotRecordedError",
    "PluginCallError",
    "PluginError",
    "PluginLoadError",
    "PluginResultError",
    "PluginTimeoutError",
    "PluginUnavailableError",
    "PrintError",
    "ProtectionError",
    "ReaderError",
    "RefundRefusedError",
    "RegionCodeError",
    "RemoteFaultError",
    "RemoteUnavailableError",
    "ResidentIndexError",
    "ResidentNotFoundError",
    "SamBlockedError",
    "SamError",
    "SamInputError",
    "SamPinError",
    "SamStatusError",
    "SamUnavailableError",
    "SecretError",
    "SecureMessagingError",
    "StorageError",
    "UnknownAlarmError",
    "UnknownKeyError",
    "UnknownRoleError",
    "UnknownTerminalError",
    "UnknownTransactionError",
    "UnknownWristbandError",
    "UnreadableImageError",
    "UnusablePhotoError",
    "VerificationFailedError",
    "WardError",
    "WristbandDeadError",
    "WristbandError",
    "WristbandInUseError",
    "WristbandReleasedError",
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
        #: further problems found in the same file, reported together
        self.related: list[ConfigError] = []

    def details(self) -> dict[str, Any]:
        data = super().details()
        data["related"] = [e.details() for e in self.related]
        return data

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


class AuditAlgorithmError(ConfigError):
    """``[audit] hash`` names another hash function than the chain in the database uses.

    ``chain`` is the chain's, ``configured`` the config's. A chain keeps the function it
    was started with; nothing was written.
    """

    def __init__(
        self, message: str, *, chain: str, configured: str, file: str | None = None
    ) -> None:
        super().__init__(
            message,
            file=file,
            key="audit.hash",
            hint=f'set [audit] hash = "{chain}" (the chain\'s own); a chain cannot change '
            "its hash function",
        )
        self.chain = chain
        self.configured = configured


class PluginError(HcmError):
    """A plugin failed; ``plugin`` is its name as enabled in the configuration."""

    def __init__(self, message: str, *, plugin: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.plugin = plugin


class PluginLoadError(PluginError):
    """A plugin could not be loaded: not installed, misnamed, or it raised on import.

    ``file`` and ``key`` point at the config entry that enabled it, when there is one.
    """

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
        self.file: str | None = None
        self.key: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        if self.file:
            return f"{self.file}: {self.key}: {text}" if self.key else f"{self.file}: {text}"
        return text


class PluginCallError(PluginError):
    """A plugin's hook implementation raised; the original exception is ``__cause__``."""

    default_hint = "the operation was stopped; check the plugin's own log and its settings"

    def __init__(self, message: str, *, plugin: str, hook: str, hint: str | None = None) -> None:
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


class NoAdapterError(NoHandlerError):
    """No enabled adapter provides a capability a service was asked for.

    Distinct from "not found": the question could not be asked at all. ``capability``
    names it (``his.patients`` …), ``hook`` the hook that would have answered, and
    ``partial`` the plugins that provide only part of the capability.
    """

    def __init__(
        self,
        capability: str,
        hook: str,
        *,
        partial: tuple[str, ...] = (),
        hint: str | None = None,
    ) -> None:
        if partial:
            who = ", ".join(repr(p) for p in partial)
            message = (
                f"no enabled adapter provides {capability}: {who} implements part of it "
                f"but not {hook}"
            )
            default = f"update {who} to implement {hook}, or enable an adapter that does"
        else:
            message = f"no enabled adapter provides {capability} ({hook})"
            default = (
                "install an adapter that provides it and list it in [plugins] enabled "
                "in the config file; `hcm plugins list` shows what each one implements"
            )
        super().__init__(hook, hint=hint or default)
        self.message = message
        self.capability = capability
        self.partial = partial


class PluginResultError(PluginCallError):
    """A plugin answered a hook with something that is not what the hook returns."""

    default_hint = (
        "the adapter does not follow the hook's contract (docs/hooks.md); "
        "update it or report it to its vendor"
    )


# --- storage ---------------------------------------------------------------------


class MissingExtraError(HcmError):
    """An optional part of hcmiddleware is not installed.

    ``extra`` is the extra that brings it (``pip install 'hcmiddleware[extra]'``),
    ``module`` the module that could not be imported.
    """

    def __init__(self, message: str, *, extra: str, module: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.extra = extra
        self.module = module


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


class WrongCardError(CardError):
    """The card in the reader is another resident's card than the one the visit began
    with; nothing was written to it."""

    default_hint = "insert the patient's own card"


class CardStatusError(CardError):
    """The card refused a command; ``sw`` is the 2-byte status word (e.g. 0x6A82)."""

    def __init__(self, message: str, *, sw: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.sw = sw

    def details(self) -> dict[str, Any]:
        data = super().details()
        data["sw"] = f"{self.sw:04X}"
        return data


class CardFileNotFoundError(CardStatusError):
    """The card has no such file or record (``6A82``/``6A83``)."""


class CardFileMissingError(CardFileNotFoundError):
    """A file or data element every health card carries is not on this card.

    The card answered ``6A82`` (no such file) or ``6A83`` (no such record) where the
    card cannot be used without the answer (the issuer data, the cardholder file, the
    card number, the city code, the holder's name). ``path`` names it (``DDF1/EF06``,
    ``DDF1/EF05 item 57``); optional files that are absent are reported in
    ``CardRead.missing`` instead.
    """

    default_hint = "the card was not personalised completely; send the resident to the issuer"

    def __init__(self, message: str, *, sw: int, path: str, hint: str | None = None) -> None:
        super().__init__(message, sw=sw, hint=hint)
        self.path = path


class CardSecurityError(CardStatusError):
    """The file's access condition is not satisfied (``6982``/``6985``)."""


class CardAuthError(CardStatusError):
    """The card rejected an authentication cryptogram; ``tries_left`` before blocking."""

    def __init__(self, message: str, *, sw: int, tries_left: int, hint: str | None = None) -> None:
        super().__init__(message, sw=sw, hint=hint)
        self.tries_left = tries_left


class CardKeyBlockedError(CardStatusError):
    """A key on the card is blocked after too many failed authentications (``6983``)."""


class CardMacError(CardStatusError):
    """The card rejected a secure-messaging MAC (``6988``); nothing was written."""


class CardLengthError(CardStatusError):
    """Wrong length, Le or offset for the file (``6700``, ``6Cxx``, ``6B00``)."""


class CardParameterError(CardStatusError):
    """The card does not understand the command, its parameters or key reference."""


class CardRefusedError(CardError):
    """The card is on a list of refused cards: loss-reported, cancelled, replaced, frozen.

    ``state`` is the card's state (``loss_reported``, ``cancelled``, ``replaced``, or
    for money only ``frozen`` — or ``issued``, as :class:`CardNotActivatedError`),
    ``listed_at`` when it was listed, ``source`` who listed it, ``card`` the card number
    masked. Checked offline, before any money moves.
    """

    default_hint = "keep the card and send the resident to the issuer's counter"

    def __init__(
        self,
        message: str,
        *,
        state: str,
        listed_at: str,
        source: str,
        card: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.state = state
        self.listed_at = listed_at
        self.source = source
        self.card = card


class CardNotActivatedError(CardRefusedError):
    """The card was issued but its activation has not reached this terminal yet.

    Its issuer lists it as ``issued`` until the card is activated (``state`` is
    ``issued``). It reads and identifies the resident — registration, the index, the
    ward work as usual — but moves no money (top-up, payment, refund) until the list
    no longer holds it. Raised for money only, before anything is written or sent.
    """

    default_hint = (
        "take payment another way this time; once the issuer has activated the card, the "
        "next list sync ('hcm cards sync') lets it pay — if the resident says it is active, "
        "run the sync and try again"
    )


class CardListError(CardError):
    """An update of a list of refused cards was refused; the previous list stays.

    ``source`` and ``version`` name the update; ``reason`` is a stable code
    (``malformed``, ``unknown_source``, ``bad_signature``, ``old_version``,
    ``skipped_version``; in a sync's report also ``no_answer``: a list plugin failed
    or timed out).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None,
        version: int | None,
        reason: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.source = source
        self.version = version
        self.reason = reason


class CardKeyAtRiskError(CardError):
    """The terminal refuses to try a card key that has 2 tries or fewer left.

    Raised without sending any APDU. ``key_ref`` is the key (hex), ``tries_left`` the
    count the card last reported (0 = blocked). A card key whose counter runs out is
    blocked for good, so the last tries are left for the issuer's counter.
    """

    default_hint = (
        "do not retry at this or any other terminal; send the resident to the card "
        "issuer to have the card checked and its key counter reset"
    )

    def __init__(
        self, message: str, *, key_ref: str, tries_left: int, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.key_ref = key_ref
        self.tries_left = tries_left


class CardCityError(CardError):
    """The card was issued for another city than the SAM's keys; no try was spent.

    ``card_city`` and ``sam_city`` are the city codes (not personal data).
    """

    default_hint = (
        "read this card at a terminal whose SAM holds the keys of the card's city; "
        "do not retry here, every try would count against the card"
    )

    def __init__(
        self, message: str, *, card_city: str, sam_city: str, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.card_city = card_city
        self.sam_city = sam_city


class CardPartNotReadError(CardError):
    """A part of the card (``part``) was not read, so its data (``field``) is not known.

    A :class:`~hcmiddleware.card.data.CardRead` made with ``parts=...`` holds only the
    parts asked for; an unread part is not an empty part, so reading it raises this
    instead of answering empty.
    """

    default_hint = "read the card again with this part in parts=... (or read it all)"

    def __init__(self, message: str, *, part: str, field: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.part = part
        self.field = field


class CardPartError(CardError, ValueError):
    """A part name that is not one of the card's parts (``hcm card read --parts``)."""

    default_hint = (
        "use the part names of docs/card.md: issuer, identity, insurance, phones, photo, "
        "contacts, social, documents, basics, allergies, immunisations, visits "
        "(or the groups cardholder, validity, personal, clinical, all)"
    )

    def __init__(self, message: str, *, part: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.part = part


# --- other domains (each issue adds its subclasses) --------------------------------


class SamError(HcmError):
    """The security access module (SAM) failed or refused."""


class SamInputError(SamError, ValueError):
    """A SAM or crypto function got input of the wrong shape.

    A key, factor, challenge, header or city code of the wrong length or form; the
    message names which, never its value (it may be key material).
    """

    default_hint = "this is a fault in the calling program; report it with the message"


class KeySetError(SamError):
    """The key-set file cannot be used; ``file`` is its path, ``key_ref`` the key at fault.

    ``key_ref`` is ``None`` when the file as a whole is at fault (missing, not JSON).
    """

    default_hint = "fix the key-set file or point the configuration at the right one"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key_ref: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.key_ref = key_ref


class UnknownKeyError(SamError):
    """The SAM holds no key with the reference asked for; ``key_ref`` is it (hex)."""

    default_hint = (
        "the SAM was issued without this key; ask the card issuer for a SAM that holds it"
    )

    def __init__(self, message: str, *, key_ref: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key_ref = key_ref


class SecureMessagingError(SamError):
    """A secure-messaging command was refused: bad MAC, bad length or bad padding."""

    default_hint = (
        "the command was altered or made with another session key; nothing was written. "
        "Start the write again from a fresh challenge"
    )


class CardAuthenticityError(SamError):
    """The card's internal-authentication cryptogram does not match: not a genuine card.

    ``key_ref`` is the key reference used (hex).
    """

    default_hint = (
        "do not trust this card's data; keep the card and send the resident to the issuer"
    )

    def __init__(self, message: str, *, key_ref: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key_ref = key_ref


class SamPinError(SamError):
    """The SAM refused its PIN; ``tries_left`` is how many tries remain."""

    default_hint = (
        "check the SAM PIN in the configuration; do not retry blindly, the SAM blocks "
        "after its last try"
    )

    def __init__(self, message: str, *, tries_left: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.tries_left = tries_left


class SamBlockedError(SamError):
    """The SAM's PIN is blocked; the SAM cannot be used until the issuer unblocks it."""

    default_hint = "take the SAM out of service and send it to the issuer to be unblocked"


class SamStatusError(SamError):
    """The SAM refused a command; ``sw`` is the 2-byte status word (e.g. 0x6982)."""

    default_hint = "reset the terminal; if it happens again the SAM may be faulty"

    def __init__(self, message: str, *, sw: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.sw = sw

    def details(self) -> dict[str, Any]:
        data = super().details()
        data["sw"] = f"{self.sw:04X}"
        return data


class SamUnavailableError(SamError):
    """No SAM answers: none in the slot, pulled during the operation, or already closed."""

    default_hint = (
        "check that the SAM is seated in the terminal's SAM slot, then try again: the "
        "next card opens the SAM again"
    )


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


class BulkLoadRunningError(ResidentIndexError):
    """A bulk initial load of the index is running (or stopped midway): other writes
    are refused until it ends; ``source`` names the load's source system."""

    def __init__(self, message: str, *, source: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint
            or f"wait until the bulk load of {source} ends; if it stopped, run the same "
            "`hcm empi import --bulk` again to resume it",
        )
        self.source = source


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
        #: what the person should change, for the kiosk's screen: ``{"code", "zh",
        #: "en"}`` (see hcmiddleware.face.advice), set by the quality gates
        self.advice: dict[str, str] | None = None

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


class HisRejectedError(HisError):
    """The HIS refused the request: an HL7 NAK or a FHIR OperationOutcome.

    ``code`` is the HIS's own error code (ERR-5 / the issue's details code, else the
    HL7 table 0357 code or FHIR issue code); ``status`` is the HL7 acknowledgment code
    (``AE``/``AR``) or the HTTP status. Nothing was recorded by the HIS.
    """

    default_hint = "the HIS refused the request as sent; correct it and try again"

    def __init__(
        self, message: str, *, code: str, status: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.status = status


class HisUnavailableError(HisError):
    """The HIS could not be reached, or did not answer within the adapter's timeout.

    After a timeout the request may have been carried out; the adapters resend with
    the same control ID / identifier, so a retry never makes a second record.
    """

    default_hint = (
        "the hospital system is down or slow; try again shortly, and tell its "
        "administrators if it persists"
    )


class HisProtocolError(HisError):
    """The HIS answered with something that is not a valid message for the protocol."""

    default_hint = (
        "the hospital system's interface answered garbage; report it to its administrators "
        "with the time of the request"
    )


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


class RemoteUnavailableError(MoneyError):
    """The bank or the insurer could not be reached, and nothing was sent.

    Raised only where that is certain: the connection was refused or never
    established, or the service description (WSDL) could not be loaded.
    """

    default_hint = "nothing was taken; check the connection to the bank or insurer and try again"


class MalformedResponseError(MoneyError):
    """The bank or the insurer answered with something that is not a valid reply.

    The request was sent, so the outcome is unknown: the journal resolves it.
    """

    default_hint = (
        "the transaction is journalled and will be confirmed or reversed automatically; "
        "report the remote system's malformed answer to its operator"
    )


class IdempotencyConflictError(MoneyError):
    """An idempotency key was reused for a different movement (amount, card or kind)."""

    default_hint = "use a new key for a new movement; the same key only repeats the same one"


class UnknownTransactionError(MoneyError):
    """No journal entry has the given transaction ID."""

    default_hint = "check the ID with `hcm journal list`"


class RefundRefusedError(MoneyError):
    """A refund cannot be made: above what was paid, or the original is not a payment."""

    default_hint = "refund at most what is left of a confirmed payment on the same card"


class PaymentDeclinedError(MoneyError):
    """The bank or insurer declined the movement, or it was reversed; no money moved."""

    default_hint = "tell the patient nothing was taken; check the account and try again"

    def __init__(
        self,
        message: str,
        *,
        state: str,
        transaction_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, transaction_id=transaction_id, hint=hint)
        self.state = state


class IdentityDocumentError(MoneyError):
    """The identity document shown does not match the card holder; nothing was sent."""

    default_hint = "ask for the card holder's own identity document and check it again"


class WardError(HcmError):
    """A ward device (wristband, handheld, call button) failed or refused."""


# --- the electronic health card -------------------------------------------------------


class EhcError(HcmError):
    """The electronic health card (a QR code on the resident's phone)."""


class EhcFormatError(EhcError):
    """The text scanned is not an e-card code; nothing was looked up or recorded.

    ``reason`` is a stable code for screens and logs: ``empty``, ``too_long``,
    ``characters``, ``kind`` (neither static nor dynamic), ``card_id``, ``area_code``,
    ``key_id``, ``time``, ``nonce``, ``signature``. The text itself is never carried.
    """

    default_hint = (
        "scan the code again, holding the phone still; if it fails again, ask the patient "
        "to refresh the code in the app, or use the physical card"
    )

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class EhcRefusedError(EhcError):
    """A well-formed code was refused; ``reason`` is a stable code saying why.

    Nothing was recorded: a refused code does not count as used.
    """

    reason = "refused"
    default_hint = "ask the patient to show a fresh code, or use the physical card"

    def details(self) -> dict[str, Any]:
        data = super().details()
        data["reason"] = self.reason
        return data


class EhcExpiredError(EhcRefusedError):
    """The dynamic code is out of its validity: expired, not yet valid (``not_yet_valid``,
    the issuer's or the terminal's clock is wrong), or valid for longer than allowed
    (``lifetime``)."""

    default_hint = "ask the patient to refresh the code in the app and scan the new one"

    def __init__(self, message: str, *, reason: str = "expired", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class EhcSignatureError(EhcRefusedError):
    """The code's signature does not verify with the issuer's key: forged or altered."""

    reason = "signature"
    default_hint = (
        "do not accept this code; identify the patient with the physical card or an "
        "identity document, and report the code to the e-card issuer if it happens again"
    )


class EhcReplayError(EhcRefusedError):
    """The dynamic code was already used at this terminal for this care step."""

    reason = "replayed"
    default_hint = "a code is good once per terminal and step: ask for a fresh code"


class EhcRevokedError(EhcRefusedError):
    """The issuer closed this e-card (``revoked_at``, naive UTC); its codes are refused."""

    reason = "revoked"
    default_hint = (
        "the e-card was closed by its issuer; use the physical card or an identity "
        "document, and send the patient to the issuer to open a new e-card"
    )

    def __init__(self, message: str, *, revoked_at: Any, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.revoked_at = revoked_at


class EhcUnknownIssuerError(EhcRefusedError):
    """No configured issuer key has the code's key id (``key_id``, not personal data)."""

    reason = "unknown_issuer"
    default_hint = (
        "the code comes from an issuer this site does not trust; if it should, add the "
        "issuer's public key under [ehc.keys] (docs/configuration.md)"
    )

    def __init__(self, message: str, *, key_id: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key_id = key_id


class EhcSecondFactorError(EhcRefusedError):
    """A static code needs a second factor: none was given, or it did not match."""

    reason = "second_factor"
    default_hint = (
        "a static code is accepted only with a second factor: the last digits of the "
        "ID number, a face check or the physical card; or ask for a dynamic code"
    )


class EhcUnknownCardError(EhcRefusedError):
    """The code is genuine but nobody in the resident index holds its e-card ID."""

    reason = "unknown_card"
    default_hint = (
        "register the patient at the desk with an identity document; the e-card is bound "
        "to the resident there"
    )


class EhcRevocationListError(EhcError):
    """A revocation list update was refused and not applied; the previous list stays.

    ``reason``: ``signature`` (not signed by the issuer's key), ``issuer`` (unknown
    issuer or key), ``version`` (not newer, or a delta that does not follow the list in
    force), ``format`` (not a list).
    """

    default_hint = (
        "nothing was changed; check the e-card platform's connection and keys, then sync again"
    )

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class EhcPlatformError(EhcError):
    """The e-card platform refused a request or failed; ``code`` is its own error code."""

    default_hint = (
        "check the e-card platform adapter's settings (app ID, secret, URL); the "
        "terminal verifies dynamic codes offline meanwhile"
    )

    def __init__(self, message: str, *, code: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class WristbandError(WardError):
    """A wristband that cannot be used as scanned: ``wristband_id`` names it."""

    def __init__(self, message: str, *, wristband_id: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.wristband_id = wristband_id


class UnknownWristbandError(WristbandError):
    """No stay has ever been bound to this band here."""

    default_hint = "scan the band again; if it is new, bind it at admission (hcm ward bind)"


class WristbandDeadError(WristbandError):
    """The band was replaced (lost, broken): it never identifies anyone again.

    ``replaced_by`` is the band that replaced it, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        wristband_id: str,
        replaced_by: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            wristband_id=wristband_id,
            hint=hint
            or "take the old band off; scan the patient's current band"
            + (f" ({replaced_by})" if replaced_by else ""),
        )
        self.replaced_by = replaced_by


class WristbandReleasedError(WristbandError):
    """The band's patient was discharged: the band no longer identifies anyone."""

    default_hint = "take the band off; a patient admitted again gets a new binding"


class WristbandInUseError(WristbandError):
    """The band is bound to another stay, or the stay already has an active band."""

    default_hint = "use another band, or replace the stay's band with 'rebind' (the old one dies)"


class VerificationFailedError(WardError):
    """A bedside check failed: nothing was executed.

    ``failed`` names the verifications that failed (``bed``, ``name``, ``drug``,
    ``dose``, ``concentration``, ``time``, ``route``, or ``second_nurse``); ``reasons``
    says why for each; ``check`` is the check (before, during, after) it failed in.
    """

    def __init__(
        self,
        message: str,
        *,
        order_id: str,
        failed: tuple[str, ...],
        reasons: dict[str, str],
        check: str = "before",
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            hint=hint or "do not carry the order out; correct what failed and scan again",
        )
        self.order_id = order_id
        self.failed = failed
        self.reasons = reasons
        self.check = check


class AlreadyExecutedError(WardError):
    """The order (this occurrence of it) was executed, or is being executed, already."""

    def __init__(
        self,
        message: str,
        *,
        order_id: str,
        execution_id: str,
        state: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            hint=hint or "do not give it again; check the execution record on the handheld",
        )
        self.order_id = order_id
        self.execution_id = execution_id
        self.state = state


class ExecutionStateError(WardError):
    """A check was asked out of order (after before during, or on a closed execution)."""

    def __init__(
        self, message: str, *, execution_id: str, state: str, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint or f"the next check due is {state!r}")
        self.execution_id = execution_id
        self.state = state


class OrderNotExecutableError(WardError):
    """The HIS shows the order cancelled or finished: it is not carried out."""

    def __init__(self, message: str, *, order_id: str, status: str) -> None:
        super().__init__(message, hint="refresh the orders on the handheld; ask the doctor")
        self.order_id = order_id
        self.status = status


class UnknownAlarmError(WardError):
    """No alarm with that ID."""

    default_hint = "list the open alarms (hcm ward alarms) and use an ID from there"


class DeviceMessageError(WardError):
    """A device message that cannot be read; it was kept, not acted on.

    ``source`` is where it came from (a topic, a gateway); ``reason`` what is wrong.
    """

    def __init__(self, message: str, *, source: str, reason: str) -> None:
        super().__init__(
            message,
            hint="the device or its gateway sends a format this installation does not read; "
            "see 'hcm ward rejects' and docs/ward.md",
        )
        self.source = source
        self.reason = reason


class LabelError(WardError):
    """A band label cannot be made (no font with Chinese glyphs, text too long)."""


# --- the local HTTP agent -----------------------------------------------------------


class AgentError(HcmError):
    """The local agent (``hcm agent serve``) refused an HTTP request before any service
    was called; ``status`` is the HTTP status it answers with. Nothing was done."""

    status = 400
    default_hint = "see docs/agent.md"


class AgentAuthError(AgentError):
    """No ``Authorization: Bearer`` token, or a token no workstation in ``[agent.tokens]``
    holds. The token itself is never repeated."""

    status = 401
    default_hint = (
        "send the workstation's token as 'Authorization: Bearer TOKEN'; hospital IT "
        "gives each workstation its own ([agent.tokens] in hcm.toml, docs/agent.md)"
    )


class AgentOriginError(AgentError):
    """The browser page calling the agent comes from an origin not in
    ``[agent] allowed_origins``: ``origin`` names it."""

    status = 403
    default_hint = "add the HIS page's origin to [agent] allowed_origins, or call from it"

    def __init__(self, message: str, *, origin: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.origin = origin


class AgentRequestError(AgentError):
    """The request cannot be used: a body too large (413), JSON that does not parse
    (400), or fields that do not validate (422); ``problems`` lists where, without the
    values sent."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        problems: list[dict[str, str]] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.problems = problems or []

    default_hint = "correct the request; the operation's schema is in /openapi.json"


class AgentRateLimitError(AgentError):
    """A workstation sent more than ``[agent] rate_limit`` requests a second; try again
    after ``retry_after`` seconds."""

    status = 429
    default_hint = "wait a moment and try again; a page should not poll in a tight loop"

    def __init__(self, message: str, *, retry_after: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class AgentBusyError(AgentError):
    """The card reader is busy with another read (another tab, another screen) for
    longer than ``[agent] card_wait``; nothing was read."""

    status = 409
    default_hint = "wait for the other read to finish, then read again"


class AgentListenError(HcmError):
    """``hcm agent serve`` cannot listen on ``[agent] host:port``: another program holds
    the port, the host is not an address of this machine, or the port needs a privilege.
    Raised before anything is opened (the database, the SAM, the readers)."""

    default_hint = "choose another port with --port or [agent] port (docs/agent.md)"

    def __init__(self, message: str, *, host: str, port: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.host = host
        self.port = port


# --- access ----------------------------------------------------------------------------


class AccessDeniedError(HcmError):
    """The caller's role may not do this, or may not see this (R-SEC-2).

    ``role`` and ``operation`` (``terminal.read``, ``his.orders`` …) name what was
    refused; ``reason`` says why: ``operation`` (the role may not do it), ``category``
    (the answer would show a category the role may not see), ``not_identified``,
    ``own_only`` (a kiosk asking for someone not identified there), ``unknown_role``,
    ``terminal``, ``require_caller`` (an unbound call while ``[access] require_caller``),
    ``break_glass``. The refusal is audited (outcome ``refused``) before it is raised.
    """

    default_hint = (
        "act in a role that may do this ([access.roles] in hcm.toml, docs/access.md), "
        "or, in an emergency, open it with session.break_glass(reason)"
    )

    def __init__(
        self,
        message: str,
        *,
        role: str | None = None,
        operation: str | None = None,
        reason: str = "operation",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.role = role
        self.operation = operation
        self.reason = reason


class UnknownRoleError(AccessDeniedError):
    """The caller names a role that is not one of ``[access.roles]`` (a forged identity)."""

    default_hint = (
        "use one of the configured roles: kiosk, registration, cashier, doctor, nurse, "
        "pharmacist, administrator, auditor (docs/access.md)"
    )


class UnknownTerminalError(AccessDeniedError):
    """The caller's terminal is not one of ``[access] terminals`` (a forged identity)."""

    default_hint = "add the terminal to [access] terminals, or act from a listed terminal"


class FieldWithheldError(AccessDeniedError):
    """A field of an answer was withheld: it is in a category (``category``) the role
    may not see. Withheld fields are absent from ``model_dump()`` and JSON; reading one
    as an attribute raises this."""

    default_hint = "this role may not see it; ask a role that may (docs/access.md)"

    def __init__(
        self,
        message: str,
        *,
        field: str,
        category: str,
        role: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, role=role, operation=None, reason="category", hint=hint)
        self.field = field
        self.category = category


class NotIdentifiedHereError(AccessDeniedError):
    """Clinical data asked for a resident not identified at this terminal in this visit.

    Identify the resident first through the session (card read, e-card code, face
    check); ``category`` names the first category that needed it.
    """

    default_hint = (
        "identify the resident at this terminal first (read the card, scan the e-card "
        "code or check the face through the session), or break the glass in an emergency"
    )

    def __init__(
        self,
        message: str,
        *,
        category: str,
        role: str | None = None,
        operation: str | None = None,
        reason: str = "not_identified",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, role=role, operation=operation, reason=reason, hint=hint)
        self.category = category


class BreakGlassError(AccessDeniedError):
    """Emergency access refused: the role may not break the glass, the reason is
    missing, or the time asked is longer than ``[access] break_glass_max_minutes``."""

    default_hint = "give a reason and at most [access] break_glass_max_minutes minutes"


# --- audit -----------------------------------------------------------------------------


class AuditError(HcmError):
    """The tamper-evident audit log could not be written or read.

    An act that cannot be audited does not happen: when the entry is written in the
    act's own transaction, the act is rolled back with it.
    """

    default_hint = "check that the database is reachable and writable ('hcm doctor')"


class AuditInputError(AuditError):
    """An entry the audit log must not hold; the value at fault is never repeated."""

    default_hint = "audit entries hold opaque IDs and short codes only"


class CheckpointFileError(AuditError):
    """A checkpoint file cannot be read: ``file`` and ``line`` say where."""

    def __init__(self, message: str, *, file: str, line: int = 0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.line = line

    default_hint = "give the file the audit log's checkpoint sink writes ([audit] checkpoint_file)"


# --- printing --------------------------------------------------------------------------


class PrintError(HcmError):
    """A receipt or a report was not printed.

    ``printer`` names the printer plugin that failed (empty when none took the
    document), ``document_id`` the document (a transaction ID, a report ID). A failed
    print never undoes what it was printed for: the journal's movement stands, and the
    failure is recorded so the receipt can be printed again (``hcm receipt reprint``).
    """

    default_hint = (
        "check the printer (paper, cover, cable or network), then print it again with "
        "`hcm receipt reprint ID`"
    )

    def __init__(
        self, message: str, *, printer: str = "", document_id: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.printer = printer
        self.document_id = document_id


class NothingToPrintError(PrintError):
    """There is nothing to print for what was asked: a movement that did not move
    money (failed, reversed, still in flight), or a report the HIS has not signed off."""

    default_hint = (
        "print a receipt once the movement is confirmed (`hcm journal show ID`), and a "
        "report once the HIS shows it final"
    )


# --- patient journeys (flows) ----------------------------------------------------------


class FlowError(HcmError):
    """A step of a patient journey cannot go on.

    ``step`` names the step (``register``, ``settle``, ``discharge`` …); ``plugin`` the
    adapter whose answer stopped it, when one did. Errors raised by the adapters
    themselves (``HisError``, ``PluginError``) reach the caller unchanged, already
    carrying the adapter's name; this family covers what the flow itself refuses.
    """

    def __init__(
        self, message: str, *, step: str, plugin: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.step = step
        self.plugin = plugin


class FlowInputError(FlowError):
    """A step was given something it cannot use; nothing was sent to any system."""

    default_hint = "correct the request and call the step again"


class NotIdentifiedError(FlowError):
    """No resident in the index holds the identifier given (e-card ID, ID number)."""

    default_hint = "read the physical card, or enrol the resident at the registration desk first"


class FaceMismatchError(FlowError):
    """The kiosk's face check did not pass; ``status`` is the check's verdict."""

    default_hint = (
        "ask the patient to look at the camera and try again; if it fails again, send "
        "them to the desk with an identity document"
    )

    def __init__(self, message: str, *, step: str, status: str, hint: str | None = None) -> None:
        super().__init__(message, step=step, hint=hint)
        self.status = status


class PaymentNotRecordedError(FlowError):
    """The payment was confirmed (``transaction_id``) but the HIS did not record it.

    The money has moved: the charges must be marked paid with the same transaction ID
    (the HIS hook is idempotent per transaction), never paid a second time.
    """

    default_hint = (
        "do not take the money again: record the payment with the same transaction ID "
        "once the hospital system answers"
    )

    def __init__(
        self,
        message: str,
        *,
        step: str,
        transaction_id: str,
        plugin: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, step=step, plugin=plugin, hint=hint)
        self.transaction_id = transaction_id


class DischargeRefusedError(FlowError):
    """The stay cannot be discharged while money is owed; ``balance`` is the amount."""

    default_hint = "settle the bill (or top up the deposit) at the cashier, then discharge"

    def __init__(self, message: str, *, step: str, balance: Any, hint: str | None = None) -> None:
        super().__init__(message, step=step, hint=hint)
        self.balance = balance
