"""The reference HIS as a peer of ``hcm demo`` (entry point group ``hcmiddleware.demo``).

It starts the reference HIS on loopback and names the adapter that talks to it: the
HL7 v2.5 one over MLLP when ``hcm-his-hl7`` is installed, else the FHIR R4 one. It also
hands the demo a stand-in for the hospital's staff, who do what no middleware does: the
lab signs a report off, the ward books its daily fees, a doctor writes an order.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hcm_his_reference import ReferenceHis


class HospitalStaff:
    """What the hospital's people do in the reference HIS during the demo."""

    def __init__(self, his: ReferenceHis) -> None:
        self._his = his

    def sign_off_reports(self, visit_id: str) -> int:
        """The lab signs off the visit's pending reports; how many."""
        store = self._his.store
        pending = [r for r in store._all("SELECT * FROM report WHERE visit_id = ?", visit_id)]
        for row in pending:
            if row["status"] != "final":
                store.issue_report(
                    row["report_id"], "白细胞 6.2×10^9/L，正常 WBC 6.2×10^9/L, normal"
                )
        return len(pending)

    def book_ward_fees(self, admission_id: str, days: int) -> None:
        """The ward books bed and nursing fees for ``days`` days."""
        store = self._his.store
        store.add_charge(admission_id, "BED", "床位费 Bed", Decimal("80.00"), Decimal(days))
        store.add_charge(admission_id, "NURSE", "护理费 Nursing", Decimal("30.00"), Decimal(days))

    def prescribe(self, admission_id: str, code: str, name: str, dose: str, route: str) -> str:
        """A doctor's new drug order on the stay; its order ID."""
        return self._his.store.add_order(
            admission_id, "drug", code, name, scheduled_at=datetime.now(), dose=dose, route=route
        )


def start_demo_peer(folder: Path, context: Mapping[str, str]) -> dict[str, Any] | None:
    """Start the reference HIS; None when neither HIS adapter is installed."""
    if importlib.util.find_spec("hcm_his_hl7") is not None:
        plugin = "his-hl7"
    elif importlib.util.find_spec("hcm_his_fhir") is not None:
        plugin = "his-fhir"
    else:
        return None
    his = ReferenceHis(
        Path(folder) / "reference-his.db",
        hospital_code=context.get("institution_code", "210100000001"),
    ).start()
    if plugin == "his-hl7":
        host, port = his.mllp_address
        settings: dict[str, Any] = {"host": host, "port": port}
        where = f"HL7 v2.5 over MLLP at {host}:{port}"
    else:
        settings = {"base_url": his.fhir_url}
        where = f"FHIR R4 at {his.fhir_url}"
    return {
        "plugin": plugin,
        "settings": settings,
        "stop": his.stop,
        "provides": {"hospital_staff": HospitalStaff(his)},
        "note": f"reference HIS, {where}",
    }
