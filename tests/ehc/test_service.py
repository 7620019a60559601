"""``Middleware.ehc``: codes accepted and refused with their reasons, on a real database."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware, hookimpl
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.ehc.codes import new_ecard_id
from hcmiddleware.ehc.service import CardFactor, FaceFactor, IdDigitsFactor
from hcmiddleware.errors import (
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
    IdentifierConflictError,
    NoAdapterError,
)
from hcmiddleware.models import (
    AuditEvent,
    EhcOnlineVerdict,
    EhcRevocation,
    EhcVerification,
    IdentifierKind,
)
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

from .conftest import ID_NUMBER, MakeMw, enrol, other_signer, signer

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
SAMPLE_CARD_NUMBER = "210000000012345678"


def flip_last(code: str) -> str:
    """The code with its last hex digit changed (always changed)."""
    return code[:-1] + ("0" if code[-1] != "0" else "1")


def sample_card() -> EmulatedCard:
    """The sample health card, in-process."""
    return EmulatedCard.from_files(PROFILE, TEST_ISSUER_KEYS)


class Listener:
    """Keeps what the service announces and audits."""

    def __init__(self) -> None:
        self.verified: list[EhcVerification] = []
        self.events: list[AuditEvent] = []

    @hookimpl
    def hcm_ehc_verified(self, result: EhcVerification) -> None:
        self.verified.append(result)

    @hookimpl
    def hcm_audit_event(self, event: AuditEvent) -> None:
        if event.action.startswith("ehc."):
            self.events.append(event)


def test_a_dynamic_code_is_accepted_once_per_terminal_and_step(
    make_mw: MakeMw, algorithm: str
) -> None:
    listener = Listener()
    mw = make_mw(algorithm, plugins={"listener": listener})
    resident = enrol(mw)
    ecard_id = mw.ehc.issue(resident.resident_id)
    code = mw.ehc.dynamic_code(ecard_id)

    result = mw.ehc.verify(code, care_step="registration", terminal_id="kiosk-03")
    assert result.resident.resident_id == resident.resident_id
    assert (result.kind, result.checked, result.key_id, result.issuer) == (
        "dynamic",
        "offline",
        "TEST1",
        "TEST",
    )
    assert result.ecard_id == ecard_id
    assert result.expires_at is not None
    assert result.issued_at is not None
    assert result.expires_at - result.issued_at == timedelta(seconds=60)
    assert listener.verified == [result]

    with pytest.raises(EhcReplayError) as caught:
        mw.ehc.verify(code, care_step="registration", terminal_id="kiosk-03")
    assert caught.value.reason == "replayed"
    # another step at the same terminal, and the same step at another terminal
    mw.ehc.verify(code, care_step="payment", terminal_id="kiosk-03")
    mw.ehc.verify(code, care_step="registration", terminal_id="kiosk-04")
    assert len(listener.verified) == 3

    outcomes = [(e.outcome, e.details.get("reason")) for e in listener.events]
    assert ("refused", "replayed") in outcomes
    for event in listener.events:  # the code and the e-card ID never reach the audit log
        assert ecard_id not in event.model_dump_json()


def test_the_e_card_and_the_physical_card_are_one_identity(make_mw: MakeMw) -> None:
    mw = make_mw(sam={"keys": str(TEST_ISSUER_KEYS)})
    by_card = mw.residents.enrol_from_card(mw.terminal.read(sample_card()))
    ecard_id = mw.ehc.issue(by_card.resident_id)
    assert mw.ehc.issue(by_card.resident_id) == ecard_id  # once per resident
    found = mw.ehc.verify(mw.ehc.dynamic_code(ecard_id), care_step="registration").resident
    assert found.resident_id == by_card.resident_id
    assert mw.residents.enrol_from_card(mw.terminal.read(sample_card())) == found
    assert found.identifier(IdentifierKind.CARD_NUMBER) == SAMPLE_CARD_NUMBER
    assert mw.residents.count() == 1
    # binding is idempotent, and an e-card ID is one resident's only
    assert mw.ehc.bind(by_card.resident_id, ecard_id.lower()).resident_id == by_card.resident_id
    other = mw.residents.enrol(name="王芳", sex=2, id_number=ID_NUMBER)
    with pytest.raises(IdentifierConflictError):
        mw.ehc.bind(other.resident_id, ecard_id)
    with pytest.raises(EhcFormatError):
        mw.ehc.bind(other.resident_id, "not-an-id")


def test_expired_and_not_yet_valid_codes(mw: Middleware) -> None:
    resident = enrol(mw)
    ecard_id = mw.ehc.issue(resident.resident_id)
    issued = int(time.time()) - 1000
    old = signer(mw).dynamic_code(ecard_id, issued=issued, lifetime=60)
    with pytest.raises(EhcExpiredError) as caught:
        mw.ehc.verify(old, care_step="registration")
    assert caught.value.reason == "expired"
    # within the clock skew (30 s) after expiry it is still good; beyond, not
    at = datetime.fromtimestamp(issued + 60 + 30, UTC)
    assert mw.ehc.verify(old, care_step="registration", now=at).kind == "dynamic"
    with pytest.raises(EhcExpiredError):
        mw.ehc.verify(old, care_step="payment", now=at + timedelta(seconds=1))

    future = signer(mw).dynamic_code(ecard_id, issued=int(time.time()) + 600)
    with pytest.raises(EhcExpiredError) as caught:
        mw.ehc.verify(future, care_step="registration")
    assert caught.value.reason == "not_yet_valid"

    forever = signer(mw).dynamic_code(ecard_id, lifetime=3600)  # [ehc] max_lifetime 300
    with pytest.raises(EhcExpiredError) as caught:
        mw.ehc.verify(forever, care_step="registration")
    assert caught.value.reason == "lifetime"


def test_forged_and_altered_codes(make_mw: MakeMw, key_dir: Path, algorithm: str) -> None:
    mw = make_mw(algorithm)
    resident = enrol(mw)
    ecard_id = mw.ehc.issue(resident.resident_id)
    forged = other_signer(key_dir, algorithm).dynamic_code(ecard_id)
    with pytest.raises(EhcSignatureError) as caught:
        mw.ehc.verify(forged, care_step="registration")
    assert caught.value.reason == "signature"

    genuine = mw.ehc.dynamic_code(ecard_id)
    body, signature = genuine.rsplit(":", 1)
    card, kind, key_id, issued, expires, nonce = body.split(":")
    longer = ":".join([card, kind, key_id, issued, str(int(expires) + 60), nonce, signature])
    someone_else = ":".join([new_ecard_id(), kind, key_id, issued, expires, nonce, signature])
    flipped = flip_last(genuine)
    for altered in (longer, someone_else, flipped):
        with pytest.raises(EhcSignatureError):
            mw.ehc.verify(altered, care_step="registration")
    # none of the refusals counted as a use
    assert mw.ehc.verify(genuine, care_step="registration").kind == "dynamic"


def test_an_ecdsa_twin_signature_is_the_same_code(make_mw: MakeMw) -> None:
    from .test_crypto import ecdsa_twin

    mw = make_mw("ecdsa-p256")
    resident = enrol(mw)
    code = mw.ehc.dynamic_code(mw.ehc.issue(resident.resident_id))
    body, signature = code.rsplit(":", 1)
    twin = f"{body}:{ecdsa_twin(bytes.fromhex(signature)).hex().upper()}"
    mw.ehc.verify(code, care_step="registration")
    with pytest.raises(EhcReplayError):
        mw.ehc.verify(twin, care_step="registration")


def test_unknown_issuer_and_unknown_card(mw: Middleware, key_dir: Path) -> None:
    resident = enrol(mw)
    ecard_id = mw.ehc.issue(resident.resident_id)
    stranger = other_signer(key_dir, "ed25519", key_id="XJ2026")
    with pytest.raises(EhcUnknownIssuerError) as caught:
        mw.ehc.verify(stranger.dynamic_code(ecard_id), care_step="registration")
    assert (caught.value.reason, caught.value.key_id) == ("unknown_issuer", "XJ2026")

    nobody = signer(mw).dynamic_code(new_ecard_id())
    with pytest.raises(EhcUnknownCardError):
        mw.ehc.verify(nobody, care_step="registration")


def test_revoked_e_cards(mw: Middleware) -> None:
    resident = enrol(mw)
    ecard_id = mw.ehc.issue(resident.resident_id)
    code = mw.ehc.dynamic_code(ecard_id)
    closed = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    mw.ehc.apply_revocations(
        signer(mw).revocation_list(
            version=1, revoked=[EhcRevocation(ecard_id=ecard_id, revoked_at=closed)]
        )
    )
    with pytest.raises(EhcRevokedError) as caught:
        mw.ehc.verify(code, care_step="registration")
    assert caught.value.reason == "revoked"
    assert caught.value.revoked_at == closed.replace(tzinfo=None)
    with pytest.raises(EhcRevokedError):  # the static code too, whatever the factor
        mw.ehc.verify(
            mw.ehc.static_code(ecard_id),
            care_step="registration",
            factor=IdDigitsFactor(ID_NUMBER[-6:]),
        )
    # restored by the next delta: the code (never used) is good again
    mw.ehc.apply_revocations(
        signer(mw).revocation_list(version=2, base_version=1, restored=[ecard_id])
    )
    assert mw.ehc.verify(code, care_step="registration").kind == "dynamic"


def test_a_static_code_needs_a_second_factor(mw: Middleware) -> None:
    resident = enrol(mw)
    static = mw.ehc.static_code(mw.ehc.issue(resident.resident_id), "110105")
    with pytest.raises(EhcSecondFactorError) as caught:
        mw.ehc.verify(static, care_step="registration")
    assert caught.value.reason == "second_factor"
    for wrong in ("31002Y", "1002X", "0031002X"):
        with pytest.raises(EhcSecondFactorError):
            mw.ehc.verify(static, care_step="registration", factor=IdDigitsFactor(wrong))
    result = mw.ehc.verify(static, care_step="registration", factor=IdDigitsFactor("31002x"))
    assert (result.kind, result.factor, result.key_id) == ("static", "id_digits", None)
    # a static code is the same every time: it is not "used up"
    assert mw.ehc.verify(static, care_step="registration", factor=IdDigitsFactor("31002X"))


def test_the_physical_card_as_second_factor(make_mw: MakeMw) -> None:
    mw = make_mw(sam={"keys": str(TEST_ISSUER_KEYS)})
    card = mw.terminal.read(sample_card())
    holder = mw.residents.enrol_from_card(card)
    static = mw.ehc.static_code(mw.ehc.issue(holder.resident_id))
    result = mw.ehc.verify(static, care_step="registration", factor=CardFactor(card))
    assert result.factor == "card"
    stranger = enrol(mw)
    with pytest.raises(EhcSecondFactorError, match="not the e-card holder's"):
        mw.ehc.verify(
            mw.ehc.static_code(mw.ehc.issue(stranger.resident_id)),
            care_step="registration",
            factor=CardFactor(card),
        )


def test_which_second_factors_a_site_accepts(make_mw: MakeMw) -> None:
    mw = make_mw(ehc={"static_factors": ["card"]})
    resident = enrol(mw)
    static = mw.ehc.static_code(mw.ehc.issue(resident.resident_id))
    with pytest.raises(EhcSecondFactorError, match="does not accept id_digits"):
        mw.ehc.verify(static, care_step="registration", factor=IdDigitsFactor("31002X"))
    never = make_mw(ehc={"static_factors": []})
    resident = enrol(never)
    with pytest.raises(EhcSecondFactorError, match="accepts none"):
        never.ehc.verify(
            never.ehc.static_code(never.ehc.issue(resident.resident_id)),
            care_step="registration",
        )


def test_bad_care_steps_and_texts_are_format_errors(mw: Middleware) -> None:
    for step in ("", "a b", "x" * 33, "挂号"):
        with pytest.raises(EhcFormatError) as caught:
            mw.ehc.verify("whatever", care_step=step)
        assert caught.value.reason == "care_step"
    with pytest.raises(EhcFormatError) as caught:
        mw.ehc.verify("https://example.invalid", care_step="registration")
    assert caught.value.reason == "kind"
    for terminal in ("x" * 65, "kiosk 3", "终端"):
        with pytest.raises(EhcFormatError) as caught:
            mw.ehc.verify("whatever", care_step="registration", terminal_id=terminal)
        assert caught.value.reason == "terminal_id"


def test_issuing_needs_a_platform_or_a_local_signer(make_mw: MakeMw) -> None:
    mw = make_mw(ehc={"issuer": None})
    resident = enrol(mw)
    with pytest.raises(NoAdapterError) as caught:
        mw.ehc.issue(resident.resident_id)
    assert caught.value.capability == "ehc.issuing"
    with pytest.raises(NoAdapterError):
        mw.ehc.dynamic_code(new_ecard_id())


class Platform:
    """An online verifier answering as told."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str, str]] = []

    @hookimpl
    def hcm_ehc_verify_online(
        self, text: str, terminal_id: str, care_step: str
    ) -> EhcOnlineVerdict | None:
        self.asked.append((text, terminal_id, care_step))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[no-any-return]


def test_online_verification_decides_when_the_platform_answers(make_mw: MakeMw) -> None:
    platform = Platform(None)
    mw = make_mw(plugins={"platform": platform})
    resident = enrol(mw)
    ecard_id = mw.ehc.issue(resident.resident_id)

    code = mw.ehc.dynamic_code(ecard_id)
    platform.answer = EhcOnlineVerdict(accepted=True, ecard_id=ecard_id)
    result = mw.ehc.verify(code, care_step="registration", terminal_id="desk-1")
    assert result.checked == "online"
    assert platform.asked == [(code, "desk-1", "registration")]
    with pytest.raises(EhcReplayError):  # the replay store still applies
        mw.ehc.verify(code, care_step="registration", terminal_id="desk-1")

    platform.answer = EhcOnlineVerdict(accepted=False, reason="revoked", message="card closed")
    with pytest.raises(EhcRevokedError, match="card closed"):
        mw.ehc.verify(mw.ehc.dynamic_code(ecard_id), care_step="registration")
    platform.answer = EhcOnlineVerdict(accepted=False, reason="expired")
    with pytest.raises(EhcExpiredError):
        mw.ehc.verify(mw.ehc.dynamic_code(ecard_id), care_step="registration")
    platform.answer = EhcOnlineVerdict(accepted=True, ecard_id=new_ecard_id())
    with pytest.raises(EhcPlatformError, match="another e-card"):
        mw.ehc.verify(mw.ehc.dynamic_code(ecard_id), care_step="registration")
    platform.answer = {"ok": True}  # not a verdict: the adapter is at fault, named
    from hcmiddleware.errors import PluginResultError

    with pytest.raises(PluginResultError) as wrong:
        mw.ehc.verify(mw.ehc.dynamic_code(ecard_id), care_step="registration")
    assert wrong.value.plugin == "platform"


def test_an_unreachable_platform_falls_back_to_the_offline_check(make_mw: MakeMw) -> None:
    platform = Platform(ConnectionRefusedError("no route"))
    mw = make_mw(plugins={"platform": platform})
    resident = enrol(mw)
    ecard_id = mw.ehc.issue(resident.resident_id)
    result = mw.ehc.verify(mw.ehc.dynamic_code(ecard_id), care_step="registration")
    assert (result.checked, len(platform.asked)) == ("offline", 1)
    with pytest.raises(EhcSignatureError):  # offline, the offline checks apply
        mw.ehc.verify(flip_last(mw.ehc.dynamic_code(ecard_id)), care_step="payment")

    strict = make_mw(plugins={"platform": Platform(ConnectionRefusedError())},
                     ehc={"online": "required"})  # fmt: skip
    resident = enrol(strict)
    with pytest.raises(EhcPlatformError, match="could not be asked"):
        strict.ehc.verify(
            strict.ehc.dynamic_code(strict.ehc.issue(resident.resident_id)),
            care_step="registration",
        )
    alone = make_mw(ehc={"online": "required"})
    with pytest.raises(EhcPlatformError, match="no adapter"):
        alone.ehc.verify(alone.ehc.dynamic_code(new_ecard_id()), care_step="registration")
    off = make_mw(plugins={"platform": Platform(AssertionError("never asked"))},
                  ehc={"online": "off"})  # fmt: skip
    resident = enrol(off)
    off.ehc.verify(off.ehc.dynamic_code(off.ehc.issue(resident.resident_id)), care_step="x")


def test_every_refusal_is_an_ehc_refused_error_with_a_reason() -> None:
    reasons = {
        cls.reason
        for cls in (
            EhcReplayError,
            EhcRevokedError,
            EhcSignatureError,
            EhcSecondFactorError,
            EhcUnknownCardError,
            EhcUnknownIssuerError,
        )
    }
    assert len(reasons) == 6
    assert all(issubclass(c, EhcRefusedError) for c in (EhcExpiredError, EhcReplayError))


def test_a_face_check_as_second_factor(make_mw: MakeMw) -> None:
    """The kiosk's live photo against the card photo, through mw.faces (its thresholds)."""
    import io

    from PIL import Image

    from hcmiddleware.face.samples import KIOSK_LIVE_PHOTO

    mw = make_mw(sam={"keys": str(TEST_ISSUER_KEYS)})
    card = mw.terminal.read(sample_card())
    holder = mw.residents.enrol_from_card(card)
    static = mw.ehc.static_code(mw.ehc.issue(holder.resident_id))
    live = KIOSK_LIVE_PHOTO.read_bytes()
    result = mw.ehc.verify(static, care_step="registration",
                           factor=FaceFactor(live, card.photo, source="card_photo"))  # fmt: skip
    assert result.factor == "face"

    import matplotlib as mpl

    hopper = Path(mpl.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    someone_else = io.BytesIO()
    Image.open(hopper).crop((137, 10, 376, 352)).save(someone_else, format="JPEG")
    with pytest.raises(EhcSecondFactorError, match=r"face check did not pass \(no_match\)"):
        mw.ehc.verify(static, care_step="registration",
                      factor=FaceFactor(someone_else.getvalue(), card.photo,
                                        source="card_photo"))  # fmt: skip
