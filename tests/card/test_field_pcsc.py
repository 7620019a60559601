"""Field cards through the real PC/SC stack: pcscd + vpcd + pyscard.

The software card with a field profile answers as cards in the field do (6A83 past
the last written record, 6A82 for files it lacks, FF padding, short and reordered
records); these tests read it through pcscd, as ``hcm card read`` does at a site.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from card_checks import check_against_profile
from card_samples import KEYS, SAMPLES
from click.testing import CliRunner

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.data import Allergy
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.field import FieldProfile
from hcmiddleware.card.pcsc import PcscTransport
from hcmiddleware.card.session import CardSession
from hcmiddleware.card.transport import TracingTransport
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.cli import main
from hcmiddleware.errors import CardAbsentError, CardFileMissingError
from hcmiddleware.sam.software import SoftwareSam
from hcmiddleware.testing.pcscd import USER_READER, Pcscd

pytestmark = pytest.mark.pcsc

FIELD_SAMPLE = SAMPLES / "field-profile.json"


@pytest.fixture(scope="module")
def pcscd() -> Iterator[Pcscd]:
    with Pcscd() as daemon:
        yield daemon


class Inserted:
    """Insert a card into the vpcd reader; the context gives a PC/SC transport to it."""

    def __init__(self, pcscd: Pcscd, card: EmulatedCard) -> None:
        self.pcscd, self.card = pcscd, card

    def __enter__(self) -> PcscTransport:
        self.pcscd.wait_card(False)
        self.link = VpcdCard(self.card, self.pcscd.user_port)
        self.link.start()
        self.pcscd.wait_card(True)
        self.transport = PcscTransport(USER_READER)
        return self.transport

    def __exit__(self, *exc: object) -> None:
        self.transport.close()
        self.link.stop()
        self.pcscd.wait_card(False)


@pytest.mark.parametrize("multi", [True, False], ids=["whole", "item-by-item"])
def test_the_field_card_of_the_report_reads_through_pcscd(
    pcscd: Pcscd, profile: dict[str, Any], multi: bool
) -> None:
    """Fewer allergies than the file has room for: 6A83 ends the file, nothing stops.

    Also without the whole-file READ RECORD: refused once (6A86), then item by item.
    """
    card = EmulatedCard(
        profile, KEYS, base_dir=SAMPLES, field=FieldProfile(multi_record_read=multi)
    )
    with Inserted(pcscd, card) as transport:
        tracer = TracingTransport(transport, io.StringIO())
        read = CardSession(tracer, SoftwareSam.from_file(KEYS)).read_all()
    check_against_profile(read, profile)
    allergy_3 = f"00B203{(7 << 3) | 4:02X}"
    assert [e["r"][-4:] for e in tracer.entries if e["c"].startswith(allergy_3)] == ["6A83"]
    whole = [e["r"][-4:] for e in tracer.entries if e["c"][2:4] == "B2" and e["c"][7] in "5D"]
    assert whole == (["9000"] * 7 if multi else ["6A86"])


def test_a_card_without_photo_contacts_and_immunisations(
    pcscd: Pcscd, profile: dict[str, Any]
) -> None:
    omit = ("DDF1/EF07", "DF01", "DF02/EF08")
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES, field=FieldProfile(omit=omit))
    with Inserted(pcscd, card) as transport:
        read = CardSession(transport, SoftwareSam.from_file(KEYS)).read_all()
    assert set(read.missing) == set(omit)
    assert read.photo == b""
    assert read.personal.contacts == []
    assert read.clinical.immunisations == []
    assert len(read.clinical.allergies) == len(profile["allergies"])
    assert read.cardholder.id_number == profile["items"]["id_number"]


def test_a_card_without_its_cardholder_file_is_a_typed_error(
    pcscd: Pcscd, profile: dict[str, Any]
) -> None:
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES, field=FieldProfile(omit=("DDF1/EF06",)))
    with Inserted(pcscd, card) as transport, pytest.raises(CardFileMissingError) as info:
        CardSession(transport, SoftwareSam.from_file(KEYS)).read(parts="identity")
    assert info.value.path == "DDF1/EF06"


@pytest.mark.parametrize("multi", [True, False], ids=["whole", "item-by-item"])
def test_registration_short_read_through_pcscd(pcscd: Pcscd, multi: bool) -> None:
    data = json.loads(FIELD_SAMPLE.read_text(encoding="utf-8"))
    data["field"]["multi_record_read"] = multi
    card = EmulatedCard(data, KEYS, base_dir=SAMPLES)
    with Inserted(pcscd, card) as transport:
        session = CardSession(transport, SoftwareSam.from_file(KEYS))
        read = session.read(parts="identity,insurance")
        again = session.read(parts="identity,insurance")
    # 8: SELECT DDF1, items 8 and 57, INTERNAL AUTH, GET CHALLENGE + EXTERNAL AUTH and the
    # two files whole; a card without the whole-file read refuses it once (6A86) and
    # has its 5 + 4 items read by tag, and is not asked again in the second read (the
    # DF still open: items 8 and 57, INTERNAL AUTH, the two files)
    first = 8 if multi else 6 + 1 + 5 + 4
    assert session.apdu_count == first + 2 + 1 + (2 if multi else 5 + 4)
    assert read == again
    assert read.cardholder.name == "赵晓燕"
    assert read.validity.payment_methods == ["2"]
    assert read.absent_items == (19, 20)
    assert read.missing == ()  # the photo file it lacks was never asked for


def test_a_field_card_pulled_between_two_records(pcscd: Pcscd, profile: dict[str, Any]) -> None:
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES, field=FieldProfile())
    # the pull comes after the first allergy record: between two records of one file
    tracer = TracingTransport(EmulatedCard(profile, KEYS, base_dir=SAMPLES, field=FieldProfile()))
    CardSession(tracer, SoftwareSam.from_file(KEYS)).read_all()
    first_allergy = next(
        i for i, e in enumerate(tracer.entries) if e["c"].startswith(f"00B201{(7 << 3) | 4:02X}")
    )
    events = pcscd.event_count()
    with Inserted(pcscd, card) as transport:
        card.pull_after(first_allergy + 1)
        with pytest.raises(CardAbsentError):
            CardSession(transport, SoftwareSam.from_file(KEYS)).read_all()
        pcscd.wait_event(events)


def test_an_allergy_append_to_a_file_not_full_through_pcscd(
    pcscd: Pcscd, profile: dict[str, Any]
) -> None:
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES, field=FieldProfile())
    assert len(card._files[fm.ALLERGIES].records) == len(profile["allergies"]) == 2
    with Inserted(pcscd, card) as transport:
        session = CardSession(transport, SoftwareSam.from_file(KEYS))
        session.add_allergy(Allergy(substance="磺胺类", reaction="皮疹"))
        allergies = session.read_clinical().allergies
    assert [a.substance for a in allergies] == [
        "磺胺类",
        *(a["substance"] for a in profile["allergies"]),
    ]
    assert len(card._files[fm.ALLERGIES].records) == 3  # the next empty record was filled


def test_cli_reads_parts_of_a_field_card(pcscd: Pcscd, tmp_path: Path) -> None:
    card = EmulatedCard.from_files(FIELD_SAMPLE, KEYS)
    pcscd.wait_card(False)
    with VpcdCard(card, pcscd.user_port):
        pcscd.wait_card(True)
        runner, keys = CliRunner(), ["--sam-keys", str(KEYS)]
        short = runner.invoke(
            main, ["card", "read", "--parts", "identity,insurance", "--json", *keys]
        )
        text = runner.invoke(main, ["card", "read", *keys])
        bad = runner.invoke(main, ["card", "read", "--parts", "fotos", *keys])
        no_sam = runner.invoke(main, ["card", "read", "--parts", "identity"])
    pcscd.wait_card(False)
    assert short.exit_code == 0, short.output
    data = json.loads(short.output)
    assert data["parts"] == ["identity", "insurance"]
    assert data["cardholder"]["name"] == "赵晓燕"
    assert data["photo"] is None
    assert data["visits"] is None
    assert text.exit_code == 0, text.output
    assert "missing: DDF1/EF07, DF02/EF08" in text.output
    assert bad.exit_code == 2
    assert "fotos" in bad.output
    assert no_sam.exit_code == 1
    assert "needs the terminal's SAM" in no_sam.output
