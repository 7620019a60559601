"""The randomized fault campaign: mixed movements against faulty peers and a dying journal.

One *run* is: fresh reference bank and insurer ledgers and a fresh journal database;
a seeded sequence of operations (top-up, pay, refund, settlement with the fund's part
returned, cancellation, and repeats of earlier requests with the same key); faults on
every remote step (late answers beyond the client timeout, SOAP faults, connections
dropped after the server committed, duplicate delivery, malformed answers) and the
middleware "killed" at journal write boundaries. A kill abandons the journal in the
middle of the operation — nothing after the crash point runs — and a fresh journal
over the same database recovers, as a restarted process would (every few kills the
whole Middleware, adapters included, is rebuilt too). Recovery itself is killed as
well. Then the faults stop, the journal recovers once more, unfinished settlements
are finished by running their flow again, and the run is checked:

- nothing is in flight;
- each journal entry and the remote ledger agree on whether money moved, and on the
  amount, to the cent; nothing moved at the bank or insurer that the journal lacks;
- each card's bank balance is what the confirmed entries add up to;
- no refund exceeds its payment, each settled bill's fund part went back to the card;
- daily reconciliation is clean, and flags exactly the tampered statement lines.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hcm_bank_soap import BankSoap
from hcm_bank_soap.reference import serve as serve_bank
from hcm_insurance_soap import InsuranceSoap
from hcm_insurance_soap.reference import serve as serve_insurer
from money_peers import bank_plan, charges, insurer_plan

from hcmiddleware.errors import MoneyError
from hcmiddleware.flows import payment, settlement
from hcmiddleware.journal import IN_FLIGHT, Journal, Movement, reconcile
from hcmiddleware.models import PaymentStatus as P
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.plugin import embedded_config

CENT = Decimal("0.01")
ID_NUMBERS = ["110105198001010032", "110105198001010016", "110105198001010040"]


class SimulatedCrash(BaseException):
    """The middleware process dies here (BaseException: no handler may swallow it)."""


@dataclass
class RunResult:
    """What one run did and found."""

    seed: int
    operations: int = 0
    crashes: int = 0
    remote_faults: Counter[str] = field(default_factory=Counter)
    tampered_lines: int = 0
    discrepancies: list[str] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    confirmed_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def faults(self) -> int:
        """Every fault injected in this run."""
        return self.crashes + sum(self.remote_faults.values()) + self.tampered_lines


@dataclass
class CampaignSettings:
    """How hard to push (rates per request / per crash point)."""

    operations: int = 120
    crash_rate: float = 0.3
    delay: float = 0.01
    fault: float = 0.25
    drop: float = 0.25
    duplicate: float = 0.4
    malformed: float = 0.2
    client_timeout: float = 0.15
    delay_seconds: float = 0.2
    full_restart_every: int = 40


class Campaign:
    """One run of the campaign in folder ``where``."""

    def __init__(self, where: Path, seed: int, settings: CampaignSettings) -> None:
        self.where = where
        self.seed = seed
        self.s = settings
        self.rng = random.Random(seed)
        self.result = RunResult(seed=seed)
        self.cards = [f"11000000{seed % 10000:04d}{i:04d}" for i in range(3)]
        self.bank = serve_bank(where / "bank.db")
        self.insurer = serve_insurer(where / "insurer.db")
        for card, id_number in zip(self.cards, ID_NUMBERS, strict=True):
            self.bank.service.ledger.bind(card, "6222000011112222", id_number)  # type: ignore[attr-defined]
        self.crashing = False
        self.mw: Middleware | None = None
        self.journal = self._start(full=True)
        self.settle_keys: dict[str, tuple[str, Any, list[str]]] = {}

    # -- the "process" ---------------------------------------------------------------

    def _crash_point(self, point: str) -> None:
        if self.crashing and self.rng.random() < self.s.crash_rate:
            self.result.crashes += 1
            raise SimulatedCrash(point)

    def _start(self, *, full: bool) -> Journal:
        if full or self.mw is None:
            if self.mw is not None:
                self.mw.close()
            config = embedded_config(
                self.where / "hcm-data",
                middleware={"institution_code": "210100000001"},
                database={"url": f"sqlite:///{self.where / 'journal.db'}"},
                plugins={
                    "bank-soap": {"wsdl": self.bank.wsdl_url, "timeout": self.s.client_timeout},
                    "insurance-soap": {
                        "wsdl": self.insurer.wsdl_url,
                        "timeout": self.s.client_timeout,
                    },
                },
            )
            self.mw = Middleware(
                config, plugins={"bank-soap": BankSoap(), "insurance-soap": InsuranceSoap()}
            )
        # a restarted process migrates at start; the schema cannot change in between
        return Journal(self.mw, crash_point=self._crash_point, migrate=full)

    def _restart(self) -> None:
        """A new process: fresh journal (sometimes a fresh Middleware), then recovery."""
        full = self.result.crashes % self.s.full_restart_every == 0
        while True:
            self.journal = self._start(full=full)
            try:
                self.journal.recover()
                return
            except SimulatedCrash:
                full = False  # killed again during recovery: start once more

    def _guarded(self, action: Callable[[], Any]) -> bool:
        """Run ``action``; on a crash restart and say so (True: it crashed)."""
        try:
            action()
        except SimulatedCrash:
            self._restart()
            return True
        except MoneyError:
            pass  # declined, refused, still unknown: all are answers the cashier sees
        return False

    # -- the workload ----------------------------------------------------------------

    def _amount(self, low: int, high: int) -> Decimal:
        return (Decimal(self.rng.randint(low * 100, high * 100)) * CENT).quantize(CENT)

    def run(self) -> RunResult:
        """Run the operations with faults on, then settle and check everything."""
        self.bank.set_faults(
            bank_plan(
                seed=self.seed, delay=self.s.delay, fault=self.s.fault, drop=self.s.drop,
                duplicate=self.s.duplicate, malformed=self.s.malformed,
                delay_seconds=self.s.delay_seconds,
            )
        )  # fmt: skip
        self.insurer.set_faults(
            insurer_plan(
                seed=self.seed + 1, delay=self.s.delay, fault=self.s.fault, drop=self.s.drop,
                duplicate=self.s.duplicate, malformed=self.s.malformed,
                delay_seconds=self.s.delay_seconds,
            )
        )  # fmt: skip
        self.crashing = True
        done: list[Callable[[], Any]] = []
        for i in range(self.s.operations):
            op = self._pick(i)
            if op is None:
                continue
            self.result.operations += 1
            crashed = self._guarded(op)
            done.append(op)
            if crashed and self.rng.random() < 0.5:
                self._guarded(op)  # the cashier presses again: same key
            if done and self.rng.random() < 0.1:
                self._guarded(self.rng.choice(done))  # a duplicate request, much later
        self.crashing = False
        self.bank.set_faults(bank_plan())
        self.insurer.set_faults(insurer_plan())
        time.sleep(self.s.delay_seconds + 0.1)  # late requests land (and are refused)
        self.journal.recover()
        for key in list(self.settle_keys):
            self._finish_settlement(key)
        self.result.remote_faults = self.bank.injected + self.insurer.injected
        self._check()
        self._check_reconciliation()
        return self.result

    def _pick(self, i: int) -> Callable[[], Any] | None:
        roll = self.rng.random()
        card = self.rng.choice(self.cards)
        key = f"op-{i}"
        if roll < 0.25:
            amount = self._amount(50, 500)
            return lambda: payment.top_up(self.journal, key=key, card_number=card, amount=amount)
        if roll < 0.55:
            amount = self._amount(1, 120)
            return lambda: payment.pay(self.journal, key=key, card_number=card, amount=amount)
        if roll < 0.7:
            pays = self.journal.entries(state=P.CONFIRMED, channel="bank")
            # a visit's advance payments belong to its settlement, not to the counter
            pays = [
                m for m in pays if m.kind == "pay" and not m.idempotency_key.endswith(":advance")
            ]
            if not pays:
                return None
            original = self.rng.choice(pays)
            left = self.journal.refundable(original.transaction_id)
            if left <= 0:
                return None
            amount = min(left, self._amount(1, 60))
            holder = ID_NUMBERS[self._card_of(original)]
            return lambda: payment.refund(
                self.journal, key=key, card_number=self._card_number(original),
                original_transaction_id=original.transaction_id, amount=amount,
                holder_id_number=holder, presented_id_number=holder,
            )  # fmt: skip
        if roll < 0.93:
            total = self._amount(10, 200)
            first = (total * Decimal("0.6")).quantize(CENT)
            bill = charges(str(first), str(total - first), visit=key)
            scheme = self.rng.choice(["basic", "rural"])

            def settle_op() -> None:
                advance = payment.pay(
                    self.journal, key=f"{key}:advance", card_number=card, amount=total
                )
                self.settle_keys[key] = (card, (scheme, bill), [advance.transaction_id])
                self._settle(key)

            return settle_op
        settled = [
            m
            for m in self.journal.entries(state=P.CONFIRMED, channel="insurer")
            if m.kind == "settle"
        ]
        if not settled:
            return None
        target = self.rng.choice(settled)
        assert target.settlement_id is not None
        sid = target.settlement_id
        return lambda: self.journal.cancel_settlement(key=key, settlement_id=sid)

    def _card_of(self, movement: Movement) -> int:
        return self.cards.index(self._card_number(movement))

    def _card_number(self, movement: Movement) -> str:
        with self.journal.engine.connect() as conn:
            from hcmiddleware.journal.tables import JournalEntry

            table = JournalEntry.__table__
            return str(
                conn.execute(
                    table.select().where(table.c.transaction_id == movement.transaction_id)
                )
                .one()
                .card_number
            )

    def _settle(self, key: str, attempt: int = 0) -> None:
        card, (scheme, bill), advances = self.settle_keys[key]
        settlement.settle_visit(
            self.journal, key=f"{key}#{attempt}", scheme=scheme, insured_id="INS-" + card,
            patient_id="P1", visit_id=key, charges=bill, card_number=card,
            advance_transaction_ids=advances,
        )  # fmt: skip

    def _finish_settlement(self, key: str) -> None:
        """With faults off: run the flow until it has settled and returned, or declined."""
        for attempt in range(6):
            settled = self.journal.by_key(f"{key}#{attempt}:settle")
            if settled is not None and settled.state in (P.FAILED, P.REVERSED):
                continue  # this attempt moved nothing: the cashier settles again
            try:
                self._settle(key, attempt)
            except MoneyError as exc:
                self.result.discrepancies.append(f"settlement {key} cannot finish: {exc}")
            return

    # -- the checks ------------------------------------------------------------------

    def _fail(self, message: str) -> None:
        self.result.discrepancies.append(message)

    def _check(self) -> None:
        from hcmiddleware.journal.tables import JournalEntry

        table = JournalEntry.__table__
        with self.journal.engine.connect() as conn:
            rows = {r.transaction_id: r for r in conn.execute(table.select())}
        bank = {t.transaction_id: t for t in self.bank.service.ledger.transactions()}  # type: ignore[attr-defined]
        insurer = {r.message_id: r for r in self.insurer.service.ledger.records()}  # type: ignore[attr-defined]
        balances = dict.fromkeys(self.cards, Decimal("0.00"))
        for tid, row in rows.items():
            state = P(row.state)
            self.result.states[state.value] += 1
            if state is P.CONFIRMED:
                self.result.confirmed_kinds[row.kind] += 1
            if state in IN_FLIGHT:
                self._fail(f"{tid} still {state.value}")
            amount = Decimal(row.amount).quantize(CENT)
            if row.channel == "bank":
                theirs = bank.get(tid)
                moved = theirs is not None and theirs.status == "CONFIRMED"
                if (state is P.CONFIRMED) != moved:
                    self._fail(f"{tid}: journal {state.value}, bank {theirs and theirs.status}")
                if moved and theirs is not None and theirs.amount != amount:
                    self._fail(f"{tid}: journal {amount}, bank {theirs.amount}")
                if state is P.CONFIRMED:
                    sign = -1 if row.kind == "pay" else 1
                    balances[row.card_number] += sign * amount
            else:
                rec = insurer.get(tid)
                live = {"settle": ("settled", "cancelled"), "cancel": ("cancelled",)}[row.kind]
                moved = rec is not None and rec.kind == row.kind and rec.status in live
                if (state is P.CONFIRMED) != moved:
                    self._fail(f"{tid}: journal {state.value}, insurer {rec and rec.status}")
                if (
                    moved
                    and rec is not None
                    and (rec.total != amount or rec.fund_paid != Decimal(row.fund_paid))
                ):
                    self._fail(f"{tid}: amounts differ from the insurer's")
        for tid, t in bank.items():
            if t.status == "CONFIRMED" and (tid not in rows or rows[tid].state != "confirmed"):
                self._fail(f"bank moved {tid} which the journal does not hold as confirmed")
            if t.kind == "refund" and t.status == "CONFIRMED":
                paid = bank[rows[tid].original_transaction_id].amount
                refunded = sum(
                    (
                        r.amount
                        for r in bank.values()
                        if r.kind == "refund"
                        and r.status == "CONFIRMED"
                        and rows[r.transaction_id].original_transaction_id
                        == rows[tid].original_transaction_id
                    ),
                    Decimal(0),
                )
                if refunded > paid:
                    self._fail(f"refunds of {rows[tid].original_transaction_id} exceed it")
        for mid, r in insurer.items():
            live = r.status in ("settled", "cancelled") and r.kind in ("settle", "cancel")
            if live and (mid not in rows or rows[mid].state != "confirmed"):
                self._fail(f"insurer holds {mid} which the journal does not hold as confirmed")
        for card, expected in balances.items():
            actual = self.bank.service.ledger.balance(card)  # type: ignore[attr-defined]
            if actual != expected:
                self._fail(f"card {card}: bank balance {actual}, journal says {expected}")
        for key in self.settle_keys:
            for attempt in range(6):
                settled = self.journal.by_key(f"{key}#{attempt}:settle")
                if settled is None or settled.state is not P.CONFIRMED:
                    continue
                returned = sum(
                    (
                        m.amount
                        for m in self.journal.entries(state=P.CONFIRMED, channel="bank")
                        if m.idempotency_key.startswith(f"{key}#{attempt}:return:")
                    ),
                    Decimal(0),
                )
                if returned != settled.fund_paid:
                    self._fail(f"{key}: fund paid {settled.fund_paid}, returned {returned}")

    def _check_reconciliation(self) -> None:
        day = datetime.now(UTC).date()
        clean = reconcile(self.journal, day)
        if not clean.ok:
            self._fail(f"reconciliation not clean: {clean.as_dict()}")
        self.bank.set_faults(bank_plan(statement=1.0, operations=frozenset({"Statement"})))
        self.insurer.set_faults(
            insurer_plan(statement=1.0, operations=frozenset({"ReconcileDetail"}))
        )
        tampered = reconcile(self.journal, day)
        self.result.tampered_lines = sum(
            1 for s in tampered.sources if s.matched or s.discrepancies
        )
        found = [d.kind for s in tampered.sources for d in s.discrepancies]
        if found != ["amount_mismatch"] * self.result.tampered_lines:
            self._fail(f"tampered statements gave {found}")

    def close(self) -> None:
        """Stop the servers and the Middleware."""
        if self.mw is not None:
            self.mw.close()
        self.bank.stop()
        self.insurer.stop()


def run_one(args: tuple[str, int, CampaignSettings]) -> RunResult:
    """One run in its own folder (a picklable entry point for a process pool)."""
    where, seed, settings = args
    folder = Path(where)
    folder.mkdir(parents=True, exist_ok=True)
    campaign = Campaign(folder, seed, settings)
    try:
        return campaign.run()
    finally:
        campaign.close()
