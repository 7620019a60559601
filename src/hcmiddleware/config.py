"""The configuration: one TOML file, one root pydantic model, typed plugin sections.

A site's file looks like this (every key optional; the defaults run the demo)::

    [middleware]
    site_name = "Shenyang No. 1 Hospital"
    institution_code = "210100000001"
    data_dir = "/var/lib/hcm"

    [database]
    url = "postgresql+psycopg://hcm@db.example/hcm"

    [readers]
    user = "Virtual PCD 00 00"
    sam = "Virtual PCD 00 01"

    [plugins]
    enabled = ["sample-his"]
    call_timeout = 10.0
    timeouts = { sample-his = 3.0 }

    [plugins.sample-his]          # validated by the plugin's own settings model
    hospital_code = "H0001"

Secrets are never written into the file: a secret is ``{env = "NAME"}`` or
``{file = "path"}``, resolved once at load time and held as
:class:`pydantic.SecretStr`, which prints as ``**********``.

Every relative path — ``data_dir``, ``[sam] keys``, a secret's ``file``, a SQLite URL,
a plugin's :data:`ConfigPath` setting — is taken relative to the config file, never to
the working directory, so a service started from anywhere opens the same files. With no
``data_dir`` the platform's data folder is used (:func:`default_data_dir`).

The model is frozen after loading. Plugin sections stay raw here; the runtime validates
each against the model its plugin registered through ``hcm_add_config``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hcmiddleware.errors import ConfigError, SecretError
from hcmiddleware.face.settings import FaceSettings
from hcmiddleware.ward.settings import WardSettings

__all__ = [
    "AGENT_NAME",
    "AccessSection",
    "AgentSection",
    "AgentToken",
    "AuditSection",
    "CardsSection",
    "Config",
    "ConfigPath",
    "DatabaseSection",
    "EhcIssuerSection",
    "EhcKeySection",
    "EhcSection",
    "EmpiSection",
    "LoggingSection",
    "MiddlewareSection",
    "PluginsSection",
    "PrintingSection",
    "ReadersSection",
    "RoleSection",
    "SamSection",
    "Secret",
    "SettingsModel",
    "config_error_from_validation",
    "default_data_dir",
    "load_config",
    "new_agent_token",
    "parse_config",
    "token_digest",
]

#: Keys of ``[plugins]`` that belong to the core; no plugin may take these names.
RESERVED_PLUGIN_KEYS = frozenset({"enabled", "call_timeout", "timeouts", "max_stalled_calls"})


def _base_dir(info: ValidationInfo) -> Path:
    """The folder relative paths are taken from: the config file's, else the working one."""
    base = (info.context or {}).get("base_dir")
    return Path(base) if base else Path.cwd()


def default_data_dir() -> Path:
    """Where an installation keeps its data when ``[middleware] data_dir`` is not set.

    ``$HCM_DATA_DIR`` if set, else ``$XDG_DATA_HOME/hcmiddleware``, else
    ``~/.local/share/hcmiddleware`` — the same folder whatever the working directory.
    """
    explicit = os.environ.get("HCM_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return (root / "hcmiddleware").absolute()


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    path = value.expanduser()
    return path if path.is_absolute() else (_base_dir(info) / path).absolute()


#: A path setting: relative paths are taken from the config file's folder (absolute
#: once loaded). Plugins use it for their own files too.
ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


def _resolve_secret(value: Any, info: ValidationInfo) -> Any:
    """Turn ``{env = NAME}`` / ``{file = PATH}`` into the secret's text."""
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        raise PydanticCustomError(
            "secret_inline",
            "a secret may not be written into the config file",
        )
    if not isinstance(value, Mapping) or set(value) not in ({"env"}, {"file"}):
        raise PydanticCustomError("secret_form", "a secret must be {env = ...} or {file = ...}")
    if "env" in value:
        name = str(value["env"])
        text = os.environ.get(name)
        if text is None:
            raise PydanticCustomError(
                "secret_missing",
                "environment variable {name} is not set",
                {"name": name, "source": "env"},
            )
        return SecretStr(text)
    path = _resolve_path(Path(str(value["file"])), info)
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise PydanticCustomError(
            "secret_missing",
            "secret file {name} cannot be read ({reason})",
            {"name": str(path), "source": "file", "reason": exc.strerror or type(exc).__name__},
        ) from None


#: A secret setting: give it as ``{env = "NAME"}`` or ``{file = "path"}``.
Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]


class SettingsModel(BaseModel):
    """Base for every settings section, the core's and the plugins'.

    Unknown keys are errors (a typo must not silently fall back to a default) and the
    values are frozen once loaded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


#: ``[middleware] institution_code``'s default: a site that has not set its own.
UNSET_INSTITUTION = "000000000000"


class MiddlewareSection(SettingsModel):
    """``[middleware]``: who this installation is and where it keeps its files."""

    site_name: str = Field("hcmiddleware demo site", description="shown in reports")
    institution_code: str = Field(
        UNSET_INSTITUTION,
        pattern=r"^[0-9A-Za-z]{12}$",
        description="the 12-character institution code used in insurance message IDs",
    )
    data_dir: ConfigPath = Field(
        default_factory=default_data_dir,
        description="databases and keys; relative to the config file; created on first use",
    )


class DatabaseSection(SettingsModel):
    """``[database]``: the index and journal database (SQLite unless a URL is given)."""

    url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/hcm.db")

    @field_validator("url")
    @classmethod
    def _sqlite_relative_to_config(cls, value: str | None, info: ValidationInfo) -> str | None:
        """``sqlite:///hcm.db`` names a file beside the config file, not the working dir."""
        if value is None:
            return None
        head, sep, rest = value.partition(":///")
        if not sep or not head.startswith("sqlite") or not rest or rest.startswith(":memory:"):
            return value
        path, query_sep, query = rest.partition("?")
        if Path(path).is_absolute():
            return value
        resolved = _resolve_path(Path(path), info).as_posix()
        return f"{head}:///{resolved}{query_sep}{query}"


class ReadersSection(SettingsModel):
    """``[readers]``: PC/SC reader names; unset means 'the first reader with a card'."""

    user: str | None = Field(None, description="the reader the patient's card goes into")
    sam: str | None = Field(None, description="the reader holding the SAM card, if any")


class SamSection(SettingsModel):
    """``[sam]``: the terminal's security access module.

    Give ``keys`` for a software SAM (tests, demos, a terminal without a SAM slot), or
    set ``[readers] sam`` and ``pin`` for the SAM card in the terminal's second slot.
    """

    keys: ConfigPath | None = Field(None, description="issuer key-set JSON for the software SAM")
    pin: Secret | None = Field(None, description="PIN of the SAM card in [readers] sam")


class CardsSection(SettingsModel):
    """``[cards]``: the lists of refused cards (loss-reported, cancelled, replaced, frozen).

    ``list_keys`` maps each list's source (``issuer:2101``, ``bank:ICBC``) to the PEM
    file of its public key (Ed25519 or ECDSA P-256); an update from a source not named
    here is refused. A list older than ``max_list_age_hours`` fails ``hcm doctor``.
    """

    list_keys: dict[str, ConfigPath] = Field(
        default_factory=dict, description="each list source's public key file (PEM)"
    )
    max_list_age_hours: float = Field(24.0, gt=0, description="hours before a list is stale")


class EmpiSection(SettingsModel):
    """``[empi]``: keys that protect personal data in the resident index.

    Each key is 32 random bytes in base64, given as a secret. ``master_keys`` maps key
    ids to keys; new data keys are wrapped with ``current_key``, older ids stay
    readable (rotation without downtime). ``index_key`` keys the blind indexes used for
    exact lookups. ``hcm init`` writes a set of key files and the lines that name them;
    the runtime never makes keys by itself, and the index will not open without them.
    """

    master_keys: dict[str, Secret] = Field(
        default_factory=dict, description="key id → master key (32 bytes, base64), as secrets"
    )
    current_key: str | None = Field(
        None, description="the master key new data keys are wrapped with; default: the only one"
    )
    index_key: Secret | None = Field(None, description="the key of the blind indexes (a secret)")
    auto_link: bool = Field(
        True, description="link on a confident demographic match; off = queue for review"
    )


#: an issuer key id: what a dynamic code names to say which key signed it
EHC_KEY_ID = r"^[0-9A-Z][0-9A-Z-]{0,15}$"


class EhcKeySection(SettingsModel):
    """``[ehc.keys.<KEY ID>]``: one public key of an e-card issuer.

    An issuer may have several keys (a new one before the old one's codes are gone);
    a code names the key id that signed it, and is checked with that key's algorithm
    only.
    """

    issuer: str = Field(
        pattern=r"^[0-9A-Za-z_.-]{1,32}$",
        description="the issuer's code (the e-card platform that signs with this key)",
    )
    algorithm: Literal["sm2", "ecdsa-p256", "ed25519"] = Field(
        "sm2", description="sm2 (SM2 with SM3, the national choice), ecdsa-p256 or ed25519"
    )
    public_key: ConfigPath = Field(description="PEM file of the public key")


class EhcIssuerSection(SettingsModel):
    """``[ehc.issuer]``: this installation signs dynamic codes itself (demo, tests).

    A site that takes its codes from the e-card platform leaves it out; ``key_id`` must
    be one of ``[ehc.keys]``, the public half of ``private_key``.
    """

    key_id: str = Field(pattern=EHC_KEY_ID, description="the key id the codes it signs name")
    private_key: Secret = Field(description="PEM (PKCS#8) of the signing key, as a secret")
    code_lifetime: int = Field(60, ge=5, le=3600, description="seconds a code it signs is valid")


class EhcSection(SettingsModel):
    """``[ehc]``: the electronic health card: issuer keys and how codes are accepted."""

    keys: dict[str, EhcKeySection] = Field(default_factory=dict)
    terminal_id: str = Field(
        "terminal",
        pattern=r"^[0-9A-Za-z_.:-]{1,64}$",
        description="this terminal's ID: a dynamic code is accepted once per terminal and step",
    )
    max_lifetime: int = Field(
        300, ge=5, le=86400, description="longest validity (seconds) a dynamic code may claim"
    )
    clock_skew: int = Field(
        30, ge=0, le=600, description="seconds the issuer's and this clock may disagree"
    )
    static_factors: tuple[Literal["id_digits", "face", "card"], ...] = Field(
        ("id_digits", "face", "card"),
        description="second factors a static code is accepted with; empty: never",
    )
    id_digits: int = Field(6, ge=4, le=8, description="how many last ID-number digits to ask")
    online: Literal["auto", "off", "required"] = Field(
        "auto",
        description="ask the platform adapter first (auto), never (off), or refuse without it",
    )
    revocations_max_age: int = Field(
        86400, ge=60, description="seconds after which a revocation list is stale (hcm doctor)"
    )
    issuer: EhcIssuerSection | None = None

    @field_validator("keys")
    @classmethod
    def _key_ids(cls, value: dict[str, EhcKeySection]) -> dict[str, EhcKeySection]:
        import re

        for key_id in value:
            if not re.fullmatch(EHC_KEY_ID, key_id):
                raise ValueError(
                    f"key id {key_id!r} is not 1-16 upper-case letters, digits or dashes"
                )
        return value

    @model_validator(mode="after")
    def _issuer_key_known(self) -> EhcSection:
        if self.issuer is not None and self.issuer.key_id not in self.keys:
            raise ValueError(
                f"[ehc.issuer] key_id {self.issuer.key_id!r} has no public key in [ehc.keys]"
            )
        return self


def _audit_signing_key(value: SecretStr | None) -> SecretStr | None:
    """The key must be an Ed25519 private key (base64 of 32 bytes, or PEM); never echoed."""
    if value is None:
        return None
    from hcmiddleware.audit.signing import private_key_from_text

    try:
        private_key_from_text(value.get_secret_value())
    except ValueError as exc:
        raise PydanticCustomError("audit_key", "{reason}", {"reason": str(exc)}) from None
    return value


def _audit_verify_key(value: Path) -> Path:
    from hcmiddleware.audit.signing import public_key_from_file

    try:
        public_key_from_file(value)
    except ValueError as exc:
        raise PydanticCustomError("audit_key", "{reason}", {"reason": f"{value}: {exc}"}) from None
    return value


class AuditSection(SettingsModel):
    """``[audit]``: the tamper-evident audit log (``docs/audit.md``).

    Every audited act is appended to a hash chain in the installation's database;
    ``hash`` is fixed when the chain's first entry is written. Every
    ``checkpoint_every`` entries or ``checkpoint_minutes`` minutes a checkpoint (the
    last entry's number and hash) is signed with ``signing_key`` and pushed out through
    ``hcm_audit_checkpoint`` — to ``checkpoint_file`` too when it is set. Without a
    signing key checkpoints are unsigned, and ``hcm doctor`` says so; the runtime never
    makes a key (``hcm init`` writes one).
    """

    hash: Literal["sha256", "sm3"] = Field(
        "sha256", description="the chain's hash function: SHA-256 or SM3 (GB/T 32905)"
    )
    terminal: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[^\x00-\x1f]+$",
        description="this terminal's ID in entries and checkpoints; default: the host name",
    )
    signing_key: Annotated[Secret | None, AfterValidator(_audit_signing_key)] = Field(
        None, description="Ed25519 private key that signs checkpoints (a secret)"
    )
    verify_keys: tuple[Annotated[ConfigPath, AfterValidator(_audit_verify_key)], ...] = Field(
        (), description="public keys of other terminals writing to the same database"
    )
    checkpoint_every: int = Field(1000, ge=1, description="entries between checkpoints")
    checkpoint_minutes: float = Field(
        10.0, gt=0, description="minutes after which the next entry makes a checkpoint"
    )
    checkpoint_file: ConfigPath | None = Field(
        None, description="also append every checkpoint to this file (on another disk)"
    )


class PrintingSection(SettingsModel):
    """``[printing]``: the kiosk's receipt printer and its page printer (``docs/printing.md``).

    The receipt printer is a thermal printer spoken to in ESC/POS, through a device
    file (``escpos_device``, e.g. ``/dev/usb/lp0``) or over the network
    (``escpos_host``, port 9100). Pages — lab and exam reports, the inpatient bill —
    are made as PDF files in ``pdf_dir``; ``pdf_command`` then hands each one to the
    page printer (``["lp", "-d", "kiosk-a4"]``: the file's path is added at the end).
    Without a receipt printer, receipts are made as PDF pages too. Other printers are
    plugins implementing ``hcm_print``.
    """

    receipts: bool = Field(
        True,
        description="print a receipt after each confirmed top-up, payment, refund and "
        "settlement of the payment flows (when a printer is there)",
    )
    escpos_device: ConfigPath | None = Field(
        None, description="the receipt printer's device file (or any file to write to)"
    )
    escpos_host: str | None = Field(None, description="the receipt printer's network address")
    escpos_port: int = Field(9100, ge=1, le=65535, description="its raw TCP port")
    escpos_profile: str | None = Field(
        None, description="python-escpos printer profile (e.g. TM-T88V); default: generic"
    )
    line_width: int = Field(
        48, ge=24, le=80, description="characters per line: 48 on 80 mm paper, 32 on 58 mm"
    )
    pdf_dir: ConfigPath | None = Field(
        None, description="folder the PDF documents are written to; none = no page printer"
    )
    pdf_command: tuple[str, ...] = Field(
        (), description="command that prints a PDF; its path is added as the last argument"
    )
    font: ConfigPath | None = Field(
        None, description="a font file with Chinese glyphs for PDFs; default: a system one"
    )
    timeout: float = Field(10.0, gt=0, description="seconds a printer may take to take a job")

    @model_validator(mode="after")
    def _one_receipt_printer(self) -> PrintingSection:
        if self.escpos_device is not None and self.escpos_host is not None:
            raise ValueError("give escpos_device or escpos_host, not both")
        return self


def _known_operations(value: tuple[str, ...]) -> tuple[str, ...]:
    from hcmiddleware.access.policy import OPERATIONS, expand_operations

    for pattern in value:
        if not expand_operations([pattern]):
            close = difflib.get_close_matches(pattern, OPERATIONS, n=1)
            raise PydanticCustomError(
                "access_operation",
                "{pattern!r} names no operation{close}",
                {"pattern": pattern, "close": f" (did you mean {close[0]!r}?)" if close else ""},
            )
    return value


Category = Literal[
    "identity",
    "contact",
    "insurance",
    "clinical",
    "allergies",
    "immunisations",
    "visits",
    "money",
    "face",
]
#: the answers whose fields ``[access.fields.<model>]`` names (access.policy.MODELS)
AnswerModel = Literal["resident", "order", "report", "registration", "admission"]
Role = Literal[
    "kiosk",
    "registration",
    "cashier",
    "doctor",
    "nurse",
    "pharmacist",
    "administrator",
    "auditor",
]


class RoleSection(SettingsModel):
    """``[access.roles.<role>]``: what one role may do and see (replaces its defaults).

    ``operations`` are the session's operations by name (``terminal.read``), a
    service's all (``journal.*``) or every one (``*``); ``docs/access.md`` lists them.
    """

    operations: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = Field(
        (), description="operations the role may perform (names, 'service.*', '*')"
    )
    categories: tuple[Category, ...] = Field((), description="categories the role may see")
    step_by_step: tuple[Category, ...] = Field(
        (),
        description="categories shown only for a resident identified at the caller's "
        "terminal within the visit",
    )
    break_glass: tuple[Category, ...] = Field(
        (), description="categories emergency access may open; empty: the role may not"
    )
    own_only: bool = Field(
        False, description="residents only after their identification at the terminal (kiosk)"
    )
    by_reason: bool = Field(
        False,
        description="may open its step-by-step categories of one resident not identified "
        "at the terminal by giving a reason (session.open_with_reason)",
    )

    @field_validator("operations")
    @classmethod
    def _operations_exist(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known_operations(value)


@functools.cache
def _default_roles() -> dict[str, RoleSection]:
    from hcmiddleware.access.policy import DEFAULT_ROLES

    return {name: RoleSection.model_validate(grant) for name, grant in DEFAULT_ROLES.items()}


class AccessSection(SettingsModel):
    """``[access]``: roles, and how a caller's view of personal data opens (docs/access.md).

    The defaults are safe: each role the operations and categories of its desk, clinical
    categories step by step. ``require_caller`` makes every call go through
    ``mw.acting_as(caller)``; unbound calls are the embedding process's own, audited as
    ``system_user``.
    """

    require_caller: bool = Field(
        False, description="refuse service calls not made through mw.acting_as(caller)"
    )
    system_user: str = Field(
        "system",
        min_length=1,
        max_length=64,
        pattern=r"^[^\x00-\x1f]+$",
        description="the user audit entries of unbound calls name (role 'system')",
    )
    terminals: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = Field(
        (), description="terminals a caller may name; empty: any"
    )
    identification_minutes: float = Field(
        240.0,
        gt=0,
        le=7 * 24 * 60,
        description="how long an identification at a terminal opens step-by-step "
        "categories (or until the visit ends)",
    )
    break_glass_max_minutes: float = Field(
        60.0, gt=0, le=24 * 60, description="longest emergency access a caller may open"
    )
    reason_minutes: float = Field(
        15.0,
        gt=0,
        le=24 * 60,
        description="longest a reason given for a resident not identified at the terminal "
        "keeps their step-by-step categories open (session.open_with_reason)",
    )
    roles: dict[Role, RoleSection] = Field(
        default_factory=dict, description="roles whose defaults are replaced"
    )
    fields: dict[AnswerModel, dict[str, Category]] = Field(
        default_factory=dict,
        description="the category of a field of an answer, by model (order, report, "
        "registration, admission, resident); the fields not named keep their defaults",
    )
    kinds: dict[Literal["order", "report"], dict[str, Category]] = Field(
        default_factory=dict,
        description="kinds of order or report that are wholly of a category (skin_test = "
        "'allergies'); a role that may not see it gets the list without them",
    )

    @field_validator("fields")
    @classmethod
    def _fields_exist(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        from hcmiddleware.access.scoping import model_fields

        for model, named in value.items():
            known = model_fields(model)
            for name in named:
                if name not in known:
                    close = difflib.get_close_matches(name, sorted(known), n=1)
                    raise PydanticCustomError(
                        "access_field",
                        "{model} has no field {name!r}{close}; its fields: {known}",
                        {
                            "model": model,
                            "name": name,
                            "close": f" (did you mean {close[0]!r}?)" if close else "",
                            "known": ", ".join(sorted(known)),
                        },
                    )
        return value

    def role(self, name: str) -> RoleSection | None:
        """The role's section: the configured one, else the default (None: unknown)."""
        configured: RoleSection | None = self.roles.get(name)  # type: ignore[call-overload]
        if configured is not None:
            return configured
        return _default_roles().get(name)


class LoggingSection(SettingsModel):
    """``[logging]``: level of the ``hcmiddleware`` loggers when ``hcm`` runs.

    The library itself sets no level and adds no handler (only a ``NullHandler``): an
    application embedding it configures logging its own way.
    """

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="level of the hcmiddleware loggers"
    )


# --- the local agent service --------------------------------------------------------

#: what a workstation, user or terminal name of ``[agent.tokens]`` may be
AGENT_NAME = r"^[0-9A-Za-z_.:-]{1,64}$"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AgentToken(SettingsModel):
    """``[agent.tokens.<WORKSTATION>]``: one workstation's token and who it acts as.

    Every request carries ``Authorization: Bearer <token>``; the token names the user,
    the role they act in and the terminal, and every call goes through the services as
    that caller. The agent keeps only the token's SHA-256: give that (``token_sha256``,
    what ``hcm init`` and ``hcm agent token`` write), or the token itself as a secret
    (``token = {file = …}`` or ``{env = …}``) — one of the two.
    """

    token: Secret | None = Field(
        None, description="the workstation's bearer token (at least 32 characters), a secret"
    )
    token_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="or the token's SHA-256 in hex, the token itself kept only by the HIS",
    )
    user: str = Field(pattern=AGENT_NAME, description="the user's opaque ID (audited)")
    role: str = Field(pattern=r"^[a-z][a-z_-]{0,31}$", description="the role the user acts in")
    terminal: str = Field(pattern=AGENT_NAME, description="the workstation's terminal ID")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value()
        if len(text) < 32 or re.search(r"\s", text):
            raise ValueError("a token must be at least 32 characters without spaces")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> AgentToken:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give the token or its token_sha256, one of them")
        return self

    @property
    def digest(self) -> bytes:
        """The token's SHA-256: what a presented token is compared with."""
        if self.token_sha256 is not None:
            return bytes.fromhex(self.token_sha256)
        assert self.token is not None  # one of the two (_one_form)
        return token_digest(self.token.get_secret_value())


def token_digest(token: str) -> bytes:
    """The SHA-256 of an agent token, as ``token_sha256`` holds it (in hex)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_agent_token() -> tuple[str, str]:
    """A new agent token (43 URL-safe characters, 256 random bits) and its SHA-256 in hex."""
    import secrets

    made = secrets.token_urlsafe(32)
    return made, token_digest(made).hex()


class AgentSection(SettingsModel):
    """``[agent]``: where ``hcm agent serve`` listens and what it lets through."""

    host: str = Field("127.0.0.1", description="address to listen on; loopback by default")
    port: int = Field(8765, ge=1, le=65535, description="TCP port")
    allow_remote: bool = Field(
        False, description="allow a host other than loopback (put TLS in front of it)"
    )
    tokens: dict[str, AgentToken] = Field(
        default_factory=dict, description="per-workstation tokens, by workstation name"
    )
    allowed_origins: tuple[str, ...] = Field(
        (), description="browser origins (the HIS pages) allowed to call the agent"
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, description="largest request body accepted (bytes)"
    )
    rate_limit: float = Field(200.0, gt=0, description="requests per second per workstation")
    rate_burst: int = Field(400, ge=1, description="requests a workstation may send at once")
    auth_failures_per_minute: float = Field(
        20.0,
        gt=0,
        description="requests with a missing or wrong token an address may send a minute",
    )
    auth_failure_burst: int = Field(
        10, ge=1, description="such requests an address may send at once before it waits"
    )
    card_wait: float = Field(
        5.0, ge=0, le=60, description="seconds a card read waits for another one to finish"
    )
    shutdown_grace: float = Field(
        30.0, ge=1, le=600, description="seconds SIGTERM waits for calls in flight"
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
        return value

    @field_validator("tokens")
    @classmethod
    def _names(cls, value: dict[str, AgentToken]) -> dict[str, AgentToken]:
        for name in value:
            if not re.fullmatch(AGENT_NAME, name):
                raise ValueError(f"workstation name {name!r} is not 1-64 letters, digits, _.:-")
        return value

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> AgentSection:
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not loopback; set allow_remote = true to listen there"
            )
        tokens = [t.digest for t in self.tokens.values()]
        if len(set(tokens)) != len(tokens):
            raise ValueError("two workstations share a token; give each its own")
        return self


class PluginsSection(BaseModel):
    """``[plugins]``: which plugins run, their call limits, and their own sections."""

    model_config = ConfigDict(extra="allow", frozen=True)

    enabled: tuple[str, ...] = Field(
        (), description="the plugins to load, by entry-point name; the others are never imported"
    )
    call_timeout: float = Field(10.0, gt=0, description="seconds a plugin call may take")
    timeouts: dict[str, float] = Field(
        default_factory=dict, description="per-plugin call timeout in seconds"
    )
    max_stalled_calls: int = Field(
        4, ge=1, description="hung calls a plugin may have before it is refused at once"
    )

    @field_validator("enabled")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for name in value:
            if name in seen:
                raise ValueError(f"plugin {name!r} is listed twice")
            seen.add(name)
        return value

    def sections(self) -> dict[str, dict[str, Any]]:
        """The raw ``[plugins.<name>]`` tables, by plugin name."""
        extra = self.model_extra or {}
        return {k: v for k, v in extra.items() if isinstance(v, dict)}


class Config(SettingsModel):
    """The root of the configuration. ``source`` is the file it came from, if any."""

    middleware: MiddlewareSection = Field(default_factory=MiddlewareSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    readers: ReadersSection = Field(default_factory=ReadersSection)
    sam: SamSection = Field(default_factory=SamSection)
    cards: CardsSection = Field(default_factory=CardsSection)
    empi: EmpiSection = Field(default_factory=EmpiSection)
    face: FaceSettings = Field(default_factory=FaceSettings)
    ehc: EhcSection = Field(default_factory=EhcSection)
    ward: WardSettings = Field(default_factory=WardSettings)
    agent: AgentSection = Field(default_factory=AgentSection)
    audit: AuditSection = Field(default_factory=AuditSection)
    printing: PrintingSection = Field(default_factory=PrintingSection)
    access: AccessSection = Field(default_factory=AccessSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    plugins: PluginsSection = Field(default_factory=PluginsSection)
    source: Path | None = Field(None, exclude=True)
    #: the folder relative paths were resolved against (plugin sections use it too)
    base_dir: Path | None = Field(None, exclude=True)

    @property
    def database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in ``data_dir``."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.middleware.data_dir / 'hcm.db').as_posix()}"


# --- loading -----------------------------------------------------------------------


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that holds the field at ``loc`` (for listing known keys)."""
    current: type[BaseModel] = model
    for part in loc[:-1]:
        field = current.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
        else:
            return None
    return current


_HINTS = {
    "missing": "add this key",
    "audit_key": "name an Ed25519 key written by 'hcm init' (base64 of 32 bytes, or PEM)",
    "secret_inline": 'write it as {env = "VARIABLE"} or {file = "path/to/file"}',
    "secret_form": 'write it as {env = "VARIABLE"} or {file = "path/to/file"}',
}


def config_error_from_validation(
    exc: ValidationError,
    *,
    file: str | None,
    model: type[BaseModel],
    prefix: tuple[str, ...] = (),
) -> ConfigError:
    """Turn pydantic's errors into one ConfigError per problem (first one raised).

    Input values are never echoed: the value at fault may be a secret.
    """
    problems: list[ConfigError] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join((*prefix, *loc)) or None
        kind = err["type"]
        message = err["msg"]
        hint = _HINTS.get(kind)
        cls: type[ConfigError] = ConfigError
        if kind == "extra_forbidden":
            holder = _model_at(model, err["loc"])
            known = sorted(holder.model_fields) if holder else []
            close = difflib.get_close_matches(loc[-1], known, n=1) if known else []
            message = "unknown key"
            hint = (
                f"did you mean {close[0]!r}? " if close else "remove it; "
            ) + f"known keys here: {', '.join(known) or 'none'}"
        elif kind == "secret_missing":
            cls = SecretError
            ctx = err.get("ctx") or {}
            if key and key.startswith("empi."):
                # a key of data already stored: a new one would read none of it
                hint = (
                    "restore the resident-index key from the installation's backup "
                    "(a new key cannot read what the index holds; 'hcm init' is for a "
                    "new installation)"
                )
            elif ctx.get("source") == "env":
                hint = f"set {ctx.get('name')} in the service's environment before starting"
            else:
                hint = "create the file, readable by the service's user"
        elif hint is None:
            hint = "fix the value; see docs/configuration.md for what this key takes"
        problems.append(cls(message, file=file, key=key, hint=hint))
    first = problems[0]
    first.related = problems[1:]
    return first


def parse_config(
    data: Mapping[str, Any], *, source: Path | None = None, base_dir: Path | None = None
) -> Config:
    """Validate an already-parsed mapping (e.g. from TOML) into a frozen Config."""
    file = str(source) if source else None
    base = (base_dir or (source.parent if source else Path.cwd())).absolute()
    try:
        config = Config.model_validate(dict(data), context={"base_dir": str(base)})
    except ValidationError as exc:
        raise config_error_from_validation(exc, file=file, model=Config) from None
    return config.model_copy(update={"source": source, "base_dir": base})


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the TOML file at ``path``; ConfigError names file and key."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the config file ({exc.strerror or type(exc).__name__})",
            file=str(file),
            hint="check the path and that the service's user may read it",
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(
            "the file is not UTF-8 text", file=str(file), hint="save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"not valid TOML: {exc}",
            file=str(file),
            hint="fix the syntax at the line and column given",
        ) from None
    return parse_config(data, source=file, base_dir=file.parent)
