"""The importer on bad input: every field broken in turn, encodings, quotes, garbage.

Each problem gets a typed message with the line its record starts on; every record
that names a person is kept; a second run imports nothing twice. Each test runs through
the ordinary import and through the bulk load (``--bulk``), which must answer alike.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from hcmiddleware.cli import main
from hcmiddleware.empi.bulk import bulk_import
from hcmiddleware.empi.importer import COLUMNS, ImportReport, import_csv
from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.synthetic import population
from hcmiddleware.errors import ImportFileError

GOOD = {
    "record_id": "R1",
    "name": "张秀英",
    "sex": "2",
    "birth_date": "1949-12-31",
    "id_number": "11010519491231002X",
    "phone": "13800138000",
    "address": "北京市朝阳区建国路1号",
    "card_number": "C1",
}


Load = Callable[[ResidentIndex, Path], ImportReport]


def _bulk(index: ResidentIndex, path: Path) -> ImportReport:
    return bulk_import(index, path, workers=0)


@pytest.fixture(params=["rows", "bulk"])
def load(request: pytest.FixtureRequest) -> Load:
    """The ordinary import, or the bulk load (preparing in this process: the pool has
    its own test)."""
    return import_csv if request.param == "rows" else _bulk


def _csv(rows: list[dict[str, str]], columns: tuple[str, ...] = COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# One field broken at a time: (field, value, the field of the refusal, the flags).
BROKEN: list[tuple[str, str, str | None, str | tuple[str, ...] | None]] = [
    ("record_id", "", "record_id", None),
    ("name", "", "name", None),
    ("name", "未知", "name", None),  # "unknown": names nobody
    ("name", "12345", "name", None),
    ("name", " 张 秀 英 ", None, None),  # spaces are typing noise
    ("sex", "X", None, "sex_invalid"),
    ("sex", "女性", None, None),
    ("birth_date", "1949-13-31", None, "birth_invalid"),
    ("birth_date", "31/12/1949", None, "birth_invalid"),
    ("birth_date", "1949年12月31日", None, None),
    ("birth_date", "2091-12-31", None, ("birth_implausible", "id_birth_mismatch")),
    ("id_number", "11010519491231002", None, "id_format"),
    ("id_number", "110105194912310021", None, "id_checksum"),
    ("id_number", "11010519491231002x", None, None),
    ("id_number", "１１０１０５１９４９１２３１００２Ｘ", None, "id_fullwidth"),
    ("id_number", "000000000000000000", None, "id_missing"),
    ("id_number", "不详", None, "id_missing"),
    ("id_number", "110105 1949 1231 002X", None, "id_spaces"),
    ("phone", "138-0013-8000", None, None),
    ("phone", "1380013800", None, "phone_invalid"),
    ("phone", "无", None, None),
    ("address", "北京市\x00朝阳区", None, None),
    ("card_number", "NULL", None, None),
]


def test_every_field_broken_in_turn(index: ResidentIndex, tmp_path: Path, load: Load) -> None:
    rows = []
    for number, (column, value, _refused, _flag) in enumerate(BROKEN, start=1):
        row = {**GOOD, "record_id": f"R{number}", "card_number": f"C{number}", column: value}
        if column != "birth_date":
            row["birth_date"] = ""  # else a broken ID number also disagrees with it
        rows.append(row)
    path = tmp_path / "his.csv"
    path.write_text(_csv(rows), encoding="utf-8")
    report = load(index, path)
    refused = [(n + 2, c) for n, (_col, _v, c, _f) in enumerate(BROKEN) if c]
    assert [(b.line, b.field) for b in report.bad_rows] == refused
    for bad in report.bad_rows:
        value = BROKEN[bad.line - 2][1]
        assert not value or value not in bad.message  # the fault, never the value
    flags = {r.record_id: r.flags for r in index.linkage()}
    for number, (_column, _value, refusal, flag) in enumerate(BROKEN, start=1):
        if refusal:
            continue
        expected = set(flag) if isinstance(flag, tuple) else {flag} if flag else set()
        assert set(flags[f"R{number}"]) - {"birth_missing"} == expected, (number, flags)
    assert report.created + report.linked == len(BROKEN) - len(refused)
    # Whatever was broken, every kept record is the one person, and her name survived.
    residents = {index.get(r.resident_id).name for r in index.linkage()}
    assert residents == {"张秀英"}


def test_bom_crlf_quotes_and_line_breaks_inside_values(
    index: ResidentIndex, tmp_path: Path, load: Load
) -> None:
    text = (
        "\ufeffrecord_id,name,sex,address,phone\r\n"
        'R1,张秀英,2,"北京市,朝阳区\r\n建国路1号",13800138000\r\n'
        'R2,"李""小""雷",1,"上海市\n浦东新区",13900000001\r\n'
        "R3,王芳,2,广州市,13700000002\r\n"
    )
    path = tmp_path / "his.csv"
    path.write_bytes(text.encode("utf-8"))
    report = load(index, path)
    assert (report.rows, report.created, report.bad_rows, report.notices) == (3, 3, [], [])
    by_record = {r.record_id: r.resident_id for r in index.linkage()}
    assert index.get(by_record["R1"]).address == "北京市,朝阳区 建国路1号"
    assert index.get(by_record["R2"]).name == '李"小"雷'
    assert index.get(by_record["R3"]).phone == "13700000002"


def test_a_stray_quote_does_not_swallow_the_rows_after_it(
    index: ResidentIndex, tmp_path: Path, load: Load
) -> None:
    text = (
        "record_id,name,sex,birth_date,id_number,phone,address,card_number\n"
        'R1,张秀英,2,1949-12-31,,13800138000,"北京市朝阳区,C1\n'
        "R2,李雷,1,1980-01-01,,13900000001,上海市,C2\n"
        "R3,王芳,2,1990-05-01,,13700000002,广州市,C3\n"
    )
    path = tmp_path / "his.csv"
    path.write_text(text, encoding="utf-8")
    report = load(index, path)
    assert report.created == 3
    assert [(n.line, n.record_id) for n in report.notices] == [(2, "R1")]
    assert "quote" in report.notices[0].message
    assert index.lookup("card_number", "C2") is not None
    assert index.lookup("card_number", "C3") is not None


def test_mixed_gbk_and_utf8_lines(index: ResidentIndex, tmp_path: Path, load: Load) -> None:
    header = b"record_id,name,sex\n"
    lines = [
        "R1,张秀英,2\n".encode(),
        "R2,李雷,1\n".encode("gbk"),  # appended by another program
        "R3,王芳,2\n".encode(),
        "R4,欧阳娜娜,2\n".encode("gbk"),
    ]
    path = tmp_path / "mixed.csv"
    path.write_bytes(header + b"".join(lines))
    report = load(index, path)
    assert report.encoding == "utf-8+gbk"
    assert report.created == 4
    assert [(n.line, n.record_id) for n in report.notices] == [(3, "R2"), (5, "R4")]
    names = sorted(index.get(r.resident_id).name for r in index.linkage())
    assert names == sorted(["张秀英", "李雷", "王芳", "欧阳娜娜"])


def test_a_missing_column_and_ragged_rows(index: ResidentIndex, tmp_path: Path, load: Load) -> None:
    # No sex and no birth-date column at all: the rows still name people.
    path = tmp_path / "short.csv"
    path.write_text(
        "record_id,name,id_number,phone\n"
        "R1,张秀英,11010519491231002X,13800138000\n"
        "R2,李雷\n"  # fewer values: the rest empty
        "R3,王芳,,13700000002,广州市,多余\n"  # more values than columns: cannot be aligned
        "R4,赵六,,13600000003,\n",  # a trailing separator is nothing
        encoding="utf-8",
    )
    report = load(index, path)
    assert report.created == 3
    assert [(b.line, b.record_id, b.field) for b in report.bad_rows] == [(4, "", "record")]
    assert "6 values for 4 columns" in report.bad_rows[0].message
    assert [(n.line, n.record_id) for n in report.notices] == [(3, "R2")]
    zhang = index.lookup("id_number", "11010519491231002X")
    assert zhang is not None
    assert zhang.sex == 2  # from the verified number
    path.write_text("record_id,sex\nR1,1\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="name"):
        load(index, path)


def test_repeated_record_ids(index: ResidentIndex, tmp_path: Path, load: Load) -> None:
    path = tmp_path / "his.csv"
    path.write_text(
        _csv(
            [
                {**GOOD},
                {**GOOD},  # the same row again (two exports concatenated): skipped
                {**GOOD, "name": "李雷", "id_number": "", "card_number": "C9"},  # another
            ]
        ),
        encoding="utf-8",
    )
    report = load(index, path)
    assert report.created == 1
    assert [(n.line, n.record_id) for n in report.notices] == [(3, "R1")]
    assert [(b.line, b.record_id, b.field) for b in report.bad_rows] == [(4, "R1", "record_id")]
    assert "line 2" in report.bad_rows[0].message
    assert index.lookup("card_number", "C9") is None


def _garbage(rng: random.Random, header: str) -> tuple[bytes, bool]:
    """A line of garbage, and whether it deserves a message (blank ones do not)."""
    line = _garbage_line(rng.randrange(7), rng, header)
    return line, bool(line.strip(b",\n"))


def _garbage_line(kind: int, rng: random.Random, header: str) -> bytes:
    if kind == 0:
        return bytes(rng.randrange(128, 256) for _ in range(rng.randrange(5, 40))) + b"\n"
    if kind == 1:
        return "合计,,,,,,,200\n".encode()  # a total line
    if kind == 2:
        return b",,,,,,,\n"
    if kind == 3:
        return (header + "\n").encode()
    if kind == 4:
        return "导出时间：2025-12-31 08:00\n".encode()
    if kind == 5:
        return b"\n"
    return b"########,--------,,,\n"


def test_ten_percent_garbage_rows_and_a_rerun(
    index: ResidentIndex, tmp_path: Path, load: Load
) -> None:
    rng = random.Random(11)
    people = list(population(200, duplicate_rate=0.1, seed=9))
    header = ",".join(COLUMNS)
    good = _csv([p.as_row() for p in people]).splitlines(keepends=True)
    lines = [good[0].encode()]
    garbage = loud = 0
    for line in good[1:]:
        lines.append(line.encode() if rng.random() < 0.5 else line.encode("gbk"))
        if rng.random() < 0.1:
            junk, says = _garbage(rng, header)
            lines.append(junk)
            garbage += 1
            loud += says
    path = tmp_path / "dirty.csv"
    path.write_bytes(b"".join(lines))
    report = load(index, path)
    # Every person's record is kept; each piece of garbage is a bad row or a notice.
    assert report.created + report.linked == len(people)
    kept = {r.record_id for r in index.linkage()}
    assert kept == {p.record_id for p in people}
    assert garbage >= 15
    headers = [n for n in report.notices if "header" in n.message]
    assert len(report.bad_rows) + len(headers) == loud
    assert all(b.message for b in report.bad_rows)
    assert all(b.line > 1 for b in report.bad_rows)
    assert {b.field for b in report.bad_rows} <= {"name", "record"}
    # Run again: nothing new, the same rows refused.
    again = load(index, path)
    assert (again.created, again.linked, again.skipped) == (0, 0, len(people))
    assert [(b.line, b.field) for b in again.bad_rows] == [
        (b.line, b.field) for b in report.bad_rows
    ]
    assert index.count() == report.created


def test_cli_lists_notices_and_succeeds(tmp_path: Path) -> None:
    env = {
        "HCM_EMPI_DATABASE": f"sqlite:///{tmp_path / 'cli.db'}",
        "HCM_EMPI_MASTER_KEYS": "2026a=" + base64.b64encode(os.urandom(32)).decode(),
        "HCM_EMPI_INDEX_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    path = tmp_path / "mixed.csv"
    path.write_bytes("record_id,name,sex\nR1,张秀英,2\n".encode() + "R2,李雷,1\n".encode("gbk"))
    result = CliRunner().invoke(main, ["empi", "import", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert "2 rows (utf-8+gbk): 2 new residents" in result.output
    assert "1 rows read with an assumption:" in result.output
    assert "line 3 (record R2): the line is GBK in a UTF-8 file" in result.output
