"""The electronic health card service of a Middleware (``middleware.ehc``).

A code scanned at a terminal is checked in this order; the first check that fails
raises its typed error and nothing is recorded:

1. its shape (:func:`~hcmiddleware.ehc.codes.parse_code`): ``EhcFormatError``;
2. online, when ``[ehc] online`` is not ``off`` and an adapter answers
   ``hcm_ehc_verify_online`` — an adapter that cannot be reached falls back to the
   offline check (``auto``) or refuses (``required``);
3. offline, for a dynamic code: the key id is configured (``EhcUnknownIssuerError``),
   the signature verifies with that key's algorithm (``EhcSignatureError``: forged or
   altered), it is within its validity, allowing ``clock_skew`` (``EhcExpiredError``);
4. the e-card is on no issuer's revocation list (``EhcRevokedError``);
5. a resident holds the e-card ID (the index, else the regional index through
   ``hcm_empi_remote_lookup``): ``EhcUnknownCardError``;
6. a static code comes with one of the ``[ehc] static_factors`` and it matches the
   resident (``EhcSecondFactorError``);
7. a dynamic code was not used before at this terminal for this care step
   (``EhcReplayError``); the use is recorded.

An accepted code is announced through ``hcm_ehc_verified``; every answer, accepted or
refused, is audited (``ehc.verify``) without the code or the e-card ID.
"""

from __future__ import annotations

import hmac
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from hcmiddleware.ehc.codes import (
    DynamicCode,
    StaticCode,
    normalize_ecard_id,
    parse_code,
    static_text,
)
from hcmiddleware.errors import (
    ConfigError,
    EhcError,
    EhcExpiredError,
    EhcFormatError,
    EhcPlatformError,
    EhcRefusedError,
    EhcReplayError,
    EhcRevokedError,
    EhcSecondFactorError,
    EhcSignatureError,
    EhcUnknownCardError,
    EhcUnknownIssuerError,
    HcmError,
    IdentifierConflictError,
    NoAdapterError,
    PluginCallError,
)
from hcmiddleware.models import (
    CheckResult,
    EhcOnlineVerdict,
    EhcRevocationList,
    EhcVerification,
    IdentifierKind,
    Resident,
)
from hcmiddleware.typed import ask_one, checked

if TYPE_CHECKING:
    from hcmiddleware.card.data import CardRead
    from hcmiddleware.config import EhcSection
    from hcmiddleware.ehc.crypto import PublicKey
    from hcmiddleware.ehc.issuer import CodeIssuer
    from hcmiddleware.ehc.replay import ReplayStore
    from hcmiddleware.ehc.revocations import ListState, RevocationStore
    from hcmiddleware.runtime import Middleware

__all__ = ["CardFactor", "Ehc", "FaceFactor", "IdDigitsFactor", "SecondFactor"]

_STEP = re.compile(r"[0-9A-Za-z_.-]{1,32}")
_TERMINAL = re.compile(r"[0-9A-Za-z_.:-]{1,64}")


@dataclass(frozen=True)
class IdDigitsFactor:
    """The last ``[ehc] id_digits`` characters of the ID number, as the patient typed them."""

    digits: str = field(repr=False)
    kind: Literal["id_digits"] = "id_digits"


@dataclass(frozen=True)
class FaceFactor:
    """A live photo, checked against a reference photo of the resident (``mw.faces``).

    ``reference`` is the card photo or one the hospital keeps; ``source`` says which
    (it picks the ``[face] thresholds`` entry).
    """

    live: bytes = field(repr=False)
    reference: bytes = field(repr=False)
    source: Literal["card_photo", "enrolled"] = "enrolled"
    kind: Literal["face"] = "face"


@dataclass(frozen=True)
class CardFactor:
    """The physical health card, read at this terminal (``mw.terminal.read()``)."""

    card: CardRead = field(repr=False)
    kind: Literal["card"] = "card"


#: what a static code may come with
SecondFactor = IdDigitsFactor | FaceFactor | CardFactor


def _now() -> datetime:
    return datetime.now(UTC)


class Ehc:
    """E-card codes at this terminal, and binding e-cards to residents.

    Everything goes through here — the flows, a HIS and ``hcm ehc`` alike — so the
    checks are the same everywhere, every answer is audited and ``hcm_ehc_*`` hooks fire.
    """

    def __init__(self, middleware: Middleware) -> None:
        self._mw = middleware
        self._keys: dict[str, tuple[str, PublicKey]] | None = None
        self._replay: ReplayStore | None = None
        self._revocations: RevocationStore | None = None
        self._issuer: CodeIssuer | None = None
        self._lock = threading.Lock()

    # -- configuration ----------------------------------------------------------------

    @property
    def settings(self) -> EhcSection:
        """The ``[ehc]`` section."""
        return self._mw.config.ehc

    def _file(self) -> str | None:
        return str(self._mw.config.source) if self._mw.config.source else None

    @property
    def keys(self) -> dict[str, tuple[str, PublicKey]]:
        """Issuer public keys by key id, as ``(issuer, key)``; loaded on first use.

        :raises ConfigError: a key file cannot be read or is not the algorithm named.
        :raises MissingExtraError: an SM2 key without the ``ehc`` extra.
        """
        with self._lock:
            if self._keys is None:
                from hcmiddleware.ehc.crypto import KeyFormatError, load_public_key

                loaded: dict[str, tuple[str, PublicKey]] = {}
                for key_id, section in self._mw.config.ehc.keys.items():
                    where = f"ehc.keys.{key_id}.public_key"
                    try:
                        pem = section.public_key.read_bytes()
                    except OSError as exc:
                        raise ConfigError(
                            f"cannot read the public key file "
                            f"({exc.strerror or type(exc).__name__})",
                            file=self._file(),
                            key=where,
                            hint="give the path of the issuer's PEM public key",
                        ) from None
                    try:
                        key = load_public_key(section.algorithm, pem)
                    except KeyFormatError as exc:
                        raise ConfigError(
                            f"the public key cannot be used: {exc}",
                            file=self._file(),
                            key=where,
                            hint="check the file and [ehc.keys] algorithm against what "
                            "the issuer published",
                        ) from None
                    loaded[key_id] = (section.issuer, key)
                self._keys = loaded
            return self._keys

    @property
    def replay(self) -> ReplayStore:
        """The used-code store (the database is migrated on first use)."""
        self._migrated()
        assert self._replay is not None
        return self._replay

    @property
    def revocations(self) -> RevocationStore:
        """The revocation lists (the database is migrated on first use)."""
        self._migrated()
        assert self._revocations is not None
        return self._revocations

    def _migrated(self) -> None:
        with self._lock:
            if self._replay is None or self._revocations is None:
                from hcmiddleware import storage
                from hcmiddleware.ehc.replay import ReplayStore
                from hcmiddleware.ehc.revocations import RevocationStore

                storage.upgrade(self._mw.engine)
                self._replay = ReplayStore(self._mw.engine)
                self._revocations = RevocationStore(self._mw.engine)

    @property
    def issuer(self) -> CodeIssuer | None:
        """The local signer of ``[ehc.issuer]``, or None when none is configured."""
        section = self._mw.config.ehc.issuer
        if section is None:
            return None
        with self._lock:
            if self._issuer is None:
                from hcmiddleware.ehc.crypto import KeyFormatError
                from hcmiddleware.ehc.issuer import CodeIssuer

                key = self._mw.config.ehc.keys[section.key_id]
                try:
                    self._issuer = CodeIssuer.from_pem(
                        key.issuer,
                        section.key_id,
                        key.algorithm,
                        section.private_key.get_secret_value().encode(),
                        lifetime=section.code_lifetime,
                    )
                except KeyFormatError as exc:
                    raise ConfigError(
                        f"the signing key cannot be used: {exc}",
                        file=self._file(),
                        key="ehc.issuer.private_key",
                        hint="give the PKCS#8 PEM of the key whose public half is "
                        f"[ehc.keys.{section.key_id}]",
                    ) from None
            return self._issuer

    # -- checking a code ---------------------------------------------------------------

    def verify(
        self,
        text: str | bytes,
        *,
        care_step: str,
        terminal_id: str | None = None,
        factor: SecondFactor | None = None,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> EhcVerification:
        """Check a scanned code for ``care_step`` at this terminal; see the module docstring.

        :param care_step: what the code is used for (``registration``, ``payment``,
            ``pharmacy``, ``ward`` …: 1-32 letters, digits, ``_ . -``).
        :param terminal_id: default ``[ehc] terminal_id``.
        :param factor: a static code's second factor.
        :raises EhcFormatError: not an e-card code.
        :raises EhcRefusedError: refused; its subclass and ``reason`` say why.
        :raises EhcPlatformError: ``[ehc] online = "required"`` and the platform failed.
        """
        settings = self._mw.config.ehc
        terminal = terminal_id or settings.terminal_id
        who = actor or terminal
        if not _STEP.fullmatch(care_step or ""):
            raise EhcFormatError(
                "the care step is 1-32 letters, digits, '_', '.' or '-'",
                reason="care_step",
                hint="pass the step the code is used for, e.g. 'registration'",
            )
        if not _TERMINAL.fullmatch(terminal):
            raise EhcFormatError(
                "the terminal ID is 1-64 letters, digits, '_', '.', ':' or '-'",
                reason="terminal_id",
                hint="pass this terminal's ID as [ehc] terminal_id names it",
            )
        moment = now or _now()
        code: StaticCode | DynamicCode | None = None
        try:
            code = parse_code(text)
            result = self._check(code, care_step, terminal, factor, moment)
        except EhcError as exc:
            self._mw.audit(
                "ehc.verify",
                actor=who,
                outcome="refused",
                kind=code.kind if code is not None else "unknown",
                step=care_step,
                terminal=terminal,
                reason=str(getattr(exc, "reason", type(exc).__name__)),
            )
            raise
        self._mw.audit(
            "ehc.verify",
            actor=who,
            subject=result.resident.resident_id,
            kind=result.kind,
            step=care_step,
            terminal=terminal,
            checked=result.checked,
        )
        self._mw.hooks.hcm_ehc_verified(result=result)
        return result

    def verify_image(
        self,
        image: bytes,
        *,
        care_step: str,
        terminal_id: str | None = None,
        factor: SecondFactor | None = None,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> EhcVerification:
        """Read the code from a camera picture (PNG, JPEG …), then :meth:`verify` it.

        :raises EhcFormatError: no code, several codes, or not a picture (``reason``
            ``no_code``, ``several_codes``, ``image``); refusals as for :meth:`verify`.
        :raises MissingExtraError: the ``ehc`` extra is not installed.
        """
        from hcmiddleware.ehc.qr import decode_image

        try:
            text = decode_image(image)
        except EhcFormatError as exc:
            self._mw.audit(
                "ehc.verify",
                actor=actor or terminal_id or self._mw.config.ehc.terminal_id,
                outcome="refused",
                kind="unknown",
                step=care_step,
                reason=exc.reason,
            )
            raise
        return self.verify(
            text,
            care_step=care_step,
            terminal_id=terminal_id,
            factor=factor,
            actor=actor,
            now=now,
        )

    def _check(
        self,
        code: StaticCode | DynamicCode,
        care_step: str,
        terminal: str,
        factor: SecondFactor | None,
        moment: datetime,
    ) -> EhcVerification:
        settings = self._mw.config.ehc
        checked: Literal["offline", "online"] = "offline"
        online = self._online(code, care_step, terminal)
        if online is not None:
            checked = "online"
            if not online.accepted:
                raise _refusal(online)
            if online.ecard_id is None or normalize_ecard_id(online.ecard_id) != code.ecard_id:
                raise EhcPlatformError(
                    "the platform's answer names another e-card than the code",
                    hint="report it to the e-card platform's operator; the code was not accepted",
                )
        issuer: str | None = None
        if isinstance(code, DynamicCode):
            if online is None:
                issuer = self._offline(code, moment)
            else:
                issuer = self.keys.get(code.key_id, (None, None))[0]
        revoked_at = self.revocations.revoked(code.ecard_id, None if issuer is None else [issuer])
        if revoked_at is not None:
            raise EhcRevokedError(
                f"the e-card was closed by its issuer on {revoked_at:%Y-%m-%d}",
                revoked_at=revoked_at,
            )
        resident = self._mw.residents.lookup(IdentifierKind.ECARD_ID, code.ecard_id, remote=True)
        if resident is None:
            raise EhcUnknownCardError("no resident in the index holds this e-card")
        used_factor = None
        if isinstance(code, StaticCode):
            used_factor = self._second_factor(factor, resident)
        else:
            keep_until = code.expires_at + timedelta(seconds=settings.clock_skew)
            if not self.replay.use(
                code.signed,
                terminal_id=terminal,
                care_step=care_step,
                keep_until=keep_until,
                now=moment,
            ):
                raise EhcReplayError(
                    f"this code was already used at terminal {terminal} for {care_step}"
                )
        dynamic = code if isinstance(code, DynamicCode) else None
        return EhcVerification(
            resident=resident,
            ecard_id=code.ecard_id,
            kind="dynamic" if dynamic else "static",
            checked=checked,
            terminal_id=terminal,
            care_step=care_step,
            key_id=dynamic.key_id if dynamic else None,
            issuer=issuer,
            issued_at=dynamic.issued_at if dynamic else None,
            expires_at=dynamic.expires_at if dynamic else None,
            factor=used_factor,
        )

    def _online(
        self, code: StaticCode | DynamicCode, care_step: str, terminal: str
    ) -> EhcOnlineVerdict | None:
        mode = self._mw.config.ehc.online
        hook = "hcm_ehc_verify_online"
        if mode == "off":
            return None
        if not self._mw.dispatcher.implementers(hook):
            if mode == "required":
                raise EhcPlatformError(
                    "[ehc] online is 'required' but no adapter verifies codes online",
                    hint="enable the e-card platform adapter, or set [ehc] online = 'auto'",
                )
            return None
        try:
            plugin, answer = self._mw.dispatcher.call_first(
                hook, text=_text_of(code), terminal_id=terminal, care_step=care_step
            )
        except (PluginCallError, EhcPlatformError) as exc:
            if mode == "required":
                if isinstance(exc, EhcPlatformError):
                    raise
                raise EhcPlatformError(
                    f"the e-card platform could not be asked: {exc.message}",
                    hint="check the platform's connection; set [ehc] online = 'auto' to "
                    "check dynamic codes offline meanwhile",
                ) from exc
            return None
        if answer is None:
            if mode == "required":
                raise EhcPlatformError(
                    "[ehc] online is 'required' but the platform adapter gave no answer",
                    hint="check the platform adapter's settings (its issuer, URL)",
                )
            return None
        return checked(hook, plugin, answer, EhcOnlineVerdict)

    def _offline(self, code: DynamicCode, moment: datetime) -> str:
        settings = self._mw.config.ehc
        entry = self.keys.get(code.key_id)
        if entry is None:
            raise EhcUnknownIssuerError(
                f"no issuer key {code.key_id!r} is configured here", key_id=code.key_id
            )
        issuer, key = entry
        if not key.verify(code.signature, code.signed):
            raise EhcSignatureError(
                "the code's signature does not verify: it was forged or altered"
            )
        skew = settings.clock_skew
        now = int(moment.timestamp())
        if code.expires <= code.issued or code.expires - code.issued > settings.max_lifetime:
            raise EhcExpiredError(
                f"the code claims a validity of {code.expires - code.issued} s; at most "
                f"{settings.max_lifetime} s is accepted",
                reason="lifetime",
                hint="the issuer's codes are valid for too long: report it to the issuer",
            )
        if code.issued > now + skew:
            raise EhcExpiredError(
                "the code was issued in the future: this terminal's clock or the phone's is wrong",
                reason="not_yet_valid",
                hint="check this terminal's clock; ask the patient to refresh the code",
            )
        if now > code.expires + skew:
            raise EhcExpiredError(f"the code expired {now - code.expires} s ago")
        return issuer

    def _second_factor(
        self, factor: SecondFactor | None, resident: Resident
    ) -> Literal["id_digits", "face", "card"]:
        allowed = self._mw.config.ehc.static_factors
        if factor is None:
            raise EhcSecondFactorError(
                "a static code needs a second factor"
                + (f" ({', '.join(allowed)})" if allowed else "; this site accepts none")
            )
        if factor.kind not in allowed:
            raise EhcSecondFactorError(
                f"this site does not accept {factor.kind} as a static code's second factor"
                + (f" (it accepts {', '.join(allowed)})" if allowed else "")
            )
        if isinstance(factor, IdDigitsFactor):
            wanted = self._mw.config.ehc.id_digits
            given = factor.digits.strip().upper()
            number = (resident.id_number or "").upper()
            if len(given) != wanted or not number:
                raise EhcSecondFactorError(
                    f"give the last {wanted} characters of the ID number"
                    if number
                    else "the resident has no ID number in the index: use another factor"
                )
            if not hmac.compare_digest(given.encode(), number[-wanted:].encode()):
                raise EhcSecondFactorError("the ID-number digits do not match the e-card's holder")
            return "id_digits"
        if isinstance(factor, CardFactor):
            card = factor.card
            held = resident.identifier(IdentifierKind.CARD_NUMBER)
            same_card = held is not None and card.issuer.card_number.upper() == held.upper()
            same_person = bool(
                resident.id_number
                and card.cardholder.id_number
                and card.cardholder.id_number.upper() == resident.id_number.upper()
            )
            if not (same_card or same_person):
                raise EhcSecondFactorError("the card shown is not the e-card holder's")
            return "card"
        verdict = self._mw.faces.verify(
            factor.live,
            factor.reference,
            source=factor.source,
            resident_id=resident.resident_id,
            context="ehc",
        )
        if not verdict.matched:
            raise EhcSecondFactorError(f"the face check did not pass ({verdict.status})")
        return "face"

    # -- binding and issuing -------------------------------------------------------------

    def bind(self, resident_id: str, ecard_id: str, *, actor: str = "ehc") -> Resident:
        """Bind an e-card ID to a resident in the index (one identity, one record).

        Idempotent. The resident's physical card and the e-card are then the same
        person's: either identifies the same index entry.

        :raises EhcFormatError: the e-card ID is not 64 hex digits.
        :raises IdentifierConflictError: another resident holds that e-card ID.
        """
        resident = self._bind(resident_id, ecard_id)
        self._mw.audit("ehc.bind", actor=actor, subject=resident.resident_id)
        return resident

    def _bind(self, resident_id: str, ecard_id: str) -> Resident:
        """:meth:`bind` without its audit entry (issuing audits the whole act)."""
        canonical = normalize_ecard_id(ecard_id)
        index = self._mw.residents.index
        resident = index.get(resident_id)
        holder = index.lookup(IdentifierKind.ECARD_ID, canonical)
        if holder is not None and holder.resident_id != resident.resident_id:
            raise IdentifierConflictError(
                f"the e-card is already bound to resident {holder.resident_id}",
                kind=IdentifierKind.ECARD_ID.value,
                holder=holder.resident_id,
            )
        if holder is None:
            index.link_ecard_id(resident.resident_id, canonical)
        return index.get(resident.resident_id)

    def issue(self, resident_id: str, *, actor: str = "ehc") -> str:
        """Open an e-card for a resident and bind it; returns its ID (the issuer's side).

        The e-card platform opens it (``hcm_ehc_register``) when an adapter provides
        that; else a site with ``[ehc.issuer]`` makes a random ID itself. A resident
        who has an e-card already gets that one.

        :raises NoAdapterError: neither is available.
        """
        resident = self._mw.residents.get(resident_id)
        held = resident.identifier(IdentifierKind.ECARD_ID)
        if held is not None:
            return held
        hook = "hcm_ehc_register"
        if self._mw.dispatcher.implementers(hook):
            answer = ask_one(
                self._mw,
                hook,
                str,
                capability="ehc.issuing",
                resident=resident,
                card_number=resident.identifier(IdentifierKind.CARD_NUMBER),
            )
            ecard_id = normalize_ecard_id(answer)
        elif self.issuer is not None:
            from hcmiddleware.ehc.codes import new_ecard_id

            ecard_id = new_ecard_id()
        else:
            raise NoAdapterError(
                "ehc.issuing",
                hook,
                hint="enable the e-card platform adapter, or configure [ehc.issuer] to "
                "issue e-cards here (docs/ehc.md)",
            )
        self._bind(resident.resident_id, ecard_id)  # one act, one entry: ehc.issue
        self._mw.audit("ehc.issue", actor=actor, subject=resident.resident_id)
        return ecard_id

    def static_code(self, ecard_id: str, area_code: str | None = None) -> str:
        """The static code text of an e-card (``<ID>:1``)."""
        return static_text(ecard_id, area_code)

    def dynamic_code(self, ecard_id: str, *, lifetime: int | None = None) -> str:
        """A fresh dynamic code for an e-card (the issuer's side: demo, tests, a kiosk app).

        From the platform (``hcm_ehc_generate_code``) when an adapter provides it, else
        signed with ``[ehc.issuer]``.

        :raises NoAdapterError: neither is available.
        """
        canonical = normalize_ecard_id(ecard_id)
        hook = "hcm_ehc_generate_code"
        if self._mw.dispatcher.implementers(hook):
            return ask_one(self._mw, hook, str, capability="ehc.issuing", ecard_id=canonical)
        issuer = self.issuer
        if issuer is None:
            raise NoAdapterError(
                "ehc.issuing",
                hook,
                hint="enable the e-card platform adapter, or configure [ehc.issuer] to "
                "sign codes here (docs/ehc.md)",
            )
        return issuer.dynamic_code(canonical, lifetime=lifetime)

    # -- revocations --------------------------------------------------------------------------

    def apply_revocations(self, update: EhcRevocationList, *, actor: str = "ehc") -> ListState:
        """Check and apply one issuer's revocation list or delta (atomically).

        :raises EhcRevocationListError: refused; the list in force is unchanged.
        """
        try:
            state = self.revocations.apply(update, self.keys)
        except EhcError as exc:
            self._mw.audit(
                "ehc.revocations",
                actor=actor,
                outcome="refused",
                issuer=update.issuer,
                version=str(update.version),
                reason=str(getattr(exc, "reason", "")),
            )
            raise
        self._mw.audit(
            "ehc.revocations",
            actor=actor,
            issuer=update.issuer,
            version=str(state.version),
            entries=str(state.entries),
        )
        return state

    def issuers(self) -> list[str]:
        """The issuers with a key configured, in order."""
        return sorted({issuer for issuer, _key in self.keys.values()})

    def sync_revocations(self, *, actor: str = "ehc") -> list[ListState]:
        """Ask the platform (``hcm_ehc_revocations``) for each issuer's news and apply it.

        An issuer whose update is refused keeps its list; the first refusal is raised
        after every issuer was tried.

        :raises NoAdapterError: no adapter provides revocation lists.
        :raises EhcRevocationListError: an update was refused.
        """
        from hcmiddleware.ehc.revocations import touch

        hook = "hcm_ehc_revocations"
        if not self._mw.dispatcher.implementers(hook):
            raise NoAdapterError("ehc.revocations", hook)
        first_error: HcmError | None = None
        for issuer in self.issuers():
            held = self.revocations.state(issuer)
            try:
                plugin, answer = self._mw.dispatcher.call_first(
                    hook, issuer=issuer, since_version=held.version if held else None
                )
                if answer is None:
                    touch(self._mw.engine, issuer)
                    continue
                self.apply_revocations(
                    checked(hook, plugin, answer, EhcRevocationList), actor=actor
                )
            except HcmError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return self.revocations.states()

    # -- hcm doctor ------------------------------------------------------------------------

    def check(self, *, now: datetime | None = None) -> list[CheckResult]:
        """``hcm doctor``'s e-card checks: the issuer keys load, the lists are fresh.

        A revocation list not synced for ``[ehc] revocations_max_age`` is stale (a
        closed e-card might be accepted); so is none at all when an adapter provides
        them. Nothing is checked on a site with no ``[ehc.keys]``.
        """
        if not self._mw.config.ehc.keys:
            return []
        try:
            keys = self.keys
        except HcmError as exc:
            return [CheckResult(name="e-card keys", ok=False, detail=exc.message, hint=exc.hint)]
        results = [
            CheckResult(
                name="e-card keys",
                ok=True,
                detail=", ".join(f"{k} ({i})" for k, (i, _key) in sorted(keys.items())),
            )
        ]
        moment = (now or _now()).astimezone(UTC).replace(tzinfo=None)
        limit = timedelta(seconds=self._mw.config.ehc.revocations_max_age)
        feed = bool(self._mw.dispatcher.implementers("hcm_ehc_revocations"))
        try:
            held = {s.issuer: s for s in self.revocations.states()}
        except HcmError as exc:
            return [*results, CheckResult(name="e-card revocations", ok=False,
                                          detail=exc.message, hint=exc.hint)]  # fmt: skip
        for issuer in self.issuers():
            state = held.get(issuer)
            name = f"e-card revocations of {issuer}"
            if state is None:
                if feed:
                    results.append(CheckResult(
                        name=name, ok=False, detail="never synced",
                        hint="run 'hcm ehc sync'; schedule it to run regularly",
                    ))  # fmt: skip
                continue
            age = moment - state.synced_at
            stale = age > limit
            results.append(
                CheckResult(
                    name=name,
                    ok=not stale,
                    detail=f"version {state.version}, {state.entries} closed e-cards, synced "
                    f"{int(age.total_seconds())} s ago",
                    hint="run 'hcm ehc sync' and check the platform adapter" if stale else "",
                )
            )
        return results


def _text_of(code: StaticCode | DynamicCode) -> str:
    if isinstance(code, StaticCode):
        return static_text(code.ecard_id, code.area_code)
    return f"{code.signed.decode('ascii')}:{code.signature.hex().upper()}"


def _refusal(verdict: EhcOnlineVerdict) -> EhcRefusedError:
    """The typed error for the platform's refusal."""
    said = f"the e-card platform refused the code: {verdict.message or verdict.reason}"
    reason = verdict.reason or "refused"
    if reason in {"expired", "not_yet_valid", "lifetime"}:
        return EhcExpiredError(said, reason=reason)
    if reason == "signature":
        return EhcSignatureError(said)
    if reason == "replayed":
        return EhcReplayError(said)
    if reason == "revoked":
        return EhcRevokedError(said, revoked_at=None)
    if reason == "unknown_issuer":
        return EhcUnknownIssuerError(said, key_id="")
    if reason == "unknown_card":
        return EhcUnknownCardError(said)
    if reason == "second_factor":
        return EhcSecondFactorError(said)
    error = EhcRefusedError(said)
    error.reason = reason
    return error
