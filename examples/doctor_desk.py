"""The doctor's desk, the lab and the cashier after a kiosk registration.

Run it: ``python examples/doctor_desk.py``. ``_site.site()`` stands in for the hospital
(the reference HIS over HL7/MLLP, the sample card); the patient registers as in
``kiosk_registration.py``, then, each desk as its signed-in user (``mw.acting_as``: the
role's steps only, answers cut to what it may see, every entry naming the user):

1. the desk reads the card: earlier visits on it, and the HIS's orders for this visit;
2. the lab issues its report; the desk lists the visit's reports;
3. the cashier settles the charges: ``pay`` is where a payment plugs in (see
   ``cashier_settlement.py`` for the card's bank account through the journal);
4. the visit summary is written back to the card (a card pulled mid-write keeps its
   earlier records).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from _site import HOSPITAL, site

from hcmiddleware import Caller
from hcmiddleware.models import Charge, VisitSummary


def cashier_pays(amount: Decimal, charges: list[Charge]) -> str:
    """Stand-in for the journal's payment flow: move the money, return its ID."""
    print(f"  cashier: {amount:.2f} yuan for {len(charges)} items, paid at the counter")
    return "T-" + datetime.now().strftime("%Y%m%d%H%M%S")


def main() -> None:
    with site() as s:
        at_kiosk = Caller(user="kiosk-01", role="kiosk", terminal="kiosk-01")
        kiosk = s.mw.acting_as(at_kiosk).flows.outpatient()
        slot = (datetime.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        patient = kiosk.patient(kiosk.identify(s.card))
        registration = kiosk.register(
            patient, department_code="NEI", doctor_code="D01", slot_start=slot, fee="12.00"
        )
        print(f"registered at the kiosk: {registration.registration_id}")

        doctor = s.mw.acting_as(Caller(user="d-07", role="doctor", terminal="room-7"))
        flow = doctor.flows.outpatient()  # another screen, another flow object
        who = flow.identify(s.card)  # the card read identifies the patient in this room
        patient = flow.patient(who)  # from the index this time, without asking the HIS
        view = flow.desk(who, patient, registration, s.card)  # reads the card's visits now
        print(f"doctor's desk: {len(view.previous_visits)} earlier visits on the card")
        for visit in view.previous_visits:
            print(f"  {visit.visited_at:%Y-%m-%d} {visit.kind:10} {visit.institution_name}")
        for order in view.orders:
            print(f"  order: {order.kind:5} {order.name} {order.dose or ''}")

        assert s.his is not None
        for report in flow.reports(patient, registration):  # the lab signs its report off
            s.his.store.issue_report(report.report_id, "WBC 6.1×10⁹/L, within range")
        for report in flow.reports(patient, registration):
            print(f"report {report.title}: {report.status}")

        till = s.mw.acting_as(Caller(user="c-02", role="cashier", terminal="till-2"))
        cashier = till.flows.outpatient()  # the doctor may not take money: the cashier does
        charges = cashier.charges(patient, registration)
        settled = cashier.settle(patient, charges, pay=cashier_pays)
        print(f"settled {settled.amount:.2f} yuan, transaction {settled.transaction_id}")

        summary = VisitSummary(
            kind="outpatient", visited_at=datetime.now(), institution_name="Example hospital",
            institution_code=HOSPITAL, department="内科", doctor="李医生",
            diagnosis_code="J06.9", diagnosis_name="急性上呼吸道感染",
            treatment="对症治疗", total_fee=settled.amount,
        )  # fmt: skip
        slot_no = flow.write_summary(who, summary, s.card)
        count = len(flow.previous_visits(flow.identify(s.card), s.card))
        print(f"visit summary written to the card (slot {slot_no}); the card holds {count} visits")


if __name__ == "__main__":
    main()
