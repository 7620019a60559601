"""``hcm face``: check, enrol, search and remove faces from the command line.

Exit codes: 0 match / enrolled / searched / removed, 1 no match / duplicate found /
nothing to remove, 2 unusable input (a photo failed a quality gate, a file is missing,
bad options), 3 the check could not be made (backend not installed, database or
template store failing).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from hcmiddleware.errors import ConfigError, HcmError, UnusablePhotoError

if TYPE_CHECKING:
    from hcmiddleware.face.store import TemplateCipher
    from hcmiddleware.faces import Faces

__all__ = ["face"]

EXIT_MATCH = 0
EXIT_NO_MATCH = 1
EXIT_UNUSABLE = 2
EXIT_FAILED = 3

_photo = click.Path(exists=True, dir_okay=False, path_type=Path)


def _fail(exc: HcmError, as_json: bool) -> NoReturn:
    """Report ``exc`` and exit: 2 for an unusable photo or bad options, else 3."""
    code = EXIT_UNUSABLE if isinstance(exc, UnusablePhotoError | ConfigError) else EXIT_FAILED
    if as_json:
        status = "unusable" if isinstance(exc, UnusablePhotoError) else "error"
        click.echo(json.dumps({"status": status, **exc.details()}, ensure_ascii=False))
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(code)


def _load_cipher(spec: str | None) -> TemplateCipher:
    """Build the template cipher from ``module:callable`` (the callable takes no
    arguments and returns an object with ``encrypt``/``decrypt``)."""
    if not spec:
        raise ConfigError(
            "no template cipher given",
            key="--cipher",
            hint="pass --cipher MODULE:CALLABLE (or set HCM_FACE_CIPHER) naming a factory "
            "of the deployment's template protector",
        )
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        cipher = factory()
    except Exception as exc:
        raise ConfigError(
            f"cannot build the template cipher {spec!r}: {type(exc).__name__}",
            key="--cipher",
            hint="check the module is importable and its factory's own settings",
        ) from None
    if not (
        callable(getattr(cipher, "encrypt", None)) and callable(getattr(cipher, "decrypt", None))
    ):
        raise ConfigError(
            f"{spec!r} did not return an object with encrypt() and decrypt()",
            key="--cipher",
        )
    return cipher  # type: ignore[no-any-return]


def _faces(db: str | None, cipher_spec: str | None, key_id: str) -> Faces:
    """The face service the command goes through (audited, hooks fire)."""
    from hcmiddleware.cli.context import open_middleware

    ctx = click.get_current_context()
    if db is None:
        # The installation's own store: the config's database, templates sealed with
        # the resident index's [empi] keys.
        return open_middleware(ctx).faces
    from hcmiddleware.face.enrolment import FaceEnrolment
    from hcmiddleware.face.store import TemplateStore
    from hcmiddleware.face.verify import FaceService
    from hcmiddleware.faces import Faces
    from hcmiddleware.runtime import Middleware
    from hcmiddleware.storage import create_engine

    cipher = _load_cipher(cipher_spec)
    service = FaceService()
    engine = create_engine(db)
    ctx.call_on_close(engine.dispose)
    store = TemplateStore(
        engine,
        cipher,
        key_id=key_id,
        backend=service.backend.name,
        dimension=service.backend.dimension,
    )
    # A separate store is no installation: no installation's plugins are told.
    bare = Middleware()
    ctx.call_on_close(bare.close)
    return Faces(bare, enrolment=FaceEnrolment.open(service, store))


_db_option = click.option(
    "--db",
    envvar="HCM_DATABASE_URL",
    help="a separate template database (SQLAlchemy URL, with --cipher); default: the "
    "config's database, sealed with its [empi] keys",
)
_cipher_option = click.option(
    "--cipher",
    "cipher_spec",
    envvar="HCM_FACE_CIPHER",
    help="MODULE:CALLABLE returning the template cipher (encrypt/decrypt)",
)
_key_id_option = click.option(
    "--key-id",
    envvar="HCM_FACE_KEY_ID",
    default="default",
    show_default=True,
    help="id of the key the cipher encrypts with, stored with each template",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON object")


@click.group()
def face() -> None:
    """Face checks: 1:1 verification, enrolment, 1:N search, removal."""


@face.command()
@click.argument("live", type=_photo)
@click.argument("reference", type=_photo)
@click.option(
    "--source",
    type=click.Choice(["card_photo", "enrolled"]),
    default="card_photo",
    show_default=True,
    help="what REFERENCE is; chooses the threshold",
)
@click.option("--threshold", type=click.FloatRange(0.0, 2.0, min_open=True), help="override it")
@_json_option
def verify(
    live: Path, reference: Path, source: str, threshold: float | None, as_json: bool
) -> None:
    """Is the person in LIVE the person in REFERENCE?

    Exit 0 match, 1 no match, 2 a photo is unusable, 3 the check failed.
    """
    from hcmiddleware.cli.context import open_middleware

    try:
        answer = open_middleware(click.get_current_context()).faces.verify(
            live.read_bytes(),
            reference.read_bytes(),
            source=source,  # type: ignore[arg-type]
            context="cli",
            threshold=threshold,
        )
    except HcmError as exc:
        _fail(exc, as_json)
    if as_json:
        click.echo(answer.model_dump_json())
    elif answer.status in ("match", "no_match"):
        word, op = ("match", "<=") if answer.matched else ("no match", ">")
        click.echo(
            f"{word}: distance {answer.distance:.3f} {op} threshold {answer.threshold:.3f} "
            f"({answer.source}, {answer.backend})"
        )
    else:
        click.echo(f"{answer.status}: {answer.photo} photo: {answer.message} — {answer.hint}")
        if answer.advice is not None:
            click.echo(f"advice ({answer.advice.code}): {answer.advice.zh} / {answer.advice.en}")
    sys.exit({"match": EXIT_MATCH, "no_match": EXIT_NO_MATCH}.get(answer.status, EXIT_UNUSABLE))


@face.command()
@_db_option
@_cipher_option
@_key_id_option
@click.option(
    "--allow-duplicate", is_flag=True, help="enrol although the face matches another resident"
)
@_json_option
@click.argument("resident_id")
@click.argument("photo", type=_photo)
def enrol(
    db: str | None,
    cipher_spec: str | None,
    key_id: str,
    allow_duplicate: bool,
    as_json: bool,
    resident_id: str,
    photo: Path,
) -> None:
    """Enrol RESIDENT_ID's face from PHOTO, unless it is another resident's face.

    Exit 0 enrolled, 1 a duplicate was found (nothing stored), 2 unusable photo,
    3 failed.
    """
    try:
        result = _faces(db, cipher_spec, key_id).enrol(
            resident_id, photo.read_bytes(), allow_duplicates=allow_duplicate, actor="cli"
        )
    except HcmError as exc:
        _fail(exc, as_json)
    if as_json:
        click.echo(result.model_dump_json())
    elif result.status == "enrolled":
        click.echo(f"enrolled: {resident_id}")
    else:
        near = ", ".join(f"{d.resident_id} ({d.distance:.3f})" for d in result.duplicates)
        click.echo(
            f"duplicate: the face matches {near} (threshold {result.threshold:.3f}); "
            "nothing stored — review, then use --allow-duplicate if they are different people"
        )
    sys.exit(EXIT_MATCH if result.status == "enrolled" else EXIT_NO_MATCH)


@face.command()
@_db_option
@_cipher_option
@_key_id_option
@click.option("--top", type=click.IntRange(1, 100), default=5, show_default=True)
@_json_option
@click.argument("photo", type=_photo)
def search(
    db: str | None, cipher_spec: str | None, key_id: str, top: int, as_json: bool, photo: Path
) -> None:
    """The enrolled residents whose faces are nearest to PHOTO's.

    Exit 0 searched, 2 unusable photo, 3 failed.
    """
    try:
        faces = _faces(db, cipher_spec, key_id)
        hits = faces.search(photo.read_bytes(), top=top, actor="cli")
        enrolment = faces.enrolment
    except HcmError as exc:
        _fail(exc, as_json)
    threshold = enrolment.service.settings.thresholds.duplicate
    rows: list[dict[str, Any]] = [
        {
            "resident_id": h.resident_id,
            "distance": h.distance,
            "same_person": h.distance <= threshold,
        }
        for h in hits
    ]
    if as_json:
        click.echo(
            json.dumps({"threshold": threshold, "enrolled": len(enrolment.gallery), "hits": rows})
        )
        return
    click.echo(f"{len(enrolment.gallery)} enrolled; duplicate threshold {threshold:.3f}")
    for rank, row in enumerate(rows, 1):
        flag = "  <= same person?" if row["same_person"] else ""
        click.echo(f"{rank:3d}  {row['resident_id']}  {row['distance']:.3f}{flag}")
    if not rows:
        click.echo("no faces enrolled")


@face.command()
@_db_option
@_cipher_option
@_key_id_option
@_json_option
@click.argument("resident_id")
def remove(
    db: str | None, cipher_spec: str | None, key_id: str, as_json: bool, resident_id: str
) -> None:
    """Delete RESIDENT_ID's face template (consent withdrawn, record merged).

    Exit 0 removed, 1 none was enrolled, 3 failed.
    """
    try:
        removed = _faces(db, cipher_spec, key_id).remove(resident_id, actor="cli")
    except HcmError as exc:
        _fail(exc, as_json)
    if as_json:
        click.echo(json.dumps({"resident_id": resident_id, "removed": removed}))
    else:
        click.echo(f"removed: {resident_id}" if removed else f"not enrolled: {resident_id}")
    sys.exit(EXIT_MATCH if removed else EXIT_NO_MATCH)
