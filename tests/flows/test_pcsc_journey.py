"""The outpatient journey with the card behind real pcscd + vpcd, the HIS over MLLP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hcm_his_reference import ReferenceHis

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.pcsc import PcscTransport
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.errors import CardAbsentError
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.models import VisitSummary
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS
from hcmiddleware.testing.pcscd import USER_READER, Pcscd

from .conftest import HOSPITAL, PROFILE, Till, count, his_plugin

pytestmark = pytest.mark.pcsc


@pytest.fixture(scope="module")
def pcscd() -> Iterator[Pcscd]:
    with Pcscd() as daemon:
        yield daemon


def test_kiosk_to_card_write_through_pcscd(
    pcscd: Pcscd, reference_his: ReferenceHis, hcm_make_middleware: Any, tmp_path: Path
) -> None:
    pcscd.wait_card(False)
    name, plugin, settings = his_plugin("hl7", reference_his)
    mw = hcm_make_middleware(
        plugins={name: plugin},
        settings={name: settings},
        middleware={"institution_code": HOSPITAL},
        readers={"user": USER_READER},
        sam={"keys": str(TEST_ISSUER_KEYS)},
    )
    card = EmulatedCard.from_files(PROFILE, TEST_ISSUER_KEYS)
    slot_start = (datetime.now() + timedelta(days=1)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    with VpcdCard(card, pcscd.user_port):
        pcscd.wait_card(True)
        flow = OutpatientFlow(mw, actor="kiosk-01")
        who = flow.identify()  # the configured PC/SC reader
        patient = flow.patient(who)
        reg = flow.register(patient, department_code="NEI", slot_start=slot_start, fee="12.00")
        assert flow.queue(reg).queue_number == 1
        flow.settle(patient, flow.charges(patient, reg), pay=Till())
        summary = VisitSummary(
            kind="outpatient",
            visited_at=datetime.now().replace(microsecond=0),
            institution_name="Test hospital",
            institution_code=HOSPITAL,
            department="内科",
            doctor="李医生",
            diagnosis_code="J06.9",
            diagnosis_name="急性上呼吸道感染",
        )
        # the connection is opened (and the card powered) first, then the card is
        # pulled halfway through the write
        transport = PcscTransport(USER_READER)
        card.pull_after(12, tear=True)
        try:
            with pytest.raises(CardAbsentError):
                flow.write_summary(who, summary, transport)
        finally:
            transport.close()
        assert card.pulled
    pcscd.wait_card(False)
    card.reset()
    with VpcdCard(card, pcscd.user_port):
        pcscd.wait_card(True)
        flow.write_summary(who, summary)  # the card is back: written once
        again = flow.identify()  # the short read; the visits are read when asked for
        visits = flow.previous_visits(again)
    pcscd.wait_card(False)
    written = [v for v in visits if v.institution_code == HOSPITAL]
    assert len(written) == 1
    assert (count(reference_his, "patient"), count(reference_his, "visit")) == (1, 1)
