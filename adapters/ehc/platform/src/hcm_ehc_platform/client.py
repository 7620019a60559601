"""The platform's API as calls: one signed, encrypted request, one checked answer."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from typing import Any

from hcm_ehc_platform.protocol import ERRORS, ProtocolError, envelope, open_envelope, timestamp
from hcmiddleware.errors import EhcPlatformError

__all__ = ["PlatformClient", "PlatformRefusedError"]


class PlatformRefusedError(EhcPlatformError):
    """The platform answered, and said no; ``code`` is its error code."""


class PlatformClient:
    """Calls ``<url>/api/<method>`` as app ``app_id``.

    :raises EhcPlatformError: on every call that fails: ``unreachable`` (no answer in
        ``timeout`` seconds, refused connection), ``http`` (a status other than 200),
        ``answer`` (an answer that is not the platform's: unsigned, wrong signature,
        unreadable), or the platform's own code (a :class:`PlatformRefusedError`).
    """

    def __init__(
        self, url: str, app_id: str, secret: str, data_key: bytes, *, timeout: float = 3.0
    ) -> None:
        self.url = url.rstrip("/")
        self.app_id = app_id
        self._secret = secret
        self._key = data_key
        self.timeout = timeout

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The data of a successful call."""
        request = envelope(
            {"app_id": self.app_id, "method": method, "timestamp": timestamp(),
             "nonce": secrets.token_hex(16)},
            params, secret=self._secret, key=self._key,
        )  # fmt: skip
        http = urllib.request.Request(  # noqa: S310  (the configured platform URL)
            f"{self.url}/api/{method}",
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(http, timeout=self.timeout) as answer:  # noqa: S310
                raw = answer.read(2_000_000)
        except urllib.error.HTTPError as exc:
            raise EhcPlatformError(
                f"the e-card platform answered HTTP {exc.code} to {method}", code="http"
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EhcPlatformError(
                f"the e-card platform cannot be reached ({type(reason).__name__})",
                code="unreachable",
            ) from None
        try:
            fields, data = open_envelope(raw, secret=self._secret, key=self._key)
        except ProtocolError as exc:
            raise EhcPlatformError(
                f"the e-card platform's answer to {method} cannot be trusted: {exc}",
                code="answer",
                hint="check [plugins.ehc-platform] app_secret and data_key; if they are "
                "right, report it to the platform's operator",
            ) from None
        code = fields.get("code", "")
        if code != "0":
            raise PlatformRefusedError(
                f"the e-card platform refused {method}: "
                f"{fields.get('message') or ERRORS.get(code, code)}",
                code=code,
            )
        return data
