"""A nurse's round: scan the band, the orders, three checks, execute — and one refusal.

Run it: ``python examples/nurse_round.py`` (needs the ``ward`` extra). `admit_with_band`
and `round_at_bed` are what a HIS vendor's admission desk and nurse's handheld do;
``_site.site()`` stands in for the hospital (reference HIS over HL7/MLLP, sample card).
"""

from __future__ import annotations

from datetime import datetime

from _site import site

from hcmiddleware import HcmError, InpatientFlow, Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.errors import VerificationFailedError
from hcmiddleware.models import BandEvent, BedsideScan

NURSE = "N-0107"


def admit_with_band(mw: Middleware, card: EmulatedCard, band: str) -> str:
    """Admissions: the card identifies the patient, the stay is opened, the band bound."""
    flow = InpatientFlow(mw, actor="admissions-1")
    who = flow.identify(card)
    stay = flow.admit(flow.patient(who), department_code="NEI", ward="5A", bed="12")
    mw.ward.bind(band, stay, card_number=who.card_number, kind="active")
    return stay.admission_id


def round_at_bed(mw: Middleware, band: str) -> str:
    """The handheld at bed 12: the orders, then the drip through the three checks."""
    orders = mw.ward.orders(band, actor=NURSE)  # downloaded from the HIS for this stay
    drip = next(o for o in orders if o.route == "IVGTT")  # the intravenous drip
    scan = BedsideScan(
        wristband_id=band, nurse_id=NURSE, order_id=drip.order_id,
        bed="12",  # the bed-head tag
        drug_code=drip.code, concentration=drip.concentration, route="静滴",  # the bag's label
        dose="0.25 L",  # the label says litres; the order, 250 ml: the same dose
    )  # fmt: skip
    execution = mw.ward.begin(scan)  # check before: the seven verifications
    print(f"{len(orders)} orders; check before: passed, next {execution.state}")
    execution = mw.ward.check(execution.execution_id, scan)  # check during: bag hung
    execution = mw.ward.check(execution.execution_id, scan)  # check after
    print(f"executed {drip.order_id}: {execution.state}, HIS {execution.his_state}")
    try:
        mw.ward.execute(scan)  # the same bag scanned once more
    except HcmError as exc:
        print(f"scanned again: refused ({type(exc).__name__})")
    return drip.order_id


def main() -> None:
    with site() as s:
        band, his = "WB-0001", s.his
        assert his is not None  # site() started the reference HIS
        stay = admit_with_band(s.mw, s.card, band)
        label = s.mw.ward.label(band).decode("utf-8").splitlines()  # ZPL for a band printer
        print(f"band {band} bound; its label is {len(label)} lines of ZPL")
        done = round_at_bed(s.mw, band)
        # a doctor orders amoxicillin 0.5 g; the pharmacy sent 0.25 g capsules
        order_id = his.store.add_order(
            stay, "drug", "AMX500", "阿莫西林胶囊 Amoxicillin", scheduled_at=datetime.now(),
            dose="0.5 g", route="PO")  # fmt: skip
        scan = BedsideScan(wristband_id=band, nurse_id=NURSE, order_id=order_id, bed="12",
                           drug_code="AMX500", dose="250 mg", route="口服")  # fmt: skip
        try:
            s.mw.ward.execute(scan)
        except VerificationFailedError as exc:
            print(f"refused: {', '.join(exc.failed)} — {exc.reasons[exc.failed[0]]}")
        # the patient presses the band's call button (a device plugin hands this in)
        call = BandEvent(event_id="1", wristband_id=band, kind="emergency", at=datetime.now())
        (alarm,) = s.mw.ward.receive([call]).raised
        taken = s.mw.ward.acknowledge(alarm.alarm_id, NURSE)
        print(f"call from bed {alarm.bed}: {taken.state} by {taken.acknowledged_by}")
        print(f"the HIS recorded {len(his.store.executions(done))} execution of {done}")


if __name__ == "__main__":
    main()
