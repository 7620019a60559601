"""The steps of the demo's journey: one patient from enrolment to discharge.

Each step is a function of the :class:`Journey` that returns one line saying what
happened; it raises a typed :class:`~hcmiddleware.errors.HcmError` (whose hint says
what to do) when it cannot be done, or :class:`StepSkippedError` when a part it needs is not
installed. The steps call the SDK exactly as a HIS vendor's screens would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hcmiddleware.card.data import CardRead
from hcmiddleware.demo.clock import Clock, TimedTransport
from hcmiddleware.demo.peers import Peers, Terminal
from hcmiddleware.errors import HcmError
from hcmiddleware.flows.inpatient import InpatientFlow
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.models import VisitSummary
from hcmiddleware.runtime import Middleware

__all__ = ["STEPS", "Journey", "StepSkippedError"]

NURSE = "N-0107"
BAND = "WB-DEMO-0001"
KIOSK = "demo-kiosk"


class StepSkippedError(Exception):
    """A step that cannot run here (a part is not installed); the message says which."""


@dataclass
class Journey:
    """What the steps share: the middleware, the terminal, the peers and the results."""

    mw: Middleware
    terminal: Terminal
    peers: Peers
    clock: Clock
    values: dict[str, Any] = field(default_factory=dict)

    def transport(self) -> TimedTransport:
        """A timed connection to the card in the kiosk's reader."""
        return TimedTransport(self.terminal.transport(), self.clock)

    def need(self, plugin: str, what: str) -> None:
        """Skip the step when ``plugin`` is not enabled."""
        if plugin not in self.mw.enabled_plugins():
            raise StepSkippedError(f"{what} needs the {plugin} plugin (tox -e demo installs it)")

    def need_his(self) -> None:
        """Skip when no HIS that can admit is enabled (the sample HIS does outpatients only)."""
        if not ({"his-hl7", "his-fhir"} & set(self.mw.enabled_plugins())):
            raise StepSkippedError(
                "the inpatient steps need the reference HIS and the HL7 or FHIR adapter "
                "(tox -e demo installs them)"
            )

    @property
    def card(self) -> CardRead:
        card = self.values["card"]
        assert isinstance(card, CardRead)
        return card

    @property
    def card_number(self) -> str:
        return self.card.issuer.card_number


def _mask(number: str) -> str:
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


# -- the installation --------------------------------------------------------------------


def check_installation(j: Journey) -> str:
    # what a site does when it starts ('hcm journal recover'): money an interrupted run
    # left in flight is settled with the bank and the insurer before anything new
    recovered = j.mw.journal.recover()
    # what a site's timer does ('hcm cards sync', 'hcm ehc sync'): the lists of
    # refused cards and revoked e-cards are fresh before the first patient
    cards = j.mw.cards.sync()
    if not cards.ok:
        raise cards.refused[0]
    synced = len(cards.applied) + len(j.mw.ehc.sync_revocations(actor="demo"))
    rows = j.mw.doctor()
    bad = [f"{p}: {r.name} — {r.detail}" for p, r in rows if not r.ok]
    if bad:
        raise HcmError("health checks failed: " + "; ".join(bad), hint="run 'hcm doctor'")
    settled = ""
    if recovered.examined:
        outcomes = ", ".join(f"{n} {state}" for state, n in sorted(recovered.outcomes.items()))
        settled = (
            f"{recovered.examined} movements an interrupted run left in flight settled "
            f"({outcomes}); "
        )
    return (
        f"{settled}{synced} refused-card and revoked-e-card lists synced; {len(rows)} checks "
        f"passed; plugins: {', '.join(j.mw.enabled_plugins())}"
    )


# -- outpatient --------------------------------------------------------------------------


def enrol(j: Journey) -> str:
    from hcmiddleware.errors import FaceBackendError, MissingExtraError
    from hcmiddleware.face.samples import KIOSK_LIVE_PHOTO

    flow = OutpatientFlow(j.mw, actor="registration-1")
    transport = j.transport()
    try:
        who = flow.identify(transport, parts="all")
        j.values["resident_id"] = who.resident.resident_id
        live = KIOSK_LIVE_PHOTO.read_bytes()
        try:
            with j.clock.part("face"):
                checked = flow.check_face(who, live, transport=transport)
                stored = j.mw.faces.enrol(who.resident.resident_id, live, actor="registration-1")
        except MissingExtraError as exc:
            return (
                f"resident {who.resident.resident_id} enrolled from the card; face check "
                f"skipped: it needs the '{exc.extra}' extra ({exc.hint})"
            )
        except FaceBackendError as exc:
            return f"resident {who.resident.resident_id} enrolled; face check skipped: {exc}"
    finally:
        transport.close()
    return (
        f"resident {who.resident.resident_id} in the index; the person at the desk is the "
        f"cardholder (distance {checked.distance:.2f} ≤ {checked.threshold:.2f}, found by "
        f"{checked.detector or 'hog'}); face template {stored.status}"
    )


def read_card(j: Journey) -> str:
    transport = j.transport()
    try:
        card = j.mw.terminal.read(transport, actor=KIOSK, parts="identity,insurance,phones")
    finally:
        transport.close()
    j.values["card"] = card
    via = "pcscd" if j.terminal.pcsc else "the in-process card"
    return (
        f"card {_mask(card.issuer.card_number)} through {via}: the card proved itself to the "
        f"SAM and the SAM to the card; read {', '.join(card.parts)} only"
    )


def find_resident(j: Journey) -> str:
    from hcmiddleware.flows.journey import Identified

    resident = j.mw.residents.enrol_from_card(j.card)
    # the kiosk finds the resident the desk enrolled (step 2), not a second one; an ID
    # compare, not two counts of the index: the demo's own checks stay out of its times
    if resident.resident_id != j.values["resident_id"]:
        raise HcmError(
            "the resident enrolled at the desk was not found at the kiosk",
            hint="check the index's keys: the desk and the kiosk must share them",
        )
    flow = OutpatientFlow(j.mw, actor=KIOSK)
    who = Identified(resident=resident, card=j.card)
    patient = flow.patient(who)
    j.values.update(who=who, patient=patient, flow=flow)
    how = "created" if patient.created else "found"
    return (
        f"resident {resident.resident_id} found in the index; hospital patient "
        f"{patient.patient_id} ({how} by the HIS)"
    )


def register(j: Journey) -> str:
    flow: OutpatientFlow = j.values["flow"]
    start = (datetime.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    reg = flow.register(j.values["patient"], department_code="NEI", slot_start=start, fee="12.00")
    j.values["registration"] = reg
    pos = flow.queue(reg)
    return (
        f"registration {reg.registration_id}, {start:%H:%M}–{reg.slot_end:%H:%M}, "
        f"queue number {pos.queue_number} ({pos.ahead} ahead)"
    )


def ecard(j: Journey) -> str:
    from hcmiddleware.ehc import qr

    if j.mw.ehc.issuer is None and "ehc-platform" not in j.mw.enabled_plugins():
        raise StepSkippedError("no e-card issuer: enable the ehc-platform adapter or [ehc.issuer]")
    resident_id = j.values["resident_id"]
    ecard_id = j.mw.ehc.issue(resident_id, actor="ehc-issuer")
    code = j.mw.ehc.dynamic_code(ecard_id)
    picture = qr.render(code, kind="png")
    flow = OutpatientFlow(j.mw, actor="kiosk-ecard")
    with j.clock.part("ehc"):
        scanned = qr.decode_image(picture)
    who = flow.identify_ecard(scanned, care_step="registration")
    if who.resident.resident_id != resident_id:
        raise HcmError("the e-card found another resident", hint="check the e-card's binding")
    patient = flow.patient(who)
    assert who.ehc is not None
    return (
        f"e-card {ecard_id[:8]}… bound to the same resident; its dynamic code as a "
        f"{len(picture)}-byte PNG, decoded and verified {who.ehc.checked} "
        f"(key {who.ehc.key_id}); same hospital patient {patient.patient_id}"
    )


def doctor_desk(j: Journey) -> str:
    flow: OutpatientFlow = j.values["flow"]
    transport = j.transport()
    try:
        view = flow.desk(j.values["who"], j.values["patient"], j.values["registration"], transport)
    finally:
        transport.close()
    orders = len(view.orders)
    return (
        f"{len(view.previous_visits)} earlier visits from the card, "
        f"{orders} order{'' if orders == 1 else 's'} for this visit"
    )


def pay_charges(j: Journey) -> str:
    j.need("bank-soap", "paying from the card's bank account")
    from hcmiddleware.flows.payment import charges_key, charges_payment, top_up

    flow: OutpatientFlow = j.values["flow"]
    patient, reg = j.values["patient"], j.values["registration"]
    top_up(
        j.mw.journal,
        key=f"demo-top-up-{j.card_number}",
        card_number=j.card_number,
        amount="3000.00",
        terminal_id=KIOSK,
    )
    charges = flow.charges(patient, reg)
    pay = charges_payment(j.mw.journal, card_number=j.card_number, terminal_id=KIOSK)
    settled = flow.settle(patient, charges, pay=pay)
    advance, amount = settled.transaction_id, settled.amount
    if advance is None:  # paid on an earlier run of the demo with this data folder
        earlier = j.mw.journal.by_key(charges_key(j.card_number, charges))
        if earlier is None:
            raise HcmError(
                "the charges are paid in the HIS but not through this journal",
                hint="run the demo with a fresh --data-dir",
            )
        advance, amount = earlier.transaction_id, earlier.amount
    j.values.update(charges=charges, advance=advance, total=amount)
    return (
        f"3000.00 topped up; {len(charges)} charges, {_money(amount)} yuan paid from "
        f"the card's account (journalled before sent: {advance}); marked paid "
        f"in the HIS"
    )


def insurance(j: Journey) -> str:
    j.need("bank-soap", "returning the fund's part to the card's account")
    j.need("insurance-soap", "insurance settlement")
    from hcmiddleware.flows.settlement import settle_visit

    reg = j.values["registration"]
    outcome = settle_visit(
        j.mw.journal,
        key=f"demo-settle-{reg.registration_id}",
        scheme="basic",
        insured_id=j.card.cardholder.id_number,
        patient_id=j.values["patient"].patient_id,
        visit_id=reg.registration_id,
        charges=j.values["charges"],
        card_number=j.card_number,
        advance_transaction_ids=[j.values["advance"]],
    )
    split = outcome.pre_settlement
    j.values["settlement"] = outcome
    return (
        f"pre-settled {_money(split.total)}: fund {_money(split.fund_paid)}, patient "
        f"{_money(split.total - split.fund_paid)}; settled "
        f"({outcome.settlement.transaction_id}), {_money(outcome.returned_total)} returned to "
        f"the card's account"
    )


def _need_printing(j: Journey) -> None:
    from hcmiddleware._optional import needs_extra

    with needs_extra("receipts and reports"):
        import escpos  # noqa: F401
        import fpdf  # noqa: F401


def print_receipts(j: Journey) -> str:
    _need_printing(j)
    settled = j.values.get("settlement")
    if settled is None:
        raise StepSkippedError("no settlement to print a receipt of (the money steps were skipped)")
    # the payment flows printed each confirmed movement's receipt on the thermal printer
    printed = [job for job in j.mw.receipts.jobs() if job.medium == "receipt" and job.ok]
    listing = j.mw.receipts.movement(
        j.values["advance"], charges=j.values["charges"], patient_id=j.values["patient"].patient_id
    )
    device = j.mw.config.printing.escpos_device
    size = Path(device).stat().st_size if device and Path(device).exists() else 0
    return (
        f"{len(printed)} receipts printed as the money moved (top-up, payment, settlement, "
        f"refund), then the payment list ({'a copy' if listing.reprint else 'first print'}); "
        f"{size} bytes of ESC/POS sent to the thermal printer"
    )


def print_reports(j: Journey) -> str:
    _need_printing(j)
    staff = j.peers.provides.get("hospital_staff")
    reg = j.values["registration"]
    if staff is not None:
        staff.sign_off_reports(reg.registration_id)  # the lab signs the blood count off
    jobs = j.mw.receipts.reports(j.values["patient"], reg.registration_id)
    if not jobs:  # each report is printed once: an earlier run of the demo printed it
        earlier = [job for job in j.mw.receipts.jobs() if job.kind.endswith("report") and job.ok]
        if earlier:
            return (
                f"the visit's report was printed on an earlier run; a second copy is "
                f"'hcm receipt reprint {earlier[0].document_id}'"
            )
        raise StepSkippedError("the HIS has no signed-off report for this visit")
    pages = ", ".join(Path(job.reference).name for job in jobs if job.reference)
    return f"{len(jobs)} report(s) printed at the self-service printer as PDF: {pages}"


def write_visit(j: Journey) -> str:
    flow: OutpatientFlow = j.values["flow"]
    config = j.mw.config.middleware
    transport = j.transport()
    try:
        slot = flow.write_summary(
            j.values["who"],
            VisitSummary(
                kind="outpatient",
                visited_at=datetime.now().replace(microsecond=0),
                institution_name=config.site_name,
                institution_code=config.institution_code,
                department="内科",
                doctor="张医生",
                diagnosis_code="J06.9",
                diagnosis_name="急性上呼吸道感染",
                treatment="对症治疗",
                total_fee=j.values.get("total", Decimal("0.00")),
            ),
            transport,
        )
        visits = j.mw.terminal.open(transport).read_visits()
    finally:
        transport.close()
    return f"visit summary written to outpatient slot {slot}; the card now holds {len(visits)}"


# -- inpatient ---------------------------------------------------------------------------


def admit(j: Journey) -> str:
    j.need_his()
    j.need("bank-soap", "the deposit")
    from hcmiddleware.flows.payment import charges_payment

    flow = InpatientFlow(j.mw, actor="admissions-1")
    stay = flow.admit(j.values["patient"], department_code="NEI", ward="5A", bed="12")
    by_card = charges_payment(j.mw.journal, card_number=j.card_number, terminal_id="admissions-1")
    paid: list[str] = []

    def pay(amount: Decimal, charges: list[Any]) -> str:
        paid.append(by_card(amount, charges))
        return paid[-1]

    stay = flow.deposit(stay, "1000.00", pay=pay)
    j.values["deposit_tx"] = paid[0]
    band = j.mw.ward.bind(
        BAND, stay, card_number=j.card_number, kind="active", actor="admissions-1"
    )
    label = j.mw.ward.label(BAND)
    j.values.update(stay=stay, inpatient=flow, pay_inpatient=pay)
    return (
        f"admission {stay.admission_id} to ward 5A bed 12; deposit "
        f"{_money(stay.deposit_balance)} from the card's account; {band.kind} band {BAND} "
        f"bound ({len(label)}-byte ZPL label)"
    )


def nurse_round(j: Journey) -> str:
    j.need_his()
    from hcmiddleware.errors import VerificationFailedError
    from hcmiddleware.models import BedsideScan

    orders = j.mw.ward.orders(BAND, actor=NURSE)
    drip = next((o for o in orders if o.route == "IVGTT"), None)
    if drip is None:
        raise HcmError("the stay has no infusion order", hint="check the HIS's admission orders")
    scan = BedsideScan(
        wristband_id=BAND,
        nurse_id=NURSE,
        order_id=drip.order_id,
        bed="12",
        drug_code=drip.code,
        dose=drip.dose,
        concentration=drip.concentration,
        route="静滴",
    )
    # the drip given on an earlier run of the demo stays given; one an interrupted run
    # left between two checks is taken on at the next check, as the nurse would
    earlier = [
        e
        for e in j.mw.ward.executions(j.values["stay"].admission_id)
        if e.order_id == drip.order_id and e.state != "abandoned"
    ]
    given = ""
    if earlier and earlier[-1].state == "done":
        done, given = earlier[-1], " on an earlier run"
    elif earlier:
        done = earlier[-1]
        while done.state in {"during", "after"}:
            done = j.mw.ward.check(done.execution_id, scan)
        given = ", its checks finished after an interrupted run"
    else:
        done = j.mw.ward.execute(scan)  # before, during, after
    staff = j.peers.provides.get("hospital_staff")
    refused = "no second order to refuse (the HIS peer gives no staff)"
    if staff is not None:
        order_id = staff.prescribe(
            j.values["stay"].admission_id, "AMX500", "阿莫西林胶囊 Amoxicillin", "0.5 g", "PO"
        )
        wrong = BedsideScan(
            wristband_id=BAND, nurse_id=NURSE, order_id=order_id, bed="12",
            drug_code="AMX500", dose="250 mg", route="口服",
        )  # fmt: skip
        try:
            j.mw.ward.execute(wrong)
        except VerificationFailedError as exc:
            refused = f"a 250 mg capsule for a 0.5 g order refused ({', '.join(exc.failed)})"
        else:
            raise HcmError("a wrong dose was not refused", hint="check [ward] rules")
    return (
        f"{len(orders)} orders on the handheld; {drip.name} passed the seven verifications "
        f"and the three checks{given} ({done.state}, HIS {done.his_state}); {refused}"
    )


def emergency_call(j: Journey) -> str:
    j.need_his()
    band = j.peers.provides.get("band_device")
    if band is not None:
        band.emergency(BAND, location="5A-12")
        deadline = time.monotonic() + 5.0
        alarm = None
        while alarm is None and time.monotonic() < deadline:
            alarm = next((a for a in j.mw.ward.alarms() if a.wristband_id == BAND), None)
            if alarm is None:
                time.sleep(0.02)
        if alarm is None:
            raise HcmError(
                "the band's call did not reach the ward within 5 s",
                hint="check the MQTT broker and [plugins.ward-mqtt]",
            )
        how = "over MQTT"
    else:
        from hcmiddleware.models import BandEvent

        # a new event each run: the ward takes an event ID it has seen as a repeat
        event_id = f"demo-{datetime.now():%Y%m%d%H%M%S%f}"
        call = BandEvent(event_id=event_id, wristband_id=BAND, kind="emergency", at=datetime.now())
        got = j.mw.ward.receive([call])
        # an alarm left open by an interrupted run takes the new call in (folded)
        (alarm,) = got.raised or got.folded
        how = "in-process (no MQTT broker)"
    taken = j.mw.ward.acknowledge(alarm.alarm_id, NURSE)
    return f"call from bed {alarm.bed} {how}: alarm {taken.state} by {taken.acknowledged_by}"


def discharge(j: Journey) -> str:
    j.need_his()
    flow: InpatientFlow = j.values["inpatient"]
    stay = j.values["stay"]
    if stay.discharged_at is not None:  # an earlier run of the demo went this far
        bill = flow.bill(stay)
        return (
            f"inpatient bill {_money(bill.total)} against a deposit of "
            f"{_money(bill.deposits)}; discharged on an earlier run "
            f"({stay.discharged_at:%H:%M}), nothing owed or paid twice"
        )
    staff = j.peers.provides.get("hospital_staff")
    bill = flow.bill(stay)
    if staff is not None and not any(item.item_code == "NURSE" for item in bill.items):
        staff.book_ward_fees(stay.admission_id, days=3)  # once, also over interrupted runs
        bill = flow.bill(stay)
    stay = flow.settle_bill(stay, pay=j.values["pay_inpatient"])
    done = flow.discharge(stay)
    j.values["bill"] = bill
    owed = "nothing owed" if bill.balance <= 0 else f"{_money(bill.balance)} paid from the card"
    returned = ""
    if done.final_bill.balance < 0:  # the deposit's unused part goes back to the card
        from hcmiddleware.flows.payment import refund

        id_number = j.card.cardholder.id_number  # the ID card shown at the cashier
        back = refund(
            j.mw.journal,
            key=f"demo-deposit-refund-{stay.admission_id}",
            card_number=j.card_number,
            original_transaction_id=j.values["deposit_tx"],
            amount=-done.final_bill.balance,
            holder_id_number=id_number,
            presented_id_number=id_number,
            terminal_id="cashier-1",
        )
        returned = f"; {_money(back.amount)} of the deposit refunded to the card's account"
    printed = ""
    try:
        _need_printing(j)
    except HcmError:
        pass  # the printing steps say why
    else:
        job = j.mw.receipts.bill(done.final_bill, stay)
        printed = "; the inpatient bill printed" if job.ok else "; the bill's print failed"
    return (
        f"inpatient bill {_money(bill.total)} against a deposit of "
        f"{_money(bill.deposits)}: {owed}; discharged, band {BAND} released{returned}{printed}"
    )


# -- the day's end -----------------------------------------------------------------------


def reconcile(j: Journey) -> str:
    j.need("bank-soap", "reconciliation with the bank")
    from hcmiddleware.journal import reconcile as run

    report = run(j.mw.journal, date.today())
    if not report.ok:
        raise HcmError(report.render(), hint="run 'hcm journal reconcile' and read the report")
    parts = [
        f"{s.source}: {len(s.matched)} matched" if s.available else f"{s.source}: unavailable"
        for s in report.sources
    ]
    return "the journal agrees with " + "; ".join(parts)


def verify_audit(j: Journey) -> str:
    checkpoint = j.mw.audit.checkpoint()
    report = j.mw.audit.verify(actor="demo")
    if not report.ok:
        raise HcmError(report.render(), hint="run 'hcm audit verify'")
    signed = "signed" if checkpoint is not None and checkpoint.signature else "unsigned"
    return (
        f"{report.entries} entries in the audit chain ({report.algorithm}), every one "
        f"intact; checkpoint at entry {report.head} ({signed})"
    )


Step = Callable[[Journey], str]

#: (title, step, part of the outpatient visit)
STEPS: list[tuple[str, Step, bool]] = [
    ("Check the installation", check_installation, False),
    ("Enrol the resident at the desk, with a face check", enrol, False),
    ("Read the card at the kiosk: mutual authentication with the SAM", read_card, True),
    ("Find the resident in the index and the patient in the HIS", find_resident, True),
    ("Register the visit and join the queue", register, True),
    ("Identify the patient by the e-health card's QR code too", ecard, False),
    ("Doctor's desk: earlier visits from the card, this visit's orders", doctor_desk, False),
    ("Pay the charges from the card's bank account", pay_charges, False),
    ("Insurance pre-settlement and settlement", insurance, False),
    ("Print the receipts and the payment list", print_receipts, False),
    ("Print the lab report at the self-service printer", print_reports, False),
    ("Write the visit to the card", write_visit, False),
    ("Admit, take the deposit, bind the wristband", admit, False),
    ("Nurse's round: three checks, seven verifications", nurse_round, False),
    ("Emergency call from the band, acknowledged", emergency_call, False),
    ("Inpatient bill, settlement and discharge", discharge, False),
    ("Reconcile the day with the bank and the insurer", reconcile, False),
    ("Verify the audit log", verify_audit, False),
]
