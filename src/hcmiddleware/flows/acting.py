"""``session.flows``: the patient journeys and the money flows as one caller runs them.

The flows of :mod:`hcmiddleware.flows` made with the Middleware itself are the
embedding process's own work. Made through a session, they run as the session's
caller (user, role, terminal):

* before anything is done, the caller's role must grant every operation the step or
  flow uses (a settlement: ``journal.settle``, ``journal.refund``, ``journal.by_key``,
  ``journal.refundable``), or it is refused —
  :class:`~hcmiddleware.errors.AccessDeniedError`, audited, with the detail ``step``;
* every service call goes through the session: checked, cut to what the role may
  see, and audited with the caller's identity, as are the flow's own entries
  (``flow.outpatient.register``, ``money.pay`` …);
* the money movements name the caller's terminal, and the caller's user acts.

::

    till = mw.acting_as(Caller(user="c-107", role="cashier", terminal="till-2"))
    moved = till.flows.pay(key="receipt-88", card_number=number, amount="12.00")
    flow = till.flows.outpatient()               # an OutpatientFlow as the cashier
    flow.settle(patient, flow.charges(patient, reg),
                pay=till.flows.charges_payment(card_number=number))
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hcmiddleware.access import context
from hcmiddleware.flows import payment, settlement
from hcmiddleware.flows.inpatient import InpatientFlow
from hcmiddleware.flows.journey import Pay
from hcmiddleware.flows.outpatient import OutpatientFlow

if TYPE_CHECKING:
    from hcmiddleware.access.session import Session
    from hcmiddleware.journal import Journal, Movement
    from hcmiddleware.models import BankBinding, Charge, Settlement

__all__ = ["Flows"]

#: what the settlement of a visit uses: it refunds the fund's part against the advances
_SETTLE = ("journal.settle", "journal.refund", "journal.by_key", "journal.refundable")


class Flows:
    """The flows as one session's caller may run them (``session.flows``)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __repr__(self) -> str:
        return f"<flows as {self._session.caller}>"

    # -- the journeys ---------------------------------------------------------------------

    def outpatient(
        self, *, actor: str | None = None, hospital_code: str | None = None
    ) -> OutpatientFlow:
        """The outpatient journey, run as the caller (``actor`` default: the user)."""
        return OutpatientFlow(self._session, actor=actor, hospital_code=hospital_code)

    def inpatient(
        self, *, actor: str | None = None, hospital_code: str | None = None
    ) -> InpatientFlow:
        """The inpatient journey, run as the caller (``actor`` default: the user)."""
        return InpatientFlow(self._session, actor=actor, hospital_code=hospital_code)

    # -- money ---------------------------------------------------------------------------

    @property
    def _journal(self) -> Journal:
        journal: Journal = self._session._mw._raw("journal")
        return journal

    def _start(self, flow: str, operations: Sequence[str]) -> None:
        self._session.require(f"flows.{flow}", operations)

    def top_up(self, *, key: str, card_number: str, amount: Any) -> Movement:
        """Top up the card's account at the caller's terminal (``journal.top_up``)."""
        s = self._session
        self._start("top_up", ["journal.top_up"])
        with context.acting(s.caller):
            moved = s.journal.top_up(
                key=key, card_number=card_number, amount=amount, terminal_id=s.caller.terminal
            )
            return payment.finish(self._journal, moved, "top_up", s.caller.user)

    def pay(
        self, *, key: str, card_number: str, amount: Any, charges: Sequence[Charge] = ()
    ) -> Movement:
        """Pay from the card's account at the caller's terminal (``journal.pay``);
        ``charges``: what it pays, for the receipt."""
        s = self._session
        self._start("pay", ["journal.pay"])
        with context.acting(s.caller):
            return payment._pay(
                s.journal, self._journal, s.caller.user, key=key, card_number=card_number,
                amount=amount, terminal_id=s.caller.terminal, charges=charges,
            )  # fmt: skip

    def refund(
        self,
        *,
        key: str,
        card_number: str,
        original_transaction_id: str,
        amount: Any,
        holder_id_number: str,
        presented_id_number: str,
    ) -> Movement:
        """Refund (part of) a payment after the identity document check
        (``journal.refund``); see :func:`hcmiddleware.flows.payment.refund`."""
        s = self._session
        self._start("refund", ["journal.refund"])
        payment.check_identity_document(holder_id_number, presented_id_number)
        with context.acting(s.caller):
            moved = s.journal.refund(
                key=key,
                card_number=card_number,
                amount=amount,
                original_transaction_id=original_transaction_id,
                terminal_id=s.caller.terminal,
            )
            return payment.finish(self._journal, moved, "refund", s.caller.user)

    def charges_payment(self, *, card_number: str) -> Pay:
        """The ``pay`` callable of a journey's ``settle``, paying by card as the caller
        (the journal key from the card and the charges: a retry never pays twice)."""
        self._start("pay", ["journal.pay"])

        def pay_charges(amount: Decimal, charges: list[Charge]) -> str:
            return self.pay(
                key=payment.charges_key(card_number, charges),
                card_number=card_number,
                amount=amount,
                charges=charges,
            ).transaction_id

        return pay_charges

    def bind_bank_card(
        self,
        *,
        card_number: str,
        bank_card_number: str,
        holder_id_number: str,
        presented_id_number: str,
    ) -> BankBinding:
        """Bind a bank card to the health card's account (``bank.bind``); see
        :func:`hcmiddleware.flows.payment.bind_bank_card`."""
        s = self._session
        self._start("bind_bank_card", ["bank.bind"])
        with context.acting(s.caller):
            return payment.bind_bank_card(
                s._mw, card_number=card_number, bank_card_number=bank_card_number,
                holder_id_number=holder_id_number, presented_id_number=presented_id_number,
                actor=s.caller.user,
            )  # fmt: skip

    def unbind_bank_card(
        self, *, card_number: str, holder_id_number: str, presented_id_number: str
    ) -> None:
        """Unbind the bank card from the health card's account (``bank.unbind``)."""
        s = self._session
        self._start("unbind_bank_card", ["bank.unbind"])
        with context.acting(s.caller):
            payment.unbind_bank_card(
                s._mw, card_number=card_number, holder_id_number=holder_id_number,
                presented_id_number=presented_id_number, actor=s.caller.user,
            )  # fmt: skip

    def pre_settle(
        self,
        *,
        scheme: str,
        insured_id: str,
        patient_id: str,
        visit_id: str,
        charges: Sequence[Charge],
    ) -> Settlement:
        """How the insurer would split the bill; nothing is paid (``journal.settle``)."""
        s = self._session
        self._start("pre_settle", ["journal.settle"])
        with context.acting(s.caller):
            return settlement.pre_settle(
                self._journal, scheme=scheme, insured_id=insured_id, patient_id=patient_id,
                visit_id=visit_id, charges=charges,
            )  # fmt: skip

    def settle_visit(
        self,
        *,
        key: str,
        scheme: str,
        insured_id: str,
        patient_id: str,
        visit_id: str,
        charges: Sequence[Charge],
        card_number: str,
        advance_transaction_ids: Sequence[str],
    ) -> settlement.SettlementOutcome:
        """Settle a visit with the insurer and return the fund's part to the card
        (every operation it uses checked first); see
        :func:`hcmiddleware.flows.settlement.settle_visit`."""
        s = self._session
        self._start("settle_visit", _SETTLE)
        with context.acting(s.caller):
            return settlement._settle_visit(
                s.journal, self._journal, s.caller.user, key=key, scheme=scheme,
                insured_id=insured_id, patient_id=patient_id, visit_id=visit_id,
                charges=charges, card_number=card_number,
                advance_transaction_ids=advance_transaction_ids,
            )  # fmt: skip
