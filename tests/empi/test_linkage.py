"""The linkage export: one row per source record, its resident, status and flags."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from pathlib import Path

from click.testing import CliRunner

from hcmiddleware.cli import main
from hcmiddleware.empi.importer import COLUMNS, import_csv
from hcmiddleware.empi.index import ResidentIndex

ROWS = [
    ["A1", "张秀英", "2", "", "11010519491231002X", "13800138000", "", "C1"],
    ["A2", "张秀英", "2", "1949/12/31", "", "13800138000", "", "C1"],  # her card: linked
    ["A3", "王芳", "2", "1990-05-01", "", "13900000001", "", ""],
    ["A4", "王 芳", "2", "1990-05-01", "", "", "", ""],  # looks like A3: review
    ["A5", "钱七", "1", "1962-03-04", "110105196203040012", "", "", ""],  # check character
]


def _write(path: Path, rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def test_linkage_names_each_records_resident_status_and_flags(
    index: ResidentIndex, tmp_path: Path
) -> None:
    import_csv(index, _write(tmp_path / "his.csv", ROWS))
    import_csv(index, _write(tmp_path / "kiosk.csv", [["K1", "李雷", "1", "", "", "", "", ""]]))
    rows = {(r.source, r.record_id): r for r in index.linkage()}
    assert list(rows) == [("his", f"A{i}") for i in range(1, 6)] + [("kiosk", "K1")]
    a1, a2, a3, a4, a5, k1 = rows.values()
    assert a1.resident_id == a2.resident_id
    assert (a1.status, a2.status) == ("linked", "linked")
    assert a3.resident_id != a4.resident_id
    assert (a3.status, a4.status) == ("review", "review")
    assert (a5.status, a5.flags) == ("single", ("id_checksum",))
    assert a1.flags == ()
    assert a2.flags == ("id_missing",)
    assert k1.flags == ("birth_missing", "id_missing")
    assert [r.record_id for r in index.linkage(source="kiosk")] == ["K1"]
    # A merge settles the review and moves the record, with its flags, to the survivor.
    index.merge(a3.resident_id, a4.resident_id, reason="same person", operator="op")
    after = {r.record_id: r for r in index.linkage(source="his")}
    assert after["A4"].resident_id == a3.resident_id
    assert (after["A3"].status, after["A4"].status) == ("linked", "linked")
    assert after["A4"].flags == ("id_missing",)


def test_cli_exports_csv_and_json(tmp_path: Path) -> None:
    env = {
        "HCM_EMPI_DATABASE": f"sqlite:///{tmp_path / 'cli.db'}",
        "HCM_EMPI_MASTER_KEYS": "2026a=" + base64.b64encode(os.urandom(32)).decode(),
        "HCM_EMPI_INDEX_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    runner = CliRunner()
    path = _write(tmp_path / "his.csv", ROWS)
    assert runner.invoke(main, ["empi", "import", str(path)], env=env).exit_code == 0
    result = runner.invoke(main, ["empi", "export"], env=env)
    assert result.exit_code == 0, result.output
    lines = list(csv.reader(io.StringIO(result.output)))
    assert lines[0] == ["record_id", "source", "resident_id", "status", "flags"]
    assert [line[0] for line in lines[1:]] == ["A1", "A2", "A3", "A4", "A5"]
    assert lines[5][3:] == ["single", "id_checksum"]
    assert lines[1][2] == lines[2][2]
    # No personal data in the export: names, numbers and phones stay in the index.
    for secret in ("张秀英", "11010519491231002X", "110105196203040012", "13800138000"):
        assert secret not in result.output
    result = runner.invoke(main, ["empi", "export", "--format", "json", "--source", "his"], env=env)
    assert result.exit_code == 0, result.output
    objects = [json.loads(line) for line in result.output.splitlines()]
    assert objects[4] == {
        "record_id": "A5",
        "source": "his",
        "resident_id": lines[5][2],
        "status": "single",
        "flags": ["id_checksum"],
    }
    result = runner.invoke(main, ["empi", "export", "--source", "nobody"], env=env)
    assert result.output.splitlines() == ["record_id,source,resident_id,status,flags"]
