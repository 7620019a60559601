"""The inpatient journey (R-HIS-2): admission, deposit and top-ups, the bill, discharge.

It starts like the outpatient one (``identify`` → ``patient``, from
:class:`~hcmiddleware.flows.journey.Journey`), then::

    flow = InpatientFlow(mw.acting_as(clerk))          # or InpatientFlow(mw, actor=…)
    stay = flow.admit(patient, department_code="NEI", ward="5A", bed="12")
    stay = flow.deposit(stay, Decimal("2000.00"), pay=journal_payment)   # and top-ups
    bill = flow.bill(stay)
    stay = flow.settle_bill(stay, pay=journal_payment)     # pays what is still owed
    done = flow.discharge(stay)                            # refused while money is owed;
                                                           # the stay's wristband is released
    flow.write_summary(who, summary)                       # inpatient record on the card

Money moves through the same seam as outpatient payments (``pay(amount, charges)``
returns the confirmed transaction ID); the HIS records each deposit once per
transaction ID. A refund due at discharge (negative balance) is reported on the
discharge's bill for the cashier's refund flow.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from hcmiddleware.errors import (
    DischargeRefusedError,
    FlowInputError,
    HcmError,
    PaymentNotRecordedError,
)
from hcmiddleware.flows.journey import Journey, Pay, request_key
from hcmiddleware.models import (
    Admission,
    AdmissionRequest,
    Bill,
    Deposit,
    Discharge,
    HospitalPatient,
)

__all__ = ["InpatientFlow"]

log = logging.getLogger("hcmiddleware.flows.inpatient")


class InpatientFlow(Journey):
    """The inpatient journey's steps; see the module docstring for the order."""

    name = "inpatient"

    def admit(
        self,
        patient: HospitalPatient,
        *,
        department_code: str,
        ward: str,
        bed: str,
        admitted_at: datetime | None = None,
        diagnosis_code: str | None = None,
        request_id: str | None = None,
    ) -> Admission:
        """Admit the patient to ``ward``/``bed``; once per request.

        The default ``request_id`` is derived from the patient, department, ward, bed and
        the admission day, so a retried admission answers the first one.
        """
        at = (admitted_at or datetime.now()).replace(microsecond=0)
        key = request_id or request_key(
            self.hospital_code,
            patient.patient_id,
            department_code,
            ward,
            bed,
            at.date().isoformat(),
        )
        try:
            request = AdmissionRequest(
                department_code=department_code,
                ward=ward,
                bed=bed,
                admitted_at=at,
                diagnosis_code=diagnosis_code,
                request_id=key,
            )
        except ValueError as exc:
            raise FlowInputError(f"the admission is not valid: {exc}", step="admit") from None
        self._require("admit", "his.admit", subject=patient.resident_id)
        admission = self._step(
            "admit", patient.resident_id, lambda: self.services.his.admit(patient, request)
        )
        self._audit(
            "admit", patient.resident_id, admission=admission.admission_id, ward=ward, bed=bed
        )
        return admission

    def deposit(self, admission: Admission, amount: Decimal | str, *, pay: Pay) -> Admission:
        """Take a deposit or a top-up through ``pay`` and record it in the HIS.

        :raises FlowInputError: the amount is not positive (nothing is paid).
        :raises PaymentNotRecordedError: the money moved but the HIS did not record
            it; call :meth:`record_deposit` with its transaction ID, never pay again.
        """
        value = _amount(amount, "deposit")
        # refused before any money moves, never between the payment and its record
        self._require("deposit", "his.record_deposit")
        try:
            transaction_id = pay(value, [])
        except BaseException as exc:
            self._failed("deposit", None, exc)
            raise
        if not transaction_id:
            raise FlowInputError(
                "the payment returned no transaction ID",
                step="deposit",
                hint="the payment callable must return the confirmed transaction ID or raise",
            )
        return self.record_deposit(admission, value, transaction_id)

    def record_deposit(
        self, admission: Admission, amount: Decimal | str, transaction_id: str
    ) -> Admission:
        """Record a confirmed deposit in the HIS (idempotent per transaction ID)."""
        value = _amount(amount, "deposit")
        self._require("deposit", "his.record_deposit")
        deposit = Deposit(
            deposit_id=f"D{request_key(admission.admission_id, transaction_id)[:16]}",
            admission_id=admission.admission_id,
            amount=value,
            paid_at=datetime.now().replace(microsecond=0),
            transaction_id=transaction_id,
        )
        try:
            updated = self._step(
                "deposit", None, lambda: self.services.his.record_deposit(admission, deposit)
            )
        except HcmError as exc:
            raise PaymentNotRecordedError(
                f"deposit {transaction_id} was confirmed but the hospital system did not "
                f"record it: {exc.message}",
                step="deposit",
                transaction_id=transaction_id,
                plugin=str(getattr(exc, "plugin", "")),
            ) from exc
        self._audit(
            "deposit",
            None,
            admission=admission.admission_id,
            transaction=transaction_id,
            amount=f"{value:.2f}",
        )
        return updated

    def bill(self, admission: Admission) -> Bill:
        """The stay's current bill (positive ``balance``: the patient owes it)."""
        self._require("bill", "his.bill")
        bill = self._step("bill", None, lambda: self.services.his.bill(admission))
        self._audit("bill", None, admission=admission.admission_id, balance=f"{bill.balance:.2f}")
        return bill

    def settle_bill(self, admission: Admission, *, pay: Pay) -> Admission:
        """Pay what the stay still owes, as a final top-up; nothing when nothing is owed."""
        self._require("settle_bill", "his.bill", "his.record_deposit")
        bill = self.bill(admission)
        if bill.balance <= 0:
            return admission
        unpaid = [c for c in bill.items if not c.paid]
        try:
            transaction_id = pay(bill.balance, unpaid)
        except BaseException as exc:
            self._failed("settle_bill", None, exc)
            raise
        return self.record_deposit(admission, bill.balance, transaction_id)

    def discharge(self, admission: Admission) -> Discharge:
        """Discharge the patient; refused while the bill shows money owed.

        The flow checks the bill first so that the cashier hears how much is owed; the
        HIS refuses an unsettled discharge too (``HisRejectedError``).

        :raises DischargeRefusedError: the stay still owes ``balance``.
        """
        self._require("discharge", "his.bill", "his.discharge", "ward.release_stay")
        bill = self.bill(admission)
        if bill.balance > 0:
            owed = DischargeRefusedError(
                f"the stay still owes {bill.balance:.2f} yuan",
                step="discharge",
                balance=bill.balance,
            )
            self._failed("discharge", None, owed)
            raise owed
        done = self._step("discharge", None, lambda: self.services.his.discharge(admission, bill))
        try:
            # the band identifies nobody once the stay has ended
            self.services.ward.release_stay(admission.admission_id, actor=self.actor)
        except HcmError as exc:
            log.warning("the stay's wristband was not released: %s", exc.message)
        self._audit(
            "discharge",
            None,
            admission=admission.admission_id,
            refund_due=f"{max(-done.final_bill.balance, Decimal(0)):.2f}",
        )
        return done


def _amount(amount: Decimal | str, step: str) -> Decimal:
    try:
        value = Decimal(str(amount))
    except ArithmeticError:
        raise FlowInputError(f"{amount!r} is not an amount", step=step) from None
    if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01")):
        raise FlowInputError(
            f"an amount is positive with at most two decimals ({amount} given)", step=step
        )
    return value.quantize(Decimal("0.01"))
