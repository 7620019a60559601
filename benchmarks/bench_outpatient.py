"""End-to-end outpatient registration: card through pcscd + vpcd, index, HIS over MLLP.

What a kiosk's "register" costs, step by step, as :class:`OutpatientFlow` runs it:
the card read (PC/SC through pcscd and the vpcd virtual reader, SAM authentication,
decoding), the resident index, the hospital patient ID, the registration and the
queue position from the reference HIS over HL7 v2.5 / MLLP on loopback.

Each step's time is split three ways:

* card I/O — time inside ``transmit`` (pcscd, vpcd, the emulated card's answers);
* HIS — time inside the MLLP round trips (the wire plus the reference HIS parsing,
  validating and storing the message);
* middleware — everything else: SAM cryptograms, decoding, the index, the flow, the
  dispatcher, the adapter building and validating HL7, the audit log; of which
  "adapter" is the HL7 adapter's own part of the HIS hook calls (building the
  message, the strict v2.5 check — hl7apy's full parse once per message shape, see
  docs/his.md — parsing the answer) with the dispatcher's worker thread.

Two kinds of visit: a returning patient (resident and hospital patient ID already in
the index: the HIS is asked only to register) and a first visit (a new card: the
resident is enrolled and the HIS finds or creates the patient: a PIX query, ADT^A28,
a PIX query). Goal: ≤ 150 ms end to end, the middleware's share ≤ 20 ms.

The cards differ only in card and ID number: every new resident shares name, sex and
birth date with all earlier ones, so the index's enrolment loads and scores a block of
candidates that grows with each card — more than a real population gives it.

The card read takes what the flow's ``identify`` step reads (identity, insurance and
phones: ``Journey.identify_parts``, less what the caller may not see); ``--all-parts``
reads the whole card, as this benchmark did before the flow read less.
``--session`` runs each visit as a kiosk's caller (``mw.acting_as``: role checks, cut
answers, the caller in every audit entry), as a kiosk behind the agent does;
``--profile`` adds a cProfile of the returning visits (cumulative time) after the
tables; ``--cards`` sets how many cards are measured. The last lines give the commits
on the installation's database and the audit entries of one visit.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hcm_his_reference import ReferenceHis

from hcmiddleware import Caller, Middleware, Session
from hcmiddleware.access.policy import CARD_PART_CATEGORY, Category
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.filemap import CardPart
from hcmiddleware.card.pcsc import PcscTransport
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.config import parse_config
from hcmiddleware.dispatch import CallRecord
from hcmiddleware.empi.identity import check_character
from hcmiddleware.flows.journey import Identified
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.keyfiles import scratch_empi_keys
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS
from hcmiddleware.testing.pcscd import USER_READER, Pcscd

N = 30
HOSPITAL = "210100000001"
PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
STEPS = ("card read", "index", "hospital patient ID", "registration", "queue position")


class Clock:
    """Where the time of one visit went: per step, card I/O, HIS and the rest."""

    def __init__(self) -> None:
        self.step = ""
        self.total: dict[str, float] = defaultdict(float)
        self.card: dict[str, float] = defaultdict(float)
        self.his: dict[str, float] = defaultdict(float)
        self.hooks: dict[str, float] = defaultdict(float)

    def observe(self, record: CallRecord) -> None:
        """Count a HIS hook call's duration (adapter + dispatcher + HIS) to the step."""
        if record.hook.startswith("hcm_his_"):
            self.hooks[self.step] += record.duration

    @contextmanager
    def measure(self, step: str) -> Iterator[None]:
        self.step = step
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.total[step] += time.perf_counter() - t0

    def timed(self, bucket: dict[str, float], fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                bucket[self.step] += time.perf_counter() - t0

        return wrapper


class TimedTransport:
    """A PC/SC transport whose ``transmit`` time is counted as card I/O."""

    def __init__(self, inner: PcscTransport, clock: Clock) -> None:
        self.inner = inner
        self.reader = inner.reader
        self.transmit = clock.timed(clock.card, inner.transmit)

    @property
    def atr(self) -> bytes:
        """The card's ATR."""
        return self.inner.atr

    def close(self) -> None:
        """Release the card."""
        self.inner.close()


def card_for(i: int, folder: Path) -> EmulatedCard:
    """A new resident's card: the sample card with its own number and ID number."""
    profile = json.loads(PROFILE.read_text(encoding="utf-8"))
    first17 = f"21010219850312{2 * i + 1:03d}"  # odd: a man, as on the card
    profile["items"]["id_number"] = first17 + check_character(first17)
    profile["items"]["card_number"] = f"2100000001{i:08d}"
    profile["photo"] = str(PROFILE.parent / profile["photo"])
    path = folder / f"card-{i}.json"
    path.write_text(json.dumps(profile, ensure_ascii=False), encoding="utf-8")
    return EmulatedCard.from_files(path, TEST_ISSUER_KEYS)


def visit(
    flow: OutpatientFlow,
    services: Middleware | Session,
    clock: Clock,
    slot: datetime,
    parts: frozenset[CardPart] | None,
) -> None:
    """One kiosk registration, step by step, as the flow runs it."""
    transport = TimedTransport(PcscTransport(USER_READER), clock)
    try:
        with clock.measure("card read"):
            card = services.terminal.read(transport, actor="bench-kiosk", parts=parts)
    finally:
        transport.close()
    with clock.measure("index"):
        resident = services.residents.enrol_from_card(card)
    who = Identified(resident=resident, card=card)
    with clock.measure("hospital patient ID"):
        patient = flow.patient(who)
    with clock.measure("registration"):
        registration = flow.register(patient, department_code="NEI", slot_start=slot)
    with clock.measure("queue position"):
        flow.queue(registration)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def table(title: str, clocks: list[Clock]) -> list[str]:
    lines = [
        f"\n{title} (n={len(clocks)}; ms, median / p95)",
        f"{'step':<20} {'wall':>15} {'card I/O':>15} {'HIS':>15} {'middleware':>15}"
        f" {'(adapter)':>15}",
    ]

    def cell(values: list[float]) -> str:
        ms = [v * 1e3 for v in values]
        return f"{statistics.median(ms):>7.2f} /{pct(ms, 0.95):>6.2f}"

    for step in (*STEPS, "total"):

        def part(c: Clock, bucket: str, step: str = step) -> float:
            source: dict[str, float] = getattr(c, bucket)
            return sum(source.values()) if step == "total" else source[step]

        wall = [part(c, "total") for c in clocks]
        io = [part(c, "card") for c in clocks]
        his = [part(c, "his") for c in clocks]
        own = [w - i - h for w, i, h in zip(wall, io, his, strict=True)]
        adapter = [k - h for k, h in zip([part(c, "hooks") for c in clocks], his, strict=True)]
        lines.append(f"{step:<20} {cell(wall)} {cell(io)} {cell(his)} {cell(own)} {cell(adapter)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=N, help="cards measured (one warm-up more)")
    parser.add_argument(
        "--session", action="store_true", help="run each visit as a kiosk's caller (acting_as)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the returning visits (cProfile)"
    )
    parser.add_argument(
        "--all-parts",
        action="store_true",
        help="read the whole card, not only what the flow's identify step reads",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hcm-bench-outpatient-"))
    profile = cProfile.Profile()
    commits = [0]
    per_visit: dict[str, tuple[int, int]] = {}
    with ReferenceHis(folder / "his.db", hospital_code=HOSPITAL) as his, Pcscd() as pcscd:
        host, port = his.mllp_address
        config = parse_config(
            {
                "middleware": {"data_dir": str(folder / "hcm"), "institution_code": HOSPITAL},
                "sam": {"keys": str(TEST_ISSUER_KEYS)},
                "empi": scratch_empi_keys(folder / "keys"),  # a site's come from `hcm init`
                "plugins": {"enabled": ["his-hl7"], "his-hl7": {"host": host, "port": port}},
                "logging": {"level": "WARNING"},
            }
        )
        with Middleware(config) as mw:
            client = mw.pm.get_plugin("his-hl7").client  # type: ignore[union-attr]
            round_trip = client._send  # one MLLP exchange: the wire and the HIS
            services: Middleware | Session = mw
            if args.session:
                services = mw.acting_as(Caller(user="kiosk-01", role="kiosk", terminal="kiosk-01"))
            flow = OutpatientFlow(services, actor="bench-kiosk")
            # what the flow's identify step reads: the parts the caller may see
            parts: frozenset[CardPart] | None = None
            if not args.all_parts:
                seen = services.visible() if isinstance(services, Session) else set(Category)
                parts = frozenset(
                    p for p in flow.identify_parts if CARD_PART_CATEGORY[p.value] in seen
                )
            sa.event.listen(
                mw.engine, "commit", lambda _conn: commits.__setitem__(0, commits[0] + 1)
            )
            base = (datetime.now() + timedelta(days=2)).replace(
                hour=8, minute=0, second=0, microsecond=0
            )
            first: list[Clock] = []
            returning: list[Clock] = []
            pcscd.wait_card(False)
            for i in range(args.cards + 1):
                card = card_for(i, folder)
                with VpcdCard(card, pcscd.user_port):
                    pcscd.wait_card(True)
                    for kind, bucket in (("first", first), ("returning", returning)):
                        clock = Clock()
                        detach = mw.dispatcher.add_observer(clock.observe)
                        client._send = clock.timed(clock.his, round_trip)
                        slot = base + timedelta(days=i, minutes=0 if kind == "first" else 30)
                        profiling = args.profile and i > 0 and kind == "returning"
                        before = (commits[0], mw.audit.head()[0])
                        if profiling:
                            profile.enable()
                        visit(flow, services, clock, slot, parts)
                        if profiling:
                            profile.disable()
                        per_visit[kind] = (commits[0] - before[0], mw.audit.head()[0] - before[1])
                        detach()
                        if i > 0:  # the first card warms up imports, connections, caches
                            bucket.append(clock)
                pcscd.wait_card(False)
    for line in table("First visit: new resident, the HIS finds or creates the patient", first):
        print(line)
    for line in table("Returning patient: the index knows the hospital patient ID", returning):
        print(line)
    print("\ngoal: total ≤ 150 ms, middleware ≤ 20 ms")
    print("one visit" + (" as a kiosk's caller" if args.session else "") + ":")
    for kind, (made, entries) in per_visit.items():
        print(f"  {kind:<9} {made} commits on the installation's database, {entries} audit entries")
    if args.profile:
        print(f"\nthe {len(returning)} returning visits, by cumulative time:")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
