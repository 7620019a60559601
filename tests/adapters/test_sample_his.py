"""The sample HIS adapter, installed from its own folder, against the HIS conformance suite."""

from __future__ import annotations

from typing import Any

import pytest

from hcmiddleware import Middleware
from hcmiddleware.config import parse_config
from hcmiddleware.registry import installed_plugins
from hcmiddleware.testing.conformance import HisConformance


class TestSampleHisConformance(HisConformance):
    plugin_name = "sample-his"

    @pytest.fixture
    def plugin(self) -> object:
        return installed_plugins()["sample-his"].entry_point.load()()

    @pytest.fixture
    def plugin_settings(self) -> dict[str, Any]:
        return {"hospital_code": "T01", "minutes_per_patient": 5}


def test_enabled_by_config_through_its_entry_point(tmp_path: Any) -> None:
    config = parse_config(
        {
            "middleware": {"data_dir": str(tmp_path)},
            "plugins": {"enabled": ["sample-his"], "sample-his": {"hospital_code": "Z9"}},
        }
    )
    with Middleware(config) as mw:
        info = next(i for i in mw.plugins() if i.name == "sample-his")
        assert (info.distribution, info.enabled) == ("hcm-his-sample", True)
        assert "hcm_his_list_charges" in info.hooks
        from hcmiddleware.models import Resident

        patient = mw.hooks.hcm_his_register_patient(
            resident=Resident(resident_id="r-77", name="周杰"), card=None, hospital_code="H"
        )
        assert patient.patient_id.startswith("Z9")
        charges = mw.hooks.hcm_his_list_charges(patient=patient, visit_id="unknown-visit")
        assert [c.item_code for c in charges] == ["CBC"]
    assert (tmp_path / "sample-his.db").exists()
