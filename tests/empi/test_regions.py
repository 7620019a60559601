"""GB/T 2260 table: names, retired codes, and the region check of ID numbers."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from hcmiddleware.empi import regions
from hcmiddleware.empi.regions import RegionStatus, check_id_region, lookup
from hcmiddleware.errors import RegionCodeError


def test_table_records_its_source_and_revision() -> None:
    raw = json.loads(
        resources.files("hcmiddleware.empi").joinpath("data/gb2260.json").read_text("utf-8")
    )
    assert raw["revision"] == regions.TABLE_REVISION
    assert "Civil Affairs" in regions.TABLE_SOURCE
    assert raw["revisions_merged"][-1] == raw["revision"]
    # 31 mainland provinces plus Taiwan, Hong Kong and Macao.
    provinces = [c for c in raw["current"] if c.endswith("0000")]
    assert len(provinces) == 34
    assert not set(raw["current"]) & set(raw["retired"])


def test_lookup_current_county() -> None:
    region = lookup("110105")
    assert region.status is RegionStatus.CURRENT
    assert (region.province, region.city, region.county) == ("北京市", None, "朝阳区")
    assert region.full_name == "北京市朝阳区"
    assert lookup("440305").full_name == "广东省深圳市南山区"


def test_lookup_retired_code_keeps_its_old_name() -> None:
    # 潮阳县 became a county-level city and later a district of Shantou.
    region = lookup("440524")
    assert region.status is RegionStatus.RETIRED
    assert region.county == "潮阳县"
    assert region.last_seen is not None


def test_retired_code_in_an_id_number_is_a_warning() -> None:
    check = check_id_region("440524")
    assert check.warning is not None
    assert "retired" in check.warning
    assert check_id_region("110105").warning is None


def test_unknown_code_in_a_real_province_is_a_warning() -> None:
    check = check_id_region("110199")
    assert check.region.status is RegionStatus.UNKNOWN
    assert check.warning is not None
    assert regions.TABLE_REVISION in check.warning


def test_residence_permit_codes_are_known() -> None:
    assert check_id_region("810000").region.status is RegionStatus.PERMIT
    assert check_id_region("830000").warning is None


@pytest.mark.parametrize("code", ["000000", "990101", "200101"])
def test_a_province_that_never_existed_is_an_error(code: str) -> None:
    with pytest.raises(RegionCodeError) as info:
        check_id_region(code)
    assert info.value.field == "id_number"


@pytest.mark.parametrize("code", ["11010", "1101051", "11010a", "１１０１０５"])
def test_malformed_region_codes(code: str) -> None:
    with pytest.raises(RegionCodeError):
        lookup(code)
