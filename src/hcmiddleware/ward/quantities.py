"""Doses, concentrations and routes as the bedside checks compare them.

A dose on the order and a dose on the label agree when they are the same amount,
whatever the units: ``0.5 g`` is ``500 mg``; ``0.5 g`` is not ``0.5 mg``, and ``5 ml``
is not ``5 mg`` (different kinds of quantity). Quantities are parsed by :mod:`pint`
(the units and their conversions are its, not ours); this module only adds what a
drug label says differently: Chinese unit names, ``IU``/``U`` (international units),
``mcg``, and ``%`` for a concentration, which on a solution means grams per 100 ml.

Routes are compared by their code after the usual Chinese and Latin spellings are
mapped to one: ``静滴``, ``ivgtt`` and ``IV drip`` are the same route.
"""

from __future__ import annotations

import functools
import re
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

from hcmiddleware._optional import needs_extra

__all__ = ["QuantityError", "normalize_route", "same_amount", "same_route"]


class QuantityError(ValueError):
    """A dose or concentration that cannot be read as an amount with a unit."""


_UNIT_WORDS = {
    "毫克": "mg",
    "克": "g",
    "微克": "ug",
    "纳克": "ng",
    "毫升": "ml",
    "升": "l",
    "微升": "ul",
    "单位": "IU",
    "国际单位": "IU",
    "万单位": "10000 IU",
    "毫摩尔": "mmol",
    "mcg": "ug",
    "μg": "ug",
    "µg": "ug",
    "U": "IU",
    "iu": "IU",
    "ML": "ml",
    "mL": "ml",
    "L": "l",
}
#: a unit's words: Latin letters and µ/μ, or a run of Chinese characters
_WORD = re.compile(r"[A-Za-zµμ]+|[\u4e00-\u9fff]+")
_NUMBER_THEN_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(.*?)\s*$")

_lock = threading.Lock()
_registry: Any = None


def _units() -> Any:
    """pint's registry, made once (it reads its definitions file: ~0.4 s)."""
    global _registry
    with _lock:
        if _registry is None:
            with needs_extra("dose and concentration checks"):
                import pint

            # Decimal magnitudes: 0.1 mg stays 0.1 mg through every conversion
            registry: Any = pint.UnitRegistry(non_int_type=Decimal)
            registry.define("international_unit = [biological_activity] = IU")
            _registry = registry
        return _registry


def _replace_words(unit: str) -> str:
    def one(match: re.Match[str]) -> str:
        word = match.group(0)
        return _UNIT_WORDS.get(word, word)

    return _WORD.sub(one, unit)


@functools.lru_cache(maxsize=4096)
def _parse(text: str, *, concentration: bool) -> Any:
    """``text`` as a quantity (cached: pint's parser takes a millisecond or more, and the
    same label is read on every round). Callers never change the quantity returned."""
    match = _NUMBER_THEN_UNIT.match(text.replace("／", "/").replace("％", "%"))
    if match is None or not match.group(2):
        raise QuantityError(f"{text!r} is not an amount with a unit (e.g. 0.5 g, 5 mg/ml)")
    number, unit = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        raise QuantityError(f"{number!r} is not a number") from None
    if unit == "%":
        if not concentration:
            raise QuantityError(f"{text!r}: a percentage is a concentration, not a dose")
        unit = "g / (100 ml)"  # w/v, as on a solution's label
    ureg = _units()
    try:
        words = _replace_words(unit)
        if "/" in words:  # "g/100ml": everything after the slash is the denominator
            top, bottom = words.split("/", 1)
            words = f"({top or 1}) / ({bottom})"
        per_unit = ureg.parse_expression(words)
    except Exception:  # pint raises several error types for unknown units
        raise QuantityError(f"{text!r}: unknown unit {unit!r}") from None
    if not isinstance(per_unit, ureg.Quantity) or per_unit.dimensionless:
        raise QuantityError(f"{text!r}: {unit!r} is not a unit of amount")
    return value * per_unit


def same_amount(expected: str, presented: str, *, concentration: bool = False) -> tuple[bool, str]:
    """Do two doses (or concentrations) name the same amount? ``(same, reason)``.

    :raises QuantityError: one of them cannot be read.
    """
    want = _parse(expected, concentration=concentration)
    got = _parse(presented, concentration=concentration)
    if want.dimensionality != got.dimensionality:
        return False, f"{presented} is not the same kind of quantity as {expected}"
    converted = got.to(want.units)
    # compare far below any dose's precision, so a conversion's last digit cannot fail it
    gap = abs(Decimal(converted.magnitude) - Decimal(want.magnitude))
    if gap <= abs(Decimal(want.magnitude)) * Decimal("1e-9"):
        return True, ""
    return False, f"{presented} is not {expected}"


#: Route codes and the spellings that name them.
_ROUTES: dict[str, tuple[str, ...]] = {
    "IVGTT": ("ivgtt", "iv drip", "静滴", "静脉滴注", "输液"),
    "IV": ("iv", "静推", "静注", "静脉注射"),
    "IM": ("im", "肌注", "肌内注射", "肌肉注射"),
    "SC": ("sc", "ih", "皮下", "皮下注射"),
    "ID": ("id", "皮内", "皮内注射", "皮试"),
    "PO": ("po", "口服", "oral"),
    "INH": ("inh", "雾化", "雾化吸入", "吸入"),
    "TOP": ("top", "外用"),
}
_ROUTE_OF = {spelling: code for code, names in _ROUTES.items() for spelling in names}


def normalize_route(route: str) -> str:
    """The route's code (``IVGTT``, ``IV``, ``IM``, ``SC``, ``ID``, ``PO`` …), or the
    text itself upper-cased when it is no route this module knows."""
    key = " ".join(route.strip().lower().split())
    return _ROUTE_OF.get(key, key.upper())


def same_route(expected: str, presented: str) -> bool:
    """Do two routes name the same way of giving the drug?"""
    return normalize_route(expected) == normalize_route(presented)
