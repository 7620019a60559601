"""GB/T 2260 administrative division codes: names for a code, and the region check of IDs.

The table ships as data (``data/gb2260.json``): every county-level-and-above code of
the Ministry of Civil Affairs' latest revision in the file (``TABLE_REVISION``) plus
every code of its earlier revisions that has since been retired, with the revision it
was last seen in. ID numbers keep the region code of first registration for life, so a
retired code in an ID number is a *warning*, never an error.

Only a province part (first two digits) that never existed is an error: a code that
is unknown to the table but sits in a real province may have been created after the
table's revision, and refusing it would turn residents away.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from hcmiddleware.errors import RegionCodeError

__all__ = [
    "TABLE_REVISION",
    "TABLE_SOURCE",
    "Region",
    "RegionCheck",
    "RegionStatus",
    "check_id_region",
    "lookup",
]

#: Codes used in ID numbers of residence permits for Hong Kong, Macao and Taiwan
#: residents (港澳台居民居住证, 2018); they are not divisions of the mainland table.
_PERMIT_REGIONS = {
    "810000": "香港特别行政区",
    "820000": "澳门特别行政区",
    "830000": "台湾省",
}


class RegionStatus(enum.Enum):
    """Where a code stands in the shipped table."""

    CURRENT = "current"
    RETIRED = "retired"
    PERMIT = "permit"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Region:
    """A division with the names of its province, prefecture (city) and county."""

    code: str
    status: RegionStatus
    province: str | None
    city: str | None
    county: str | None
    last_seen: str | None = None

    @property
    def full_name(self) -> str:
        """Province, city and county names joined, skipping the generic 市辖区/县 levels."""
        parts = [self.province, self.city, self.county]
        return "".join(p for p in parts if p and p not in ("市辖区", "县"))


@dataclass(frozen=True, slots=True)
class RegionCheck:
    """Outcome of checking the region part of an ID number: the region and any warning."""

    region: Region
    warning: str | None


@dataclass(frozen=True, slots=True)
class _Table:
    revision: str
    source: str
    current: dict[str, str]
    retired: dict[str, tuple[str, str]]


@lru_cache(maxsize=1)
def _table() -> _Table:
    raw: dict[str, Any] = json.loads(
        resources.files("hcmiddleware.empi").joinpath("data/gb2260.json").read_text("utf-8")
    )
    return _Table(
        revision=raw["revision"],
        source=raw["source"],
        current=raw["current"],
        retired={k: (v["name"], v["last_seen"]) for k, v in raw["retired"].items()},
    )


def _name(code: str) -> str | None:
    table = _table()
    if code in table.current:
        return table.current[code]
    if code in table.retired:
        return table.retired[code][0]
    return None


def lookup(code: str) -> Region:
    """Names for a 6-digit code; ``status`` says whether it is current, retired or unknown."""
    if len(code) != 6 or not code.isdigit() or not code.isascii():
        raise RegionCodeError("a region code has 6 digits", field="region_code")
    table = _table()
    if code in _PERMIT_REGIONS:
        return Region(code, RegionStatus.PERMIT, _PERMIT_REGIONS[code], None, None)
    province = _name(code[:2] + "0000")
    city = _name(code[:4] + "00") if code[2:4] != "00" else None
    county = _name(code) if code[4:] != "00" else None
    if code in table.current:
        return Region(code, RegionStatus.CURRENT, province, city, county)
    if code in table.retired:
        return Region(code, RegionStatus.RETIRED, province, city, county, table.retired[code][1])
    return Region(code, RegionStatus.UNKNOWN, province, city, county)


def check_id_region(region_code: str) -> RegionCheck:
    """Check the first six digits of an ID number.

    Raises :class:`RegionCodeError` when the province part never existed; returns a
    warning for a retired code (old numbers keep old codes) or one the table lacks.
    """
    region = lookup(region_code)
    if region.status in (RegionStatus.CURRENT, RegionStatus.PERMIT):
        return RegionCheck(region, None)
    if region.status is RegionStatus.RETIRED:
        return RegionCheck(
            region,
            f"region code {region_code} was retired after {region.last_seen}; "
            "the number keeps the code of first registration",
        )
    if region.province is None:
        raise RegionCodeError(
            "the first two digits of the ID number are no province, autonomous region or "
            "municipality",
            field="id_number",
        )
    return RegionCheck(
        region,
        f"region code {region_code} is not in the GB/T 2260 table of {_table().revision}",
    )


def _revision() -> str:
    return _table().revision


def _source() -> str:
    return _table().source


TABLE_REVISION: str = _revision()
"""Revision (YYYY-MM) of the Ministry of Civil Affairs table the shipped data follows."""

TABLE_SOURCE: str = _source()
"""Where the shipped data was taken from."""
