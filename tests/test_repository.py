"""The repository stands on its own: nothing points outside it; cited requirements are defined.

The card is described in docs/card-spec.md and the requirements in docs/requirements.md;
code, tests and docs point there and nowhere else.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "docs" / "requirements.md"

# Spelt in pieces so that this file does not match itself.
FORBIDDEN = ("CARD-SPEC" + ".md", ".." + "/shared", "REQUIREMENTS" + ".md")

#: An ID (``R-CARD-1``) or a range of them (``R-EMPI-1…5``, ``R-PAY-1..3``).
ID_OR_RANGE = re.compile(r"\bR-([A-Z]+)-(\d+)(?:(?:…|\.\.|–)(\d+))?")
#: Where docs/requirements.md defines an ID: a list item that starts with it in bold.
DEFINITION = re.compile(r"^- \*\*R-([A-Z]+)-(\d+)\*\* \S", re.MULTILINE)

_SKIP_DIRS = {".git", ".tox", ".venv", "__pycache__", "build", "dist", ".mypy_cache"}


def _tracked_files() -> list[Path]:
    """The files git tracks; without git (an unpacked sdist), every file under the root."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return [
            p
            for p in ROOT.rglob("*")
            if p.is_file() and not _SKIP_DIRS.intersection(p.relative_to(ROOT).parts)
        ]
    return [ROOT / name for name in out.decode().split("\0") if name]


def _text(path: Path) -> str | None:
    """The file's text, or None for a binary file (or one deleted but not yet committed)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _texts(paths: list[Path]) -> dict[str, str]:
    found = {}
    for path in paths:
        text = _text(path)
        if text is not None:
            found[path.relative_to(ROOT).as_posix()] = text
    return found


def _cited(text: str) -> set[str]:
    ids = set()
    for family, first, last in ID_OR_RANGE.findall(text):
        end = int(last) if last else int(first)
        ids.update(f"R-{family}-{n}" for n in range(int(first), end + 1))
    return ids


def _defined() -> list[str]:
    return [f"R-{family}-{n}" for family, n in DEFINITION.findall(REQUIREMENTS.read_text("utf-8"))]


def test_the_tracked_files_are_found() -> None:
    names = _texts(_tracked_files())
    assert "README.md" in names
    assert "docs/card-spec.md" in names
    assert "src/hcmiddleware/card/filemap.py" in names


def test_no_tracked_text_file_points_outside_the_repository() -> None:
    offenders = [
        f"{name}:{lineno}: {line.strip()}"
        for name, text in _texts(_tracked_files()).items()
        for lineno, line in enumerate(text.splitlines(), start=1)
        if any(bad in line for bad in FORBIDDEN)
    ]
    assert not offenders, (
        "these lines refer to documents outside the repository; cite docs/card-spec.md "
        "or docs/requirements.md instead:\n" + "\n".join(offenders)
    )


def test_each_requirement_is_defined_once_and_numbered_without_gaps() -> None:
    defined = _defined()
    assert len(defined) == len(set(defined)), "a requirement ID is defined twice"
    families: dict[str, list[int]] = {}
    for rid in defined:
        _, family, n = rid.split("-")
        families.setdefault(family, []).append(int(n))
    assert set(families) >= {"CARD", "SAM", "EMPI", "FACE", "HIS", "PAY", "WARD", "SEC", "DX"}
    for family, numbers in families.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), family


@pytest.mark.parametrize("area", ["src", "docs", "README.md", "tests", "examples", "adapters"])
def test_every_requirement_cited_is_defined(area: str) -> None:
    defined = set(_defined())
    texts = _texts([p for p in _tracked_files() if p.relative_to(ROOT).parts[0] == area])
    assert texts, f"no tracked files under {area}"
    undefined = {
        f"{rid} ({name})"
        for name, text in texts.items()
        if name != "docs/requirements.md"
        for rid in _cited(text)
        if rid not in defined
    }
    assert not undefined, "cited but not defined in docs/requirements.md: " + ", ".join(
        sorted(undefined)
    )


def test_citations_are_recognised() -> None:
    """The ID scanner sees single IDs and both spellings of ranges."""
    assert _cited("see R-EMPI-1…3 and R-PAY-2, R-SEC-1..2") == {
        "R-EMPI-1",
        "R-EMPI-2",
        "R-EMPI-3",
        "R-PAY-2",
        "R-SEC-1",
        "R-SEC-2",
    }
