"""Bad input: fuzzed QR texts and fuzzed list updates give typed errors only.

``tox -e fuzz`` runs 100,000 of each (HCM_FUZZ_CASES); the suite runs 10,000 of each,
from the same seeds, to stay within its time.

The texts are mutations of genuine codes (truncated, wrong lengths, bad hex, huge,
wrong kind digit, case flips, inserted separators and bytes …). Every one is parsed;
a seeded sample also goes through the whole check at a terminal, and none but the
genuine text may be accepted. The updates are mutations of a genuine signed list
(truncated JSON, wrong types, wrong versions, another key's signature, a delta that
skips a version …); each is parsed and applied, and after every refusal the list in
force is the one before.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware
from hcmiddleware.ehc.codes import DynamicCode, StaticCode, parse_code
from hcmiddleware.ehc.revocations import parse_list
from hcmiddleware.errors import EhcError, EhcFormatError, EhcRevocationListError
from hcmiddleware.models import EhcRevocation

from .conftest import enrol, other_signer, signer

TEXTS = UPDATES = int(os.environ.get("HCM_FUZZ_CASES", "0")) or 10_000
CHECKED = TEXTS // 50  # of the texts, how many also go through Middleware.ehc.verify
HEX = "0123456789ABCDEF"


def _mutations(rng: random.Random) -> list[Callable[[str], str]]:
    def truncate(t: str) -> str:
        return t[: rng.randrange(len(t))]

    def extend(t: str) -> str:
        return t + rng.choice(["0", "A", ":", ":1", "::", " x", "\x00"]) * rng.randint(1, 3)

    def bad_hex(t: str) -> str:
        i = rng.randrange(len(t))
        return t[:i] + rng.choice("GZgz-_/+=é中") + t[i + 1 :]

    def flip_hex(t: str) -> str:
        i = rng.randrange(len(t))
        return t[:i] + rng.choice(HEX) + t[i + 1 :]

    def case(t: str) -> str:
        i = rng.randrange(len(t))
        return t[:i] + t[i:].lower()

    def huge(t: str) -> str:
        return t * rng.choice([3, 50, 5000]) if len(t) < 1000 else t

    def kind(t: str) -> str:
        parts = t.split(":")
        if len(parts) > 1:
            parts[1] = rng.choice(["0", "3", "9", "12", "", "1 ", "２"])
        return ":".join(parts)

    def drop_part(t: str) -> str:
        parts = t.split(":")
        del parts[rng.randrange(len(parts))]
        return ":".join(parts)

    def swap_parts(t: str) -> str:
        parts = t.split(":")
        i, j = rng.randrange(len(parts)), rng.randrange(len(parts))
        parts[i], parts[j] = parts[j], parts[i]
        return ":".join(parts)

    def time_field(t: str) -> str:
        parts = t.split(":")
        if len(parts) == 7:
            parts[rng.choice([3, 4])] = rng.choice(
                ["", "-1", "00", "1e9", "99999999999", "１２３", str(rng.randrange(10**12))]
            )
        return ":".join(parts)

    def random_bytes(t: str) -> str:
        return "".join(map(chr, rng.choices(range(0x3000), k=rng.randrange(0, 300))))

    def whitespace(t: str) -> str:
        i = rng.randrange(len(t))
        return t[:i] + rng.choice([" ", "\t", "\n", "\r\n", "\u3000", "\u200b"]) + t[i:]

    return [
        truncate, extend, bad_hex, flip_hex, case, huge, kind, drop_part, swap_parts,
        time_field, random_bytes, whitespace,
    ]  # fmt: skip


@pytest.mark.fuzz
def test_fuzzed_texts_give_typed_errors_only(mw: Middleware) -> None:
    rng = random.Random(20261203)
    resident = enrol(mw)
    ecard_id = mw.ehc.issue(resident.resident_id)
    genuine = [
        mw.ehc.dynamic_code(ecard_id),
        mw.ehc.static_code(ecard_id),
        mw.ehc.static_code(ecard_id, "210102"),
    ]
    parsed_genuine = {g: parse_code(g) for g in genuine}
    mutations = _mutations(rng)
    outcomes: dict[str, int] = {}
    checked = 0
    for i in range(TEXTS):
        original = genuine[i % len(genuine)]
        text = original
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            text = rng.choice(mutations)(text) or text
        try:
            code = parse_code(text)
        except EhcFormatError as exc:
            outcomes[exc.reason] = outcomes.get(exc.reason, 0) + 1
            continue
        assert isinstance(code, StaticCode | DynamicCode)
        if isinstance(code, DynamicCode) and code != parsed_genuine[genuine[0]]:
            # a dynamic code that still parses is a forgery: its signature must fail
            assert not mw.ehc.keys["TEST1"][1].verify(code.signature, code.signed) or (
                code.signed == parsed_genuine[genuine[0]].signed  # type: ignore[union-attr]
            )
        if checked < CHECKED and i % (TEXTS // CHECKED) == 0:
            checked += 1
            try:
                result = mw.ehc.verify(text, care_step="fuzz", terminal_id=f"t{i}")
            except EhcError:
                continue
            # accepted: it must be the genuine code, however it was spelled
            assert code in parsed_genuine.values()
            assert result.ecard_id == ecard_id
    assert sum(outcomes.values()) > TEXTS * 0.8  # most mutations break the shape
    assert {"too_long", "card_id", "kind", "signature", "characters"} <= set(outcomes)


def _list_mutations(rng: random.Random) -> list[Callable[[dict[str, Any], str], Any]]:
    def truncated(_d: dict[str, Any], raw: str) -> Any:
        return raw[: rng.randrange(len(raw))]

    def garbage(_d: dict[str, Any], raw: str) -> Any:
        return rng.randbytes(rng.randrange(1, 200))

    def wrong_type(d: dict[str, Any], _raw: str) -> Any:
        key = rng.choice(list(d))
        d[key] = rng.choice([None, [], {}, "x", -1, 1.5, True, "9" * 400])
        return d

    def missing(d: dict[str, Any], _raw: str) -> Any:
        d.pop(rng.choice(list(d)))
        return d

    def bad_entry(d: dict[str, Any], _raw: str) -> Any:
        if d["revoked"]:
            entry = d["revoked"][rng.randrange(len(d["revoked"]))]
            entry[rng.choice(["ecard_id", "revoked_at", "reason"])] = rng.choice(
                ["", "AB" * 31, "ab" * 32, "GG" * 32, "2026-13-01", "stolen", 7]
            )
        return d

    def version(d: dict[str, Any], _raw: str) -> Any:
        d["version"] = rng.choice([0, 1, 2, 4, 2**40, -5])
        d["base_version"] = rng.choice([None, 0, 1, 2, 3, 5, 99])
        return d

    def signature(d: dict[str, Any], _raw: str) -> Any:
        sig = list(d["signature"])
        sig[rng.randrange(len(sig))] = rng.choice(HEX)
        d["signature"] = rng.choice(["".join(sig), d["signature"][:-2], d["signature"].lower()])
        return d

    def extra_field(d: dict[str, Any], _raw: str) -> Any:
        d[rng.choice(["note", "Version", "sig"])] = "x"
        return d

    def huge(_d: dict[str, Any], raw: str) -> Any:
        return raw + " " * rng.choice([10, 10_000])

    return [
        truncated, garbage, wrong_type, missing, bad_entry, version, signature,
        extra_field, huge,
    ]  # fmt: skip


@pytest.mark.fuzz
def test_fuzzed_list_updates_leave_the_list_in_force(mw: Middleware, key_dir: Path) -> None:
    rng = random.Random(3)
    issuer = signer(mw)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    ids = ["".join(rng.choice(HEX) for _ in range(64)) for _ in range(6)]
    mw.ehc.apply_revocations(
        issuer.revocation_list(
            version=2, revoked=[EhcRevocation(ecard_id=i, revoked_at=at) for i in ids[:3]]
        )
    )
    before = [mw.ehc.revocations.revoked(i) is not None for i in ids]
    candidates = [
        issuer.revocation_list(
            version=3, base_version=2,
            revoked=[EhcRevocation(ecard_id=ids[4], revoked_at=at)], restored=[ids[0]],
        ),
        issuer.revocation_list(version=5, revoked=[EhcRevocation(ecard_id=ids[5], revoked_at=at)]),
        other_signer(key_dir, "ed25519").revocation_list(version=9, revoked=[]),
        issuer.revocation_list(version=4, base_version=3, restored=[ids[1]]),  # onto 3 only
    ]  # fmt: skip
    mutations = _list_mutations(rng)
    refused: dict[str, int] = {}
    applied: list[tuple[int | None, int]] = []
    raws = [c.model_dump_json() for c in candidates]
    for n in range(UPDATES):
        source = candidates[n % len(candidates)]
        raw = raws[n % len(raws)]
        data = json.loads(raw)
        mutated = rng.choice(mutations)(data, raw)
        if isinstance(mutated, dict):
            mutated = json.dumps(mutated) if n % 2 else mutated
        try:
            update = parse_list(mutated)
            mw.ehc.revocations.apply(update, mw.ehc.keys)
        except EhcRevocationListError as exc:
            refused[exc.reason] = refused.get(exc.reason, 0) + 1
            if n % 997 == 0:  # the list in force is unchanged (checked on a sample)
                assert [mw.ehc.revocations.revoked(i) is not None for i in ids] == before
            continue
        # only a genuine update, unaltered where its signature covers it, gets here
        assert update.signature == source.signature
        applied.append((source.base_version, source.version))
        before = [mw.ehc.revocations.revoked(i) is not None for i in ids]
    assert {"format", "signature", "version"} <= set(refused)
    # each genuine list applies once at most, in version order, a delta only onto its
    # base: 2→3, then 3→4 (only after 2→3), then the full list 5 — those of them the
    # mutations let through unaltered (signatures differ run to run, and so do the
    # mutations' effects on them)
    versions = [version for _base, version in applied]
    assert versions == sorted(set(versions))
    held = 2
    for base, version in applied:
        assert base is None or base == held
        held = version
    state = mw.ehc.revocations.state("TEST")
    assert state is not None
    assert state.version == held
