"""``Middleware.residents`` and ``hcm empi`` go one way: hooks fire, acts are audited."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hcmiddleware import Middleware, hookimpl
from hcmiddleware.cli import main
from hcmiddleware.config import load_config
from hcmiddleware.empi.importer import COLUMNS
from hcmiddleware.models import IdentifierKind, Resident, Sex

ROWS = [
    ["R1", "张秀英", "2", "1949-12-31", "11010519491231002X", "13800138000", "北京市朝阳区", "C1"],
    ["R2", "李雷", "1", "1880-01-01", "440524188001010014", "", "", "C2"],
]


def _csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows(ROWS)
    return path


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file whose [empi] keys come from the environment."""
    monkeypatch.setenv("HCM_T_MASTER_A", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("HCM_T_INDEX", base64.b64encode(os.urandom(32)).decode())
    config = tmp_path / "hcm.toml"
    config.write_text(
        f"""
[middleware]
data_dir = "{(tmp_path / "data").as_posix()}"

[empi]
master_keys = {{ a = {{ env = "HCM_T_MASTER_A" }} }}
index_key = {{ env = "HCM_T_INDEX" }}
""",
        encoding="utf-8",
    )
    return config


class Listener:
    """An installation's plugin that keeps what the index announces."""

    def __init__(self) -> None:
        self.enrolled: list[str] = []
        self.merged: list[tuple[str, str]] = []
        self.unmerged: list[str] = []

    @hookimpl
    def hcm_empi_resident_enrolled(self, resident: Resident) -> None:
        self.enrolled.append(resident.resident_id)

    @hookimpl
    def hcm_empi_residents_merged(self, survivor: Resident, merged: Resident) -> None:
        self.merged.append((survivor.resident_id, merged.resident_id))

    @hookimpl
    def hcm_empi_resident_unmerged(self, restored: Resident) -> None:
        self.unmerged.append(restored.resident_id)


def test_import_enrol_and_merge_are_announced(installation: Path, tmp_path: Path) -> None:
    listener = Listener()
    with Middleware(load_config(installation), plugins={"listener": listener}) as mw:
        report = mw.residents.import_csv(_csv(tmp_path / "his.csv"))
        assert report.created == 2
        zhang = mw.residents.lookup(IdentifierKind.CARD_NUMBER, "C1")
        li = mw.residents.lookup("card_number", "C2")
        assert zhang is not None
        assert li is not None
        assert sorted(listener.enrolled) == sorted([zhang.resident_id, li.resident_id])
        # a resident registered at a desk without a card is announced too
        desk = mw.residents.enrol(
            name="王芳", sex=Sex.FEMALE, birth_date=dt.date(1990, 5, 1), record_id="desk-7"
        )
        assert listener.enrolled[-1] == desk.resident_id
        # importing the same file again creates nobody and announces nothing
        again = mw.residents.import_csv(tmp_path / "his.csv")
        assert (again.created, again.skipped) == (0, 2)
        assert len(listener.enrolled) == 3
        mw.residents.merge(li.resident_id, desk.resident_id, reason="same", operator="u1")
        assert listener.merged == [(li.resident_id, desk.resident_id)]
        mw.residents.unmerge(desk.resident_id, reason="not the same", operator="u1")
        assert listener.unmerged == [desk.resident_id]
        assert mw.residents.get(desk.resident_id).resident_id == desk.resident_id


def test_cli_merge_goes_through_the_service(
    installation: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = CliRunner()
    base = ["--config", str(installation), "empi"]
    result = runner.invoke(main, [*base, "import", str(_csv(tmp_path / "his.csv"))])
    assert result.exit_code == 0, result.output
    with Middleware(load_config(installation)) as mw:
        ids = [
            r.resident_id
            for r in (
                mw.residents.lookup(IdentifierKind.CARD_NUMBER, "C1"),
                mw.residents.lookup(IdentifierKind.CARD_NUMBER, "C2"),
            )
            if r is not None
        ]
    assert len(ids) == 2
    caplog.set_level("INFO", logger="hcmiddleware.audit")
    merge = [*base, "merge", ids[0], ids[1], "--reason", "test", "--operator", "clerk-3"]
    result = runner.invoke(main, merge)
    assert result.exit_code == 0, result.output
    audited = [json.loads(r.getMessage()) for r in caplog.records if r.name == "hcmiddleware.audit"]
    assert [(a["action"], a["actor"], a["subject"]) for a in audited] == [
        ("empi.merge", "clerk-3", ids[0])
    ]
    result = runner.invoke(main, [*base, "unmerge", ids[1], "--reason", "t", "--operator", "c"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["action"] == "unmerge"


def test_cli_rewraps_the_installations_own_index(
    installation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    base = ["--config", str(installation), "empi"]
    assert runner.invoke(main, [*base, "import", str(_csv(tmp_path / "his.csv"))]).exit_code == 0
    # a second master key becomes the current one; the old one stays readable
    monkeypatch.setenv("HCM_T_MASTER_B", base64.b64encode(os.urandom(32)).decode())
    text = installation.read_text(encoding="utf-8").replace(
        'master_keys = { a = { env = "HCM_T_MASTER_A" } }',
        'master_keys = { a = { env = "HCM_T_MASTER_A" }, b = { env = "HCM_T_MASTER_B" } }\n'
        'current_key = "b"',
    )
    installation.write_text(text, encoding="utf-8")
    result = runner.invoke(main, [*base, "rewrap"])
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.output)
    assert answer["rewrapped"] >= 1
    assert answer["master_keys_in_use"] == ["b"]
    result = runner.invoke(main, [*base, "stats"])
    assert json.loads(result.output)["active_residents"] == 2


class RegionalIndex:
    """A regional index that knows one resident by ID number."""

    def __init__(self, answer: Any = None) -> None:
        self.asked: list[tuple[str, str]] = []
        self.answer = answer

    @hookimpl
    def hcm_empi_remote_lookup(self, kind: str, value: str) -> Any:
        self.asked.append((kind, value))
        if self.answer is not None:
            return self.answer
        if (kind, value) != ("id_number", "11010519491231002X"):
            return []
        return [
            Resident(
                resident_id="REG778",
                name="张秀英",
                sex=Sex.FEMALE,
                birth_date=dt.date(1949, 12, 31),
                id_number="11010519491231002X",
            )
        ]


def test_remote_lookup_enrols_the_regional_resident_once(installation: Path) -> None:
    regional = RegionalIndex()
    with Middleware(load_config(installation), plugins={"region": regional}) as mw:
        assert mw.residents.lookup("id_number", "11010519491231002X") is None  # local only
        assert regional.asked == []
        found = mw.residents.lookup("id_number", "11010519491231002X", remote=True)
        assert found is not None
        assert found.name == "张秀英"
        assert found.identifier(IdentifierKind.REGIONAL_INDEX_ID) == "REG778"
        again = mw.residents.lookup("id_number", "11010519491231002X", remote=True)
        assert again is not None
        assert again.resident_id == found.resident_id
        assert len(regional.asked) == 1  # the second time the index knew
        assert mw.residents.lookup("id_number", "110105198001010032", remote=True) is None


def test_remote_answers_of_the_wrong_shape_name_the_plugin(installation: Path) -> None:
    from hcmiddleware.errors import PluginResultError

    with Middleware(
        load_config(installation), plugins={"region": RegionalIndex(answer=[{"name": "x"}])}
    ) as mw:
        with pytest.raises(PluginResultError) as caught:
            mw.residents.lookup("id_number", "11010519491231002X", remote=True)
        assert caught.value.plugin == "region"
        assert mw.residents.count() == 0  # nothing enrolled
