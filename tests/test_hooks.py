"""Every hook: its documentation, and the calling contract the runtime gives it.

``EXAMPLES`` holds realistic arguments for every hook in ``hookspecs.py``; the meta-tests
fail when a hook is added without documentation or without an example here.
"""

from __future__ import annotations

import inspect
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware, hookspecs
from hcmiddleware.hookdoc import hook_signature, render_hooks_markdown, to_markdown
from hcmiddleware.models import (
    Admission,
    AdmissionRequest,
    Alarm,
    AuditCheckpoint,
    AuditEvent,
    Bill,
    Charge,
    Deposit,
    EhcVerification,
    EmergencyCall,
    HospitalPatient,
    LocationReport,
    LossReport,
    MoneyKind,
    OrderExecution,
    PaymentRequest,
    PrintDocument,
    Registration,
    RegistrationRequest,
    Resident,
    SettlementRequest,
    WristbandBinding,
)
from hcmiddleware.registry import SettingsRegistry, hook_names

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RESIDENT = Resident(resident_id="r-1", name="李明")
ECARD_ID = "8469DCABE25B71F6B23925EB895BDC1B47F7252FEB8AF17D2AAD02902E3E0D8E"
PATIENT = HospitalPatient(hospital_code="H1", patient_id="P1", resident_id="r-1")
CHARGE = Charge(
    charge_id="C1",
    patient_id="P1",
    visit_id="V1",
    item_code="CBC",
    item_name="血常规",
    quantity=Decimal(1),
    unit_price="25.00",
    amount="25.00",
)
ADMISSION = Admission(admission_id="A1", patient_id="P1", ward="W3", bed="12", admitted_at=NOW)
BILL = Bill(
    patient_id="P1",
    admission_id="A1",
    items=(CHARGE,),
    total=Decimal("25.00"),
    balance=Decimal("25.00"),
)
PAYMENT = PaymentRequest(
    transaction_id="T1", kind=MoneyKind.PAY, card_number="C0001", amount="25.00"
)
SETTLEMENT = SettlementRequest(
    message_id="210100000001" + "20260302090000" + "0001",
    scheme="basic",
    insured_id="I1",
    patient_id="P1",
    visit_id="V1",
    charges=(CHARGE,),
    total="25.00",
)
EXECUTION = OrderExecution(
    order_id="O1",
    admission_id="A1",
    wristband_id="WB1",
    executed_by="N7",
    executed_at=NOW,
    checks={"patient": True},
)

EXAMPLES: dict[str, dict[str, Any]] = {
    "hcm_add_config": {"settings": SettingsRegistry()},
    "hcm_configure": {"middleware": None},
    "hcm_unconfigure": {"middleware": None},
    "hcm_doctor_checks": {"middleware": None},
    "hcm_plugin_failed": {"plugin": "p", "hook": "hcm_card_removed", "error": "E: x"},
    "hcm_card_inserted": {"reader": "Virtual PCD 00 00", "atr": bytes.fromhex("3B8F80")},
    "hcm_card_removed": {"reader": "Virtual PCD 00 00"},
    "hcm_card_read": {"reader": "Virtual PCD 00 00", "card": object()},
    "hcm_card_blacklist_updates": {"since": {"issuer:2101": 41}},
    "hcm_card_report_loss": {
        "report": LossReport(
            card_number="21010000000000000001",
            resident_id="r-1",
            identified_by="id_number",
            reported_at=datetime(2026, 12, 3, 9, 0, tzinfo=UTC),
            terminal="kiosk-7",
        )
    },
    "hcm_sam_provider": {"middleware": None},
    "hcm_empi_resident_enrolled": {"resident": RESIDENT},
    "hcm_empi_residents_merged": {"survivor": RESIDENT, "merged": RESIDENT, "reason": "dup"},
    "hcm_empi_resident_unmerged": {"survivor": RESIDENT, "restored": RESIDENT, "reason": "err"},
    "hcm_empi_remote_lookup": {"kind": "id_number", "value": "x"},
    "hcm_ehc_register": {"resident": RESIDENT, "card_number": "H12345678"},
    "hcm_ehc_generate_code": {"ecard_id": ECARD_ID},
    "hcm_ehc_verify_online": {
        "text": f"{ECARD_ID}:1",
        "terminal_id": "kiosk-03",
        "care_step": "registration",
    },
    "hcm_ehc_revocations": {"issuer": "LN", "since_version": 3},
    "hcm_ehc_verified": {
        "result": EhcVerification(
            resident=RESIDENT,
            ecard_id=ECARD_ID,
            kind="static",
            checked="offline",
            terminal_id="kiosk-03",
            care_step="registration",
            factor="card",
        )
    },
    "hcm_face_backend": {"name": "face_recognition"},
    "hcm_face_liveness": {"image": b"\xff\xd8", "context": "kiosk:K1"},
    "hcm_face_verified": {"resident_id": "r-1", "result": object()},
    "hcm_face_duplicates_found": {"resident_id": "r-1", "candidates": [("r-2", 0.3)]},
    "hcm_his_lookup_patient": {"resident": RESIDENT, "hospital_code": "H1"},
    "hcm_his_register_patient": {"resident": RESIDENT, "card": None, "hospital_code": "H1"},
    "hcm_his_register_visit": {
        "patient": PATIENT,
        "request": RegistrationRequest(
            department_code="NEI",
            slot_start=NOW,
            slot_end=NOW + timedelta(hours=1),
            request_id="q1",
        ),
    },
    "hcm_his_queue_position": {
        "registration": Registration(
            registration_id="R1",
            patient_id="P1",
            department_code="NEI",
            slot_start=NOW,
            slot_end=NOW + timedelta(minutes=30),
        ),
    },
    "hcm_his_list_orders": {"patient": PATIENT, "visit_id": "V1"},
    "hcm_his_list_charges": {"patient": PATIENT, "visit_id": "V1"},
    "hcm_his_charges_paid": {"patient": PATIENT, "charge_ids": ["C1"], "transaction_id": "T1"},
    "hcm_his_list_reports": {"patient": PATIENT, "visit_id": "V1"},
    "hcm_his_admit": {
        "patient": PATIENT,
        "request": AdmissionRequest(
            department_code="NEI", ward="W3", bed="12", admitted_at=NOW, request_id="a1"
        ),
    },
    "hcm_his_record_deposit": {
        "admission": ADMISSION,
        "deposit": Deposit(
            deposit_id="D1", admission_id="A1", amount="1000.00", paid_at=NOW, transaction_id="T2"
        ),
    },
    "hcm_his_inpatient_bill": {"admission": ADMISSION},
    "hcm_his_discharge": {"admission": ADMISSION, "bill": BILL},
    "hcm_his_order_executed": {"execution": EXECUTION},
    "hcm_bank_bind": {"card_number": "C0001", "bank_card_number": "6222", "id_number": "x"},
    "hcm_bank_unbind": {"card_number": "C0001", "id_number": "x"},
    "hcm_bank_top_up": {"request": PAYMENT.model_copy(update={"kind": MoneyKind.TOP_UP})},
    "hcm_bank_pay": {"request": PAYMENT},
    "hcm_bank_refund": {
        "request": PAYMENT.model_copy(
            update={"kind": MoneyKind.REFUND, "original_transaction_id": "T0"}
        )
    },
    "hcm_bank_query": {"transaction_id": "T1"},
    "hcm_bank_reverse": {"transaction_id": "T1"},
    "hcm_bank_statement": {"day": date(2026, 3, 1)},
    "hcm_insurance_pre_settle": {"request": SETTLEMENT},
    "hcm_insurance_settle": {"request": SETTLEMENT},
    "hcm_insurance_cancel": {"settlement_id": "S1", "message_id": SETTLEMENT.message_id},
    "hcm_insurance_reverse": {"original_message_id": "M0", "message_id": "M1"},
    "hcm_insurance_reconcile": {"date_from": date(2026, 3, 1), "date_to": date(2026, 3, 1)},
    "hcm_ward_wristband_bound": {
        "binding": WristbandBinding(
            wristband_id="WB1",
            card_number="C0001",
            resident_id="r-1",
            admission_id="A1",
            bound_at=NOW,
        ),
    },
    "hcm_ward_order_executed": {"execution": EXECUTION},
    "hcm_ward_emergency_call": {"call": EmergencyCall(wristband_id="WB1", raised_at=NOW)},
    "hcm_ward_location": {
        "report": LocationReport(wristband_id="WB1", seen_at=NOW, location="W3-12")
    },
    "hcm_ward_alarm": {
        "alarm": Alarm(
            alarm_id="AL1",
            wristband_id="WB1",
            kind="emergency",
            state="open",
            raised_at=NOW,
            last_at=NOW,
            received_at=NOW,
        ),
        "change": "raised",
    },
    "hcm_print": {
        "document": PrintDocument(
            document_id="2101000000012026120308300001",
            kind="top_up_receipt",
            medium="receipt",
            title="充值凭条",
            site_name="demo",
            totals=(("充值金额", "¥100.00"),),
            printed_at=NOW,
        )
    },
    "hcm_audit_event": {"event": AuditEvent(at=NOW, actor="T1", action="card.read", subject="r-1")},
    "hcm_audit_checkpoint": {
        "checkpoint": AuditCheckpoint(
            seq=1000, hash="00" * 32, algorithm="sha256", at=NOW, terminal="kiosk-03"
        )
    },
}

SETUP = {"hcm_add_config", "hcm_configure", "hcm_unconfigure"}


def _is_firstresult(name: str) -> bool:
    return bool(getattr(hookspecs, name).hcmiddleware_spec.get("firstresult"))


# --- meta-tests: the documentation ---------------------------------------------------------


def test_every_hook_has_an_example_here() -> None:
    assert sorted(EXAMPLES) == sorted(hook_names())
    assert set(EXAMPLES) >= SETUP


@pytest.mark.parametrize("name", hook_names())
def test_hook_docstring_is_complete(name: str) -> None:
    spec = getattr(hookspecs, name)
    doc = " ".join((inspect.getdoc(spec) or "").split())
    assert "Called by" in doc, "say who calls it and when"
    for param in inspect.signature(spec).parameters:
        assert f":param {param}:" in doc, f"document parameter {param}"
    assert ":return:" in doc, "say what to return"
    says_first = "First non-None result wins" in doc
    assert says_first == _is_firstresult(name), "say whether the first non-None result wins"
    assert "Example::" in doc, "show an implementation (docs/hooks.md runs it)"
    assert re.search(rf"def {name}\(\s*self\b", doc), "the example implements this hook"


def test_the_reference_is_plain_markdown() -> None:
    text = render_hooks_markdown()
    for role in (":class:", ":meth:", ":func:", ":mod:", ":data:", ":param ", ":return:"):
        assert role not in text
    assert not re.search(r"``[^`]", text.replace("```", "")), "a reST literal is left"
    assert to_markdown("a :class:`~hcmiddleware.errors.PluginCallError` b") == (
        "a `PluginCallError` b"
    )
    assert to_markdown(":class:`hcmiddleware.config.SettingsModel`, ``x``") == (
        "`hcmiddleware.config.SettingsModel`, `x`"
    )


def test_hook_reference_is_in_step_with_the_code() -> None:
    committed = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert committed == render_hooks_markdown(), "regenerate: hcm plugins hooks > docs/hooks.md"
    for name in hook_names():
        assert f"\ndef {hook_signature(name)}: ...\n" in committed


def test_every_hook_is_named_in_a_test_outside_this_file() -> None:
    others = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (ROOT / "tests").rglob("*.py")
        if p.name != Path(__file__).name
    ) + (ROOT / "src" / "hcmiddleware" / "testing" / "conformance.py").read_text("utf-8")
    untested = [n for n in hook_names() if not re.search(rf"\b{n}\b", others)]
    # A hook is exercised elsewhere once its feature exists; until then the contract
    # tests below are its test. This list may only shrink.
    allowed = {
        "hcm_empi_remote_lookup",
        "hcm_bank_bind",
        "hcm_bank_unbind",
        "hcm_bank_top_up",
        "hcm_bank_pay",
        "hcm_bank_refund",
        "hcm_bank_query",
        "hcm_bank_reverse",
        "hcm_bank_statement",
        "hcm_insurance_pre_settle",
        "hcm_insurance_settle",
        "hcm_insurance_cancel",
        "hcm_insurance_reverse",
        "hcm_insurance_reconcile",
    }
    assert set(untested) <= allowed, sorted(set(untested) - allowed)


# --- contract: how the runtime calls each hook -------------------------------------------


def _plugin(name: str, answer: Any, seen: list[dict[str, Any]]) -> object:
    """A plugin whose implementation of ``name`` takes exactly the spec's arguments."""
    params = list(inspect.signature(getattr(hookspecs, name)).parameters)
    src = f"def {name}({', '.join(params)}):\n    return _record(locals())\n"

    def record(kwargs: dict[str, Any]) -> Any:
        seen.append(dict(kwargs))
        return answer

    scope: dict[str, Any] = {"_record": record}
    exec(src, scope)  # pluggy reads the argument names from the function itself
    return type(f"Impl_{name}", (), {name: staticmethod(scope[name])})()


@pytest.mark.parametrize("name", sorted(set(hook_names()) - SETUP))
def test_runtime_passes_every_argument_and_honours_the_result_kind(name: str) -> None:
    seen_a: list[dict[str, Any]] = []
    seen_b: list[dict[str, Any]] = []
    with Middleware(
        plugins={"a": _plugin(name, "A", seen_a), "b": _plugin(name, "B", seen_b)}
    ) as mw:
        kwargs = dict(EXAMPLES[name])
        if "middleware" in kwargs:
            kwargs["middleware"] = mw
        seen_a.clear()
        seen_b.clear()
        result = mw.dispatcher.call(name, **kwargs)
        if _is_firstresult(name):
            # the last registered plugin is asked first and its answer wins
            assert result == "B"
            assert (seen_a, seen_b) == ([], [kwargs])
        elif name == "hcm_doctor_checks":
            # the built-in core checks answer too, with their own list
            assert [r for r in result if isinstance(r, str)] == ["B", "A"]
        else:
            assert sorted(result) == ["A", "B"]
            assert seen_a == seen_b == [kwargs]
