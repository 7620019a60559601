"""Audit entries for other systems: FHIR R4 AuditEvent, IHE ATNA over syslog.

* :func:`to_fhir` — a FHIR R4 ``AuditEvent`` resource (a dict; :func:`to_fhir_json` is
  one line of JSON, for NDJSON files);
* :func:`to_atna_xml` — an IHE ATNA audit message (the DICOM PS3.15 / RFC 3881
  ``AuditMessage`` schema IHE uses), one line of XML;
* :func:`syslog_message` and :class:`SyslogSender` — RFC 5424 syslog messages sent over
  TCP with RFC 6587 octet counting (IHE ITI-20's transport; run a local relay such as
  rsyslog where TLS to the record repository is needed).

Each keeps the entry's number and hash, so a repository holding the export can check
it against the signed checkpoints.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from xml.etree import ElementTree as ET

from hcmiddleware.errors import AuditError
from hcmiddleware.models import AuditEntry

__all__ = [
    "SyslogSender",
    "event_code",
    "syslog_message",
    "to_atna_xml",
    "to_fhir",
    "to_fhir_json",
]

ACTION_SYSTEM = "urn:hcmiddleware:audit:action"
SEQ_SYSTEM = "urn:hcmiddleware:audit:seq"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"

#: outcome → FHIR / RFC 3881 outcome code: 0 success, 4 minor failure (a refusal),
#: 8 serious failure
OUTCOME = {"ok": "0", "refused": "4", "failed": "8"}

_CREATE = ("enrol", "register", "admit", "pay", "top_up", "deposit", "settle", "import")
_UPDATE = ("merge", "unmerge", "bind", "unbind", "link", "rewrap", "cancel", "refund", "discharge")
_DELETE = ("remove", "delete")
_QUERY = ("search", "lookup", "duplicates", "list", "export")


def event_code(action: str) -> tuple[str, str, str]:
    """The DICOM event ID (code, display) and the action code (C R U D E) for ``action``."""
    verb = action.rsplit(".", 1)[-1]
    if action.startswith("audit."):
        return "110101", "Audit Log Used", "R" if verb != "export" else "E"
    if any(v in verb for v in _QUERY):
        return "110112", "Query", "E"
    if action.startswith("money.") or action.startswith("journal.") or action.startswith("bank."):
        kind = "C" if action.startswith("journal.pending") else "U"
        return "110110", "Patient Record", "C" if any(v in verb for v in _CREATE) else kind
    if any(v in verb for v in _DELETE):
        return "110110", "Patient Record", "D"
    if any(v in verb for v in _UPDATE):
        return "110110", "Patient Record", "U"
    if any(v in verb for v in _CREATE):
        return "110110", "Patient Record", "C"
    if action.startswith("face.verify") or verb == "identify":
        return "110114", "User Authentication", "E"
    return "110110", "Patient Record", "R"


def _instant(at: datetime) -> str:
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _money_subject(action: str) -> bool:
    return action.split(".", 1)[0] in {"money", "journal"}


def to_fhir(entry: AuditEntry, *, site: str) -> dict[str, Any]:
    """The entry as a FHIR R4 ``AuditEvent`` resource (plain JSON data)."""
    code, display, action = event_code(entry.action)
    agent: dict[str, Any] = {
        "who": {"identifier": {"value": entry.actor}, "display": entry.actor},
        "requestor": True,
    }
    if entry.user:
        agent["altId"] = entry.user
    if entry.role:
        agent["role"] = [{"text": entry.role}]
    log_entity: dict[str, Any] = {
        "what": {"identifier": {"system": SEQ_SYSTEM, "value": str(entry.seq)}},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "13", "display": "Security Resource"},
        "description": "the audit log entry",
        "detail": [
            {"type": "hash", "valueString": entry.hash},
            {"type": "prev_hash", "valueString": entry.prev_hash},
            *({"type": k, "valueString": v} for k, v in sorted(entry.details.items())),
        ],
    }
    entities = [log_entity]
    if entry.subject:
        if _money_subject(entry.action):
            kind = {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}
            role = {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
        else:
            kind = {"system": ENTITY_TYPE, "code": "1", "display": "Person"}
            role = {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
        entities.insert(
            0, {"what": {"identifier": {"value": entry.subject}}, "type": kind, "role": role}
        )
    return {
        "resourceType": "AuditEvent",
        "id": f"hcm-audit-{entry.seq}",
        "type": {"system": DCM, "code": code, "display": display},
        "subtype": [{"system": ACTION_SYSTEM, "code": entry.action}],
        "action": action,
        "recorded": _instant(entry.at),
        "outcome": OUTCOME[entry.outcome],
        "agent": [agent],
        "source": {
            "site": site,
            "observer": {
                "identifier": {"value": entry.terminal or "unknown"},
                "display": entry.terminal or "unknown",
            },
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    }


def to_fhir_json(entry: AuditEntry, *, site: str) -> str:
    """:func:`to_fhir` as one line of JSON."""
    return json.dumps(to_fhir(entry, site=site), ensure_ascii=False, separators=(",", ":"))


def _code(parent: ET.Element, tag: str, code: str, system: str, text: str) -> None:
    ET.SubElement(parent, tag, {"csd-code": code, "codeSystemName": system, "originalText": text})


def _detail(parent: ET.Element, kind: str, value: str) -> None:
    encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
    ET.SubElement(parent, "ParticipantObjectDetail", {"type": kind, "value": encoded})


def to_atna_xml(entry: AuditEntry, *, site: str) -> str:
    """The entry as an IHE ATNA ``AuditMessage`` (DICOM PS3.15 schema), one line of XML."""
    code, display, action = event_code(entry.action)
    message = ET.Element("AuditMessage")
    event = ET.SubElement(
        message,
        "EventIdentification",
        {
            "EventActionCode": action,
            "EventDateTime": _instant(entry.at),
            "EventOutcomeIndicator": OUTCOME[entry.outcome],
        },
    )
    _code(event, "EventID", code, "DCM", display)
    _code(event, "EventTypeCode", entry.action, ACTION_SYSTEM, entry.action)
    participant = {"UserID": entry.actor, "UserIsRequestor": "true"}
    if entry.user:
        participant["AlternativeUserID"] = entry.user
    active = ET.SubElement(message, "ActiveParticipant", participant)
    if entry.role:
        _code(active, "RoleIDCode", entry.role, "urn:hcmiddleware:role", entry.role)
    source = ET.SubElement(
        message,
        "AuditSourceIdentification",
        {"AuditEnterpriseSiteID": site, "AuditSourceID": entry.terminal or "unknown"},
    )
    _code(source, "AuditSourceTypeCode", "4", "DCM", "Application Server")
    if entry.subject:
        money = _money_subject(entry.action)
        subject = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": entry.subject,
                "ParticipantObjectTypeCode": "2" if money else "1",
                "ParticipantObjectTypeCodeRole": "4" if money else "1",
            },
        )
        if money:
            _code(subject, "ParticipantObjectIDTypeCode", "12", "RFC-3881", "URI")
        else:
            _code(subject, "ParticipantObjectIDTypeCode", "2", "RFC-3881", "Patient Number")
    logged = ET.SubElement(
        message,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": str(entry.seq),
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "13",
        },
    )
    _code(logged, "ParticipantObjectIDTypeCode", "seq", SEQ_SYSTEM, "audit log entry")
    _detail(logged, "hash", entry.hash)
    _detail(logged, "prev_hash", entry.prev_hash)
    for key, value in sorted(entry.details.items()):
        _detail(logged, key, value)
    return ET.tostring(message, encoding="unicode")


# --- syslog -----------------------------------------------------------------------------

#: facility 10 (security/authorization), severity 5 (notice), as IHE ITI-20 uses
PRI = 10 * 8 + 5
APP_NAME = "hcm"
MSG_ID = "IHE+RFC-3881"
BOM = "\ufeff"


def _header_field(value: str, limit: int) -> str:
    """RFC 5424 header fields are printable US-ASCII without spaces; '-' if empty."""
    cleaned = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in value)[:limit]
    return cleaned or "-"


def syslog_message(xml: str, *, hostname: str, at: datetime | None = None) -> bytes:
    """One RFC 5424 message carrying ``xml`` (UTF-8 with a BOM, as the RFC asks)."""
    stamp = _instant(at or datetime.now(UTC))
    header = f"<{PRI}>1 {stamp} {_header_field(hostname, 255)} {APP_NAME} {os.getpid()} {MSG_ID} -"
    return f"{header} {BOM}{xml}".encode()


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing: the length, a space, the message."""
    return str(len(message)).encode("ascii") + b" " + message


class SyslogSender:
    """Sends RFC 5424 messages over one TCP connection, octet-counted (RFC 6587)."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.host, self.port = host, port
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise AuditError(
                f"cannot reach the syslog server {host}:{port} ({exc.strerror or exc})",
                hint="check the address and that the server listens for TCP syslog",
            ) from None
        self.sent = 0

    def send(self, message: bytes) -> None:
        """Send one message."""
        try:
            self._sock.sendall(octet_counted(message))
        except OSError as exc:
            raise AuditError(
                f"the syslog server {self.host}:{self.port} dropped the connection after "
                f"{self.sent} messages ({exc.strerror or exc})",
                hint="send again: the receiver keeps what it had received",
            ) from None
        self.sent += 1

    def close(self) -> None:
        """Finish sending and close the connection."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
        self._sock.close()

    def __enter__(self) -> SyslogSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
