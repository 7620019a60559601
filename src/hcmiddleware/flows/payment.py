"""Counter and kiosk money flows on the card's bank account (R-PAY-1).

Each flow goes through the journal (never a bank hook directly) and turns the
journal's final state into an answer for the cashier: the movement when confirmed,
:class:`~hcmiddleware.errors.PaymentDeclinedError` when nothing moved,
:class:`~hcmiddleware.errors.OutcomeUnknownError` while the outcome is still open.
Every movement is audited (R-SEC-1) without card or ID numbers.

These functions are the embedding process's own (the system caller). A caller's money
flows are ``session.flows.pay(…)``, ``.top_up``, ``.refund``, ``.charges_payment``,
``.bind_bank_card`` … (:class:`~hcmiddleware.flows.acting.Flows`): checked against the
caller's role, and audited with the caller's user, role and terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hcmiddleware.errors import (
    HcmError,
    IdentityDocumentError,
    OutcomeUnknownError,
    PaymentDeclinedError,
)
from hcmiddleware.flows.journey import request_key
from hcmiddleware.gb11643 import id_number_valid
from hcmiddleware.journal import Journal, Movement
from hcmiddleware.models import BankBinding, Charge, PaymentStatus
from hcmiddleware.typed import ask_one

if TYPE_CHECKING:
    from hcmiddleware.runtime import Middleware

__all__ = [
    "bind_bank_card",
    "charges_key",
    "charges_payment",
    "check_identity_document",
    "finish",
    "pay",
    "refund",
    "top_up",
    "unbind_bank_card",
]


def check_identity_document(holder_id_number: str, presented_id_number: str) -> None:
    """Refuse unless the document shown is valid and is the card holder's own.

    Raises :class:`~hcmiddleware.errors.IdentityDocumentError`; the numbers are never
    put in the message.
    """
    if not id_number_valid(presented_id_number):
        raise IdentityDocumentError("the identity document number is not valid")
    if presented_id_number.upper() != holder_id_number.upper():
        raise IdentityDocumentError("the identity document is not the card holder's")


def finish(
    journal: Journal,
    movement: Movement,
    action: str,
    actor: str,
    *,
    charges: Sequence[Charge] = (),
    patient_id: str | None = None,
) -> Movement:
    """Audit the movement and raise unless it is confirmed.

    A confirmed movement's receipt is printed (``middleware.receipts.after_movement``:
    with ``charges``, the payment list) when ``[printing] receipts`` is on and a printer
    is set up; a printer that fails is recorded and never undoes the movement.
    """
    outcome: Any = "ok" if movement.state is PaymentStatus.CONFIRMED else "failed"
    journal.mw.audit(
        f"money.{action}",
        actor=actor,
        subject=movement.transaction_id,
        outcome=outcome,
        state=movement.state.value,
        amount=str(movement.amount),
    )
    if movement.state is PaymentStatus.CONFIRMED:
        journal.mw.receipts.after_movement(movement, charges=charges, patient_id=patient_id)
        return movement
    if movement.state in (PaymentStatus.FAILED, PaymentStatus.REVERSED):
        raise PaymentDeclinedError(
            f"{action} of {movement.amount} did not go through "
            f"({movement.reason or movement.state.value})",
            state=movement.state.value,
            transaction_id=movement.transaction_id,
        )
    raise OutcomeUnknownError(
        f"{action} of {movement.amount} is still being confirmed with the bank",
        transaction_id=movement.transaction_id,
    )


def top_up(
    journal: Journal, *, key: str, card_number: str, amount: Any, terminal_id: str | None = None
) -> Movement:
    """Top up the card's account (cash or bank card at the counter or kiosk)."""
    moved = journal.top_up(key=key, card_number=card_number, amount=amount, terminal_id=terminal_id)
    return finish(journal, moved, "top_up", terminal_id or "counter")


def pay(
    journal: Journal,
    *,
    key: str,
    card_number: str,
    amount: Any,
    terminal_id: str | None = None,
    charges: Sequence[Charge] = (),
) -> Movement:
    """Pay a bill from the card's account at the consultation desk or a kiosk.

    ``charges``, when given, are what the payment pays: its receipt is then the payment
    list, item by item.
    """
    return _pay(
        journal, journal, terminal_id or "counter", key=key, card_number=card_number,
        amount=amount, terminal_id=terminal_id, charges=charges,
    )  # fmt: skip


def _pay(
    movements: Journal,
    journal: Journal,
    actor: str,
    *,
    key: str,
    card_number: str,
    amount: Any,
    terminal_id: str | None,
    charges: Sequence[Charge],
) -> Movement:
    """:func:`pay`, moving the money through ``movements`` (the journal, or a session's
    view of it) and finishing through ``journal``."""
    moved = movements.pay(key=key, card_number=card_number, amount=amount, terminal_id=terminal_id)
    return finish(journal, moved, "pay", actor, charges=charges)


def refund(
    journal: Journal,
    *,
    key: str,
    card_number: str,
    original_transaction_id: str,
    amount: Any,
    holder_id_number: str,
    presented_id_number: str,
    terminal_id: str | None = None,
) -> Movement:
    """Refund (part of) a payment after checking the holder's identity document.

    Nothing is written or sent if the document does not match or the amount is above
    what is left of the payment.
    """
    check_identity_document(holder_id_number, presented_id_number)
    moved = journal.refund(
        key=key,
        card_number=card_number,
        amount=amount,
        original_transaction_id=original_transaction_id,
        terminal_id=terminal_id,
    )
    return finish(journal, moved, "refund", terminal_id or "counter")


def charges_key(card_number: str, charges: Sequence[Charge]) -> str:
    """The journal key of the card payment of ``charges`` (``journal.by_key`` finds it)."""
    return "charges:" + request_key(card_number, *sorted(c.charge_id for c in charges))


def charges_payment(
    journal: Journal, *, card_number: str, terminal_id: str | None = None
) -> Callable[[Decimal, list[Charge]], str]:
    """The ``pay`` callable the outpatient flow's ``settle`` takes, paying by card.

    The idempotency key is made from the card and the charges' IDs, so a settlement
    retried after a crash — even from a fresh process — finds the first payment and
    never pays the same charges twice. Returns the confirmed transaction ID or raises
    (:class:`~hcmiddleware.errors.PaymentDeclinedError`,
    :class:`~hcmiddleware.errors.OutcomeUnknownError`).
    """

    def pay_charges(amount: Decimal, charges: list[Charge]) -> str:
        return pay(
            journal,
            key=charges_key(card_number, charges),
            card_number=card_number,
            amount=amount,
            terminal_id=terminal_id,
            charges=charges,
        ).transaction_id

    return pay_charges


def bind_bank_card(
    mw: Middleware,
    *,
    card_number: str,
    bank_card_number: str,
    holder_id_number: str,
    presented_id_number: str,
    actor: str,
) -> BankBinding:
    """Bind a bank card to the health card's account, after the identity document check.

    :raises IdentityDocumentError: the document shown is invalid or not the holder's;
        nothing is sent to the bank.
    :raises NoAdapterError: no enabled bank adapter binds cards.
    """
    check_identity_document(holder_id_number, presented_id_number)
    try:
        binding = ask_one(
            mw,
            "hcm_bank_bind",
            BankBinding,
            capability="bank.binding",
            card_number=card_number,
            bank_card_number=bank_card_number,
            id_number=presented_id_number,
        )
    except HcmError as exc:
        mw.audit("bank.bind", actor=actor, outcome="failed", error=type(exc).__name__)
        raise
    mw.audit("bank.bind", actor=actor)  # no account number, not even masked: opaque IDs only
    return binding


def unbind_bank_card(
    mw: Middleware,
    *,
    card_number: str,
    holder_id_number: str,
    presented_id_number: str,
    actor: str,
) -> None:
    """Unbind the bank card from the health card's account, after the identity document check.

    :raises PaymentDeclinedError: the bank did not unbind it.
    """
    check_identity_document(holder_id_number, presented_id_number)
    try:
        done = ask_one(
            mw,
            "hcm_bank_unbind",
            bool,
            capability="bank.binding",
            card_number=card_number,
            id_number=presented_id_number,
        )
    except HcmError as exc:
        mw.audit("bank.unbind", actor=actor, outcome="failed", error=type(exc).__name__)
        raise
    if not done:
        mw.audit("bank.unbind", actor=actor, outcome="refused")
        raise PaymentDeclinedError(
            "the bank did not unbind the card",
            state="refused",
            hint="the bank card stays bound; ask the bank why, then try again",
        )
    mw.audit("bank.unbind", actor=actor)
