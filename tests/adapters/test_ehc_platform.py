"""The e-card platform adapter against the reference platform on loopback."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hcm_ehc_platform import EhcPlatform
from hcm_ehc_platform.client import PlatformClient, PlatformRefusedError
from hcm_ehc_platform.protocol import envelope, sign, timestamp
from hcm_ehc_platform.reference import App, ReferencePlatform

from hcmiddleware import Middleware
from hcmiddleware.ehc.service import IdDigitsFactor
from hcmiddleware.errors import (
    EhcPlatformError,
    EhcReplayError,
    EhcRevokedError,
    EhcSignatureError,
    EhcUnknownCardError,
)
from hcmiddleware.models import IdentifierKind

ID_NUMBER = "11010519491231002X"


@pytest.fixture(params=["sm2", "ecdsa-p256"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReferencePlatform]:
    """The reference platform, signing with SM2 (the national choice) or ECDSA."""
    with ReferencePlatform(tmp_path / "platform.db", algorithm=request.param) as running:
        yield running


def make(
    hcm_make_middleware: Any,
    platform: ReferencePlatform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    **ehc: Any,
) -> Middleware:
    """A terminal trusting the platform's key, with the adapter configured for it."""
    public = tmp_path / f"{platform.key_id}.pub.pem"
    public.write_bytes(platform.public_pem())
    monkeypatch.setenv("HCM_EHC_APP_SECRET", platform.app.secret)
    monkeypatch.setenv("HCM_EHC_DATA_KEY", platform.app.data_key.hex())
    mw: Middleware = hcm_make_middleware(
        plugins={"ehc-platform": EhcPlatform()},
        settings={
            "ehc-platform": {
                "url": platform.url,
                "app_id": platform.app.app_id,
                "app_secret": {"env": "HCM_EHC_APP_SECRET"},
                "data_key": {"env": "HCM_EHC_DATA_KEY"},
                "issuer": platform.issuer,
                "timeout": 2.0,
            }
        },
        ehc={
            "keys": {
                platform.key_id: {
                    "issuer": platform.issuer,
                    "algorithm": platform.algorithm,
                    "public_key": str(public),
                }
            },
            **ehc,
        },
    )
    return mw


@pytest.fixture
def mw(
    hcm_make_middleware: Any,
    platform: ReferencePlatform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Middleware:
    return make(hcm_make_middleware, platform, tmp_path, monkeypatch)


def test_issue_verify_online_then_offline(mw: Middleware, platform: ReferencePlatform) -> None:
    resident = mw.residents.enrol(name="王芳", sex=2, id_number=ID_NUMBER, card_number="H1")
    ecard_id = mw.ehc.issue(resident.resident_id)
    assert mw.residents.lookup(IdentifierKind.ECARD_ID, ecard_id) == mw.residents.get(
        resident.resident_id
    )
    code = mw.ehc.dynamic_code(ecard_id)
    assert platform.calls == ["register", "generate_code"]

    result = mw.ehc.verify(code, care_step="registration", terminal_id="kiosk-1")
    assert (result.checked, result.resident.resident_id) == ("online", resident.resident_id)
    with pytest.raises(EhcReplayError, match="platform refused"):  # the platform says so
        mw.ehc.verify(code, care_step="registration", terminal_id="kiosk-1")

    forged = code[:-1] + ("0" if code[-1] != "0" else "1")
    with pytest.raises(EhcSignatureError):
        mw.ehc.verify(forged, care_step="registration")

    # the platform goes away: the same kind of code is checked offline with its key
    offline_code = mw.ehc.dynamic_code(ecard_id)
    platform.close()
    result = mw.ehc.verify(offline_code, care_step="registration", terminal_id="kiosk-1")
    assert result.checked == "offline"
    with pytest.raises(EhcReplayError):
        mw.ehc.verify(offline_code, care_step="registration", terminal_id="kiosk-1")


def test_a_closed_e_card_is_refused_online_and_after_sync_offline(
    mw: Middleware, platform: ReferencePlatform
) -> None:
    resident = mw.residents.enrol(name="王芳", sex=2, id_number=ID_NUMBER)
    ecard_id = mw.ehc.issue(resident.resident_id)
    code = mw.ehc.dynamic_code(ecard_id)
    # nothing closed yet: the platform's list is there from the first day, empty
    [fresh] = mw.ehc.sync_revocations()
    assert (fresh.issuer, fresh.version, fresh.entries) == (platform.issuer, 1, 0)
    assert all(r.ok for r in mw.ehc.check() if "revocations" in r.name)
    client = mw.pm.get_plugin("ehc-platform").client
    closed = client.call("close", {"ecard_id": ecard_id, "reason": "lost"})
    assert closed["version"] == 2
    with pytest.raises(EhcRevokedError):
        mw.ehc.verify(code, care_step="registration")

    [state] = mw.ehc.sync_revocations()
    assert (state.issuer, state.version, state.entries) == (platform.issuer, 2, 1)
    platform.close()
    with pytest.raises(EhcRevokedError) as caught:
        mw.ehc.verify(code, care_step="payment")
    assert caught.value.revoked_at is not None


def test_revocation_deltas_from_the_platform(mw: Middleware, platform: ReferencePlatform) -> None:
    client = mw.pm.get_plugin("ehc-platform").client
    ids = [
        client.call("register", {"id_number": f"ID{n}", "name": f"n{n}"})["ecard_id"]
        for n in range(4)
    ]
    client.call("close", {"ecard_id": ids[0]})
    assert [s.version for s in mw.ehc.sync_revocations()] == [2]  # 1: the empty first list
    client.call("close", {"ecard_id": ids[1]})
    client.call("close", {"ecard_id": ids[2], "reason": "fraud"})
    [state] = mw.ehc.sync_revocations()  # one delta from 2 to 4
    assert (state.version, state.entries) == (4, 3)
    assert [mw.ehc.revocations.revoked(i) is not None for i in ids] == [True, True, True, False]
    assert platform.calls.count("revocations") == 2


def test_an_e_card_holder_unknown_here_is_enrolled_from_the_platform(
    mw: Middleware, platform: ReferencePlatform
) -> None:
    client = mw.pm.get_plugin("ehc-platform").client
    ecard_id = client.call(
        "register",
        {"id_number": ID_NUMBER, "name": "王芳", "sex": 2, "card_number": "H9", "phone": ""},
    )["ecard_id"]
    static = mw.ehc.static_code(ecard_id)
    result = mw.ehc.verify(static, care_step="registration", factor=IdDigitsFactor("31002X"))
    assert (result.checked, result.factor) == ("online", "id_digits")
    assert result.resident.id_number == ID_NUMBER
    assert result.resident.identifier(IdentifierKind.CARD_NUMBER) == "H9"
    assert mw.residents.count() == 1
    # and an e-card the platform does not know either
    with pytest.raises(EhcUnknownCardError):
        mw.ehc.verify(mw.ehc.static_code("AB" * 32), care_step="registration",
                      factor=IdDigitsFactor("31002X"))  # fmt: skip


def test_online_required_refuses_when_the_platform_is_down(
    hcm_make_middleware: Any,
    platform: ReferencePlatform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mw = make(hcm_make_middleware, platform, tmp_path, monkeypatch, online="required")
    resident = mw.residents.enrol(name="王芳", sex=2, id_number=ID_NUMBER)
    code = mw.ehc.dynamic_code(mw.ehc.issue(resident.resident_id))
    platform.close()
    with pytest.raises(EhcPlatformError):
        mw.ehc.verify(code, care_step="registration")


def test_doctor_sees_the_platform(mw: Middleware, platform: ReferencePlatform) -> None:
    rows = [r for p, r in mw.doctor() if p == "ehc-platform"]
    assert [(r.name, r.ok) for r in rows] == [("e-card platform", True)]
    platform.close()
    rows = [r for p, r in mw.doctor() if p == "ehc-platform"]
    assert [(r.name, r.ok) for r in rows] == [("e-card platform", False)]


# --- the protocol ------------------------------------------------------------------------


def raw_call(platform: ReferencePlatform, request: dict[str, str]) -> dict[str, str]:
    import urllib.request

    http = urllib.request.Request(
        f"{platform.url}/api/x", data=json.dumps(request).encode(), method="POST"
    )
    with urllib.request.urlopen(http, timeout=2) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def fields(platform: ReferencePlatform, **overrides: str) -> dict[str, str]:
    base = {
        "app_id": platform.app.app_id,
        "method": "query",
        "timestamp": timestamp(),
        "nonce": secrets.token_hex(16),
    }
    return {**base, **overrides}


@pytest.mark.parametrize("platform", ["ed25519"], indirect=True)
def test_requests_are_signed_fresh_and_once(platform: ReferencePlatform) -> None:
    app = platform.app
    good = envelope(fields(platform), {"ecard_id": "AB" * 32}, secret=app.secret,
                    key=app.data_key)  # fmt: skip
    assert raw_call(platform, good)["code"] == "E_NOT_FOUND"
    assert raw_call(platform, good)["code"] == "E_NONCE"  # the same request again

    tampered = envelope(fields(platform), {"ecard_id": "AB" * 32}, secret=app.secret,
                        key=app.data_key)  # fmt: skip
    tampered["method"] = "close"
    assert raw_call(platform, tampered)["code"] == "E_SIGN"

    stale = envelope(
        fields(platform, timestamp=timestamp(datetime.now(UTC) - timedelta(minutes=6))),
        {"ecard_id": "AB" * 32}, secret=app.secret, key=app.data_key,
    )  # fmt: skip
    assert raw_call(platform, stale)["code"] == "E_TIME"

    stranger = envelope(fields(platform, app_id="nobody"), {}, secret="x", key=bytes(16))
    answer = raw_call(platform, stranger)
    assert answer["code"] == "E_APP"
    assert "sign" not in answer  # nobody to sign for

    garbled = envelope(fields(platform), None, secret=app.secret, key=app.data_key)
    garbled["biz_content"], garbled["iv"] = "bm90IFNNNA==", "00" * 16
    garbled["sign"] = sign(garbled, app.secret)
    assert raw_call(platform, garbled)["code"] == "E_FORMAT"

    # the answer is signed by the platform: the client checks it
    answer = raw_call(platform, envelope(fields(platform), {"ecard_id": "AB" * 32},
                                         secret=app.secret, key=app.data_key))  # fmt: skip
    assert answer["sign"] == sign(answer, app.secret)


@pytest.mark.parametrize("platform", ["ed25519"], indirect=True)
def test_the_client_names_what_went_wrong(platform: ReferencePlatform) -> None:
    app = platform.app
    right = PlatformClient(platform.url, app.app_id, app.secret, app.data_key)
    with pytest.raises(PlatformRefusedError) as refused:
        right.call("query", {"ecard_id": "AB" * 32})
    assert refused.value.code == "E_NOT_FOUND"
    with pytest.raises(PlatformRefusedError) as refused:
        right.call("register", {"name": "no ID number"})
    assert refused.value.code == "E_PARAM"
    wrong_key = PlatformClient(platform.url, app.app_id, app.secret, bytes(16))
    with pytest.raises(EhcPlatformError) as caught:
        wrong_key.call("query", {"ecard_id": "AB" * 32})
    assert caught.value.code == "E_FORMAT"  # the platform cannot read it
    wrong_secret = PlatformClient(platform.url, app.app_id, "not the secret", app.data_key)
    with pytest.raises(EhcPlatformError) as caught:
        wrong_secret.call("query", {"ecard_id": "AB" * 32})
    assert caught.value.code in {"E_SIGN", "answer"}
    other_app = PlatformClient(platform.url, "nobody", app.secret, app.data_key)
    with pytest.raises(EhcPlatformError) as caught:
        other_app.call("query", {"ecard_id": "AB" * 32})
    assert caught.value.code == "answer"  # an unsigned refusal is not trusted
    platform.close()
    with pytest.raises(EhcPlatformError) as caught:
        right.call("query", {"ecard_id": "AB" * 32})
    assert caught.value.code == "unreachable"


def test_the_platform_keeps_its_key_across_restarts(tmp_path: Path) -> None:
    apps = [App.new("one")]
    with ReferencePlatform(tmp_path / "p.db", apps=apps) as first:
        pem = first.public_pem()
    with ReferencePlatform(tmp_path / "p.db", apps=apps) as second:
        assert second.public_pem() == pem
