"""Blocking keys: which residents are worth comparing with a record at all.

A pair is compared only if the two records share at least one key. The keys are chosen
so that nearly every true pair shares one even with an error in any single field, while
each block stays small in a population of millions:

* ``bd`` the birth date with day and month sorted (a day/month swap gives the same key);
* ``ny`` the name's sound with the birth year (a wrong day or month);
* ``nd`` the name's sound with the sorted day and month (a wrong year);
* ``sm`` the surname's sound with year and month (a mistyped given name and day);
* ``ph`` the phone number;
* ``nm`` the name's sound alone — stored only for records without a birth date, but
  always asked for, so such a record is still found;
* ``ui`` an ID number kept *unverified* (a failed check character, a number that
  disagrees with the birth date) — stored only for such records, asked for by every
  record with an ID number (:func:`evidence_keys`), so a record with a dirty number
  meets the clean one and the other dirty ones.

The name's sound is folded toneless pinyin: homophones typed through an input method,
traditional characters and the z/zh, n/l, -n/-ng folds give the same key. Keys are
stored and looked up only as keyed hashes (``Protector.blind_index``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from hcmiddleware.empi.chinese_names import name_key

__all__ = [
    "SMALL_BLOCK",
    "blocking_keys",
    "choose_candidates",
    "evidence_keys",
    "probe_keys",
    "record_keys",
]

#: A block with at most this many members is read whole (see :func:`choose_candidates`).
SMALL_BLOCK = 8


def blocking_keys(record: Mapping[str, Any]) -> set[str]:
    """The keys stored for a record with ``name``, ``birth_date``, ``phone`` and an
    ``id_number`` (``id_verified`` false for an unverified one)."""
    keys: set[str] = set()
    name = record.get("name")
    sound = name_key(name) if name else ""
    born = record.get("birth_date")
    if isinstance(born, dt.date):
        low, high = sorted((born.month, born.day))
        keys.add(f"bd:{born.year}:{low}:{high}")
        if sound:
            keys.add(f"ny:{sound}:{born.year}")
            keys.add(f"nd:{sound}:{low}:{high}")
            keys.add(f"sm:{sound.split(' ')[0]}:{born.year}:{born.month}")
    elif sound:
        keys.add(f"nm:{sound}")
    phone = record.get("phone")
    if phone:
        keys.add(f"ph:{phone}")
    id_number = record.get("id_number")
    if id_number and not record.get("id_verified", True):
        keys.add(f"ui:{id_number}")
    return keys


def probe_keys(record: Mapping[str, Any]) -> set[str]:
    """The keys to look up for a record: its own and its name alone (see ``nm``); an
    unverified number's ``ui`` key is an evidence key (:func:`evidence_keys`) instead."""
    return record_keys(record)[1]


def record_keys(record: Mapping[str, Any]) -> tuple[set[str], set[str], set[str]]:
    """A record's keys to store, to look up, and its evidence keys, computed once."""
    stored = blocking_keys(record)
    query = {k for k in stored if not k.startswith("ui:")}
    name = record.get("name")
    sound = name_key(name) if name else ""
    if sound:
        query.add(f"nm:{sound}")
    return stored, query, evidence_keys(record)


def evidence_keys(record: Mapping[str, Any]) -> set[str]:
    """The ``ui`` key of a record's ID number, verified or not: its members are always
    compared with the record (see :func:`choose_candidates`), however large the record's
    other blocks."""
    id_number = record.get("id_number")
    return {f"ui:{id_number}"} if id_number else set()


def choose_candidates(
    block_keys: Sequence[bytes], members: Mapping[bytes, Sequence[str]], *, limit: int
) -> list[str]:
    """Which members of a record's blocks to compare with it, most keys shared first.

    A resident is compared when it shares at least two of the record's keys, or shares
    one key whose block is small (at most :data:`SMALL_BLOCK` members), or the record
    has fewer than three keys (one is then all a true match may share). In a million
    residents the birth-date and surname blocks of a record hold dozens of strangers
    who share just that key, and decrypting and scoring them all is what made an
    enrolment slow; a true duplicate with one field wrong still shares three or more
    keys (the generated population's duplicates: 99.98 % share three or more).
    ``limit`` caps how many are returned.
    """
    shared: dict[str, int] = {}
    small: set[str] = set()
    for key in dict.fromkeys(block_keys):
        ids = dict.fromkeys(members.get(key, ()))
        for resident_id in ids:
            shared[resident_id] = shared.get(resident_id, 0) + 1
        if len(ids) <= SMALL_BLOCK:
            small.update(ids)
    few = len(block_keys) < 3
    chosen = [rid for rid, n in shared.items() if n >= 2 or few or rid in small]
    # Stable: residents sharing as many keys keep the order of the blocks.
    chosen.sort(key=lambda rid: -shared[rid])
    return chosen[:limit]
