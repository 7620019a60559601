"""Domain models passed between the core, the flows and the adapters.

Every model is a frozen pydantic model: a plugin receives data it cannot change behind
the core's back. Personal fields are excluded from ``repr`` so that logging a model
never writes a name, an ID number, a phone or an address into a log file.

Money is :class:`decimal.Decimal` in yuan with at most two decimals, always positive;
the direction of a movement is its ``kind``, never its sign. An invalid amount raises
:class:`~hcmiddleware.errors.AmountError` before anything is sent.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from hcmiddleware.errors import AmountError

__all__ = [
    "CHECKS",
    "MAX_SLOT",
    "REFUSED_STATES",
    "VERIFICATIONS",
    "Admission",
    "AdmissionRequest",
    "Alarm",
    "Amount",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditEvent",
    "BandEvent",
    "BankBinding",
    "BedsideExecution",
    "BedsideScan",
    "Bill",
    "BlacklistEntry",
    "BlacklistUpdate",
    "CardListStatus",
    "CardState",
    "Charge",
    "CheckResult",
    "Deposit",
    "Discharge",
    "DomainModel",
    "EhcOnlineVerdict",
    "EhcRevocation",
    "EhcRevocationList",
    "EhcVerification",
    "EmergencyCall",
    "HospitalPatient",
    "Identifier",
    "IdentifierKind",
    "LivenessResult",
    "LocationReport",
    "LossReport",
    "MoneyKind",
    "Order",
    "OrderExecution",
    "PaymentRequest",
    "PaymentResult",
    "PaymentStatus",
    "PrintDocument",
    "PrintKind",
    "PrintTable",
    "QueuePosition",
    "Registration",
    "RegistrationRequest",
    "Report",
    "ReportResult",
    "Resident",
    "ResidentStatus",
    "Settlement",
    "SettlementRequest",
    "Sex",
    "Statement",
    "StatementLine",
    "Verdict",
    "VerificationResult",
    "VisitSummary",
    "WardOrderType",
    "WardSummary",
    "WristbandBinding",
    "parse_amount",
]

#: A registration slot lasts at most one hour (预约时段精确到1小时).
MAX_SLOT = timedelta(hours=1)

#: Order types the ward keeps rules for (``[ward.rules.<type>]``).
WardOrderType = Literal["skin_test", "specimen", "infusion", "injection", "oral", "other"]


class DomainModel(BaseModel):
    """Base of every domain model: frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Withholding(DomainModel):
    """A domain model a session may hand out with fields withheld (``docs/access.md``)."""

    #: fields withheld from this copy, by the category a role may not see (set on the
    #: copies a session hands out; see ``docs/access.md``): absent from dumps and JSON,
    #: and reading one raises :class:`~hcmiddleware.errors.FieldWithheldError`
    WITHHELD: ClassVar[Mapping[str, str]] = {}

    @model_serializer(mode="wrap")
    def _absent_when_withheld(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        withheld = type(self).WITHHELD
        if withheld:
            for name in withheld:
                data.pop(name, None)
        return data


def parse_amount(value: Any) -> Decimal:
    """An amount in yuan: finite, positive, at most two decimals; else AmountError.

    Floats are refused: 0.1 + 0.2 is not a price. Give a string, an int or a Decimal.
    """
    if isinstance(value, bool | float):
        raise AmountError(
            f"amount given as {type(value).__name__}",
            hint="pass amounts as strings or Decimal, e.g. '12.50'",
        )
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise AmountError(
            "amount is not a number", hint="enter the amount in yuan, e.g. 12.50"
        ) from None
    if not amount.is_finite():
        raise AmountError("amount is not a finite number", hint="enter the amount in yuan")
    if amount <= 0:
        raise AmountError(
            "amount must be greater than zero",
            hint="enter a positive amount; refunds and reversals are their own operation",
        )
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2 and amount != amount.quantize(Decimal("0.01")):
        raise AmountError(
            "amount has more than two decimals", hint="amounts are in yuan to the fen (0.01)"
        )
    return amount.quantize(Decimal("0.01"))


#: A positive amount of money in yuan with at most two decimals.
Amount = Annotated[Decimal, BeforeValidator(parse_amount)]


def _nonnegative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must not be negative")
    return value


#: A sum that may be zero (balances, insured parts), never negative.
Sum = Annotated[Decimal, AfterValidator(_nonnegative), Field(decimal_places=2)]


# --- identity ---------------------------------------------------------------------


class Sex(enum.IntEnum):
    """GB/T 2261.1 sex codes, as stored on the card."""

    UNKNOWN = 0
    MALE = 1
    FEMALE = 2
    UNSPECIFIED = 9


class IdentifierKind(enum.StrEnum):
    """Kinds of identifier a resident can hold (R-EMPI-1, R-EMPI-4)."""

    CARD_NUMBER = "card_number"  # resident health card number
    ID_NUMBER = "id_number"  # 公民身份号码, or a child's parent-number + n/z
    ECARD_ID = "ecard_id"  # electronic health card id
    HOSPITAL_PATIENT_ID = "hospital_patient_id"  # issuer = the hospital's code
    REGIONAL_INDEX_ID = "regional_index_id"  # issuer = the regional/national index


class ResidentStatus(enum.StrEnum):
    """An active resident, or one merged into another (kept for unmerge and history)."""

    ACTIVE = "active"
    MERGED = "merged"


class Identifier(DomainModel):
    """One identifier of a resident.

    ``assigner`` is the assigning authority (HL7's term): the hospital's code for a
    hospital patient ID, the index's code for a regional index ID, ``None`` for the
    identifiers that need none (ID number, card number, e-card ID).
    """

    kind: IdentifierKind
    value: str = Field(repr=False, min_length=1)
    assigner: str | None = None


class Resident(Withholding):
    """A person in the resident index. ``resident_id`` is the index's own opaque ID.

    ``status`` is ``merged`` for a record merged into another (``merged_into``); the
    index gives such a record only when asked not to follow merges. ``region_code`` is
    the region of first registration from the ID number; ``created_at`` is when the
    index enrolled the resident (``None`` for a resident not from the index).

    ``id_number`` is a *verified* number (valid, and agreeing with the birth date and
    sex). A number the record carried that failed a check is ``unverified_id_number``:
    evidence for matching and search, never a unique key. ``flags`` are the
    data-quality codes of the record the demographics came from (``id_checksum``,
    ``id_missing``, ``phone_invalid`` …; see ``hcmiddleware.empi.quality.Flag``).
    """

    resident_id: str
    status: ResidentStatus = ResidentStatus.ACTIVE
    merged_into: str | None = None
    name: str = Field(repr=False)
    sex: Sex = Sex.UNKNOWN
    birth_date: date | None = Field(None, repr=False)
    id_number: str | None = Field(None, repr=False)
    ethnicity: int | None = None
    phone: str | None = Field(None, repr=False)
    address: str | None = Field(None, repr=False)
    region_code: str | None = Field(None, repr=False)
    identifiers: tuple[Identifier, ...] = ()
    created_at: datetime | None = None
    unverified_id_number: str | None = Field(None, repr=False)
    flags: tuple[str, ...] = ()

    def identifier(self, kind: IdentifierKind, assigner: str | None = None) -> str | None:
        """The value of the first identifier of ``kind`` (and ``assigner``), if any.

        ``assigner=None`` takes an identifier of that kind from any assigner.
        """
        for ident in self.identifiers:
            if ident.kind == kind and (assigner is None or ident.assigner == assigner):
                return ident.value
        return None


class CardState(enum.StrEnum):
    """Where a physical card is in its life (R-CARD-4).

    An ``issued`` card was handed out but its activation has not reached the terminal:
    it reads (the resident is identified) but moves no money until activated; ``active``
    ones read and pay. A ``loss_reported``, ``cancelled`` or ``replaced`` card is refused
    at every terminal; a ``frozen`` one reads but moves no money.
    """

    ISSUED = "issued"
    ACTIVE = "active"
    LOSS_REPORTED = "loss_reported"
    FROZEN = "frozen"
    CANCELLED = "cancelled"
    REPLACED = "replaced"


#: the states in which a card is refused outright (``frozen`` refuses money only)
REFUSED_STATES = frozenset({CardState.LOSS_REPORTED, CardState.CANCELLED, CardState.REPLACED})


class BlacklistEntry(DomainModel):
    """A card that must be refused at every terminal (R-CARD-4), or moves no money.

    ``reason`` is the card's state (``issued``: handed out, not activated yet — it
    reads but moves no money; the issuer takes it off the list once activated);
    ``replaced_by`` names the replacement card of a ``replaced`` one (it is linked to
    the same resident in the index).
    """

    card_number: str = Field(repr=False, min_length=1, max_length=32)
    reason: Literal["issued", "loss_reported", "frozen", "cancelled", "replaced"]
    listed_at: AwareDatetime
    source: str = Field(description="who listed it: the issuer or the bank")
    replaced_by: str | None = Field(None, repr=False, max_length=32)


class BlacklistUpdate(DomainModel):
    """A signed full or delta update of one source's list of refused cards.

    A ``full`` list replaces what the terminal holds from ``source``; a ``delta``
    applies to ``base_version`` exactly (a skipped version is refused, and the terminal
    asks for a full list). ``signature`` (base64) is the source's signature over
    :func:`hcmiddleware.cards.lists.signed_bytes`; ``removed`` lists cards taken off
    the list (found again, unfrozen).
    """

    source: str = Field(min_length=1, max_length=64, pattern=r"^[\w.:-]+$")
    kind: Literal["full", "delta"]
    version: int = Field(ge=1)
    base_version: int | None = Field(None, ge=1)
    issued_at: AwareDatetime
    added: tuple[BlacklistEntry, ...] = ()
    removed: tuple[str, ...] = Field((), repr=False)
    signature: str = Field(repr=False, max_length=1024)

    @model_validator(mode="after")
    def _delta_has_a_base(self) -> BlacklistUpdate:
        if self.kind == "delta" and self.base_version is None:
            raise ValueError("a delta update names the version it applies to (base_version)")
        if self.kind == "full" and (self.base_version is not None or self.removed):
            raise ValueError("a full list has no base_version and removes nothing")
        if self.base_version is not None and self.base_version >= self.version:
            raise ValueError("base_version must be older than version")
        if any(e.source != self.source for e in self.added):
            raise ValueError("every entry's source is the update's source")
        cards = [e.card_number for e in self.added]
        if len(set(cards)) != len(cards) or set(cards) & set(self.removed):
            raise ValueError("a card appears twice in the update")
        return self


class CardListStatus(DomainModel):
    """What a terminal holds of one source's list, and whether it is too old."""

    source: str
    version: int
    issued_at: datetime
    synced_at: datetime
    entries: int
    stale: bool


class LossReport(DomainModel):
    """A cardholder's report, at a kiosk or desk, that their card is lost.

    Made only after the cardholder was identified (``identified_by``); ``resident_id``
    is the index's ID, never a name.
    """

    card_number: str = Field(repr=False)
    resident_id: str
    identified_by: Literal["face", "id_number", "ecard"]
    reported_at: datetime
    terminal: str


# --- the electronic health card (R-CARD-5) ------------------------------------------

#: why a code was refused: the ``reason`` of the typed errors (docs/ehc.md)
EhcRefusal = Literal[
    "expired",
    "not_yet_valid",
    "lifetime",
    "signature",
    "replayed",
    "revoked",
    "unknown_issuer",
    "unknown_card",
    "second_factor",
    "format",
]


class EhcVerification(DomainModel):
    """An e-card code accepted at a terminal: who it names, and how it was checked.

    ``kind`` is ``static`` or ``dynamic``; ``checked`` is ``offline`` (the issuer's
    signature, checked here) or ``online`` (the platform's answer); ``factor`` the
    second factor a static code came with (``id_digits``, ``face``, ``card``).
    ``key_id``, ``issued_at`` and ``expires_at`` are a dynamic code's.
    """

    resident: Resident
    ecard_id: str = Field(repr=False)
    kind: Literal["static", "dynamic"]
    checked: Literal["offline", "online"]
    terminal_id: str
    care_step: str
    key_id: str | None = None
    issuer: str | None = None
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    factor: Literal["id_digits", "face", "card"] | None = None


class EhcOnlineVerdict(DomainModel):
    """The e-card platform's answer to "is this code good here?" (online check).

    ``accepted`` with the ``ecard_id`` it names; else ``reason`` (one of the refusal
    reasons) and the platform's own ``message``.
    """

    accepted: bool
    ecard_id: str | None = Field(None, repr=False)
    reason: EhcRefusal | None = None
    message: str = ""
    expires_at: datetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EhcOnlineVerdict:
        if self.accepted and not self.ecard_id:
            raise ValueError("an accepted verdict names the e-card ID")
        if not self.accepted and self.reason is None:
            raise ValueError("a refusal gives its reason")
        return self


class EhcRevocation(DomainModel):
    """One e-card closed by its issuer: every code of it is refused from now on."""

    ecard_id: str = Field(repr=False, pattern=r"^[0-9A-F]{64}$")
    revoked_at: datetime
    reason: Literal["closed", "lost", "fraud", "deceased"] = "closed"


class EhcRevocationList(DomainModel):
    """An issuer's list of closed e-cards, or a change to it, signed by the issuer.

    A full list has ``base_version`` ``None`` and replaces what is held; a delta names
    the ``base_version`` it applies to (it must be the version held here) and a newer
    ``version``: it adds ``revoked`` and takes ``restored`` off.
    ``signature`` (128 hex digits) is over the list's canonical bytes
    (``hcmiddleware.ehc.revocations.signed_bytes``) with the issuer's key ``key_id``.
    """

    issuer: str
    key_id: str
    version: int = Field(ge=1)
    base_version: int | None = Field(None, ge=1)
    issued_at: datetime
    revoked: tuple[EhcRevocation, ...] = ()
    restored: tuple[str, ...] = Field((), repr=False)
    signature: str = Field(pattern=r"^[0-9A-F]{128}$")

    @model_validator(mode="after")
    def _shape(self) -> EhcRevocationList:
        if self.base_version is None and self.restored:
            raise ValueError("a full list restores nothing; only a delta does")
        if self.base_version is not None and self.version <= self.base_version:
            raise ValueError("a delta's version comes after its base version")
        return self


# --- hospital ---------------------------------------------------------------------


class HospitalPatient(DomainModel):
    """The hospital's own patient record for a resident (R-EMPI-4, R-HIS-1)."""

    hospital_code: str
    patient_id: str
    resident_id: str
    created: bool = Field(False, description="True when the HIS created it just now")


class RegistrationRequest(DomainModel):
    """A registration (挂号) or appointment for a slot of at most one hour."""

    kind: Literal["registration", "appointment"] = "registration"
    department_code: str
    doctor_code: str | None = None
    slot_start: datetime
    slot_end: datetime
    fee: Amount | None = None
    request_id: str = Field(description="idempotency key: the same request twice registers once")

    @model_validator(mode="after")
    def _slot(self) -> RegistrationRequest:
        if self.slot_end <= self.slot_start:
            raise ValueError("slot_end must be after slot_start")
        if self.slot_end - self.slot_start > MAX_SLOT:
            raise ValueError("a registration slot is at most one hour")
        return self


class Registration(Withholding):
    """A registration the HIS accepted."""

    registration_id: str
    patient_id: str
    department_code: str
    doctor_code: str | None = None
    slot_start: datetime
    slot_end: datetime
    queue_number: int | None = None
    fee: Amount | None = None


class QueuePosition(DomainModel):
    """Where a registered patient stands in the consultation queue."""

    registration_id: str
    queue_number: int
    ahead: int = Field(ge=0)
    estimated_wait_minutes: int | None = None


class Order(Withholding):
    """A doctor's order (drug, lab, exam, treatment, nursing)."""

    order_id: str
    patient_id: str
    visit_id: str
    kind: Literal["drug", "lab", "exam", "treatment", "nursing", "skin_test", "specimen"]
    code: str
    name: str
    dose: str | None = None
    concentration: str | None = None
    route: str | None = None
    frequency: str | None = None
    scheduled_at: datetime | None = None
    status: Literal["ordered", "in_progress", "done", "cancelled"] = "ordered"
    ordered_by: str | None = Field(None, description="the ordering doctor's code")
    order_type: WardOrderType | None = Field(
        None, description="the ward's order type; derived from kind and route when None"
    )
    window_start: datetime | None = Field(None, description="earliest time to carry it out")
    window_end: datetime | None = Field(None, description="latest time to carry it out")


class Charge(DomainModel):
    """One chargeable item of a visit or a stay."""

    charge_id: str
    patient_id: str
    visit_id: str
    item_code: str
    item_name: str
    quantity: Decimal = Field(gt=0)
    unit_price: Amount
    amount: Amount
    insurance_category: Literal["A", "B", "C"] | None = None
    paid: bool = False


class ReportResult(DomainModel):
    """One result line of a lab report (a test, its value, unit and reference range)."""

    code: str = Field(description="the test's code in the HIS or the lab system")
    name: str = Field(repr=False)
    value: str = Field(repr=False, description="as the lab reported it (a number or a text)")
    unit: str | None = None
    reference_range: str | None = Field(None, description="e.g. 3.5-9.5")
    flag: Literal["H", "L", "A", "N"] | None = Field(
        None, description="high, low, abnormal, normal; None when the lab gave none"
    )


class Report(Withholding):
    """A lab or exam report: the result lines of a lab report, the findings
    (``summary``) of an exam report."""

    report_id: str
    patient_id: str
    visit_id: str
    kind: Literal["lab", "exam", "pathology", "other"]
    title: str
    issued_at: datetime | None = None
    status: Literal["pending", "preliminary", "final", "amended"] = "pending"
    summary: str | None = Field(None, repr=False)
    results: tuple[ReportResult, ...] = Field((), repr=False)
    department: str | None = Field(None, description="the department that ordered it")
    signed_by: str | None = Field(None, repr=False, description="who signed the report off")


class VisitSummary(DomainModel):
    """A visit as written back to the card (DF03) and read from it."""

    kind: Literal["outpatient", "inpatient"]
    visited_at: datetime
    institution_name: str
    institution_code: str
    department: str
    doctor: str = Field(repr=False)
    diagnosis_code: str = Field(repr=False)
    diagnosis_name: str = Field(repr=False)
    treatment: str = Field("", repr=False)
    total_fee: Decimal | None = None


class AdmissionRequest(DomainModel):
    """An inpatient admission (R-HIS-2)."""

    department_code: str
    ward: str
    bed: str
    admitted_at: datetime
    diagnosis_code: str | None = Field(None, repr=False)
    request_id: str = Field(description="idempotency key")


class Admission(Withholding):
    """An inpatient stay."""

    admission_id: str
    patient_id: str
    ward: str
    bed: str
    admitted_at: datetime
    discharged_at: datetime | None = None
    deposit_balance: Sum = Decimal("0.00")


class Deposit(DomainModel):
    """A deposit or top-up on an inpatient stay."""

    deposit_id: str
    admission_id: str
    amount: Amount
    paid_at: datetime
    transaction_id: str


class Bill(DomainModel):
    """A bill: the charges of a visit or a stay and what is left to pay."""

    patient_id: str
    visit_id: str | None = None
    admission_id: str | None = None
    items: tuple[Charge, ...] = ()
    total: Sum
    insured: Sum = Decimal("0.00")
    deposits: Sum = Decimal("0.00")
    balance: Decimal = Field(description="positive: the patient owes; negative: refund due")


class Discharge(DomainModel):
    """A completed discharge."""

    admission_id: str
    discharged_at: datetime
    final_bill: Bill


# --- printing ---------------------------------------------------------------------

#: What a printed document is: receipts of money movements, lists, bills and reports.
PrintKind = Literal[
    "top_up_receipt",
    "payment_receipt",
    "refund_receipt",
    "payment_list",
    "settlement_receipt",
    "cancellation_receipt",
    "inpatient_bill",
    "lab_report",
    "exam_report",
]


class PrintTable(DomainModel):
    """A table of a printed document: a header row, rows of cells, one alignment each."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...] = ()
    align: tuple[Literal["left", "right"], ...] = Field(
        (), description="per column; left when not given"
    )
    widths: tuple[int, ...] = Field((), description="relative widths; equal when not given")

    @model_validator(mode="after")
    def _shape(self) -> PrintTable:
        n = len(self.columns)
        if any(len(row) != n for row in self.rows):
            raise ValueError("every row needs one cell per column")
        if (self.align and len(self.align) != n) or (self.widths and len(self.widths) != n):
            raise ValueError("align and widths give one value per column")
        return self


class PrintDocument(DomainModel):
    """A document as the kiosk prints it, whatever the printer.

    Built by ``middleware.receipts`` from the journal, a bill or a HIS report, and
    handed to the printer plugins (``hcm_print``), which lay it out for their paper:
    a thermal receipt printer (``medium="receipt"``, ESC/POS) or the self-service page
    printer (``medium="page"``, PDF). It holds no name, ID number or full card number:
    the hospital's patient ID and the card's masked number identify the patient.
    """

    document_id: str = Field(description="transaction ID, report ID, or admission ID")
    kind: PrintKind
    medium: Literal["receipt", "page"]
    title: str
    site_name: str
    fields: tuple[tuple[str, str], ...] = Field((), description="label and value, in order")
    table: PrintTable | None = None
    totals: tuple[tuple[str, str], ...] = ()
    text: tuple[str, ...] = Field((), description="paragraphs: findings, notes")
    footer: tuple[str, ...] = ()
    transaction_id: str | None = None
    code: str | None = Field(None, description="printed as a QR code for the counter to scan")
    printed_at: datetime
    reprint: bool = Field(False, description="a copy printed again; marked on the paper")


# --- money ------------------------------------------------------------------------


class MoneyKind(enum.StrEnum):
    """What a money movement does."""

    TOP_UP = "top_up"
    PAY = "pay"
    REFUND = "refund"


class PaymentStatus(enum.StrEnum):
    """Where a money movement stands (the journal's states)."""

    PENDING = "pending"
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REVERSED = "reversed"


class PaymentRequest(DomainModel):
    """A money movement on the card's bank account, as sent to the bank adapter."""

    transaction_id: str = Field(description="journal ID, also the idempotency key")
    kind: MoneyKind
    card_number: str = Field(repr=False)
    amount: Amount
    currency: Literal["CNY"] = "CNY"
    original_transaction_id: str | None = Field(None, description="for refunds")
    terminal_id: str | None = None


class PaymentResult(DomainModel):
    """The bank's answer to a money movement."""

    transaction_id: str
    status: Literal[PaymentStatus.CONFIRMED, PaymentStatus.FAILED]
    bank_reference: str | None = None
    balance_after: Sum | None = None
    completed_at: datetime
    reason: str | None = None


class BankBinding(DomainModel):
    """A bank card bound to the health card's account."""

    card_number: str = Field(repr=False)
    bank_account_masked: str = Field(description="e.g. 6222 **** **** 1234")
    bound_at: datetime


class SettlementRequest(DomainModel):
    """A medical insurance (pre-)settlement (R-PAY-2)."""

    message_id: str = Field(
        pattern=r"^[0-9A-Za-z]{12}\d{14}\d{4}$",
        description="institution code (12) + yyyyMMddHHmmss (14) + sequence (4)",
    )
    scheme: Literal["basic", "rural"]
    insured_id: str = Field(repr=False)
    patient_id: str
    visit_id: str
    charges: tuple[Charge, ...]
    total: Amount


class Settlement(DomainModel):
    """The insurer's answer: what the fund pays and what the patient pays."""

    message_id: str
    settlement_id: str | None = Field(None, description="None for a pre-settlement")
    total: Sum
    fund_paid: Sum = Field(description="paid by the insurance fund")
    account_paid: Sum = Field(Decimal("0.00"), description="from the personal account")
    patient_paid: Sum = Field(description="left for the patient")
    status: Literal["pre_settled", "settled", "cancelled", "reversed"]


class StatementLine(DomainModel):
    """One line of a bank or insurer statement used in reconciliation."""

    transaction_id: str
    reference: str | None = None
    kind: str
    amount: Sum
    occurred_at: datetime


class Statement(DomainModel):
    """A bank's or an insurer's statement for a period."""

    source: Literal["bank", "insurer"]
    date_from: date
    date_to: date
    lines: tuple[StatementLine, ...] = ()


# --- ward -------------------------------------------------------------------------

#: The seven verifications (七对) of a bedside order, in the order they are shown.
VERIFICATIONS: tuple[str, ...] = (
    "bed",
    "name",
    "drug",
    "dose",
    "concentration",
    "time",
    "route",
)

#: The three checks (三查): before, during and after carrying the order out.
CHECKS: tuple[str, ...] = ("before", "during", "after")


class WristbandBinding(DomainModel):
    """A wristband bound to the health card at admission (R-WARD-1).

    ``status`` is ``active`` while the band identifies the patient, ``dead`` once it
    was replaced (lost, broken: never valid again) and ``released`` after discharge.
    The fields after ``bound_at`` were added with the ward service; they have defaults
    so that a binding built by older code stays valid.
    """

    wristband_id: str
    card_number: str = Field(repr=False)
    resident_id: str
    admission_id: str
    bound_at: datetime
    kind: Literal["passive", "active"] = Field(
        "passive", description="passive: barcode/QR/RFID label; active: call button, location"
    )
    patient_id: str | None = None
    ward: str | None = None
    bed: str | None = None
    admitted_at: datetime | None = None
    status: Literal["active", "dead", "released"] = "active"
    ended_at: datetime | None = None
    ended_reason: str | None = None
    replaced_by: str | None = None


class OrderExecution(DomainModel):
    """An order carried out at the bedside after the checks (R-WARD-2).

    ``checks`` holds each verification (``bed``, ``name``, ``drug``, ``dose``,
    ``concentration``, ``time``, ``route``) of the check before execution, and each of
    the three checks (``check.before``, ``check.during``, ``check.after``) that the
    order's rule asks for, with whether it passed. ``second_nurse`` signed the double
    check where the rule asks for one.
    """

    order_id: str
    admission_id: str
    wristband_id: str
    executed_by: str
    executed_at: datetime
    checks: dict[str, bool] = Field(
        description="each verification (bed, name, drug, dose, concentration, time, route)"
        " and each check (check.before, check.during, check.after) and whether it passed"
    )
    second_nurse: str | None = None
    order_type: str | None = None
    started_at: datetime | None = None
    patient_id: str | None = Field(None, description="the HIS's patient ID of the stay")
    drug_code: str | None = Field(None, description="the drug given, as its label was scanned")
    dose: str | None = Field(None, description="the dose given, with its unit (e.g. 250 ml)")
    route: str | None = Field(None, description="the route it was given by")


class EmergencyCall(DomainModel):
    """An emergency call raised from an active wristband (R-WARD-3).

    ``alarm_id`` names the alarm the call opened at the nurse station (``None`` for a
    call built by older code); ``ward`` and ``bed`` are the band's stay, if it has one.
    """

    wristband_id: str
    admission_id: str | None = None
    raised_at: datetime
    location: str | None = None
    alarm_id: str | None = None
    ward: str | None = None
    bed: str | None = None


class LocationReport(DomainModel):
    """Where an active wristband was seen."""

    wristband_id: str
    seen_at: datetime
    location: str


class BandEvent(DomainModel):
    """What a ward device reports, as a device plugin hands it to ``Middleware.ward``.

    ``event_id`` is the device's own ID for the event: the same event delivered twice
    (a broker redelivers after a reconnect) is taken once. ``kind``: ``emergency`` (the
    call button), ``location`` (a position fix), ``battery`` (low battery), ``removed``
    (the band was cut or taken off).
    """

    event_id: str = Field(min_length=1, max_length=64)
    wristband_id: str = Field(min_length=1, max_length=40)
    kind: Literal["emergency", "location", "battery", "removed"]
    at: datetime
    location: str | None = Field(None, max_length=80)
    battery: int | None = Field(None, ge=0, le=100)
    source: str | None = Field(None, max_length=80, description="the gateway or plugin")


class Alarm(DomainModel):
    """An alarm at the nurse station: opened by a band event, folded, escalated, acked.

    One alarm per band and kind is open at a time: further events of that band fold
    into it (``count``) instead of raising another. ``level`` counts escalations.
    """

    alarm_id: str
    wristband_id: str
    kind: Literal["emergency", "battery", "removed"]
    state: Literal["open", "escalated", "acknowledged"]
    raised_at: datetime
    last_at: datetime
    received_at: datetime
    count: int = Field(1, ge=1)
    level: int = Field(0, ge=0)
    location: str | None = None
    admission_id: str | None = None
    ward: str | None = None
    bed: str | None = None
    bound: bool = Field(True, description="False: no active binding for the band")
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None


class BedsideScan(DomainModel):
    """What the nurse's handheld presents for one order at the bedside.

    The wristband and the nurse's badge identify patient and nurse; ``bed`` is the
    bed-head tag scanned; ``drug_code``, ``dose``, ``concentration`` and ``route`` are
    read from the label of what is about to be given (with units: ``0.5 g``, ``5 mg/ml``,
    ``0.9%``); ``patient_name`` is the name the patient gave, if asked.
    """

    wristband_id: str = Field(min_length=1, max_length=40)
    nurse_id: str = Field(min_length=1, max_length=40)
    order_id: str = Field(min_length=1, max_length=64)
    scanned_at: datetime | None = None
    bed: str | None = None
    patient_name: str | None = Field(None, repr=False)
    drug_code: str | None = None
    dose: str | None = None
    concentration: str | None = None
    route: str | None = None
    second_nurse_id: str | None = None


class VerificationResult(DomainModel):
    """One of the seven verifications: passed, failed, or not applicable to the order."""

    name: str
    outcome: Literal["passed", "failed", "not_applicable"]
    expected: str | None = Field(None, repr=False)
    presented: str | None = Field(None, repr=False)
    reason: str = ""


class Verdict(DomainModel):
    """The seven verifications of one scan against one order, and what they mean."""

    order_id: str
    wristband_id: str
    order_type: str
    results: tuple[VerificationResult, ...]
    checked_at: datetime

    @property
    def ok(self) -> bool:
        """Every verification passed or does not apply."""
        return all(r.outcome != "failed" for r in self.results)

    @property
    def failed(self) -> tuple[str, ...]:
        """The names of the verifications that failed, in the order they are shown."""
        return tuple(r.name for r in self.results if r.outcome == "failed")

    def result(self, name: str) -> VerificationResult:
        """The result of verification ``name``."""
        for item in self.results:
            if item.name == name:
                return item
        raise KeyError(name)


class BedsideExecution(DomainModel):
    """An execution going through the three checks at the bedside.

    ``state`` is the next check due (``before``, ``during``, ``after``), ``done`` once
    the last check passed, or ``abandoned``. ``his_state`` says whether the HIS has
    recorded a done execution (``pending``, ``recorded``, ``failed``: retried by
    ``Middleware.ward.resend()``).
    """

    execution_id: str
    order_id: str
    admission_id: str
    wristband_id: str
    nurse_id: str
    second_nurse: str | None = None
    order_type: str
    state: Literal["before", "during", "after", "done", "abandoned"]
    checks: dict[str, bool]
    started_at: datetime
    executed_at: datetime | None = None
    his_state: Literal["pending", "recorded", "failed"] = "pending"
    his_error: str | None = None
    patient_id: str | None = None
    drug_code: str | None = None
    dose: str | None = None
    route: str | None = None


class WardSummary(DomainModel):
    """What a patient sees at the kiosk with the band or the card (R-WARD-4)."""

    wristband_id: str
    admission_id: str
    ward: str | None = None
    bed: str | None = None
    drugs: tuple[Order, ...] = ()
    executions: tuple[BedsideExecution, ...] = ()
    charges: tuple[Charge, ...] = ()
    bill: Bill | None = None


# --- face, audit, health ----------------------------------------------------------


class LivenessResult(DomainModel):
    """A liveness plugin's verdict on a live photo."""

    live: bool
    score: float | None = None
    reason: str | None = None


class AuditEvent(DomainModel):
    """One audited action: a read of personal health data or a money movement (R-SEC-1).

    ``subject`` is an opaque ID (resident ID, transaction ID), never a name or an ID
    number. ``user``, ``role`` and ``terminal`` say who acted where: the person signed
    in (an opaque user ID), the role they acted in, and the terminal (``[audit]
    terminal``, by default the host's name).
    """

    at: datetime
    actor: str = Field(description="operator or terminal ID")
    action: str = Field(description="dotted verb, e.g. card.read, payment.confirmed")
    subject: str | None = None
    outcome: Literal["ok", "refused", "failed"] = "ok"
    details: dict[str, str] = Field(default_factory=dict)
    user: str | None = Field(None, description="opaque ID of the person signed in")
    role: str | None = Field(None, description="the role the user acted in")
    terminal: str | None = Field(None, description="the terminal the act happened at")


class AuditEntry(AuditEvent):
    """An :class:`AuditEvent` as the tamper-evident log holds it: its place and hash.

    ``hash`` (hex) is H(``prev_hash`` ‖ the entry's canonical encoding, sequence number
    included), H being the chain's ``[audit] hash`` (``docs/audit.md``).
    """

    seq: int = Field(ge=1, description="position in the chain, from 1, without gaps")
    prev_hash: str = Field(description="hex hash of the entry before (zeros for the first)")
    hash: str = Field(description="hex hash of this entry")


class AuditCheckpoint(DomainModel):
    """A signed statement that the audit chain's entry ``seq`` had hash ``hash``.

    Kept in the database and pushed out through ``hcm_audit_checkpoint`` (a file on
    another disk, a syslog server, the HIS), so a rewrite of the whole table is caught by
    checking the chain against checkpoints kept elsewhere. ``signature`` (base64) is an
    Ed25519 signature of :meth:`signed_bytes` by the key ``key_id``; ``None`` when the
    terminal has no signing key configured.
    """

    seq: int = Field(ge=1)
    hash: str
    algorithm: Literal["sha256", "sm3"]
    at: datetime
    terminal: str
    key_id: str | None = None
    signature: str | None = None

    def signed_bytes(self) -> bytes:
        """What the signature covers: the fields above but the signature, one canonical line."""
        at = self.at.astimezone(UTC) if self.at.tzinfo else self.at.replace(tzinfo=UTC)
        fields = (
            "hcm-audit-checkpoint-v1",
            str(self.seq),
            self.hash,
            self.algorithm,
            at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            self.terminal,
            self.key_id or "",
        )
        return "\x1f".join(fields).encode("utf-8")


class CheckResult(DomainModel):
    """One line of ``hcm doctor``: what was checked, whether it is fine, what to do."""

    name: str
    ok: bool
    detail: str = ""
    hint: str = ""
