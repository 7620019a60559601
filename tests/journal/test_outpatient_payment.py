"""The outpatient flow's settle step paying through the journal and the reference bank."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

from hcm_bank_soap import BankSoap
from hcm_bank_soap.reference import SoapServer
from hcm_his_fhir import FhirHis
from hcm_his_reference import ReferenceHis
from money_peers import CARD

from hcmiddleware.flows.payment import charges_payment, top_up
from hcmiddleware.journal import Journal
from hcmiddleware.models import PaymentStatus as P

HOSPITAL = "210100000001"
SLOT = (datetime.now() + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)


def test_settle_pays_the_charges_once_through_the_journal(
    tmp_path: Path, bank: SoapServer, hcm_make_middleware: Any
) -> None:
    from hcmiddleware.card.emulator import EmulatedCard
    from hcmiddleware.flows.outpatient import OutpatientFlow
    from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

    profile = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
    with ReferenceHis(tmp_path / "his.db", hospital_code=HOSPITAL) as his:
        mw = hcm_make_middleware(
            plugins={"his-fhir": FhirHis(), "bank-soap": BankSoap()},
            settings={
                "his-fhir": {"base_url": his.fhir_url, "timeout": 2.0},
                "bank-soap": {"wsdl": bank.wsdl_url},
            },
            middleware={"institution_code": HOSPITAL},
            sam={"keys": str(TEST_ISSUER_KEYS)},
        )
        journal = Journal(mw)
        top_up(journal, key="up", card_number=CARD, amount="1000.00")
        flow = OutpatientFlow(mw, actor="kiosk-01")
        who = flow.identify(EmulatedCard.from_files(profile, TEST_ISSUER_KEYS))
        patient = flow.patient(who)
        reg = flow.register(patient, department_code="NEI", slot_start=SLOT, fee="12.00")
        pay = charges_payment(journal, card_number=CARD, terminal_id="KIOSK-01")
        charges = flow.charges(patient, reg)
        settled = flow.settle(patient, charges, pay=pay)
        assert settled.transaction_id is not None
        assert settled.amount > 0
        assert journal.get(settled.transaction_id).state is P.CONFIRMED
        assert bank.service.ledger.balance(CARD) == Decimal("1000.00") - settled.amount  # type: ignore[attr-defined]
        # the HIS lost the 'paid' mark: the cashier settles again, nothing is paid twice
        assert pay(settled.amount, charges) == settled.transaction_id
        assert flow.settle(patient, flow.charges(patient, reg), pay=pay).transaction_id is None
        assert bank.service.ledger.balance(CARD) == Decimal("1000.00") - settled.amount  # type: ignore[attr-defined]
        assert bank.requests["Pay"] == 1
