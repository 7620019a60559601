"""Blocking keys: which residents are worth comparing with a record at all.

A pair is compared only if the two records share at least one key. The keys are chosen
so that nearly every true pair shares one even with an error in any single field:

* ``nm`` the name's sound (folded toneless pinyin: homophones, traditional characters and
  dialect folds give the same key);
* ``bd`` the birth date with day and month in order (a swap gives the same key);
* ``ph`` the phone number;
* ``sy`` the surname's sound with the birth year (a mistyped given name *and* date).

Keys are stored and looked up only as keyed hashes (``Protector.blind_index``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from hcmiddleware.empi.chinese_names import name_key

__all__ = ["blocking_keys"]


def blocking_keys(record: Mapping[str, Any]) -> set[str]:
    """The blocking keys of a record with ``name``, ``birth_date`` and ``phone``."""
    keys: set[str] = set()
    name = record.get("name")
    sound = name_key(name) if name else ""
    if sound:
        keys.add(f"nm:{sound}")
    born = record.get("birth_date")
    if isinstance(born, dt.date):
        low, high = sorted((born.month, born.day))
        keys.add(f"bd:{born.year}:{low}:{high}")
        if sound:
            keys.add(f"sy:{sound.split(' ')[0]}:{born.year}")
    phone = record.get("phone")
    if phone:
        keys.add(f"ph:{phone}")
    return keys
