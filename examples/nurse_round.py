"""A nurse's round: scan the band, download the orders, three checks, execute — and one
refusal.

Run it after `pip install -e '.[ward]' -e adapters/his/reference -e adapters/his/hl7`:

    python examples/nurse_round.py

`admit_with_band` and `round_at_bed` are what a HIS vendor's admission desk and
nurse's handheld do; the rest stands in for a hospital: the reference HIS (HL7 v2
over MLLP on loopback) in place of the hospital's, the software card in place of a
card in the reader, and fresh index keys (`hcm init` writes them for a real site).
"""

from __future__ import annotations

import base64
import os
import tempfile
from datetime import datetime
from importlib.resources import files
from pathlib import Path

from hcm_his_hl7 import Hl7His
from hcm_his_reference import ReferenceHis

from hcmiddleware import HcmError, InpatientFlow, Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.config import parse_config
from hcmiddleware.errors import VerificationFailedError
from hcmiddleware.models import BandEvent, BedsideScan
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

NURSE = "N-0107"


def admit_with_band(mw: Middleware, card: EmulatedCard, band: str) -> str:
    """Admissions: the card identifies the patient, the stay is opened, the band bound."""
    flow = InpatientFlow(mw, actor="admissions-1")
    who = flow.identify(card)
    patient = flow.patient(who)
    stay = flow.admit(patient, department_code="NEI", ward="5A", bed="12")
    assert who.card is not None
    mw.ward.bind(band, stay, card_number=who.card.issuer.card_number, kind="active")
    return stay.admission_id


def round_at_bed(mw: Middleware, band: str) -> str:
    """The handheld at bed 12: the orders, then the drip through the three checks."""
    orders = mw.ward.orders(band, actor=NURSE)
    print(f"band {band}: {len(orders)} orders")
    drip = next(o for o in orders if o.route == "IVGTT")
    scan = BedsideScan(
        wristband_id=band,
        nurse_id=NURSE,
        order_id=drip.order_id,
        bed="12",  # the bed-head tag
        drug_code=drip.code,  # the label on the bag
        dose="0.25 L",  # the label says litres; the order, 250 ml: the same dose
        concentration=drip.concentration,
        route="静滴",
    )
    execution = mw.ward.begin(scan)  # check before: the seven verifications
    print(f"check before: passed, next {execution.state}")
    execution = mw.ward.check(execution.execution_id, scan)  # check during: bag hung
    execution = mw.ward.check(execution.execution_id, scan)  # check after
    print(f"executed {drip.order_id}: {execution.state}, HIS {execution.his_state}")
    try:
        mw.ward.execute(scan)
    except HcmError as exc:
        print(f"scanned again: refused ({type(exc).__name__})")
    return drip.order_id


def wrong_dose(mw: Middleware, his: ReferenceHis, stay: str, band: str) -> None:
    """A doctor orders amoxicillin 0.5 g; the pharmacy sent 0.25 g capsules."""
    order_id = his.store.add_order(
        stay, "drug", "AMX500", "阿莫西林胶囊 Amoxicillin", scheduled_at=datetime.now(),
        dose="0.5 g", route="PO",
    )  # fmt: skip
    scan = BedsideScan(
        wristband_id=band, nurse_id=NURSE, order_id=order_id, bed="12",
        drug_code="AMX500", dose="250 mg", route="口服",
    )  # fmt: skip
    try:
        mw.ward.execute(scan)
    except VerificationFailedError as exc:
        print(f"refused: {', '.join(exc.failed)} — {exc.reasons[exc.failed[0]]}")


def installation(workdir: Path, his: ReferenceHis) -> Middleware:
    """A stand-in for the hospital's config file and keys, with the HL7 adapter."""
    keys = workdir / "keys"
    keys.mkdir(mode=0o700)
    for name in ("master", "index"):
        (keys / name).write_text(base64.b64encode(os.urandom(32)).decode())
    host, port = his.mllp_address
    config = parse_config(
        {
            "middleware": {"data_dir": str(workdir / "data"), "institution_code": "210100000001"},
            "sam": {"keys": str(TEST_ISSUER_KEYS)},
            "empi": {
                "master_keys": {"k1": {"file": str(keys / "master")}},
                "index_key": {"file": str(keys / "index")},
            },
            "plugins": {"his-hl7": {"host": host, "port": port}},
        }
    )
    return Middleware(config, plugins={"his-hl7": Hl7His()})


def main() -> int:
    sample = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
    card = EmulatedCard.from_files(sample, TEST_ISSUER_KEYS)
    workdir = Path(tempfile.mkdtemp(prefix="hcm-example-"))
    with ReferenceHis(workdir / "his.db", hospital_code="210100000001") as his:
        with installation(workdir, his) as mw:
            band = "WB-0001"
            stay = admit_with_band(mw, card, band)
            label = mw.ward.label(band).decode("utf-8")
            print(f"band {band} bound; its label is {len(label.splitlines())} lines of ZPL")
            done = round_at_bed(mw, band)
            wrong_dose(mw, his, stay, band)
            # the patient presses the band's call button (a device plugin hands this in)
            call = BandEvent(event_id="1", wristband_id=band, kind="emergency", at=datetime.now())
            (alarm,) = mw.ward.receive([call]).raised
            taken = mw.ward.acknowledge(alarm.alarm_id, NURSE)
            print(f"call from bed {alarm.bed}: {taken.state} by {taken.acknowledged_by}")
        print(f"the HIS recorded {len(his.store.executions(done))} execution of {done}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
