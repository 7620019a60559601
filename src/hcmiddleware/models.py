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
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from hcmiddleware.errors import AmountError

__all__ = [
    "MAX_SLOT",
    "Admission",
    "AdmissionRequest",
    "Amount",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditEvent",
    "BankBinding",
    "Bill",
    "BlacklistEntry",
    "Charge",
    "CheckResult",
    "Deposit",
    "Discharge",
    "DomainModel",
    "EmergencyCall",
    "HospitalPatient",
    "Identifier",
    "IdentifierKind",
    "LivenessResult",
    "LocationReport",
    "MoneyKind",
    "Order",
    "OrderExecution",
    "PaymentRequest",
    "PaymentResult",
    "PaymentStatus",
    "QueuePosition",
    "Registration",
    "RegistrationRequest",
    "Report",
    "Resident",
    "ResidentStatus",
    "Settlement",
    "SettlementRequest",
    "Sex",
    "Statement",
    "StatementLine",
    "VisitSummary",
    "WristbandBinding",
    "parse_amount",
]

#: A registration slot lasts at most one hour (预约时段精确到1小时).
MAX_SLOT = timedelta(hours=1)


class DomainModel(BaseModel):
    """Base of every domain model: frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


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


class Resident(DomainModel):
    """A person in the resident index. ``resident_id`` is the index's own opaque ID.

    ``status`` is ``merged`` for a record merged into another (``merged_into``); the
    index gives such a record only when asked not to follow merges. ``region_code`` is
    the region of first registration from the ID number; ``created_at`` is when the
    index enrolled the resident (``None`` for a resident not from the index).
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

    def identifier(self, kind: IdentifierKind, assigner: str | None = None) -> str | None:
        """The value of the first identifier of ``kind`` (and ``assigner``), if any.

        ``assigner=None`` takes an identifier of that kind from any assigner.
        """
        for ident in self.identifiers:
            if ident.kind == kind and (assigner is None or ident.assigner == assigner):
                return ident.value
        return None


class BlacklistEntry(DomainModel):
    """A card that must be refused at every terminal (R-CARD-4)."""

    card_number: str = Field(repr=False)
    reason: Literal["lost", "cancelled", "replaced", "fraud"]
    listed_at: datetime
    source: str = Field(description="who listed it: the issuer or the bank")


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


class Registration(DomainModel):
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


class Order(DomainModel):
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


class Report(DomainModel):
    """A lab or exam report."""

    report_id: str
    patient_id: str
    visit_id: str
    kind: Literal["lab", "exam", "pathology", "other"]
    title: str
    issued_at: datetime | None = None
    status: Literal["pending", "preliminary", "final", "amended"] = "pending"
    summary: str | None = Field(None, repr=False)


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


class Admission(DomainModel):
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


class WristbandBinding(DomainModel):
    """A wristband bound to the health card at admission (R-WARD-1)."""

    wristband_id: str
    card_number: str = Field(repr=False)
    resident_id: str
    admission_id: str
    bound_at: datetime


class OrderExecution(DomainModel):
    """An order carried out at the bedside after the checks (R-WARD-2)."""

    order_id: str
    admission_id: str
    wristband_id: str
    executed_by: str
    executed_at: datetime
    checks: dict[str, bool] = Field(
        description="each verification (patient, bed, name, drug, dose, concentration,"
        " time, route) and whether it passed"
    )


class EmergencyCall(DomainModel):
    """An emergency call raised from an active wristband (R-WARD-3)."""

    wristband_id: str
    admission_id: str | None = None
    raised_at: datetime
    location: str | None = None


class LocationReport(DomainModel):
    """Where an active wristband was seen."""

    wristband_id: str
    seen_at: datetime
    location: str


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
