"""The core's own ``hcm doctor`` checks: data directory, database, index keys, audit log,
readers."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hcmiddleware import storage
from hcmiddleware.errors import HcmError
from hcmiddleware.hookspecs import hookimpl
from hcmiddleware.models import CheckResult

if TYPE_CHECKING:
    from hcmiddleware.runtime import Middleware

NAME = "hcm.core-checks"


def _data_dir(mw: Middleware) -> CheckResult:
    path = mw.config.middleware.data_dir
    if path.is_dir() and os.access(path, os.W_OK):
        return CheckResult(name="data directory", ok=True, detail=str(path))
    if not path.exists() and os.access(path.parent if str(path.parent) else ".", os.W_OK):
        return CheckResult(
            name="data directory", ok=True, detail=f"{path} (will be created on first use)"
        )
    return CheckResult(
        name="data directory",
        ok=False,
        detail=f"{path} is not writable",
        hint="create it and give the service's user write access, or change data_dir",
    )


def _database(mw: Middleware) -> CheckResult:
    try:
        storage.ping(mw.engine)
    except HcmError as exc:
        return CheckResult(name="database", ok=False, detail=exc.message, hint=exc.hint)
    return CheckResult(
        name="database",
        ok=True,
        detail=mw.engine.url.render_as_string(hide_password=True),
    )


def _index_keys(mw: Middleware) -> CheckResult:
    """The [empi] keys are configured and open the index's data keys."""
    try:
        index = mw.residents.index
    except HcmError as exc:
        return CheckResult(name="resident index keys", ok=False, detail=exc.message, hint=exc.hint)
    return CheckResult(
        name="resident index keys",
        ok=True,
        detail=f"current key {index.protector.current_key_id!r}; {index.count()} residents",
    )


#: entries at the end of the audit chain ``hcm doctor`` checks (``hcm audit verify``: all)
DOCTOR_TAIL = 1000


def _audit(mw: Middleware) -> list[CheckResult]:
    """The audit chain opens with the configured hash, its tail is intact, checkpoints are
    signed and their file is writable."""
    from hcmiddleware.audit.signing import key_id
    from hcmiddleware.audit.verify import verify_chain

    audit = mw.audit
    results: list[CheckResult] = []
    key = audit.signing_key
    if key is None:
        results.append(
            CheckResult(
                name="audit checkpoints signed",
                ok=False,
                detail="no [audit] signing_key: checkpoints are unsigned and prove nothing",
                hint="'hcm init' writes one for a new site; else 'openssl genpkey -algorithm "
                "ed25519 -out keys/audit-signing.pem' (mode 600) and name it as "
                '[audit] signing_key = { file = "keys/audit-signing.pem" }',
            )
        )
    else:
        results.append(
            CheckResult(name="audit checkpoints signed", ok=True, detail=f"key {key_id(key)}")
        )
    try:
        audit.open()
        seq, algorithm = audit.head()
        report = verify_chain(
            audit.engine,
            start=max(seq - DOCTOR_TAIL + 1, 1),
            keys=audit.public_keys(),
            signing_expected=key is not None,
        )
    except HcmError as exc:
        results.append(CheckResult(name="audit log", ok=False, detail=exc.message, hint=exc.hint))
        return results
    if report.ok:
        results.append(
            CheckResult(
                name="audit log",
                ok=True,
                detail=f"{seq} entries ({algorithm or audit.algorithm}); the last "
                f"{report.entries} intact",
            )
        )
    else:
        first = report.problems[0]
        results.append(
            CheckResult(
                name="audit log",
                ok=False,
                detail=f"entry {first.seq}: {first.kind} — {first.message}",
                hint="run 'hcm audit verify' for the whole chain and every problem",
            )
        )
    target = mw.config.audit.checkpoint_file
    if target is not None:
        folder = target if target.is_dir() else target.parent
        writable = (
            os.access(target, os.W_OK)
            if target.exists()
            else folder.is_dir() and os.access(folder, os.W_OK)
        )
        results.append(
            CheckResult(
                name="audit checkpoint file",
                ok=writable and not target.is_dir(),
                detail=str(target),
                hint="" if writable else "create its folder and let the service's user write it",
            )
        )
    return results


def _readers(mw: Middleware) -> list[CheckResult]:
    wanted = {
        role: name
        for role, name in (("user card", mw.config.readers.user), ("SAM", mw.config.readers.sam))
        if name
    }
    if not wanted:
        return []
    try:
        from smartcard.System import readers as pcsc_readers
    except ImportError:
        return [
            CheckResult(
                name="card readers",
                ok=False,
                detail="pyscard is not installed",
                hint="install hcmiddleware[pcsc] (needs libpcsclite-dev to build)",
            )
        ]
    try:
        present = [str(r) for r in pcsc_readers()]
    except Exception as exc:
        return [
            CheckResult(
                name="card readers",
                ok=False,
                detail=f"PC/SC service not available ({type(exc).__name__})",
                hint="start pcscd (e.g. 'pcscd' as root) and check the reader is plugged in",
            )
        ]
    results = []
    for role, name in wanted.items():
        ok = name in present
        results.append(
            CheckResult(
                name=f"reader for the {role}",
                ok=ok,
                detail=name
                if ok
                else f"{name!r} not found; present: {', '.join(present) or 'none'}",
                hint="" if ok else "plug the reader in, or fix [readers] in the config",
            )
        )
    return results


def _sam(mw: Middleware) -> list[CheckResult]:
    config = mw.config
    if config.sam.keys is None and config.readers.sam is None:
        return []
    try:
        sam = mw.terminal.check_sam()  # asked now: a SAM opened once may have gone since
    except HcmError as exc:
        return [CheckResult(name="SAM", ok=False, detail=exc.message, hint=exc.hint)]
    kind = type(sam).__name__
    return [CheckResult(name="SAM", ok=True, detail=f"{kind}, city code {sam.city_code}, answers")]


@hookimpl(trylast=True)
def hcm_doctor_checks(middleware: Middleware) -> list[CheckResult]:
    """Data directory, database, index keys, the audit log, readers, the SAM, half-provided
    HIS parts, the e-card's issuer keys and revocation lists, and roles that grant nothing
    or everything."""
    database = _database(middleware)
    return [
        _data_dir(middleware),
        database,
        *([_index_keys(middleware)] if database.ok else []),
        *(_audit(middleware) if database.ok else []),
        *_readers(middleware),
        *_sam(middleware),
        *middleware.his.check(),
        *(middleware.cards.check_lists() if database.ok else []),
        *(middleware.ehc.check() if database.ok else []),
        *middleware.access.check(),
    ]
