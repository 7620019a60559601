"""Exports: FHIR R4 AuditEvent valid against fhir.resources, ATNA messages through rsyslog."""

from __future__ import annotations

import base64
import json
from xml.etree import ElementTree as ET

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent

from hcmiddleware.audit.export import SyslogSender, syslog_message, to_fhir
from hcmiddleware.errors import AuditError
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.plugin import MiddlewareFactory

from .conftest import Rsyslog

TID = "2101000000012026120310000000001"


@pytest.fixture
def mw(hcm_make_middleware: MiddlewareFactory) -> Middleware:
    """A Middleware whose log holds one entry of each kind the product writes."""
    made = hcm_make_middleware(audit={"terminal": "kiosk-03"}, middleware={"site_name": "No. 1"})
    made.audit("card.read", actor="kiosk-03", reader="Virtual PCD 00 00")
    made.audit("flow.outpatient.identify", actor="kiosk-03", subject="r-0001", how="card")
    made.audit("face.verify", actor="kiosk", subject="r-0001", outcome="refused", status="no_match")
    made.audit("journal.sent", actor="journal", subject=TID, previous="pending", amount="12.00")
    made.audit("money.pay", actor="cashier-2", subject=TID, user="u-17", role="cashier")
    made.audit("empi.merge", actor="records-1", subject="r-0001", merged="r-0002")
    made.audit("face.search", actor="cli", outcome="failed", error="NoFaceError")
    return made


def test_every_entry_is_a_valid_fhir_r4_audit_event(mw: Middleware) -> None:
    lines = list(mw.audit.export("fhir"))
    entries = mw.audit.entries()[: len(lines)]
    assert len(lines) == 7
    for line, entry in zip(lines, entries, strict=True):
        resource = json.loads(line)
        FhirAuditEvent.model_validate(resource)  # raises on anything out of the spec
        assert resource["id"] == f"hcm-audit-{entry.seq}"
        assert resource["subtype"][0]["code"] == entry.action
        assert resource["outcome"] == {"ok": "0", "refused": "4", "failed": "8"}[entry.outcome]
        assert resource["source"]["site"] == "No. 1"
        assert resource["source"]["observer"]["display"] == "kiosk-03"
        log_entity = next(e for e in resource["entity"] if e["what"]["identifier"].get("system"))
        details = {d["type"]: d["valueString"] for d in log_entity["detail"]}
        assert details["hash"] == entry.hash
        assert {k: details[k] for k in entry.details} == entry.details
    money = json.loads(lines[4])
    assert money["agent"][0]["altId"] == "u-17"
    assert money["agent"][0]["role"] == [{"text": "cashier"}]
    assert money["entity"][0]["type"]["code"] == "2"  # a transaction, not a person
    identify = json.loads(lines[1])
    assert identify["entity"][0]["role"]["code"] == "1"  # the patient
    # the export itself is audited once it is complete
    assert mw.audit.entries()[-1].action == "audit.export"


def test_an_invalid_resource_is_refused_by_the_validator(mw: Middleware) -> None:
    resource = to_fhir(mw.audit.entries()[0], site="No. 1")
    resource["recorded"] = "yesterday"
    with pytest.raises(ValueError, match="recorded"):
        FhirAuditEvent.model_validate(resource)


def _parsed(line: str) -> dict[str, str]:
    facility, severity, app, msgid, host, message = line.split("|", 5)
    return {
        "facility": facility,
        "severity": severity,
        "app": app,
        "msgid": msgid,
        "host": host,
        "xml": message.removeprefix("\ufeff"),
    }


def test_atna_messages_reach_a_real_syslog_server(mw: Middleware, rsyslog: Rsyslog) -> None:
    entries = mw.audit.entries()
    with SyslogSender("127.0.0.1", rsyslog.port) as sender:
        for xml in mw.audit.export("atna"):
            sender.send(syslog_message(xml, hostname="kiosk 03"))
    lines = rsyslog.lines(len(entries))
    assert len(lines) == len(entries)  # octet counting kept every message whole
    for line, entry in zip(lines, entries, strict=True):
        got = _parsed(line)
        # rsyslog parsed our RFC 5424 header: facility 10 (authpriv), severity 5 (notice)
        assert (got["facility"], got["severity"]) == ("10", "5")
        assert (got["app"], got["msgid"], got["host"]) == ("hcm", "IHE+RFC-3881", "kiosk_03")
        message = ET.fromstring(got["xml"])
        assert message.tag == "AuditMessage"
        event = message.find("EventIdentification")
        assert event is not None
        assert (
            event.get("EventOutcomeIndicator")
            == {"ok": "0", "refused": "4", "failed": "8"}[entry.outcome]
        )
        code = event.find("EventTypeCode")
        assert code is not None
        assert code.get("csd-code") == entry.action
        participant = message.find("ActiveParticipant")
        assert participant is not None
        assert participant.get("UserID") == entry.actor
        source = message.find("AuditSourceIdentification")
        assert source is not None
        assert source.get("AuditSourceID") == "kiosk-03"
        objects = message.findall("ParticipantObjectIdentification")
        logged = objects[-1]
        assert logged.get("ParticipantObjectID") == str(entry.seq)
        details = {
            d.get("type"): base64.b64decode(d.get("value") or "").decode()
            for d in logged.findall("ParticipantObjectDetail")
        }
        assert details["hash"] == entry.hash
        if entry.subject:
            assert objects[0].get("ParticipantObjectID") == entry.subject


def test_an_unreachable_syslog_server_is_a_typed_error() -> None:
    with pytest.raises(AuditError, match="cannot reach the syslog server"):
        SyslogSender("127.0.0.1", 9, timeout=1)
