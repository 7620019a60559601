"""Typed errors as HTTP answers: ``application/problem+json`` (RFC 9457).

Every :class:`~hcmiddleware.errors.HcmError` becomes a problem whose ``type`` names the
error class, ``detail`` its message and ``hint`` what to do; the error's own fields
(``capability``, ``reason``, ``sw`` …) come along. The status is taken from the
nearest class in :data:`STATUS` up the error's class tree, by name, so errors added
later (the roles part's ``AccessDeniedError``) find theirs without an import.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hcmiddleware.errors import AgentError, HcmError

__all__ = ["MEDIA_TYPE", "STATUS", "Problem", "problem_of", "status_of"]

MEDIA_TYPE = "application/problem+json"

#: HTTP status by error class name; the nearest ancestor listed wins.
STATUS: dict[str, int] = {
    # roles
    "AccessDeniedError": 403,
    # what the configuration does not provide: 501 names the capability
    "NoHandlerError": 501,
    "MissingExtraError": 501,
    "PluginUnavailableError": 503,
    "PluginTimeoutError": 504,
    "PluginResultError": 502,
    "PluginError": 502,
    "ConfigError": 500,
    "StorageError": 503,
    # the card and its reader
    "CardPartError": 422,
    "CardAbsentError": 409,
    "ReaderError": 409,  # the workstation's reader: absent, busy, no PC/SC service
    "CardRefusedError": 409,
    "CardError": 422,
    "SamInputError": 422,
    "SamError": 503,
    # the resident index
    "ResidentNotFoundError": 404,
    "IdentifierConflictError": 409,
    "MergeError": 409,
    "ProtectionError": 500,
    "ImportFileError": 422,
    "ResidentIndexError": 422,
    # faces
    "FaceBackendError": 503,
    "FaceTemplateError": 500,
    "FaceError": 422,
    # the HIS
    "HisRejectedError": 422,
    "HisUnavailableError": 503,
    "HisError": 502,
    # money
    "AmountError": 422,
    "IdempotencyConflictError": 409,
    "UnknownTransactionError": 404,
    "RefundRefusedError": 422,
    "PaymentDeclinedError": 422,
    "IdentityDocumentError": 422,
    "RemoteFaultError": 502,
    "RemoteUnavailableError": 503,
    "MalformedResponseError": 502,
    "OutcomeUnknownError": 504,
    "MoneyError": 422,
    # the e-card
    "EhcPlatformError": 502,
    "EhcError": 422,
    # the ward
    "UnknownWristbandError": 404,
    "UnknownAlarmError": 404,
    "WristbandError": 409,
    "AlreadyExecutedError": 409,
    "ExecutionStateError": 409,
    "OrderNotExecutableError": 409,
    "WardError": 422,
    # audit
    "AuditInputError": 422,
    "AuditError": 503,
    # journeys
    "NotIdentifiedError": 404,
    "PaymentNotRecordedError": 502,
    "FlowError": 422,
    "HcmError": 500,
}


class Problem(BaseModel):
    """An error answer (``application/problem+json``): what happened and what to do."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="urn:hcmiddleware:error:<ErrorClass>")
    title: str = Field(description="the error class, e.g. NoAdapterError")
    status: int = Field(description="the HTTP status")
    detail: str = Field(description="what happened")
    hint: str = Field("", description="what to do about it")


def status_of(exc: HcmError) -> int:
    """The HTTP status for ``exc`` (see :data:`STATUS`)."""
    if isinstance(exc, AgentError):
        return int(exc.status)
    for cls in type(exc).__mro__:
        status = STATUS.get(cls.__name__)
        if status is not None:
            return status
    return 500


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, BaseException):
        return str(value)
    return str(value)


def problem_of(exc: HcmError) -> dict[str, Any]:
    """The problem+json body for ``exc``."""
    name = type(exc).__name__
    status = status_of(exc)
    body: dict[str, Any] = {
        "type": f"urn:hcmiddleware:error:{name}",
        "title": name,
        "status": status,
        "detail": exc.message,
        "hint": exc.hint,
    }
    for key, value in exc.details().items():
        if key in {"error", "message", "hint", "status", "related"} or key in body:
            continue
        body[key] = _plain(value)
    return body
