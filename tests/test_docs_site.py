"""The documentation site: generated references in step with the code, every page in
the navigation, the concepts picture drawn, the docs env as CI runs it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from hcmiddleware import errors
from hcmiddleware.cli import main
from hcmiddleware.config import Config
from hcmiddleware.docgen import (
    PAGES,
    cli_reference,
    config_reference,
    troubleshooting,
)
from hcmiddleware.docgen import (
    main as docgen,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_the_committed_reference_is_what_the_code_says(name: str) -> None:
    committed = (DOCS / name).read_text(encoding="utf-8")
    assert committed == PAGES[name](), "regenerate: python -m hcmiddleware.docgen"


def test_check_mode_finds_a_stale_page_and_writes_nothing(tmp_path: Path) -> None:
    assert docgen([str(tmp_path)]) == 0
    assert docgen([str(tmp_path), "--check"]) == 0
    page = tmp_path / "reference" / "configuration.md"
    page.write_text(page.read_text(encoding="utf-8") + "hand edit\n", encoding="utf-8")
    assert docgen([str(tmp_path), "--check"]) == 1
    assert page.read_text(encoding="utf-8").endswith("hand edit\n")


def test_every_section_and_key_is_in_the_configuration_reference() -> None:
    text = config_reference()
    for section, field in Config.model_fields.items():
        if field.exclude:
            continue
        assert f"## `[{section}]`" in text, section
        model = field.annotation
        for key in model.model_fields:  # type: ignore[union-attr]
            row, nested = f"| `{key}` |", f"## `[{section}.{key}"
            assert row in text or nested in text, f"{section}.{key}"
    assert "## `[ward.labels]`" in text, "nested sections too"
    assert "## `[ehc.keys.<name>]`" in text, "tables of sections too"
    # a default, a type and a description come from the models themselves
    assert "| `line_width` | integer | `48` |" in text


def test_every_command_and_option_is_in_the_command_reference() -> None:
    text = cli_reference()
    import click

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        assert f"## `{' '.join(path)}`" in text, path
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert f"`{param.opts[0]}`" in text, (path, param.opts)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))

    walk(main, ("hcm",))
    assert "Sentinel" not in text


def test_every_error_is_in_the_troubleshooting_page_with_its_advice() -> None:
    text = troubleshooting()
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert f"## `{name}`" in text, name
        own = cls.__dict__.get("default_hint")
        if own:
            assert " ".join(own.split()) in text, name
    # the hints the code raises an error with are gathered from the package
    assert "check [printing] pdf_command" in text
    assert "<" not in re.sub(r"`[^`]*`|<!--.*?-->", "", text), "no raw HTML from a hint"


def _nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


def test_every_page_is_in_the_navigation_and_the_build_is_strict() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["strict"] is True
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(_nav_pages(config["nav"])) == pages
    tox = (ROOT / "tox.ini").read_text(encoding="utf-8")
    env = tox.split("[testenv:docs]", 1)[1].split("\n[", 1)[0]
    assert "mkdocs build --strict" in env
    assert "python -m hcmiddleware.docgen --check" in env


def test_the_concepts_page_draws_the_parts() -> None:
    page = (DOCS / "concepts.md").read_text(encoding="utf-8")
    [picture] = re.findall(r"\]\((img/[^)]+\.svg)\)", page)
    svg = ET.parse(DOCS / picture).getroot()
    assert svg.tag.endswith("svg")
    words = " ".join(t.text or "" for t in svg.iter() if t.tag.endswith("text"))
    for part in ("terminal", "residents", "journal", "receipts", "audit", "HIS adapters",
                 "bank", "printers", "Database", "Keys", "Card reader"):  # fmt: skip
        assert part in words, part


def test_the_operations_page_covers_the_runbook() -> None:
    page = (DOCS / "operations.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", page, flags=re.MULTILINE)
    assert headings == [
        "A new installation",
        "Every day",
        "Key rotation",
        "Backups",
        "Upgrading",
        "When something fails",
    ]
    for command in ("hcm doctor", "hcm init", "hcm empi rewrap", "hcm journal reconcile",
                    "hcm audit verify", "hcm journal recover", "pg_dump"):  # fmt: skip
        assert command in page, command
