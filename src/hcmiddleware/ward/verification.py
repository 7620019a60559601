"""The seven verifications (七对) of one bedside scan against one order.

Pure functions: no database, no HIS. :func:`verify` takes what the order says, what
the band's binding says and what the handheld presents, and answers a
:class:`~hcmiddleware.models.Verdict` naming each verification as passed, failed (with
the reason) or not applicable. The service (:mod:`hcmiddleware.ward.service`) refuses
the execution when any failed, and records the verdict with the execution.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta

from hcmiddleware.models import (
    VERIFICATIONS,
    BedsideScan,
    Order,
    Verdict,
    VerificationResult,
    WardOrderType,
    WristbandBinding,
)
from hcmiddleware.ward.quantities import QuantityError, normalize_route, same_amount, same_route
from hcmiddleware.ward.settings import OrderRule

__all__ = ["local_naive", "order_type_of", "time_window", "verify"]

_INJECTED = {"IV", "IM", "SC", "ID"}
#: order kinds that carry a drug (the drug, dose, concentration and route apply)
_DRUG_KINDS = {"drug", "skin_test"}


def order_type_of(order: Order) -> WardOrderType:
    """The ward's order type: the HIS's own if it gave one, else from kind and route."""
    if order.order_type is not None:
        return order.order_type
    if order.kind == "skin_test":
        return "skin_test"
    if order.kind in {"specimen", "lab"}:
        return "specimen"
    if order.kind == "drug":
        route = normalize_route(order.route or "")
        if route == "IVGTT":
            return "infusion"
        if route in _INJECTED:
            return "injection"
        if route == "PO":
            return "oral"
    return "other"


def local_naive(moment: datetime) -> datetime:
    """``moment`` as naive local time (the HIS's schedules are local wall-clock times)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone().replace(tzinfo=None)


def time_window(order: Order, rule: OrderRule) -> tuple[datetime, datetime] | None:
    """When the order may be carried out: the HIS's window, else around its schedule."""
    start = order.window_start
    end = order.window_end
    if start is None and order.scheduled_at is not None:
        start = order.scheduled_at - timedelta(minutes=rule.minutes_before)
    if end is None and order.scheduled_at is not None:
        end = order.scheduled_at + timedelta(minutes=rule.minutes_after)
    if start is None or end is None:
        return None
    return local_naive(start), local_naive(end)


def _text(value: str) -> str:
    return "".join(unicodedata.normalize("NFKC", value).split()).casefold()


def _result(
    name: str,
    outcome: str,
    *,
    expected: str | None = None,
    presented: str | None = None,
    reason: str = "",
) -> VerificationResult:
    return VerificationResult(
        name=name,
        outcome=outcome,
        expected=expected,
        presented=presented,
        reason=reason,
    )


def _bed(scan: BedsideScan, binding: WristbandBinding) -> VerificationResult:
    expected = binding.bed or ""
    if not scan.bed:
        return _result("bed", "failed", expected=expected, reason="no bed scanned")
    accepted = {_text(expected), _text(f"{binding.ward}-{expected}")}
    if _text(scan.bed) in accepted:
        return _result("bed", "passed", expected=expected, presented=scan.bed)
    return _result(
        "bed",
        "failed",
        expected=expected,
        presented=scan.bed,
        reason=f"bed {scan.bed} is not the patient's bed {expected}",
    )


def _name(
    scan: BedsideScan, order: Order, binding: WristbandBinding, name: str | None
) -> VerificationResult:
    if binding.patient_id is not None and order.patient_id != binding.patient_id:
        return _result(
            "name",
            "failed",
            reason=f"order {order.order_id} is not an order of the patient wearing this band",
        )
    if scan.patient_name is not None:
        if name is None or _text(scan.patient_name) != _text(name):
            return _result(
                "name",
                "failed",
                expected=name,
                presented=scan.patient_name,
                reason="the name the patient gave is not the name on the record",
            )
        return _result("name", "passed", expected=name, presented=scan.patient_name)
    return _result("name", "passed", expected=name, reason="the band is this order's patient's")


def _drug(scan: BedsideScan, order: Order) -> VerificationResult:
    if order.kind not in _DRUG_KINDS:
        return _result("drug", "not_applicable", reason=f"a {order.kind} order carries no drug")
    if not scan.drug_code:
        return _result("drug", "failed", expected=order.code, reason="no drug label scanned")
    if _text(scan.drug_code) == _text(order.code):
        return _result("drug", "passed", expected=order.code, presented=scan.drug_code)
    return _result(
        "drug",
        "failed",
        expected=order.code,
        presented=scan.drug_code,
        reason=f"drug {scan.drug_code} is not the ordered {order.code} ({order.name})",
    )


def _amount(name: str, expected: str | None, presented: str | None) -> VerificationResult:
    if expected is None:
        return _result(name, "not_applicable", reason=f"the order gives no {name}")
    if not presented:
        return _result(name, "failed", expected=expected, reason=f"no {name} on the label scanned")
    try:
        same, why = same_amount(expected, presented, concentration=name == "concentration")
    except QuantityError as exc:
        return _result(name, "failed", expected=expected, presented=presented, reason=str(exc))
    return _result(
        name, "passed" if same else "failed", expected=expected, presented=presented, reason=why
    )


def _time(order: Order, rule: OrderRule, at: datetime) -> VerificationResult:
    window = time_window(order, rule)
    if window is None:
        return _result("time", "not_applicable", reason="the order has no scheduled time")
    start, end = window
    shown = f"{start:%Y-%m-%d %H:%M}–{end:%H:%M}"
    now = local_naive(at)
    if now < start:
        return _result(
            "time",
            "failed",
            expected=shown,
            presented=f"{now:%H:%M}",
            reason=f"too early: the order may be carried out from {start:%H:%M}",
        )
    if now > end:
        return _result(
            "time",
            "failed",
            expected=shown,
            presented=f"{now:%H:%M}",
            reason=f"too late: the window closed at {end:%H:%M}; ask the doctor",
        )
    return _result("time", "passed", expected=shown, presented=f"{now:%H:%M}")


def _route(scan: BedsideScan, order: Order) -> VerificationResult:
    if order.route is None:
        return _result("route", "not_applicable", reason="the order gives no route")
    if not scan.route:
        return _result("route", "failed", expected=order.route, reason="no route given")
    if same_route(order.route, scan.route):
        return _result("route", "passed", expected=order.route, presented=scan.route)
    return _result(
        "route",
        "failed",
        expected=order.route,
        presented=scan.route,
        reason=f"route {scan.route} is not the ordered {order.route}",
    )


def verify(
    scan: BedsideScan,
    order: Order,
    binding: WristbandBinding,
    rule: OrderRule,
    *,
    at: datetime,
    patient_name: str | None = None,
) -> Verdict:
    """The seven verifications of ``scan`` against ``order`` for the band's ``binding``.

    ``patient_name`` is the name on the record (from the resident index), compared
    with the name the patient gave when the handheld sends one.
    """
    done = {
        "bed": lambda: _bed(scan, binding),
        "name": lambda: _name(scan, order, binding, patient_name),
        "drug": lambda: _drug(scan, order),
        "dose": lambda: _amount("dose", order.dose, scan.dose),
        "concentration": lambda: _amount("concentration", order.concentration, scan.concentration),
        "time": lambda: _time(order, rule, at),
        "route": lambda: _route(scan, order),
    }
    order_type = order_type_of(order)
    results = []
    for name in VERIFICATIONS:
        if name in rule.verifications:
            results.append(done[name]())
        else:
            results.append(
                _result(name, "not_applicable", reason=f"not checked for {order_type} orders")
            )
    return Verdict(
        order_id=order.order_id,
        wristband_id=scan.wristband_id,
        order_type=order_type,
        results=tuple(results),
        checked_at=at,
    )
