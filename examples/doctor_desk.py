"""The doctor's desk, the lab and the cashier after a kiosk registration.

Run it::

    python examples/doctor_desk.py

It starts the reference HIS (HL7 v2.5 over MLLP on loopback) and registers the sample
card's holder as ``kiosk_registration.py`` does, then:

1. the doctor's desk reads the card: the previous visits on the card and the orders
   the HIS holds for this visit (the hospital patient ID now comes from the index,
   without asking the HIS);
2. the lab issues its report; the desk lists the visit's reports;
3. the cashier lists the charges and settles them: ``pay`` is where the journal's
   payment flow (bank or insurer, journalled and reversed when unknown) plugs in —
   here a stand-in that prints and returns a transaction ID;
4. the visit summary is written back to the card (a card pulled mid-write keeps its
   earlier records), and the card's visits are listed again.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.config import parse_config
from hcmiddleware.errors import HcmError
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.keyfiles import write_empi_keys
from hcmiddleware.models import Charge, VisitSummary
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

HOSPITAL = "210100000001"
SAMPLE_CARD = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


def cashier_pays(amount: Decimal, charges: list[Charge]) -> str:
    """Stand-in for the journal's payment flow: move the money, return its ID."""
    print(f"  cashier: {amount:.2f} yuan for {len(charges)} items, paid at the counter")
    return "T-" + datetime.now().strftime("%Y%m%d%H%M%S")


def main() -> int:
    """Run the desk once; 0 when the visit is settled and on the card."""
    workdir = Path(tempfile.mkdtemp(prefix="hcm-desk-"))
    with ReferenceHis(workdir / "his.db", hospital_code=HOSPITAL) as his:
        host, port = his.mllp_address
        config = parse_config(
            {
                "middleware": {
                    "data_dir": str(workdir / "hcm"),
                    "institution_code": HOSPITAL,
                    "site_name": "Example hospital",
                },
                "sam": {"keys": str(TEST_ISSUER_KEYS)},
                # the resident index's keys, as `hcm init` writes them for a site
                "empi": write_empi_keys(workdir / "keys").section(),
                "plugins": {"enabled": ["his-hl7"], "his-hl7": {"host": host, "port": port}},
            }
        )
        card = EmulatedCard.from_files(SAMPLE_CARD, TEST_ISSUER_KEYS)
        with Middleware(config) as mw:
            try:
                return desk(mw, card, his)
            except HcmError as exc:
                print(f"stopped: {exc.message}\n  → {exc.hint}")
                return 1


def desk(mw: Middleware, card: EmulatedCard, his: ReferenceHis) -> int:
    """The kiosk's registration, then the desk, the lab and the cashier."""
    kiosk = OutpatientFlow(mw, actor="kiosk-01")
    slot = (datetime.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    kiosk_patient = kiosk.patient(kiosk.identify(card))
    registration = kiosk.register(
        kiosk_patient, department_code="NEI", doctor_code="D01", slot_start=slot, fee="12.00"
    )
    print(f"registered at the kiosk: {registration.registration_id}")

    flow = OutpatientFlow(mw, actor="desk-07")  # another screen, another flow object
    who = flow.identify(card)
    patient = flow.patient(who)  # from the index this time
    view = flow.desk(who, patient, registration, card)  # reads the card's visits now
    print(f"doctor's desk: {len(view.previous_visits)} earlier visits on the card")
    for visit in view.previous_visits:
        print(f"  {visit.visited_at:%Y-%m-%d} {visit.kind:10} {visit.institution_name}")
    print("orders for this visit:")
    for order in view.orders:
        print(f"  {order.kind:5} {order.name} {order.dose or ''} {order.route or ''}")

    for report in flow.reports(patient, registration):
        his.store.issue_report(report.report_id, "WBC 6.1×10⁹/L, within range")  # the lab
    for report in flow.reports(patient, registration):
        print(f"report {report.title}: {report.status}")

    charges = flow.charges(patient, registration)
    settled = flow.settle(patient, charges, pay=cashier_pays)
    print(f"settled {settled.amount:.2f} yuan, transaction {settled.transaction_id}")

    slot_no = flow.write_summary(
        who,
        VisitSummary(
            kind="outpatient",
            visited_at=datetime.now(),
            institution_name=mw.config.middleware.site_name,
            institution_code=HOSPITAL,
            department="内科",
            doctor="李医生",
            diagnosis_code="J06.9",
            diagnosis_name="急性上呼吸道感染",
            treatment="对症治疗",
            total_fee=settled.amount,
        ),
        card,
    )
    count = len(flow.previous_visits(flow.identify(card), card))
    print(f"visit summary written to the card (slot {slot_no}); the card holds {count} visits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
