"""The reference e-card platform: the issuer's side of the API, on loopback.

It keeps its own SQLite store (e-cards, revocation history, used codes, request
nonces) and signing key, and answers the methods of the platform's API
(:mod:`hcm_ehc_platform.protocol`):

=================  ==============================================================
``register``       open an e-card for a person (idempotent per ID number)
``generate_code``  a fresh dynamic code, signed with the platform's key
``verify_code``    is this code good at this terminal for this care step?
``query``          the e-card's holder and status
``close``          close an e-card; it goes onto the revocation list
``revocations``    the signed list of closed e-cards, or what changed since a version
=================  ==============================================================

For the tests and the demo only: it holds personal data in a plain SQLite file.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from hcm_ehc_platform.protocol import (
    MAX_CLOCK_SKEW,
    ProtocolError,
    envelope,
    open_envelope,
    timestamp,
)
from hcmiddleware.ehc.codes import DynamicCode, StaticCode, parse_code
from hcmiddleware.ehc.crypto import generate_private_key, load_private_key
from hcmiddleware.ehc.issuer import CodeIssuer
from hcmiddleware.errors import EhcFormatError
from hcmiddleware.models import EhcRevocation

__all__ = ["App", "ReferencePlatform"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS platform_key (
    key_id TEXT PRIMARY KEY, algorithm TEXT NOT NULL, private_pem TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ecard (
    ecard_id TEXT PRIMARY KEY, id_number TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
    sex INTEGER NOT NULL, birth_date TEXT, card_number TEXT, phone TEXT,
    status TEXT NOT NULL, created_at TEXT NOT NULL, closed_at TEXT, close_reason TEXT);
CREATE TABLE IF NOT EXISTS revocation_change (
    version INTEGER PRIMARY KEY, ecard_id TEXT NOT NULL, action TEXT NOT NULL,
    at TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS used_code (
    digest TEXT NOT NULL, terminal_id TEXT NOT NULL, care_step TEXT NOT NULL,
    expires INTEGER NOT NULL, PRIMARY KEY (digest, terminal_id, care_step));
CREATE TABLE IF NOT EXISTS request_nonce (
    app_id TEXT NOT NULL, nonce TEXT NOT NULL, seen INTEGER NOT NULL,
    PRIMARY KEY (app_id, nonce));
"""


class App:
    """An application allowed to call the platform: its ID, secret and SM4 data key."""

    def __init__(self, app_id: str, secret: str, data_key: bytes) -> None:
        if len(data_key) != 16:
            raise ValueError("an SM4 data key is 16 bytes")
        self.app_id = app_id
        self.secret = secret
        self.data_key = data_key

    @classmethod
    def new(cls, app_id: str) -> App:
        """An app with a fresh secret and data key."""
        return cls(app_id, secrets.token_hex(16), secrets.token_bytes(16))


class _RefusedError(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message


def _utc(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


class ReferencePlatform:
    """The reference platform on ``127.0.0.1`` (a free port unless ``port`` is given).

    :param issuer: the issuer code its revocation lists carry.
    :param key_id: the key id its codes name; the key is made on first start and kept
        in the store, so a restarted platform signs with the same key.
    :param algorithm: ``sm2`` (default), ``ecdsa-p256`` or ``ed25519``.
    :param apps: the apps allowed to call; default one new app (:attr:`app`).
    """

    def __init__(
        self,
        store: Path,
        *,
        issuer: str = "LN",
        key_id: str = "LN2026A",
        algorithm: str = "sm2",
        code_lifetime: int = 60,
        apps: list[App] | None = None,
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.key_id = key_id
        self.algorithm = algorithm
        self.clock = clock
        self.apps = {a.app_id: a for a in (apps or [App.new("hcm-test")])}
        self._lock = threading.Lock()
        self._db = sqlite3.connect(store, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        # the list exists from the first day, empty, as version 1: a terminal that syncs
        # before any e-card was closed holds a signed, current list, not "never synced"
        self._db.execute(
            "INSERT INTO revocation_change (version, ecard_id, action, at, reason)"
            " SELECT 1, '', 'publish', ?, '' WHERE NOT EXISTS (SELECT 1 FROM revocation_change)",
            (_utc(),),
        )
        self.signer = CodeIssuer(issuer, key_id, self._key(), lifetime=code_lifetime)
        self.calls: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread: threading.Thread | None = None

    # -- running ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def app(self) -> App:
        """The first app (the one made when none was given)."""
        return next(iter(self.apps.values()))

    def public_pem(self) -> bytes:
        """The public key terminals check codes and lists with (PEM)."""
        return self.signer.key.public_key().public_pem()

    def start(self) -> ReferencePlatform:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ehc-reference-platform", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and close the store."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()
        with self._lock:
            self._db.close()

    def __enter__(self) -> ReferencePlatform:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _key(self) -> Any:
        row = self._db.execute(
            "SELECT algorithm, private_pem FROM platform_key WHERE key_id = ?", (self.key_id,)
        ).fetchone()
        if row is not None:
            if row[0] != self.algorithm:
                raise ValueError(
                    f"key {self.key_id} in the store is {row[0]}, not {self.algorithm}"
                )
            return load_private_key(row[0], row[1].encode())
        key = generate_private_key(self.algorithm)
        self._db.execute(
            "INSERT INTO platform_key VALUES (?, ?, ?)",
            (self.key_id, self.algorithm, key.private_pem().decode()),
        )
        return key

    # -- the API ---------------------------------------------------------------------------

    def handle(self, raw: bytes) -> dict[str, str]:
        """Answer one request envelope (what the HTTP handler calls)."""
        app: App | None = None
        try:
            try:
                head = json.loads(raw)
                app = self.apps.get(str(head.get("app_id"))) if isinstance(head, dict) else None
            except ValueError:
                raise _RefusedError("E_FORMAT", "not JSON") from None
            if app is None:
                raise _RefusedError("E_APP")
            try:
                fields, params = open_envelope(raw, secret=app.secret, key=app.data_key)
            except ProtocolError as exc:
                raise _RefusedError(exc.code, str(exc)) from None
            self._check_fresh(app, fields)
            method = fields.get("method", "")
            self.calls.append(method)
            action = getattr(self, f"_do_{method}", None)
            if action is None:
                raise _RefusedError("E_METHOD", f"no method {method!r}")
            data = action(params)
        except _RefusedError as refused:
            if app is None:  # nobody to sign for: an unsigned refusal
                return {"code": refused.code, "message": refused.message or refused.code}
            return envelope(
                {"code": refused.code, "message": refused.message or refused.code,
                 "timestamp": timestamp(), "nonce": secrets.token_hex(16)},
                None, secret=app.secret, key=app.data_key,
            )  # fmt: skip
        return envelope(
            {"code": "0", "message": "ok", "timestamp": timestamp(),
             "nonce": secrets.token_hex(16)},
            data, secret=app.secret, key=app.data_key,
        )  # fmt: skip

    def _check_fresh(self, app: App, fields: dict[str, str]) -> None:
        try:
            sent = datetime.strptime(fields.get("timestamp", ""), "%Y%m%d%H%M%S").replace(
                tzinfo=UTC
            )
        except ValueError:
            raise _RefusedError("E_TIME", "no timestamp") from None
        now = self.clock()
        if abs(sent.timestamp() - now) > MAX_CLOCK_SKEW:
            raise _RefusedError("E_TIME")
        nonce = fields.get("nonce", "")
        if not 16 <= len(nonce) <= 64:
            raise _RefusedError("E_PARAM", "a nonce is 16-64 characters")
        with self._lock:
            self._db.execute(
                "DELETE FROM request_nonce WHERE seen < ?", (int(now) - 2 * MAX_CLOCK_SKEW,)
            )
            try:
                self._db.execute(
                    "INSERT INTO request_nonce VALUES (?, ?, ?)", (app.app_id, nonce, int(now))
                )
            except sqlite3.IntegrityError:
                raise _RefusedError("E_NONCE") from None

    @staticmethod
    def _text(params: dict[str, Any], name: str, *, required: bool = True) -> str:
        value = params.get(name)
        if value is None or value == "":
            if required:
                raise _RefusedError("E_PARAM", f"{name} is missing")
            return ""
        if not isinstance(value, str) or len(value) > 600:
            raise _RefusedError("E_PARAM", f"{name} must be text")
        return value

    def _card(self, ecard_id: str) -> sqlite3.Row | tuple[Any, ...]:
        with self._lock:
            row = self._db.execute(
                "SELECT ecard_id, id_number, name, sex, birth_date, card_number, phone, status,"
                " closed_at FROM ecard WHERE ecard_id = ?",
                (ecard_id.upper(),),
            ).fetchone()
        if row is None:
            raise _RefusedError("E_NOT_FOUND")
        return row  # type: ignore[no-any-return]

    def _do_register(self, params: dict[str, Any]) -> dict[str, Any]:
        id_number = self._text(params, "id_number").upper()
        name = self._text(params, "name")
        sex = params.get("sex", 0)
        if not isinstance(sex, int):
            raise _RefusedError("E_PARAM", "sex is a number")
        with self._lock:
            row = self._db.execute(
                "SELECT ecard_id, status FROM ecard WHERE id_number = ?", (id_number,)
            ).fetchone()
            if row is not None and row[1] == "active":
                return {"ecard_id": row[0], "created": False}
            if row is not None:  # closed: the person gets a new e-card
                self._db.execute("DELETE FROM ecard WHERE ecard_id = ?", (row[0],))
            ecard_id = secrets.token_hex(32).upper()
            self._db.execute(
                "INSERT INTO ecard VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, NULL, NULL)",
                (
                    ecard_id,
                    id_number,
                    name,
                    sex,
                    self._text(params, "birth_date", required=False) or None,
                    self._text(params, "card_number", required=False) or None,
                    self._text(params, "phone", required=False) or None,
                    _utc(),
                ),
            )
        return {"ecard_id": ecard_id, "created": True}

    def _do_generate_code(self, params: dict[str, Any]) -> dict[str, Any]:
        row = self._card(self._text(params, "ecard_id"))
        if row[7] != "active":
            raise _RefusedError("E_CLOSED")
        issued = int(self.clock())
        code = self.signer.dynamic_code(str(row[0]), issued=issued)
        return {"code": code, "expires": issued + self.signer.lifetime}

    def _do_verify_code(self, params: dict[str, Any]) -> dict[str, Any]:
        text = self._text(params, "code")
        terminal = self._text(params, "terminal_id")
        step = self._text(params, "care_step")
        try:
            code = parse_code(text)
        except EhcFormatError as exc:
            raise _RefusedError("E_CODE_FORMAT", exc.message) from None
        if isinstance(code, StaticCode):
            row = self._card(code.ecard_id)
            if row[7] != "active":
                raise _RefusedError("E_CLOSED")
            return {"ecard_id": row[0], "kind": "static"}
        return self._verify_dynamic(code, terminal, step)

    def _verify_dynamic(self, code: DynamicCode, terminal: str, step: str) -> dict[str, Any]:
        if code.key_id != self.key_id:
            raise _RefusedError("E_CODE_ISSUER")
        if not self.signer.key.public_key().verify(code.signature, code.signed):
            raise _RefusedError("E_CODE_SIGNATURE")
        now = int(self.clock())
        if not code.issued <= now + 30 or now > code.expires + 30:
            raise _RefusedError("E_CODE_EXPIRED")
        row = self._card(code.ecard_id)
        if row[7] != "active":
            raise _RefusedError("E_CLOSED")
        digest = hashlib.sha256(code.signed).hexdigest()
        with self._lock:
            self._db.execute("DELETE FROM used_code WHERE expires < ?", (now - 60,))
            try:
                self._db.execute(
                    "INSERT INTO used_code VALUES (?, ?, ?, ?)",
                    (digest, terminal, step, code.expires),
                )
            except sqlite3.IntegrityError:
                raise _RefusedError("E_CODE_USED") from None
        return {"ecard_id": row[0], "kind": "dynamic", "expires": code.expires}

    def _do_query(self, params: dict[str, Any]) -> dict[str, Any]:
        row = self._card(self._text(params, "ecard_id"))
        keys = ("ecard_id", "id_number", "name", "sex", "birth_date", "card_number", "phone")
        found = dict(zip(keys, row[:7], strict=True))
        found["status"] = row[7]
        return found

    def _do_close(self, params: dict[str, Any]) -> dict[str, Any]:
        ecard_id = self._text(params, "ecard_id").upper()
        reason = self._text(params, "reason", required=False) or "closed"
        if reason not in {"closed", "lost", "fraud", "deceased"}:
            raise _RefusedError("E_PARAM", "reason is closed, lost, fraud or deceased")
        row = self._card(ecard_id)
        if row[7] != "active":
            raise _RefusedError("E_CLOSED")
        at = _utc()
        with self._lock:
            self._db.execute(
                "UPDATE ecard SET status = 'closed', closed_at = ?, close_reason = ?"
                " WHERE ecard_id = ?",
                (at, reason, ecard_id),
            )
            self._db.execute(
                "INSERT INTO revocation_change (ecard_id, action, at, reason) VALUES (?, ?, ?, ?)",
                (ecard_id, "revoke", at, reason),
            )
            version = self._db.execute("SELECT max(version) FROM revocation_change").fetchone()[0]
        return {"closed_at": at, "version": version}

    def _do_revocations(self, params: dict[str, Any]) -> dict[str, Any]:
        since = params.get("since_version")
        if since is not None and (not isinstance(since, int) or since < 0):
            raise _RefusedError("E_PARAM", "since_version is a version number")
        with self._lock:
            current = self._db.execute("SELECT max(version) FROM revocation_change").fetchone()[0]
            if current is None or since == current:
                return {}
            if since is None or since > current:
                rows = self._db.execute(
                    "SELECT ecard_id, at, reason FROM ecard JOIN ("
                    " SELECT ecard_id AS id, max(at) AS at, reason FROM revocation_change"
                    " WHERE action = 'revoke' GROUP BY ecard_id) ON id = ecard_id"
                    " WHERE status = 'closed' ORDER BY ecard_id"
                ).fetchall()
                listed = self.signer.revocation_list(version=current, revoked=_entries(rows))
            else:
                rows = self._db.execute(
                    "SELECT ecard_id, at, reason FROM revocation_change"
                    " WHERE version > ? AND action = 'revoke' ORDER BY version",
                    (since,),
                ).fetchall()
                listed = self.signer.revocation_list(
                    version=current, base_version=since, revoked=_entries(rows)
                )
        return {"list": json.loads(listed.model_dump_json())}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if not self.path.startswith("/api/"):
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > 1_000_000:
                    self.send_error(413)
                    return
                answer = platform.handle(self.rfile.read(length))
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the tests' output stays readable

        return Handler


def _entries(rows: list[tuple[Any, ...]]) -> list[EhcRevocation]:
    return [
        EhcRevocation(
            ecard_id=row[0],
            revoked_at=datetime.strptime(row[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
            reason=row[2],
        )
        for row in rows
    ]
