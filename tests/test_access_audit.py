"""Each act through a session is audited once, with the caller's identity.

Every operation a session offers (``OPERATIONS``) is performed once, through a session,
against real parts: the reference HIS over HL7/MLLP, the reference bank and insurer over
SOAP, the software card and SAM, the face backend, the e-card issuer, the PDF printer.
The entries each call adds to the chain are compared with what the act should leave: a
service that audits its own acts (the card read, the band bound, the payment's states)
leaves its entries and the session adds none; otherwise the session writes one entry
named after the operation. Every entry names the caller's user, role and terminal.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hcm_bank_soap import BankSoap
from hcm_bank_soap.reference import SoapServer
from hcm_bank_soap.reference import serve as serve_bank
from hcm_his_hl7 import Hl7His
from hcm_his_reference import ReferenceHis
from hcm_insurance_soap import InsuranceSoap
from hcm_insurance_soap.reference import serve as serve_insurer

from hcmiddleware import Caller, Middleware, hookimpl
from hcmiddleware.access.policy import OPERATIONS, Category
from hcmiddleware.card.data import VisitRecord
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.cards.reference import ListPublisher
from hcmiddleware.ehc import qr
from hcmiddleware.empi.importer import COLUMNS
from hcmiddleware.face.samples import KIOSK_LIVE_PHOTO
from hcmiddleware.models import (
    AdmissionRequest,
    AuditEntry,
    BandEvent,
    BedsideScan,
    BlacklistUpdate,
    Charge,
    Deposit,
    EhcRevocationList,
    IdentifierKind,
    OrderExecution,
    RegistrationRequest,
    Report,
    Sex,
    VisitSummary,
)
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS
from hcmiddleware.testing import ehc_keys
from hcmiddleware.testing.plugin import MiddlewareFactory

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
HOSPITAL = "210100000001"
CARD = "210000000012345678"
ID_NUMBER = "210102198503121239"
LISTS = "issuer:2101"
LIVE = KIOSK_LIVE_PHOTO.read_bytes()
CALLER = Caller(user="u-41", role="administrator", terminal="desk-41")

#: What an operation leaves in the chain when its service audits the act itself (the
#: session then adds nothing). Every other operation leaves one entry, named after it,
#: written by the session; the operations of ``NOT_AUDITED`` none.
OWN: dict[str, tuple[str, ...]] = {
    "terminal.read": ("card.read",),
    "terminal.read_issuer": ("card.read_issuer",),
    "terminal.write_visit": ("card.write_visit",),
    "residents.merge": ("empi.merge",),
    "residents.unmerge": ("empi.unmerge",),
    "faces.verify_card": ("face.verify",),
    "faces.verify": ("face.verify",),
    "faces.enrol": ("face.enrol",),
    "faces.search": ("face.search",),
    "faces.remove": ("face.remove",),
    "cards.apply": ("card.list_applied",),
    "cards.report_loss": ("card.loss_reported",),
    "ehc.verify": ("ehc.verify",),
    "ehc.verify_image": ("ehc.verify",),
    "ehc.issue": ("ehc.issue",),
    "ehc.bind": ("ehc.bind",),
    "ehc.apply_revocations": ("ehc.revocations",),
    "ehc.sync_revocations": ("ehc.revocations",),
    "ward.bind": ("ward.bind",),
    "ward.rebind": ("ward.rebind",),
    "ward.unbind": ("ward.unbind",),
    "ward.release_stay": ("ward.unbind",),
    "ward.move": ("ward.move",),
    "ward.label": ("ward.label",),
    "ward.orders": ("ward.orders",),
    "ward.verify": ("ward.verify",),
    # each of the bedside checks, and the execution's upload to the HIS
    "ward.begin": ("ward.check",),
    "ward.check": ("ward.check",),
    "ward.execute": ("ward.check", "ward.check", "ward.execute"),
    "ward.abandon": ("ward.abandon",),
    "ward.receive": ("ward.alarm",),
    "ward.acknowledge": ("ward.acknowledge",),
    "ward.summary": ("ward.kiosk",),
    # a movement's states, each written with the state itself
    "journal.top_up": ("journal.pending", "journal.sent", "journal.confirmed"),
    "journal.pay": ("journal.pending", "journal.sent", "journal.confirmed"),
    "journal.refund": ("journal.pending", "journal.sent", "journal.confirmed"),
    "journal.settle": ("journal.pending", "journal.sent", "journal.confirmed"),
    "journal.cancel_settlement": ("journal.pending", "journal.sent", "journal.confirmed"),
    "journal.resolve": ("journal.failed",),
    "journal.recover": ("journal.failed",),
    # the money flows' own outcome entries
    "bank.bind": ("bank.bind",),
    "bank.unbind": ("bank.unbind",),
    "audit.record": ("note.made",),
    "audit.verify": ("audit.verify",),
    "audit.export": ("audit.export",),
    # what was printed, in the print log
    "receipts.movement": ("print.printed",),
    "receipts.bill": ("print.printed",),
    "receipts.report": ("print.printed",),
    "receipts.reprint": ("print.printed",),
}  # fmt: skip
#: operations that show no personal data and change nothing
NOT_AUDITED = frozenset(
    {
        "his.provides", "his.check", "residents.stats", "residents.count", "audit.head",
        "receipts.available",
    }
)  # fmt: skip


class Feed:
    """The e-card platform's feed of revocation lists (what its adapter hands over)."""

    def __init__(self) -> None:
        self.updates: dict[int | None, EhcRevocationList] = {}

    @hookimpl
    def hcm_ehc_revocations(
        self, issuer: str, since_version: int | None
    ) -> EhcRevocationList | None:
        return self.updates.get(since_version)


@dataclass
class Site:
    mw: Middleware
    his: ReferenceHis
    bank: SoapServer
    lists: ListPublisher
    feed: Feed
    folder: Path
    #: the entries each operation added, by operation
    wrote: dict[str, list[AuditEntry]] = field(default_factory=dict)

    def do(self, operation: str, call: Callable[[], Any]) -> Any:
        """Perform ``operation`` once and keep the entries it added."""
        assert operation not in self.wrote, f"{operation} performed twice"
        before = self.mw.audit.head()[0]
        result = call()
        self.wrote[operation] = self.mw.audit.entries(start=before + 1)
        return result


@pytest.fixture
def site(
    fresh_database: str, tmp_path: Path, hcm_make_middleware: MiddlewareFactory
) -> Iterator[Site]:
    """Everything a session's operations reach, on each kind of database."""
    bank = serve_bank(tmp_path / "bank-ledger.db")
    bank.service.ledger.bind(CARD, "6222000011112222", ID_NUMBER)  # type: ignore[attr-defined]
    insurer = serve_insurer(tmp_path / "insurer-ledger.db")
    lists = ListPublisher(LISTS)
    pem = tmp_path / "lists.pem"
    pem.write_bytes(lists.public_pem())
    everything = {"operations": ["*"], "categories": [c.value for c in Category]}
    feed = Feed()
    try:
        with ReferenceHis(tmp_path / "his.db", hospital_code=HOSPITAL) as his:
            host, port = his.mllp_address
            mw = hcm_make_middleware(
                plugins={
                    "his-hl7": Hl7His(), "bank-soap": BankSoap(),
                    "insurance-soap": InsuranceSoap(), "ehc-feed": feed,
                },
                settings={
                    "his-hl7": {"host": host, "port": port, "timeout": 5.0},
                    "bank-soap": {"wsdl": bank.wsdl_url, "timeout": 5.0},
                    "insurance-soap": {"wsdl": insurer.wsdl_url, "timeout": 5.0},
                },
                middleware={"institution_code": HOSPITAL, "site_name": "Test hospital"},
                sam={"keys": str(TEST_ISSUER_KEYS)},
                ehc=ehc_keys(tmp_path / "ehc", algorithm="ed25519"),
                cards={"list_keys": {LISTS: str(pem)}},
                printing={"pdf_dir": str(tmp_path / "pdf"), "receipts": False},
                access={"roles": {"administrator": everything}},
                database={"url": fresh_database},
            )  # fmt: skip
            yield Site(mw, his, bank, lists, feed, tmp_path)
    finally:
        insurer.stop()
        bank.stop()


def card() -> EmulatedCard:
    return EmulatedCard.from_files(PROFILE, TEST_ISSUER_KEYS)


def test_each_operation_through_a_session_is_audited_once_as_its_caller(site: Site) -> None:
    s = site.mw.acting_as(CALLER)
    do = site.do
    now = dt.datetime.now().replace(second=0, microsecond=0)

    # -- the card and the index ------------------------------------------------------------
    read = do("terminal.read", lambda: s.terminal.read(card()))
    do("terminal.read_issuer", lambda: s.terminal.read_issuer(card()))
    visit = VisitRecord(
        kind="outpatient", visited_at=now, institution_name="Test hospital",
        institution_code=HOSPITAL, department="NEI", total_fee="12.00",
    )  # fmt: skip
    do("terminal.write_visit", lambda: s.terminal.write_visit(visit, card(), card_number=CARD))
    holder = do("residents.enrol_from_card", lambda: s.residents.enrol_from_card(read))
    rid = holder.resident_id
    do("residents.get", lambda: s.residents.get(rid))
    do("residents.lookup", lambda: s.residents.lookup(IdentifierKind.CARD_NUMBER, CARD))
    do("residents.search", lambda: s.residents.search(id_number=ID_NUMBER))
    other = do(
        "residents.enrol",
        lambda: s.residents.enrol(
            name="李四", sex=Sex.FEMALE, birth_date=dt.date(1975, 2, 3), phone="13912345678",
            record_id="desk-9",
        ),
    )  # fmt: skip
    rows = site.folder / "old.csv"
    with rows.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerow(
            ["R1", "张秀英", "2", "1949-12-31", "11010519491231002X", "13800138000", "", "C1"]
        )
    do("residents.import_csv", lambda: s.residents.import_csv(rows, source="old-his"))
    do("residents.linkage", lambda: list(s.residents.linkage()))
    do("residents.duplicates", lambda: s.residents.duplicates())
    do("residents.stats", lambda: s.residents.stats())
    do("residents.count", lambda: s.residents.count())
    do("residents.link_card", lambda: s.residents.link_card(rid, "210000000087654321"))
    do("residents.link_hospital_id", lambda: s.residents.link_hospital_id(rid, "H2", "P-77"))
    do("residents.hospital_id", lambda: s.residents.hospital_id(rid, "H2"))
    twin = site.mw.residents.enrol(
        name="李四", sex=Sex.FEMALE, birth_date=dt.date(1975, 2, 3), record_id="desk-10",
        source="desk", strict=False,
    )  # fmt: skip
    do(
        "residents.merge",
        lambda: s.residents.merge(other.resident_id, twin.resident_id, reason="same", operator="u"),
    )
    do(
        "residents.unmerge",
        lambda: s.residents.unmerge(twin.resident_id, reason="not the same", operator="u"),
    )
    do("residents.history", lambda: s.residents.history(other.resident_id))
    do("residents.train", lambda: s.residents.train())
    do("residents.rewrap", lambda: s.residents.rewrap())

    # -- faces -------------------------------------------------------------------------------
    do("faces.verify_card", lambda: s.faces.verify_card(LIVE, read, resident_id=rid))
    do("faces.verify", lambda: s.faces.verify(LIVE, read.photo, resident_id=rid))
    do("faces.enrol", lambda: s.faces.enrol(rid, LIVE))
    do("faces.search", lambda: s.faces.search(LIVE, top=1))
    do("faces.remove", lambda: s.faces.remove(rid))

    # -- the e-card -----------------------------------------------------------------------------
    ecard_id = do("ehc.issue", lambda: s.ehc.issue(rid))
    do("ehc.bind", lambda: s.ehc.bind(rid, ecard_id))
    code = do("ehc.dynamic_code", lambda: s.ehc.dynamic_code(ecard_id))
    do("ehc.verify", lambda: s.ehc.verify(code, care_step="registration"))
    picture = qr.render(site.mw.ehc.dynamic_code(ecard_id), scale=4)
    do("ehc.verify_image", lambda: s.ehc.verify_image(picture, care_step="payment"))
    do("ehc.static_code", lambda: s.ehc.static_code(ecard_id))
    issuer = site.mw.ehc.issuer
    assert issuer is not None
    revocations = issuer.revocation_list(version=1)
    do("ehc.apply_revocations", lambda: s.ehc.apply_revocations(revocations))
    site.feed.updates[1] = issuer.revocation_list(version=2, base_version=1)
    do("ehc.sync_revocations", lambda: s.ehc.sync_revocations())
    do("ehc.check", lambda: s.ehc.check())

    # -- the lists of refused cards -------------------------------------------------------------
    base: dict[str, Any] = {
        "source": LISTS, "kind": "full", "version": 1, "base_version": None,
        "issued_at": dt.datetime.now(dt.UTC), "added": [], "removed": [],
    }  # fmt: skip
    update = BlacklistUpdate.model_validate({**base, "signature": site.lists.sign(base)})
    do("cards.apply", lambda: s.cards.apply(update))
    do("cards.sync", lambda: s.cards.sync())
    do("cards.status", lambda: s.cards.status())
    do("cards.check_lists", lambda: s.cards.check_lists())
    do("cards.check", lambda: s.cards.check(CARD))
    do("cards.state", lambda: s.cards.state(CARD))
    do("cards.entry", lambda: s.cards.entry(CARD))

    # -- the HIS: outpatient -------------------------------------------------------------------
    do("his.provides", lambda: s.his.provides("his.reports"))
    do("his.check", lambda: s.his.check())
    patient = do("his.register", lambda: s.his.register(holder, card=read))
    do("his.find", lambda: s.his.find(holder))
    do("his.find_or_register", lambda: s.his.find_or_register(holder))
    do("his.resolve", lambda: s.his.resolve(holder))
    request = RegistrationRequest(
        department_code="NEI", slot_start=now + dt.timedelta(days=1),
        slot_end=now + dt.timedelta(days=1, minutes=30), request_id="reg-1",
    )  # fmt: skip
    registration = do("his.register_visit", lambda: s.his.register_visit(patient, request))
    visit_id = registration.registration_id
    do("his.queue_position", lambda: s.his.queue_position(registration))
    do("his.orders", lambda: s.his.orders(patient, visit_id))
    charges: list[Charge] = do("his.charges", lambda: s.his.charges(patient, visit_id))
    do("his.reports", lambda: s.his.reports(patient, visit_id))

    # -- money ----------------------------------------------------------------------------------
    up = do("journal.top_up", lambda: s.journal.top_up(key="up", card_number=CARD, amount="500"))
    amount = sum((c.amount for c in charges), Decimal("0.00")) or Decimal("12.00")
    paid = do("journal.pay", lambda: s.journal.pay(key="pay", card_number=CARD, amount=amount))
    do(
        "his.charges_paid",
        lambda: s.his.charges_paid(patient, [c.charge_id for c in charges], paid.transaction_id),
    )
    do(
        "journal.refund",
        lambda: s.journal.refund(
            key="back", card_number=CARD, amount="1.00",
            original_transaction_id=paid.transaction_id,
        ),
    )  # fmt: skip
    bill = [
        Charge(
            charge_id="V9-c1", patient_id=patient.patient_id, visit_id="V9", item_code="X1",
            item_name="item", quantity=Decimal(1), unit_price="30.00", amount="30.00",
        )
    ]  # fmt: skip
    settled = do(
        "journal.settle",
        lambda: s.journal.settle(
            key="settle", scheme="basic", insured_id=ID_NUMBER, patient_id=patient.patient_id,
            visit_id="V9", charges=bill, total="30.00",
        ),
    )  # fmt: skip
    do(
        "journal.cancel_settlement",
        lambda: s.journal.cancel_settlement(key="cancel", settlement_id=settled.settlement_id),
    )
    # an entry left pending (a crash before sending): resolving it closes it as failed
    stuck = site.mw.journal._insert("stuck", _bank_fields("7.00"))
    assert stuck is not None
    stuck_id = site.mw.journal._row(stuck).transaction_id
    do("journal.resolve", lambda: s.journal.resolve(stuck_id))
    site.mw.journal._insert("stuck-2", _bank_fields("8.00"))
    do("journal.recover", lambda: s.journal.recover())
    do("journal.get", lambda: s.journal.get(up.transaction_id))
    do("journal.by_key", lambda: s.journal.by_key("up"))
    do("journal.entries", lambda: s.journal.entries())
    do("journal.history", lambda: s.journal.history(up.transaction_id))
    do("journal.refundable", lambda: s.journal.refundable(paid.transaction_id))
    do(
        "bank.bind",
        lambda: s.flows.bind_bank_card(
            card_number=CARD, bank_card_number="6222000055556666", holder_id_number=ID_NUMBER,
            presented_id_number=ID_NUMBER,
        ),
    )  # fmt: skip
    do(
        "bank.unbind",
        lambda: s.flows.unbind_bank_card(
            card_number=CARD, holder_id_number=ID_NUMBER, presented_id_number=ID_NUMBER
        ),
    )

    # -- receipts -------------------------------------------------------------------------------
    do("receipts.available", lambda: s.receipts.available())
    job = do("receipts.movement", lambda: s.receipts.movement(paid, patient_id=patient.patient_id))
    do("receipts.reports", lambda: s.receipts.reports(patient, visit_id))
    lab = Report(
        report_id="L1", patient_id=patient.patient_id, visit_id=visit_id, kind="lab",
        title="CBC", status="final", summary="normal",
    )  # fmt: skip
    do("receipts.report", lambda: s.receipts.report(lab))
    do("receipts.reprint", lambda: s.receipts.reprint(job.document_id))
    do("receipts.document", lambda: s.receipts.document(job.document_id))
    do("receipts.jobs", lambda: s.receipts.jobs())
    do("receipts.unprinted", lambda: s.receipts.unprinted())

    # -- the HIS: inpatient, and the ward --------------------------------------------------
    stay = AdmissionRequest(
        department_code="NEI", ward="5A", bed="12", admitted_at=now, request_id="adm-1"
    )
    admission = do("his.admit", lambda: s.his.admit(patient, stay))
    deposit = Deposit(
        deposit_id="D1", admission_id=admission.admission_id, amount="100.00", paid_at=now,
        transaction_id=up.transaction_id,
    )  # fmt: skip
    admission = do("his.record_deposit", lambda: s.his.record_deposit(admission, deposit))
    stay_bill = do("his.bill", lambda: s.his.bill(admission))
    do("receipts.bill", lambda: s.receipts.bill(stay_bill, admission))
    band = "WB-0001"
    do("ward.bind", lambda: s.ward.bind(band, admission, card_number=CARD, kind="active"))
    do("ward.binding", lambda: s.ward.binding(band))
    do("ward.band_of_card", lambda: s.ward.band_of_card(CARD))
    do("ward.move", lambda: s.ward.move(band, ward="5A", bed="12"))
    do("ward.label", lambda: s.ward.label(band))
    orders = do("ward.orders", lambda: s.ward.orders(band))
    drip = next(o for o in orders if o.route == "IVGTT")
    scan = BedsideScan(
        wristband_id=band, nurse_id="N-007", order_id=drip.order_id, bed="12",
        drug_code=drip.code, dose=drip.dose, concentration=drip.concentration,
        route=drip.route,
    )  # fmt: skip
    do("ward.verify", lambda: s.ward.verify(scan))
    started = do("ward.begin", lambda: s.ward.begin(scan))
    do("ward.check", lambda: s.ward.check(started.execution_id, scan))
    do("ward.abandon", lambda: s.ward.abandon(started.execution_id, reason="refused", actor="n"))
    pill = next(o for o in orders if o.route != "IVGTT" and o.order_id != drip.order_id)
    oral = scan.model_copy(
        update={
            "order_id": pill.order_id, "drug_code": pill.code, "dose": pill.dose,
            "concentration": pill.concentration, "route": pill.route,
        }
    )  # fmt: skip
    done = do("ward.execute", lambda: s.ward.execute(oral))
    do("ward.executions", lambda: s.ward.executions(admission.admission_id))
    do("ward.execution", lambda: s.ward.execution(done.execution_id))
    do("ward.resend", lambda: s.ward.resend())
    upload = OrderExecution(
        order_id=pill.order_id, admission_id=admission.admission_id, wristband_id=band,
        executed_by="N-007", executed_at=dt.datetime.now(dt.UTC), checks={"bed": True},
    )  # fmt: skip
    do("his.order_executed", lambda: s.his.order_executed(upload))
    call = BandEvent(
        event_id="e-1", wristband_id=band, kind="emergency", at=dt.datetime.now(dt.UTC)
    )
    received = do("ward.receive", lambda: s.ward.receive([call]))
    (alarm,) = received.raised
    do("ward.alarms", lambda: s.ward.alarms())
    do("ward.alarm", lambda: s.ward.alarm(alarm.alarm_id))
    do("ward.acknowledge", lambda: s.ward.acknowledge(alarm.alarm_id, "N-007"))
    do("ward.rejects", lambda: s.ward.rejects())
    do("ward.location", lambda: s.ward.location(band))
    do("ward.summary", lambda: s.ward.summary(wristband_id=band))
    do("ward.rebind", lambda: s.ward.rebind(band, "WB-0002"))
    do("ward.unbind", lambda: s.ward.unbind("WB-0002"))
    site.mw.ward.bind("WB-0003", admission, card_number=CARD)
    do("ward.release_stay", lambda: s.ward.release_stay(admission.admission_id))
    final = site.mw.his.bill(admission)
    do("his.discharge", lambda: s.his.discharge(admission, final))

    # -- the card's loss, and the audit log itself ------------------------------------------
    do("cards.report_loss", lambda: s.cards.report_loss(CARD, resident_id=rid, id_number=ID_NUMBER))
    do("audit.record", lambda: s.audit.record("note.made", actor="u-41"))
    do("audit.entries", lambda: s.audit.entries(limit=5))
    do("audit.verify", lambda: s.audit.verify())
    do("audit.export", lambda: list(s.audit.export("fhir", limit=2)))
    do("audit.checkpoint", lambda: s.audit.checkpoint())
    do("audit.checkpoints", lambda: s.audit.checkpoints())
    do("audit.head", lambda: s.audit.head())

    assert sorted(set(OPERATIONS) - set(site.wrote)) == []  # every operation, once
    problems = []
    for operation in OPERATIONS:
        entries = site.wrote[operation]
        wanted = () if operation in NOT_AUDITED else OWN.get(operation, (operation,))
        actions = tuple(e.action for e in entries)
        if actions != wanted:
            problems.append(f"{operation}: wrote {list(actions)}, not {list(wanted)}")
        strangers = {
            (e.action, e.user, e.role, e.terminal)
            for e in entries
            if (e.user, e.role, e.terminal) != (CALLER.user, CALLER.role, CALLER.terminal)
        }
        if strangers:
            problems.append(f"{operation}: entries not in the caller's name: {sorted(strangers)}")
    assert not problems, "\n".join(problems)
    assert site.mw.audit.verify().ok


def _bank_fields(amount: str) -> dict[str, Any]:
    return {
        "channel": "bank", "kind": "pay", "card_number": CARD, "amount": Decimal(amount),
        "original_transaction_id": None, "terminal_id": None,
    }  # fmt: skip


def test_a_journey_through_a_session_audits_each_step_once(site: Site) -> None:
    """A step's own entry records the service calls it makes (no entry of the session's
    beside it); a service's own entries stay, and a step's entries with no transaction
    of their own share one commit."""
    mw = site.mw
    s = mw.acting_as(CALLER)
    s.flows.top_up(key="float", card_number=CARD, amount="200.00")
    flow = s.flows.outpatient()
    commits = [0]

    def counted(_conn: Any) -> None:
        commits[0] += 1

    sa.event.listen(mw.engine, "commit", counted)
    wrote: dict[str, tuple[list[str], int]] = {}

    def step(name: str, call: Callable[[], Any]) -> Any:
        before, started = mw.audit.head()[0], commits[0]
        result = call()
        entries = mw.audit.entries(start=before + 1)
        assert {(e.user, e.role, e.terminal) for e in entries} == {
            (CALLER.user, CALLER.role, CALLER.terminal)
        }, name
        wrote[name] = ([e.action for e in entries], commits[0] - started)
        return result

    slot = dt.datetime.now().replace(hour=9, minute=0, second=0, microsecond=0)
    who = step("identify", lambda: flow.identify(card()))
    patient = step("patient", lambda: flow.patient(who))
    reg = step(
        "register",
        lambda: flow.register(patient, department_code="NEI", slot_start=slot, fee="12.00"),
    )
    step("queue", lambda: flow.queue(reg))
    step("desk", lambda: flow.desk(who, patient, reg, card()))
    charges = step("charges", lambda: flow.charges(patient, reg))
    pay = s.flows.charges_payment(card_number=CARD)
    step("settle", lambda: flow.settle(patient, charges, pay=pay))
    step("reports", lambda: flow.reports(patient, reg))
    summary = VisitSummary(
        kind="outpatient", visited_at=dt.datetime.now().replace(microsecond=0),
        institution_name="Test hospital", institution_code=HOSPITAL, department="内科",
        doctor="李医生", diagnosis_code="J06.9", diagnosis_name="急性上呼吸道感染",
    )  # fmt: skip
    step("write_summary", lambda: flow.write_summary(who, summary, card()))
    sa.event.remove(mw.engine, "commit", counted)

    flows = {name: actions for name, (actions, _) in wrote.items()}
    assert flows == {
        "identify": ["card.read", "flow.outpatient.identify"],
        "patient": ["flow.outpatient.patient"],
        "register": ["flow.outpatient.register"],
        "queue": ["flow.outpatient.queue"],
        "desk": ["card.read", "flow.outpatient.desk"],
        "charges": ["flow.outpatient.charges"],
        "settle": [
            "journal.pending", "journal.sent", "journal.confirmed", "money.pay",
            "flow.outpatient.settle",
        ],
        "reports": ["flow.outpatient.reports"],
        "write_summary": ["card.write_visit", "flow.outpatient.write_summary"],
    }  # fmt: skip
    # the card written and the visit's entry: one commit, that of the two entries
    assert wrote["write_summary"][1] == 1
    assert wrote["desk"][1] == 1
    assert mw.audit.verify().ok
