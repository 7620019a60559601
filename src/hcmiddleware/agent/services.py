"""The agent's endpoints for the rest of the services: refunds and insurance
settlements through the journal, the queue, lab and exam reports (and printing them),
the inpatient stay (admission, deposits, the bill, discharge), the card's life (state,
loss reports), issuing e-cards, wristbands, the ward kiosk's summary and the bedside
executions.

As in :mod:`hcmiddleware.agent.app`, each route is a thin call of a service method
through the caller's session, answering the service's own model. Where one request
goes on to more than one operation (a deposit is a payment and its record in the HIS)
every operation is checked against the role, and the capability against the enabled
plugins, before the first runs: a refusal or a missing capability leaves nothing
half-done. Money moves only through the journal and is idempotent by its ``key``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import FastAPI, Path, Query, Response
from pydantic import BaseModel, Field

from hcmiddleware.agent.app import MovementOut, movement_out
from hcmiddleware.agent.callers import need, provided
from hcmiddleware.agent.deps import As, Who
from hcmiddleware.cards import mask
from hcmiddleware.empi.records import MergeEvent
from hcmiddleware.errors import (
    AgentRequestError,
    MoneyError,
    NoAdapterError,
    OutcomeUnknownError,
    PaymentDeclinedError,
    PaymentNotRecordedError,
    UnknownTransactionError,
)
from hcmiddleware.models import (
    Admission,
    AdmissionRequest,
    BedsideExecution,
    BedsideScan,
    Bill,
    CardState,
    Charge,
    Discharge,
    HospitalPatient,
    Order,
    PaymentStatus,
    QueuePosition,
    Registration,
    Report,
    Resident,
    WardSummary,
    WristbandBinding,
)

if TYPE_CHECKING:
    from hcmiddleware.agent.app import AgentState
    from hcmiddleware.journal import Movement

__all__ = ["add_services"]

_Id = Annotated[str, Path(min_length=1, max_length=64)]
_Visit = Annotated[str, Query(min_length=1, max_length=64)]
_BAND = Annotated[str, Path(min_length=1, max_length=40)]


# --- request and answer models ------------------------------------------------------------


class _Body(BaseModel):
    model_config = {"extra": "forbid"}


class _Keyed(_Body):
    key: str = Field(min_length=1, max_length=64, description="idempotency key")


class RefundRequest(_Keyed):
    """Refund part or all of a confirmed payment; never more than is left of it."""

    card_number: str = Field(min_length=1, max_length=32)
    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2, description="yuan")
    original_transaction_id: str = Field(min_length=1, max_length=64)


class SettleRequest(_Keyed):
    """An insurance settlement of a visit's charges; ``total`` is their sum."""

    scheme: Literal["basic", "rural"]
    insured_id: str = Field(min_length=1, max_length=64)
    patient_id: str = Field(min_length=1, max_length=64)
    visit_id: str = Field(min_length=1, max_length=64)
    charges: list[Charge] = Field(min_length=1, max_length=500)
    total: Decimal = Field(gt=0, max_digits=12, decimal_places=2, description="yuan")


class CancelSettlementRequest(_Keyed):
    """Cancel a confirmed settlement (the insurer cancels one once)."""

    settlement_id: str = Field(min_length=1, max_length=64)


class HistoryStep(BaseModel):
    """One state a journal entry went through."""

    at: dt.datetime
    state: str
    note: str | None = None


class Refundable(BaseModel):
    """What is left to refund of a confirmed payment."""

    transaction_id: str
    refundable: Decimal


class ChargesPaidRequest(_Body):
    """Tell the HIS the charges are paid by a confirmed journal payment."""

    patient: HospitalPatient
    charge_ids: list[str] = Field(min_length=1, max_length=500)
    transaction_id: str = Field(min_length=1, max_length=64)


class ChargesPaid(BaseModel):
    """The HIS recorded the charges as paid by the transaction."""

    transaction_id: str
    charge_ids: list[str]


class PrintJobOut(BaseModel):
    """One attempt to print a document (the print log's row)."""

    job_id: int
    document_id: str
    transaction_id: str | None = None
    kind: str
    medium: str
    state: Literal["printed", "failed"]
    printer: str | None = None
    reference: str | None = None
    error: str | None = None
    reprint: bool
    at: dt.datetime


class AdmitRequest(_Body):
    """Admit the patient (idempotent per ``request.request_id``)."""

    patient: HospitalPatient
    request: AdmissionRequest


class DepositRequest(_Keyed):
    """A deposit (or a top-up of it, or the last of the bill at discharge) paid from the
    card's account and recorded on the stay."""

    admission: Admission
    card_number: str = Field(min_length=1, max_length=32)
    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2, description="yuan")


class DepositOut(BaseModel):
    """The payment as the journal holds it, and the stay with its new deposit balance."""

    movement: MovementOut
    admission: Admission


class BindRequest(_Body):
    """Bind a wristband to the stay of the health card's holder."""

    wristband_id: str = Field(min_length=1, max_length=40)
    admission: Admission
    card_number: str = Field(min_length=1, max_length=32)
    kind: Literal["passive", "active"] = "passive"


class RebindRequest(_Body):
    """Replace a lost or broken band by a new one."""

    new_wristband_id: str = Field(min_length=1, max_length=40)
    reason: str = Field("lost", min_length=1, max_length=40, description="lost, broken …")
    kind: Literal["passive", "active"] | None = None


class UnbindRequest(_Body):
    reason: str = Field(
        "discharged", min_length=1, max_length=40, description="discharged, transferred …"
    )


class MoveRequest(_Body):
    """The patient changed bed."""

    ward: str = Field(min_length=1, max_length=32)
    bed: str = Field(min_length=1, max_length=16)


class CardNumberRequest(_Body):
    card_number: str = Field(min_length=1, max_length=32)


class AbandonRequest(_Body):
    reason: str = Field(min_length=1, max_length=80)


class CardCheckRequest(_Body):
    """A card number to check against the lists of refused cards held here."""

    card_number: str = Field(min_length=1, max_length=32)
    for_payment: bool = Field(False, description="refuse a frozen card too (it moves no money)")


class CardStateOut(BaseModel):
    """The card's state as the lists held here say."""

    state: CardState


class CardChecked(BaseModel):
    """The card may be used (for a payment, with ``for_payment``)."""

    ok: Literal[True] = True
    state: CardState


class LossReport(_Body):
    """The cardholder reports the card lost, identified by their ID number or a live
    photo (base64 JPEG) matching their enrolled face."""

    card_number: str = Field(min_length=1, max_length=32)
    resident_id: str = Field(min_length=1, max_length=64)
    id_number: str | None = Field(None, max_length=18)
    face: str | None = Field(None, description="base64 of a live JPEG")


class LossReported(BaseModel):
    """The card is refused here from now on; ``reference`` is the issuer's, if told."""

    card_number: str = Field(description="masked")
    state: CardState
    reference: str | None = None


class EhcIssueRequest(_Body):
    resident_id: str = Field(min_length=1, max_length=64)


class EhcIssued(BaseModel):
    """The resident's new e-card."""

    ecard_id: str


class EhcBindRequest(_Body):
    """Bind an e-card ID (issued elsewhere) to a resident."""

    resident_id: str = Field(min_length=1, max_length=64)
    ecard_id: str = Field(min_length=1, max_length=64)


class EhcCodeRequest(_Body):
    """A code for an e-card: ``static`` (printed once) or ``dynamic`` (short-lived)."""

    ecard_id: str = Field(min_length=1, max_length=64)
    kind: Literal["static", "dynamic"] = "dynamic"


class EhcCode(BaseModel):
    """The code's text, as the QR code carries it."""

    text: str


class WardSummaryRequest(_Body):
    """The band scanned or the health card inserted at the kiosk: one of them."""

    wristband_id: str | None = Field(None, min_length=1, max_length=40)
    card_number: str | None = Field(None, min_length=1, max_length=32)


# --- helpers ------------------------------------------------------------------------------


def _confirmed(movement: Movement, action: str) -> None:
    """Go on only with money that moved (the payment flows' rule)."""
    if movement.state is PaymentStatus.CONFIRMED:
        return
    if movement.state in (PaymentStatus.FAILED, PaymentStatus.REVERSED):
        raise PaymentDeclinedError(
            f"the {action} of {movement.amount} did not go through "
            f"({movement.reason or movement.state.value})",
            state=movement.state.value,
            transaction_id=movement.transaction_id,
        )
    raise OutcomeUnknownError(
        f"the {action} of {movement.amount} is still being confirmed",
        transaction_id=movement.transaction_id,
        hint="send the same request again with the same key once it is settled "
        "(GET /v1/journal/{transaction_id}); never with a new key",
    )


def _base64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AgentRequestError(
            f"{where.rsplit('.', 1)[-1]} is not base64",
            status=422,
            problems=[{"loc": where, "problem": "not base64"}],
        ) from None


def _job(job: object) -> PrintJobOut:
    data = dict(job.__dict__)
    if data["at"].tzinfo is None:  # the print log keeps naive UTC
        data["at"] = data["at"].replace(tzinfo=dt.UTC)
    return PrintJobOut.model_validate(data)


# --- the routes ---------------------------------------------------------------------------


def add_services(app: FastAPI, state: AgentState) -> None:
    """Add the routes of the module docstring to the agent's ``app``."""
    mw = state.mw

    # -- money ------------------------------------------------------------------------

    @app.post("/v1/journal/refund", tags=["journal"])
    def refund(s: As, who: Who, body: RefundRequest) -> MovementOut:
        """Refund (part of) a confirmed payment; journalled before it is sent."""
        need(s, "agent.refund", "journal.refund")
        provided(mw, "bank.payments", "hcm_bank_refund")
        with state.moving_money():
            done = s.journal.refund(
                key=body.key,
                card_number=body.card_number,
                amount=str(body.amount),
                original_transaction_id=body.original_transaction_id,
                terminal_id=who.terminal,
            )
        return movement_out(done)

    @app.post("/v1/journal/settle", tags=["journal"])
    def settle(s: As, body: SettleRequest) -> MovementOut:
        """Settle a visit's charges with the insurer; journalled before it is sent."""
        need(s, "agent.settle", "journal.settle")
        provided(mw, "insurance.settlement", "hcm_insurance_settle")
        with state.moving_money():
            done = s.journal.settle(
                key=body.key,
                scheme=body.scheme,
                insured_id=body.insured_id,
                patient_id=body.patient_id,
                visit_id=body.visit_id,
                charges=body.charges,
                total=str(body.total),
            )
        return movement_out(done)

    @app.post("/v1/journal/cancel-settlement", tags=["journal"])
    def cancel_settlement(s: As, body: CancelSettlementRequest) -> MovementOut:
        """Cancel a confirmed settlement; journalled before it is sent."""
        need(s, "agent.cancel_settlement", "journal.cancel_settlement")
        provided(mw, "insurance.settlement", "hcm_insurance_cancel")
        with state.moving_money():
            done = s.journal.cancel_settlement(key=body.key, settlement_id=body.settlement_id)
        return movement_out(done)

    @app.get("/v1/journal/by-key/{key}", tags=["journal"])
    def by_key(s: As, key: _Id) -> MovementOut:
        """The entry made for an idempotency key (404 when none was)."""
        found = s.journal.by_key(key)
        if found is None:
            raise UnknownTransactionError(
                "no journal entry was made for this key",
                hint="nothing was moved under it: the request may be sent with it",
            )
        return movement_out(found)

    @app.get("/v1/journal/{transaction_id}/history", tags=["journal"])
    def history(s: As, transaction_id: _Id) -> list[HistoryStep]:
        """Every state the entry went through, oldest first."""
        steps = s.journal.history(transaction_id)
        return [HistoryStep(at=at.replace(tzinfo=dt.UTC), state=st, note=n) for at, st, n in steps]

    @app.get("/v1/journal/{transaction_id}/refundable", tags=["journal"])
    def refundable(s: As, transaction_id: _Id) -> Refundable:
        """What is left to refund of a confirmed payment."""
        left: Decimal = s.journal.refundable(transaction_id)
        return Refundable(transaction_id=transaction_id, refundable=left)

    @app.post("/v1/journal/{transaction_id}/resolve", tags=["journal"])
    def resolve(s: As, transaction_id: _Id) -> MovementOut:
        """Settle an entry whose outcome is unknown by asking the bank or insurer."""
        with state.moving_money():
            done = s.journal.resolve(transaction_id)
        return movement_out(done)

    # -- the HIS: the queue, paid charges, reports ---------------------------------------

    @app.post("/v1/his/queue", tags=["his"])
    def queue(s: As, body: Registration) -> QueuePosition:
        """Where the registered patient stands in the department's queue."""
        position: QueuePosition = s.his.queue_position(body)
        return position

    @app.post("/v1/his/charges/paid", tags=["his"])
    def charges_paid(s: As, body: ChargesPaidRequest) -> ChargesPaid:
        """Mark the charges paid in the HIS by a confirmed journal payment (idempotent
        per transaction); a payment that is not confirmed is refused."""
        need(s, "agent.charges_paid", "journal.get", "his.charges_paid")
        moved = s.journal.get(body.transaction_id)
        if moved.kind != "pay":
            raise MoneyError(
                f"transaction {moved.transaction_id} is a {moved.kind}, not a payment",
                transaction_id=moved.transaction_id,
                hint="mark charges paid by the payment that paid them",
            )
        _confirmed(moved, "payment")
        s.his.charges_paid(body.patient, body.charge_ids, body.transaction_id)
        return ChargesPaid(transaction_id=body.transaction_id, charge_ids=body.charge_ids)

    @app.post("/v1/his/reports", tags=["his"])
    def reports(s: As, body: HospitalPatient, visit_id: _Visit) -> list[Report]:
        """The visit's lab and exam reports (pending ones included)."""
        found: list[Report] = s.his.reports(body, visit_id)
        return found

    @app.post("/v1/his/reports/print", tags=["his"])
    def print_reports(
        s: As, body: HospitalPatient, visit_id: _Visit, again: bool = False
    ) -> list[PrintJobOut]:
        """Print the visit's reports that are ready and not printed yet (``again``: those
        printed before too) on the workstation's page printer (``receipts.reports``); one
        job each, a failed one recorded and the others still printed."""
        need(s, "agent.print_reports", "receipts.reports")
        if not mw._raw("receipts").available():
            raise NoAdapterError(
                "printing",
                "hcm_print",
                hint="set [printing] pdf_dir (or a page printer plugin) in the config file",
            )
        jobs = s.receipts.reports(body, visit_id, again=again)
        return [_job(j) for j in jobs]

    # -- the HIS: the inpatient stay ------------------------------------------------------

    @app.post("/v1/his/admissions", tags=["inpatient"], status_code=201)
    def admit(s: As, body: AdmitRequest) -> Admission:
        """Admit the patient (idempotent per ``request.request_id``)."""
        admission: Admission = s.his.admit(body.patient, body.request)
        return admission

    @app.post("/v1/his/deposits", tags=["inpatient"])
    def deposit(s: As, body: DepositRequest) -> DepositOut:
        """Pay a deposit from the card's account through the journal, then record it on
        the stay (the session's inpatient flow). Idempotent by ``key``: sent again after
        any failure, even one past the payment, it pays nothing twice and records the
        deposit once."""
        need(s, "agent.deposit", "journal.pay", "his.record_deposit")
        provided(mw, "bank.payments", "hcm_bank_pay")
        provided(mw, "his.inpatient", "hcm_his_record_deposit")
        with state.moving_money():
            # a payment that did not go through raises (PaymentDeclinedError, or
            # OutcomeUnknownError while the bank is asked)
            paid = s.flows.pay(key=body.key, card_number=body.card_number, amount=body.amount)
        try:
            updated = s.flows.inpatient().record_deposit(
                body.admission, paid.amount, paid.transaction_id
            )
        except PaymentNotRecordedError as exc:
            raise PaymentNotRecordedError(
                exc.message,
                step=exc.step,
                transaction_id=exc.transaction_id,
                plugin=exc.plugin,
                hint="send the same request again (same key): it records the deposit "
                "without paying again",
            ) from exc
        return DepositOut(movement=movement_out(paid), admission=updated)

    @app.post("/v1/his/bill", tags=["inpatient"])
    def bill(s: As, body: Admission) -> Bill:
        """The stay's bill: charges, insured part, deposits, balance (positive: owed)."""
        found: Bill = s.his.bill(body)
        return found

    @app.post("/v1/his/discharge", tags=["inpatient"])
    def discharge(s: As, body: Admission) -> Discharge:
        """Discharge the patient against the stay's bill (the session's inpatient flow):
        refused while money is owed; the stay's wristband is released."""
        done: Discharge = s.flows.inpatient().discharge(body)
        return done

    # -- wristbands ----------------------------------------------------------------------

    @app.post("/v1/ward/bands", tags=["ward"], status_code=201)
    def bind(s: As, body: BindRequest) -> WristbandBinding:
        """Bind a band to the stay of the health card's holder (the same again answers
        the first binding)."""
        binding: WristbandBinding = s.ward.bind(
            body.wristband_id, body.admission, card_number=body.card_number, kind=body.kind
        )
        return binding

    @app.post("/v1/ward/bands/of-card", tags=["ward"])
    def band_of_card(s: As, body: CardNumberRequest) -> WristbandBinding:
        """The active band of the health card's holder."""
        binding: WristbandBinding = s.ward.band_of_card(body.card_number)
        return binding

    @app.get("/v1/ward/bands/{wristband_id}", tags=["ward"])
    def binding(s: As, wristband_id: _BAND) -> WristbandBinding:
        """The band's active binding (404 unknown; 409 replaced or released)."""
        found: WristbandBinding = s.ward.binding(wristband_id)
        return found

    @app.post("/v1/ward/bands/{wristband_id}/rebind", tags=["ward"])
    def rebind(s: As, wristband_id: _BAND, body: RebindRequest) -> WristbandBinding:
        """Replace a lost or broken band: the old one is dead at once, the new one active."""
        made: WristbandBinding = s.ward.rebind(
            wristband_id, body.new_wristband_id, reason=body.reason, kind=body.kind
        )
        return made

    @app.post("/v1/ward/bands/{wristband_id}/unbind", tags=["ward"])
    def unbind(s: As, wristband_id: _BAND, body: UnbindRequest) -> WristbandBinding:
        """End the band's binding; it identifies nobody from now on."""
        done: WristbandBinding = s.ward.unbind(wristband_id, reason=body.reason)
        return done

    @app.post("/v1/ward/bands/{wristband_id}/move", tags=["ward"], status_code=204)
    def move(s: As, wristband_id: _BAND, body: MoveRequest) -> Response:
        """The patient changed bed: the binding follows."""
        s.ward.move(wristband_id, ward=body.ward, bed=body.bed)
        return Response(status_code=204)

    @app.get(
        "/v1/ward/bands/{wristband_id}/label",
        tags=["ward"],
        response_class=Response,
        responses={
            200: {
                "content": {"text/plain": {}, "image/png": {}},
                "description": "ZPL II text (UTF-8), or a PNG",
            }
        },
    )
    def label(s: As, wristband_id: _BAND, kind: Literal["zpl", "png"] = "zpl") -> Response:
        """The band's printable label: ``zpl`` for a label printer, or ``png``."""
        made: bytes = s.ward.label(wristband_id, kind=kind)
        media = "text/plain; charset=utf-8" if kind == "zpl" else "image/png"
        return Response(made, media_type=media, headers={"Cache-Control": "no-store"})

    @app.get("/v1/ward/bands/{wristband_id}/orders", tags=["ward"])
    def band_orders(s: As, wristband_id: _BAND) -> list[Order]:
        """The stay's orders from the HIS, for the handheld that scanned the band."""
        found: list[Order] = s.ward.orders(wristband_id)
        return found

    # -- the card's life, the e-card ---------------------------------------------------------

    @app.post("/v1/cards/state", tags=["cards"])
    def card_state(s: As, body: CardNumberRequest) -> CardStateOut:
        """The card's state as the lists of refused cards held here say."""
        return CardStateOut(state=s.cards.state(body.card_number))

    @app.post("/v1/cards/check", tags=["cards"])
    def card_check(s: As, body: CardCheckRequest) -> CardChecked:
        """Refuse a listed card, offline (409 ``CardRefusedError``): before a card is used,
        and before money moves (``for_payment``: a frozen card too)."""
        need(s, "agent.card_check", "cards.check", "cards.state")
        s.cards.check(body.card_number, for_payment=body.for_payment)
        return CardChecked(state=s.cards.state(body.card_number))

    @app.post("/v1/cards/report-loss", tags=["cards"])
    def report_loss(s: As, who: Who, body: LossReport) -> LossReported:
        """The cardholder reports the card lost: refused here at once, told to the issuer.
        The holder is identified by the ID number or a live photo first (422 otherwise)."""
        face = _base64(body.face, "body.face") if body.face is not None else None
        reference = s.cards.report_loss(
            body.card_number,
            resident_id=body.resident_id,
            id_number=body.id_number,
            face=face,
            terminal=who.terminal,
        )
        return LossReported(
            card_number=mask(body.card_number),
            state=CardState.LOSS_REPORTED,
            reference=reference,
        )

    @app.post("/v1/ehc/issue", tags=["ehc"], status_code=201)
    def ehc_issue(s: As, body: EhcIssueRequest) -> EhcIssued:
        """Open an e-card for a resident and bind it (the platform's, or this site's
        issuer: 501 ``ehc.issuing`` when neither is configured)."""
        ecard_id: str = s.ehc.issue(body.resident_id)
        return EhcIssued(ecard_id=ecard_id)

    @app.post("/v1/ehc/bind", tags=["ehc"])
    def ehc_bind(s: As, body: EhcBindRequest) -> Resident:
        """Bind an e-card ID to a resident in the index (one identity, one record)."""
        resident: Resident = s.ehc.bind(body.resident_id, body.ecard_id)
        return resident

    @app.post("/v1/ehc/code", tags=["ehc"])
    def ehc_code(s: As, body: EhcCodeRequest) -> EhcCode:
        """A static code, or a fresh dynamic code, for an e-card (the resident's phone
        shows the same; a kiosk without the phone prints it)."""
        if body.kind == "static":
            text: str = s.ehc.static_code(body.ecard_id)
        else:
            text = s.ehc.dynamic_code(body.ecard_id)
        return EhcCode(text=text)

    # -- the ward kiosk, merges ----------------------------------------------------------------

    @app.post("/v1/ward/summary", tags=["ward"])
    def ward_summary(s: As, body: WardSummaryRequest) -> WardSummary:
        """What an inpatient sees with the band or the card: drugs, executions, payments."""
        summary: WardSummary = s.ward.summary(
            wristband_id=body.wristband_id, card_number=body.card_number
        )
        return summary

    @app.get("/v1/residents/{resident_id}/history", tags=["residents"])
    def merges(s: As, resident_id: _Id) -> list[MergeEvent]:
        """The resident's merges and unmerges, oldest first."""
        found: list[MergeEvent] = s.residents.history(resident_id)
        return found

    # -- bedside executions ----------------------------------------------------------------

    @app.post("/v1/ward/executions", tags=["ward"], status_code=201)
    def begin(s: As, body: BedsideScan) -> BedsideExecution:
        """The check before execution: the seven verifications, then recorded (an order
        whose rule has no further checks is done at once)."""
        started: BedsideExecution = s.ward.begin(body)
        return started

    @app.get("/v1/ward/executions/{execution_id}", tags=["ward"])
    def execution(s: As, execution_id: _Id) -> BedsideExecution:
        """One execution."""
        found: BedsideExecution = s.ward.execution(execution_id)
        return found

    @app.post("/v1/ward/executions/{execution_id}/check", tags=["ward"])
    def check(s: As, execution_id: _Id, body: BedsideScan) -> BedsideExecution:
        """The next check due (during, after); the last one completes the execution."""
        moved: BedsideExecution = s.ward.check(execution_id, body)
        return moved

    @app.post("/v1/ward/executions/{execution_id}/abandon", tags=["ward"])
    def abandon(s: As, who: Who, execution_id: _Id, body: AbandonRequest) -> BedsideExecution:
        """Give up a started execution (the patient refused, the drip was not hung)."""
        done: BedsideExecution = s.ward.abandon(execution_id, reason=body.reason, actor=who.user)
        return done

    @app.get("/v1/ward/admissions/{admission_id}/executions", tags=["ward"])
    def executions(s: As, admission_id: _Id) -> list[BedsideExecution]:
        """The stay's bedside executions, oldest first."""
        found: list[BedsideExecution] = s.ward.executions(admission_id)
        return found
