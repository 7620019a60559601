"""hcmiddleware: the Resident Health Card middleware SDK a hospital system embeds.

The public API is what this module exports (``__all__``); everything else may change
between releases. A HIS vendor needs nothing else::

    from hcmiddleware import Middleware, OutpatientFlow

    with Middleware.from_file("/etc/hcm/hcm.toml") as mw:
        card = mw.terminal.read()                        # CardRead
        resident = mw.residents.enrol_from_card(card)    # Resident
        patient = mw.his.find_or_register(resident, card=card)

The typed services hang off the :class:`Middleware`: ``terminal`` (card and SAM),
``residents`` (the resident index), ``faces``, ``his`` (the hospital's system through
its adapters), ``ehc`` (electronic health card codes), ``cards`` (lost and replaced
cards), ``journal`` (money), ``ward`` (wristbands, bedside checks, alarms) and ``audit``
(the tamper-evident audit log).
``Middleware.hooks`` is for plugins and tests.
Adapters import from here too, and from :mod:`hcmiddleware.models` and
:mod:`hcmiddleware.errors`, which this module re-exports.
"""

from __future__ import annotations

import logging

from hcmiddleware import errors, models
from hcmiddleware.access import Access, Caller, Session
from hcmiddleware.audit import Audit
from hcmiddleware.card.data import CardRead
from hcmiddleware.card.filemap import CardPart
from hcmiddleware.cards import Cards
from hcmiddleware.config import Config, Secret, SettingsModel, load_config
from hcmiddleware.ehc.service import CardFactor, Ehc, FaceFactor, IdDigitsFactor
from hcmiddleware.errors import (
    AccessDeniedError,
    AlreadyExecutedError,
    AuditError,
    BreakGlassError,
    CardAbsentError,
    CardError,
    CardPartNotReadError,
    CardRefusedError,
    ConfigError,
    EhcError,
    EhcFormatError,
    EhcRefusedError,
    FaceError,
    FaceMismatchError,
    FieldWithheldError,
    FlowError,
    FlowInputError,
    HcmError,
    HisError,
    HisRejectedError,
    HisUnavailableError,
    IdentityError,
    MoneyError,
    NoAdapterError,
    NoHandlerError,
    NotIdentifiedError,
    NotIdentifiedHereError,
    OutcomeUnknownError,
    PaymentNotRecordedError,
    PluginCallError,
    PluginError,
    PluginResultError,
    PluginTimeoutError,
    PrintError,
    ResidentIndexError,
    ResidentNotFoundError,
    SamError,
    UnknownRoleError,
    UnknownTerminalError,
    UnusablePhotoError,
    VerificationFailedError,
    WardError,
    WristbandError,
)
from hcmiddleware.faces import Faces
from hcmiddleware.flows.inpatient import InpatientFlow
from hcmiddleware.flows.journey import Identified
from hcmiddleware.flows.outpatient import DeskView, OutpatientFlow, Settled
from hcmiddleware.his import His
from hcmiddleware.hookspecs import hookimpl, hookspec
from hcmiddleware.models import (
    Admission,
    AdmissionRequest,
    Alarm,
    BandEvent,
    BedsideExecution,
    BedsideScan,
    Bill,
    CardState,
    Charge,
    CheckResult,
    Deposit,
    Discharge,
    EhcVerification,
    HospitalPatient,
    Identifier,
    IdentifierKind,
    Order,
    PrintDocument,
    QueuePosition,
    Registration,
    RegistrationRequest,
    Report,
    ReportResult,
    Resident,
    Sex,
    Verdict,
    VisitSummary,
    WristbandBinding,
)
from hcmiddleware.printing.service import PrintJob, Receipts
from hcmiddleware.residents import Residents
from hcmiddleware.runtime import Middleware, PluginInfo
from hcmiddleware.terminal import Terminal
from hcmiddleware.ward.service import Ward

__version__ = "0.1.0"

# A library adds no handler and sets no level: the application configures logging.
logging.getLogger("hcmiddleware").addHandler(logging.NullHandler())

__all__ = [
    "Access",
    "AccessDeniedError",
    "Admission",
    "AdmissionRequest",
    "Alarm",
    "AlreadyExecutedError",
    "Audit",
    "AuditError",
    "BandEvent",
    "BedsideExecution",
    "BedsideScan",
    "Bill",
    "BreakGlassError",
    "Caller",
    "CardAbsentError",
    "CardError",
    "CardFactor",
    "CardPart",
    "CardPartNotReadError",
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
    "FieldWithheldError",
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
    "NotIdentifiedHereError",
    "Order",
    "OutcomeUnknownError",
    "OutpatientFlow",
    "PaymentNotRecordedError",
    "PluginCallError",
    "PluginError",
    "PluginInfo",
    "PluginResultError",
    "PluginTimeoutError",
    "PrintDocument",
    "PrintError",
    "PrintJob",
    "QueuePosition",
    "Receipts",
    "Registration",
    "RegistrationRequest",
    "Report",
    "ReportResult",
    "Resident",
    "ResidentIndexError",
    "ResidentNotFoundError",
    "Residents",
    "SamError",
    "Secret",
    "Session",
    "SettingsModel",
    "Settled",
    "Sex",
    "Terminal",
    "UnknownRoleError",
    "UnknownTerminalError",
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
