"""The cashier: pay a visit's charges from the card's bank account, then settle with
the insurer and return the fund's part to that account (收费 and 医保结算).

Run it: ``python examples/cashier_settlement.py`` (needs the bank-soap and
insurance-soap adapters). Besides ``_site.site()`` (the reference HIS and the sample
card) it starts the reference bank and insurer: real SOAP servers on loopback with
their own ledgers, in place of the bank's and the fund's front ends.

Every money call goes through the journal: written down *before* it is sent, with a
key that makes a retry (a double click, a restart) find the first call, never pay
twice; a lost answer is settled by query or reversal.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from _site import site
from hcm_bank_soap.reference import serve as serve_bank
from hcm_insurance_soap.reference import serve as serve_insurer

from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.flows.payment import charges_payment, top_up
from hcmiddleware.flows.settlement import settle_visit


def main() -> None:
    with serve_bank(":memory:") as bank, serve_insurer(":memory:") as insurer:
        # [plugins.bank-soap] and [plugins.insurance-soap] of the hospital's config
        peers = {"bank-soap": {"wsdl": bank.wsdl_url}, "insurance-soap": {"wsdl": insurer.wsdl_url}}
        with site(enabled=tuple(peers), settings=peers) as s:
            flow = OutpatientFlow(s.mw, actor="cashier-2")
            who = flow.identify(s.card)
            card, patient = who.card, flow.patient(who)
            assert card is not None  # identified by the card itself, not an e-card
            number = card.issuer.card_number
            # the bank opened the card's account when the resident bound a bank card
            bank.service.ledger.bind(number, "6222000000001234", card.cardholder.id_number)
            slot = (datetime.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
            visit = flow.register(patient, department_code="NEI", slot_start=slot, fee="12.00")

            # 1. cash paid in at the counter goes onto the card's account
            top_up(s.mw.journal, key=f"top-up-{visit.registration_id}", card_number=number,
                   amount="300.00", terminal_id="cashier-2")  # fmt: skip
            print(f"topped up 300.00; the bank's balance {bank.service.ledger.balance(number)}")

            # 2. the HIS's charges for the visit, paid from the account in full
            charges = flow.charges(patient, visit)
            pay = charges_payment(s.mw.journal, card_number=number, terminal_id="cashier-2")
            paid = flow.settle(patient, charges, pay=pay)  # the HIS marks them paid
            print(f"paid {paid.amount:.2f} for {len(charges)} charges: {paid.transaction_id}")

            # 3. the insurer splits the bill; the fund's part goes back to the account
            done = settle_visit(
                s.mw.journal, key=f"settle-{visit.registration_id}", scheme="basic",
                insured_id=card.cardholder.id_number, patient_id=patient.patient_id,
                visit_id=visit.registration_id, charges=charges, card_number=number,
                advance_transaction_ids=[paid.transaction_id],
            )  # fmt: skip
            fund, total = done.pre_settlement.fund_paid, done.pre_settlement.total
            print(f"insurance: fund {fund:.2f}, patient {total - fund:.2f}")
            print(f"settled {done.settlement.transaction_id}: {done.returned_total:.2f} returned")
            print(f"the bank's balance {bank.service.ledger.balance(number)}")


if __name__ == "__main__":
    main()
