"""Card operations: APDUs sent against the minimum the file layout allows, and time.

The registration read (``parts=identity,insurance``: who the holder is and how the
visit is paid) is printed beside the full read; the goal for its card I/O through
pcscd is 3 ms or less.

Times are medians over several runs, in-process (the software card called directly) and
through the real PC/SC stack (pyscard -> pcscd -> vpcd -> the same software card over
loopback TCP). The SAM rows time one authentication (GET CHALLENGE + EXTERNAL
AUTHENTICATE, the DF already selected) and one secure-messaging write (GET CHALLENGE +
UPDATE RECORD under SM, the update key already open) with the software SAM and with the
SAM card (``PcscSam`` driving ``EmulatedSam`` by APDU: in-process, or in reader 1
behind pcscd with the user card in reader 0), counting the SAM's APDUs too.
Run: ``python benchmarks/bench_card.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.data import VisitRecord
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.session import READ_CHUNK, WRITE_CHUNK, CardSession
from hcmiddleware.card.transport import Transport
from hcmiddleware.sam.base import Sam
from hcmiddleware.sam.software import SoftwareSam

SAMPLES = Path(str(files("hcmiddleware.card.samples")))
PROFILE = SAMPLES / "resident-profile.json"
KEYS = Path(str(files("hcmiddleware.sam.samples"))) / "test-issuer-keys.json"
#: The registration read's card I/O through pcscd should take no longer (milliseconds).
GOAL_MS = 3.0


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def tlv_reads(ef: fm.EfSpec, wanted: int | None = None) -> int:
    """READ RECORDs for ``wanted`` items of a TLV file (default: all): one for the whole
    file when more than one is wanted and every record at full length fits a short
    answer (256 bytes), else one per item."""
    wanted = len(fm.items_of(ef)) if wanted is None else wanted
    whole = sum(2 + it.length for it in fm.items_of(ef))
    return 1 if wanted > 1 and whole <= READ_CHUNK else wanted


def minimum_identity() -> int:
    """SELECT DDF1, the EF05 records, GET CHALLENGE + EXTERNAL AUTH, the EF06 records."""
    return 1 + tlv_reads(fm.ISSUER) + 2 + tlv_reads(fm.CARDHOLDER)


def minimum_registration() -> int:
    """SELECT DDF1, the card number and city (items 8, 57), INTERNAL AUTHENTICATE,
    GET CHALLENGE + EXTERNAL AUTH, the EF06 records, expiry and the payment methods."""
    insurance = len(fm.PART_ITEMS[fm.CardPart.INSURANCE])
    return (
        1
        + tlv_reads(fm.ISSUER, len(fm.CORE_ITEMS))
        + 1
        + 2
        + tlv_reads(fm.CARDHOLDER)
        + tlv_reads(fm.VALIDITY, insurance)
    )


def minimum_full(profile: dict[str, Any], photo_len: int, visit_lens: list[int]) -> int:
    """Every file read once, one SELECT and one authentication per DF, reads cut short."""
    n = 1  # INTERNAL AUTHENTICATE (with Le: no GET RESPONSE)
    n += 1 + 2 + sum(tlv_reads(ef) for ef in (fm.ISSUER, fm.CARDHOLDER, fm.VALIDITY))
    n += ceil_div(2 + photo_len, READ_CHUNK)
    n += 1 + 2 + sum(tlv_reads(ef) for ef in (fm.ADDRESSES, fm.CONTACTS, fm.SOCIAL, fm.DOCUMENTS))
    n += 1 + 2 + tlv_reads(fm.BASICS) + tlv_reads(fm.PSYCHIATRIC)
    for ring, key in ((fm.ALLERGIES, "allergies"), (fm.IMMUNISATIONS, "immunisations")):
        used = len(profile.get(key, []))
        n += used + (1 if used < ring.records else 0)  # one empty record proves the end
    n += 1 + 2 + fm.INPATIENT_INDEX.records + fm.OUTPATIENT_INDEX.records
    n += sum(1 + ceil_div(length + 1, READ_CHUNK) + 1 for length in visit_lens)
    return n


def minimum_append(kind: fm.VisitKind, drops: bool) -> int:
    """From a fresh card: SELECT DDF1 and DF03 (DF03 is not a child of the MF and the
    command set has no path SELECT), the card's city (item 57, read once so a card of
    another city spends no try), read and update authentications, the index,
    SELECT EF, the whole record in 255-byte writes, the valid mark (and the invalid
    mark of the dropped oldest record when the ring is full)."""
    slots = fm.VISIT_SLOTS[kind]
    writes = ceil_div(slots.records[0].size, WRITE_CHUNK)
    return 2 + 1 + 4 + slots.index.records + 1 + writes + 1 + (1 if drops else 0)


@dataclass
class Row:
    """One line of the table."""

    name: str
    apdus: int
    minimum: int
    local_ms: float
    pcsc_ms: float | None = None
    sam_apdus: int | None = None


class CountingSlot:
    """A SAM transport that counts the APDUs it carries."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count = 0

    def transmit(self, apdu: bytes) -> bytes:
        self.count += 1
        return bytes(self.inner.transmit(apdu))


Step = Callable[[CardSession], object]


def authenticate_df01(session: CardSession) -> None:
    """GET CHALLENGE + EXTERNAL AUTHENTICATE with read key 02 (DF01 already selected)."""
    session._authenticate(fm.DF01, fm.DF01.read_key)  # the step itself, nothing around it


def prepare_authentication(session: CardSession) -> None:
    session.read_issuer()  # the card's city, checked before any try, is then known
    session._select_df(fm.DF01)


def prepare_sm_write(session: CardSession) -> None:
    session.read_issuer()
    session._record_number(fm.item(27))  # located once per card and session
    session._authenticate(fm.DF01, fm.DF01.update_key)


def sm_write(session: CardSession) -> None:
    """GET CHALLENGE + UPDATE RECORD under secure messaging (contact 1's phone)."""
    session.update_item(27, "13511112222")


def measure_step(
    make: Callable[[], Transport],
    prepare: Step,
    step: Step,
    runs: int,
    sam: Sam,
    slot: CountingSlot | None,
) -> tuple[int, int, float]:
    """Card APDUs, SAM APDUs and the median milliseconds of ``step`` alone."""
    counts, sam_counts, times = [], [], []
    for _ in range(runs):
        transport = make()
        session = CardSession(transport, sam)
        prepare(session)
        before, sam_before = session.apdu_count, slot.count if slot else 0
        start = time.perf_counter()
        step(session)
        times.append((time.perf_counter() - start) * 1000)
        counts.append(session.apdu_count - before)
        sam_counts.append((slot.count if slot else 0) - sam_before)
        transport.close()
    assert len(set(counts)) == 1, counts
    assert len(set(sam_counts)) == 1, sam_counts
    return counts[0], sam_counts[0], statistics.median(times)


def visit(n: int) -> VisitRecord:
    return VisitRecord(
        kind=fm.VisitKind.OUTPATIENT,
        visited_at=dt.datetime(2026, 11, 27, 9, 0) + dt.timedelta(minutes=n),
        institution_name="沈阳市第一人民医院",
        institution_code="210102000001",
        department="全科",
        doctor="周医生",
        diagnosis_code="Z00.000",
        diagnosis_name="健康体检",
        treatment="无",
        total_fee="20.00",
    )


def measure(
    make: Callable[[], Transport], op: Callable[[CardSession], object], runs: int, sam: Sam
) -> tuple[int, float]:
    counts, times = [], []
    for _ in range(runs):
        transport = make()
        session = CardSession(transport, sam)
        start = time.perf_counter()
        op(session)
        times.append((time.perf_counter() - start) * 1000)
        counts.append(session.apdu_count)
        transport.close()
    assert len(set(counts)) == 1, counts
    return counts[0], statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-pcsc", action="store_true", help="in-process only")
    args = parser.parse_args()
    profile = json.loads(PROFILE.read_text(encoding="utf-8"))
    sam = SoftwareSam.from_file(KEYS)

    probe = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    read = CardSession(probe, sam).read_all()
    from hcmiddleware.card.records import encode_visit
    from hcmiddleware.card.tlv import parse_run

    visit_lens = []
    for v in read.visits:
        raw = encode_visit(v, fm.VISIT_SLOTS[v.kind].records[0].size)
        body = raw[: -fm.VISIT_TRAILER_LEN]
        items, _ = parse_run(body)
        visit_lens.append(sum(2 + len(value) for _, value in items))
    outpatient_used = sum(1 for v in read.visits if v.kind is fm.VisitKind.OUTPATIENT)
    slots = len(fm.OUTPATIENT_RECORDS)

    ops: list[tuple[str, Callable[[CardSession], object], int]] = [
        (
            "registration read (parts=identity,insurance)",
            lambda s: s.read(parts="identity,insurance"),
            minimum_registration(),
        ),
        (
            "identity read (issuer + cardholder)",
            lambda s: (s.read_issuer(), s.read_cardholder()),
            minimum_identity(),
        ),
        (
            "full read (with internal auth)",
            lambda s: s.read_all(),
            minimum_full(profile, len(read.photo), visit_lens),
        ),
        (
            "outpatient visit append",
            lambda s: s.append_visit(visit(1)),
            minimum_append(fm.VisitKind.OUTPATIENT, drops=outpatient_used == slots - 1),
        ),
    ]

    def local() -> Transport:
        return EmulatedCard(profile, KEYS, base_dir=SAMPLES)

    results: list[Row] = []
    for name, op, minimum in ops:
        count, ms = measure(local, op, args.runs, sam)
        results.append(Row(name, count, minimum, ms))

    if not args.no_pcsc:
        from hcmiddleware.card.pcsc import PcscTransport
        from hcmiddleware.card.vpcd import VpcdCard
        from hcmiddleware.testing.pcscd import USER_READER, Pcscd

        with Pcscd() as daemon:
            for row, (_, op, _) in zip(results, ops, strict=True):
                card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
                daemon.wait_card(False)
                with VpcdCard(card, daemon.user_port):
                    daemon.wait_card(True)

                    def remote(card: EmulatedCard = card) -> Transport:
                        # Personalise the served card afresh so every append run starts
                        # from the same state (re-inserting would cost pcscd's polling).
                        card.__init__(profile, KEYS, base_dir=SAMPLES)  # type: ignore[misc]
                        return PcscTransport(USER_READER)

                    count, ms = measure(remote, op, args.runs, sam)
                    assert count == row.apdus
                    row.pcsc_ms = ms
                daemon.wait_card(False)

            # The identity read again, with the SAM as a card in reader 1 (PcscSam
            # driving the SAM emulator by APDU), as on a real two-slot terminal.
            from hcmiddleware.sam.emulated import DEFAULT_TEST_PIN, EmulatedSam
            from hcmiddleware.sam.keyset import load_keyset
            from hcmiddleware.sam.pcsc import PcscSam
            from hcmiddleware.testing.pcscd import SAM_READER

            name, op, minimum = ops[1]
            keyset = load_keyset(KEYS)
            local_sam = PcscSam(EmulatedSam(keyset), DEFAULT_TEST_PIN)
            count, ms = measure(local, op, args.runs, local_sam)
            row = Row(name.replace(")", ", SAM card)"), count, minimum, ms)
            card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
            daemon.wait_card(False)
            with VpcdCard(card, daemon.user_port), VpcdCard(EmulatedSam(keyset), daemon.sam_port):
                daemon.wait_card(True)
                daemon.wait_card(True, SAM_READER)
                sam_slot = PcscTransport(SAM_READER)
                with PcscSam(sam_slot, DEFAULT_TEST_PIN) as pcsc_sam:
                    count, row.pcsc_ms = measure(
                        lambda: PcscTransport(USER_READER), op, args.runs, pcsc_sam
                    )
                sam_slot.close()
            daemon.wait_card(False)
            results.append(row)

    results += sam_rows(profile, args.runs, pcsc=not args.no_pcsc)

    print(
        f"{'operation':<50} {'card APDUs':>10} {'minimum':>8} {'SAM APDUs':>9} "
        f"{'in-process ms':>14} {'pcscd+vpcd ms':>14}"
    )
    for r in results:
        pcsc = f"{r.pcsc_ms:14.3f}" if r.pcsc_ms is not None else f"{'-':>14}"
        sam_apdus = f"{r.sam_apdus:>9}" if r.sam_apdus is not None else f"{'-':>9}"
        print(f"{r.name:<50} {r.apdus:>10} {r.minimum:>8} {sam_apdus} {r.local_ms:>14.3f} {pcsc}")
    registration, full = results[0], results[2]
    print()
    print(f"{'':<28} {'registration':>14} {'full read':>14}")
    print(f"{'card APDUs':<28} {registration.apdus:>14} {full.apdus:>14}")
    print(f"{'in-process ms':<28} {registration.local_ms:>14.3f} {full.local_ms:>14.3f}")
    if registration.pcsc_ms is not None and full.pcsc_ms is not None:
        print(f"{'pcscd + vpcd ms':<28} {registration.pcsc_ms:>14.3f} {full.pcsc_ms:>14.3f}")
        verdict = "met" if registration.pcsc_ms <= GOAL_MS else "NOT met"
        print(f"goal: registration card I/O <= {GOAL_MS} ms through pcscd: {verdict}")


def sam_rows(profile: dict[str, Any], runs: int, *, pcsc: bool) -> list[Row]:
    """Authentication and a secure-messaging write, software SAM and SAM card."""
    from hcmiddleware.sam.emulated import DEFAULT_TEST_PIN, EmulatedSam
    from hcmiddleware.sam.keyset import load_keyset
    from hcmiddleware.sam.pcsc import PcscSam

    keyset = load_keyset(KEYS)
    steps: list[tuple[str, Step, Step]] = [
        ("authentication", prepare_authentication, authenticate_df01),
        ("secure-messaging write (item 27)", prepare_sm_write, sm_write),
    ]
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)

    def local() -> Transport:
        card.reset()
        return card

    rows: dict[tuple[str, str], Row] = {}
    software = SoftwareSam(keyset)
    in_process_slot = CountingSlot(EmulatedSam(keyset))
    card_sam = PcscSam(in_process_slot, DEFAULT_TEST_PIN)
    for name, prepare, step in steps:
        for kind, sam, slot in (
            ("software SAM", software, None),
            ("SAM card", card_sam, in_process_slot),
        ):
            count, sam_count, ms = measure_step(local, prepare, step, runs, sam, slot)
            shown = sam_count if slot is not None else None  # a software SAM sends none
            rows[name, kind] = Row(f"{name}, {kind}", count, 2, ms, sam_apdus=shown)
    if pcsc:
        from hcmiddleware.card.pcsc import PcscTransport
        from hcmiddleware.card.vpcd import VpcdCard
        from hcmiddleware.testing.pcscd import SAM_READER, USER_READER, Pcscd

        with Pcscd() as daemon:
            daemon.wait_card(False)
            daemon.wait_card(False, SAM_READER)
            served = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
            with VpcdCard(served, daemon.user_port), VpcdCard(EmulatedSam(keyset), daemon.sam_port):
                daemon.wait_card(True)
                daemon.wait_card(True, SAM_READER)
                sam_slot = PcscTransport(SAM_READER)
                remote_slot = CountingSlot(sam_slot)
                with PcscSam(remote_slot, DEFAULT_TEST_PIN) as remote_sam:
                    for name, prepare, step in steps:
                        for kind, sam, slot in (
                            ("software SAM", software, None),
                            ("SAM card", remote_sam, remote_slot),
                        ):
                            count, sam_count, ms = measure_step(
                                lambda: PcscTransport(USER_READER), prepare, step, runs, sam, slot
                            )
                            row = rows[name, kind]
                            assert count == row.apdus
                            assert slot is None or sam_count == row.sam_apdus
                            row.pcsc_ms = ms
                sam_slot.close()
            daemon.wait_card(False)
            daemon.wait_card(False, SAM_READER)
    return list(rows.values())


if __name__ == "__main__":
    main()
