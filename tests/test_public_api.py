"""The public API is what ``hcmiddleware`` exports; removing a name is a visible decision.

And the hooks are called: every hookspec has a caller in the package (not counting the
test kit), except the few whose feature is still to be built, listed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hcmiddleware
from hcmiddleware import hookspecs

PACKAGE = Path(hcmiddleware.__file__).parent

#: The names a HIS vendor and an adapter author may rely on. Change deliberately.
PUBLIC = sorted(
    [
        "Access",
        "AccessDeniedError",
        "BreakGlassError",
        "Caller",
        "FieldWithheldError",
        "NotIdentifiedHereError",
        "Session",
        "UnknownRoleError",
        "UnknownTerminalError",
        "Admission",
        "AdmissionRequest",
        "Alarm",
        "AlreadyExecutedError",
        "BandEvent",
        "BedsideExecution",
        "BedsideScan",
        "Audit",
        "AuditError",
        "Bill",
        "CardAbsentError",
        "CardError",
        "CardPart",
        "CardPartNotReadError",
        "CardFactor",
        "CardRead",
        "CardRefusedError",
        "CardState",
        "Cards",
        "Charge",
        "CheckResult",
        "Config",
        "ConfigError",
        "Deposit",
        "DeskView",
        "Discharge",
        "Ehc",
        "EhcError",
        "EhcFormatError",
        "EhcRefusedError",
        "EhcVerification",
        "FaceError",
        "FaceFactor",
        "FaceMismatchError",
        "Faces",
        "FlowError",
        "FlowInputError",
        "HcmError",
        "His",
        "HisError",
        "HisRejectedError",
        "HisUnavailableError",
        "HospitalPatient",
        "IdDigitsFactor",
        "Identified",
        "Identifier",
        "IdentifierKind",
        "IdentityError",
        "InpatientFlow",
        "Middleware",
        "MoneyError",
        "NoAdapterError",
        "NoHandlerError",
        "NotIdentifiedError",
        "Order",
        "OutcomeUnknownError",
        "OutpatientFlow",
        "PaymentNotRecordedError",
        "PluginCallError",
        "PluginError",
        "PluginInfo",
        "PluginResultError",
        "PluginTimeoutError",
        "QueuePosition",
        "Registration",
        "RegistrationRequest",
        "PrintDocument",
        "PrintError",
        "PrintJob",
        "Receipts",
        "Report",
        "ReportResult",
        "Resident",
        "ResidentIndexError",
        "ResidentNotFoundError",
        "Residents",
        "SamError",
        "Secret",
        "SettingsModel",
        "Settled",
        "Sex",
        "Terminal",
        "UnusablePhotoError",
        "Verdict",
        "VerificationFailedError",
        "VisitSummary",
        "Ward",
        "WardError",
        "WristbandBinding",
        "WristbandError",
        "__version__",
        "errors",
        "hookimpl",
        "hookspec",
        "load_config",
        "models",
    ]
)

#: Hooks with no caller yet, each with the feature that will call it.
NOT_YET_CALLED: dict[str, str] = {}


def test_exported_names_are_pinned() -> None:
    assert sorted(hcmiddleware.__all__) == PUBLIC


def test_every_exported_name_resolves_and_is_documented() -> None:
    for name in hcmiddleware.__all__:
        value = getattr(hcmiddleware, name)
        if name.startswith("__"):
            continue
        assert (value.__doc__ or "").strip(), f"hcmiddleware.{name} has no docstring"


def _spec_names() -> set[str]:
    tree = ast.parse(Path(hookspecs.__file__).read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("hcm_")
    }


def _called_hooks(specs: set[str]) -> dict[str, set[str]]:
    """Hook names used in code (attribute access or a string constant, not a docstring)."""
    used: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "testing" or rel.name in {"hookspecs.py", "hookdoc.py"}:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in specs:
                used.setdefault(node.attr, set()).add(str(rel))
            elif (
                isinstance(node, ast.Constant)
                and node.value in specs
                and id(node) not in docstrings
            ):
                used.setdefault(str(node.value), set()).add(str(rel))
    return used


def test_every_hook_has_a_caller() -> None:
    specs = _spec_names()
    assert set(NOT_YET_CALLED) <= specs, "a hook listed as pending no longer exists"
    called = _called_hooks(specs)
    uncalled = specs - set(called)
    assert uncalled == set(NOT_YET_CALLED), (
        f"hooks nobody calls: {sorted(uncalled - set(NOT_YET_CALLED))}; "
        f"called now, remove from NOT_YET_CALLED: {sorted(set(NOT_YET_CALLED) - uncalled)}"
    )
