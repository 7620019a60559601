"""The FHIR R4 adapter against the reference HIS over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hcm_his_reference import ReferenceHis

from hcmiddleware.registry import installed_plugins
from hcmiddleware.testing.conformance import HisConformance

HOSPITAL = "H0001"


@pytest.fixture
def reference_his(tmp_path: Any) -> Iterator[ReferenceHis]:
    with ReferenceHis(tmp_path / "his.db", hospital_code=HOSPITAL) as his:
        yield his


class ReferenceFaults:
    """The HisFaults switches, on the reference HIS's FHIR front."""

    def __init__(self, his: ReferenceHis, slow: float) -> None:
        self.his = his
        self.delay = slow

    def refuse(self) -> None:
        self.his.faults.set(nak="AE")

    def down(self) -> None:
        self.his.faults.set(drop="before")

    def slow(self) -> None:
        self.his.faults.set(delay=self.delay)

    def garbage(self) -> None:
        self.his.faults.set(garbage=True)

    def lose_next_write_answer(self) -> None:
        self.his.faults.set(drop="after", writes_only=True, times=1)

    def clear(self) -> None:
        self.his.faults.clear()


class TestFhirConformance(HisConformance):
    plugin_name = "his-fhir"

    @pytest.fixture
    def plugin(self) -> object:
        return installed_plugins()["his-fhir"].entry_point.load()()

    @pytest.fixture
    def plugin_settings(self, reference_his: ReferenceHis) -> dict[str, Any]:
        return {"base_url": reference_his.fhir_url, "timeout": 0.5, "attempts": 2, "backoff": 0.01}

    @pytest.fixture
    def his_faults(self, reference_his: ReferenceHis) -> ReferenceFaults:
        return ReferenceFaults(reference_his, slow=0.8)
