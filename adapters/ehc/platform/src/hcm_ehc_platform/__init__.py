"""E-card platform adapter: the electronic health card's issuer over its HTTP API.

Enable ``ehc-platform`` and give ``[plugins.ehc-platform]``::

    url = "https://ehc.example.gov.cn"
    app_id = "HOSP-210100000001"
    app_secret = { env = "HCM_EHC_APP_SECRET" }
    data_key = { env = "HCM_EHC_DATA_KEY" }     # 32 hex digits: the SM4 key
    issuer = "LN"                                # the issuer its lists are for

It provides: ``hcm_ehc_register`` (open an e-card), ``hcm_ehc_generate_code``,
``hcm_ehc_verify_online`` (an unreachable platform raises ``EhcPlatformError``: the
terminal then checks offline, or refuses with ``[ehc] online = "required"``),
``hcm_ehc_revocations``, and
``hcm_empi_remote_lookup`` for e-card IDs (a holder the index does not know yet is
enrolled from the platform's record). The protocol is in
:mod:`hcm_ehc_platform.protocol`; a reference platform is in
:mod:`hcm_ehc_platform.reference`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from hcm_ehc_platform.client import PlatformClient, PlatformRefusedError
from hcm_ehc_platform.protocol import REFUSALS
from hcmiddleware import hookimpl
from hcmiddleware.config import Secret, SettingsModel
from hcmiddleware.ehc.revocations import parse_list
from hcmiddleware.errors import EhcPlatformError
from hcmiddleware.models import (
    CheckResult,
    EhcOnlineVerdict,
    EhcRevocationList,
    IdentifierKind,
    Resident,
)

if TYPE_CHECKING:
    from hcmiddleware.registry import SettingsRegistry
    from hcmiddleware.runtime import Middleware

__all__ = ["EhcPlatform", "EhcPlatformSettings", "PlatformClient"]

NAME = "ehc-platform"


class EhcPlatformSettings(SettingsModel):
    """``[plugins.ehc-platform]``."""

    url: str = Field(pattern=r"^https?://", description="the platform's base URL")
    app_id: str = Field(min_length=1, max_length=64)
    app_secret: Secret = Field(description="the app secret requests are signed with")
    data_key: Secret = Field(description="the app's SM4 data key, 32 hex digits")
    issuer: str = Field(
        pattern=r"^[0-9A-Za-z_.-]{1,32}$", description="the issuer code its lists are for"
    )
    timeout: float = Field(3.0, gt=0, le=30, description="seconds a call may take")

    @field_validator("data_key")
    @classmethod
    def _sm4_key(cls, value: Any) -> Any:
        if not re.fullmatch(r"[0-9A-Fa-f]{32}", value.get_secret_value()):
            raise ValueError("the data key is 32 hex digits (16 bytes)")
        return value


class EhcPlatform:
    """The plugin object (entry point ``ehc-platform``)."""

    hcm_plugin_name = NAME

    def __init__(self) -> None:
        self.client: PlatformClient | None = None
        self.settings: EhcPlatformSettings | None = None

    @hookimpl
    def hcm_add_config(self, settings: SettingsRegistry) -> None:
        settings.add(NAME, EhcPlatformSettings)

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        found = middleware.plugin_settings(NAME)
        assert isinstance(found, EhcPlatformSettings)
        self.settings = found
        self.client = PlatformClient(
            found.url,
            found.app_id,
            found.app_secret.get_secret_value(),
            bytes.fromhex(found.data_key.get_secret_value()),
            timeout=found.timeout,
        )

    @hookimpl
    def hcm_unconfigure(self, middleware: Middleware) -> None:
        self.client = None

    def _client(self) -> PlatformClient:
        if self.client is None:
            raise EhcPlatformError("the e-card platform adapter is not configured")
        return self.client

    @hookimpl
    def hcm_ehc_register(self, resident: Resident, card_number: str | None) -> str:
        if not resident.id_number:
            raise EhcPlatformError(
                "the e-card platform registers residents by ID number; this one has none",
                code="E_PARAM",
                hint="record the resident's ID number at the desk first",
            )
        data = self._client().call(
            "register",
            {
                "id_number": resident.id_number,
                "name": resident.name,
                "sex": int(resident.sex),
                "birth_date": resident.birth_date.isoformat() if resident.birth_date else "",
                "card_number": card_number or "",
                "phone": resident.phone or "",
            },
        )
        return str(data["ecard_id"])

    @hookimpl
    def hcm_ehc_generate_code(self, ecard_id: str) -> str:
        return str(self._client().call("generate_code", {"ecard_id": ecard_id})["code"])

    @hookimpl
    def hcm_ehc_verify_online(
        self, text: str, terminal_id: str, care_step: str
    ) -> EhcOnlineVerdict | None:
        try:
            data = self._client().call(
                "verify_code",
                {"code": text, "terminal_id": terminal_id, "care_step": care_step,
                 "channel": "terminal"},
            )  # fmt: skip
        except PlatformRefusedError as refusal:
            reason = REFUSALS.get(refusal.code)
            if reason is None:
                raise  # a refusal of the request itself (signature, app): the setup's fault
            return EhcOnlineVerdict(accepted=False, reason=reason, message=refusal.message)
        # unreachable (EhcPlatformError): raised, so the terminal decides whether to check
        # offline ([ehc] online = "auto") or refuse ("required")
        return EhcOnlineVerdict(accepted=True, ecard_id=str(data["ecard_id"]).upper())

    @hookimpl
    def hcm_ehc_revocations(
        self, issuer: str, since_version: int | None
    ) -> EhcRevocationList | None:
        if self.settings is None or issuer != self.settings.issuer:
            return None
        data = self._client().call("revocations", {"since_version": since_version})
        if not data.get("list"):
            return None
        return parse_list(data["list"])  # a malformed list is EhcRevocationListError

    @hookimpl
    def hcm_empi_remote_lookup(self, kind: str, value: str) -> list[Resident]:
        if kind != IdentifierKind.ECARD_ID:
            return []
        try:
            found = self._client().call("query", {"ecard_id": value})
        except PlatformRefusedError as refusal:
            if refusal.code == "E_NOT_FOUND":
                return []
            raise
        if found.get("status") != "active":
            return []
        born = found.get("birth_date")
        return [
            Resident(
                resident_id=f"ehc:{found['ecard_id']}",
                name=str(found["name"]),
                sex=int(found.get("sex") or 0),
                birth_date=date.fromisoformat(born) if born else None,
                id_number=found.get("id_number") or None,
                phone=found.get("phone") or None,
                identifiers=tuple(
                    ident
                    for ident in (
                        _ident(IdentifierKind.ECARD_ID, found["ecard_id"]),
                        _ident(IdentifierKind.CARD_NUMBER, found.get("card_number")),
                    )
                    if ident is not None
                ),
            )
        ]

    @hookimpl
    def hcm_doctor_checks(self, middleware: Middleware) -> list[CheckResult]:
        try:
            self._client().call("revocations", {"since_version": 2**31})
        except PlatformRefusedError:
            pass  # it answered, signed: reachable and the keys are right
        except EhcPlatformError as exc:
            return [CheckResult(name="e-card platform", ok=False, detail=exc.message,
                                hint=exc.hint)]  # fmt: skip
        return [CheckResult(name="e-card platform", ok=True, detail=self._client().url)]


def _ident(kind: IdentifierKind, value: Any) -> Any:
    from hcmiddleware.models import Identifier

    return Identifier(kind=kind, value=str(value)) if value else None
