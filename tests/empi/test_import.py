"""CSV import: encodings, bad rows with line numbers, resuming, and the ``hcm empi`` CLI."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from hcmiddleware import storage
from hcmiddleware.cli import main
from hcmiddleware.empi.importer import COLUMNS, decode, import_csv
from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.schema import IdentifierKind
from hcmiddleware.empi.synthetic import population
from hcmiddleware.errors import ImportFileError

GOOD = [
    ["R1", "张秀英", "2", "1949-12-31", "11010519491231002X", "13800138000", "北京市朝阳区", "C1"],
    ["R2", "李雷", "1", "1880-01-01", "440524188001010014", "", "", ""],
]
BAD = [["R3", "", "1", "", "", "", "", ""]]  # empty name: names nobody
DIRTY = [
    ["R4", "王五", "1", "1990-02-30", "", "", "", ""],  # impossible date
    ["R5", "赵六", "3", "", "", "", "", ""],  # sex code
    ["R6", "钱七", "1", "", "110105194912310021", "", "", ""],  # check character
    ["R7", "孙八", "1", "", "11010519491231002X", "", "", ""],  # R1's number, other sex
]


def _write(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def test_import_keeps_every_row_that_names_a_person(index: ResidentIndex, tmp_path: Path) -> None:
    rows = [GOOD[0], BAD[0], DIRTY[0], GOOD[1], DIRTY[1], DIRTY[2], DIRTY[3]]
    report = import_csv(index, _write(tmp_path / "his.csv", rows))
    assert (report.rows, report.created, report.linked) == (7, 6, 0)
    # Only the row without a name is refused; messages name the fault, never a value.
    assert [(b.line, b.record_id, b.field) for b in report.bad_rows] == [(3, "R3", "name")]
    assert report.flags == {
        "birth_invalid": 1,
        "sex_invalid": 1,
        "id_missing": 2,
        "id_checksum": 1,
        "id_sex_mismatch": 1,
        "birth_missing": 3,
    }
    assert report.flagged == 4
    zhang = index.lookup("id_number", "11010519491231002X")
    assert zhang is not None
    assert zhang.name == "张秀英"
    assert index.source_records(index.lookup("card_number", "C1").resident_id) == [("his", "R1")]  # type: ignore[union-attr]
    # R7 carries R1's number but another sex: kept apart, the number unverified.
    (sun,) = [c.resident for c in index.search(id_number="11010519491231002X", include_new=True)
              if c.resident.name == "孙八"]  # fmt: skip
    assert sun.id_number is None
    assert sun.unverified_id_number == "11010519491231002X"
    assert sun.flags == ("birth_missing", "id_sex_mismatch")
    # A number that fails its check character is found by search, not by lookup.
    (qian,) = index.search(id_number="110105194912310021", include_new=True)
    assert qian.resident.name == "钱七"
    assert qian.resident.unverified_id_number == "110105194912310021"
    assert "id_checksum" in qian.resident.flags


def test_import_resumes_and_never_imports_twice(index: ResidentIndex, tmp_path: Path) -> None:
    path = _write(tmp_path / "his.csv", GOOD)
    first = import_csv(index, path, batch_size=1)
    again = import_csv(index, path)
    assert (first.created, again.created, again.skipped) == (2, 0, 2)
    assert index.count() == 2
    # The same records under another source name are recognised by their identifiers.
    other = import_csv(index, path, source="other-his")
    assert (other.created, other.linked) == (0, 2)


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig", "utf-8"])
def test_import_detects_utf8_and_gbk(index: ResidentIndex, tmp_path: Path, encoding: str) -> None:
    report = import_csv(index, _write(tmp_path / "f.csv", GOOD, encoding))
    assert report.created == 2
    assert report.encoding == ("gbk" if encoding == "gbk" else "utf-8")
    assert index.lookup("card_number", "C1").name == "张秀英"  # type: ignore[union-attr]


def test_an_unreadable_header_refuses_the_file_an_unreadable_row_is_a_bad_row(
    index: ResidentIndex, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"record_id,\xff\xfe\xff\xfe,sex\nR1,x,1\n")
    with pytest.raises(ImportFileError) as info:
        import_csv(index, path)
    assert info.value.file == str(path)
    assert index.count() == 0
    with pytest.raises(ImportFileError):
        decode("张秀英".encode("gbk"), "utf-8")
    path.write_bytes(b"record_id,name,sex\nR1,\xff\xfe\xff\xfe,1\nR2,\xe6\x9d\x8e\xe9\x9b\xb7,1\n")
    report = import_csv(index, path)
    assert [(b.line, b.field) for b in report.bad_rows] == [(2, "record")]
    assert "neither UTF-8 nor GBK" in report.bad_rows[0].message
    assert report.created == 1


def test_wrong_header_is_refused_whole(index: ResidentIndex, tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("id,fullname\n1,张三\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="record_id"):
        import_csv(index, path)
    path.write_text("record_id,name,name\n1,张三,李四\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="name twice"):
        import_csv(index, path)
    path.write_text("record_id,name,sex,colour\n1,张三,1,red\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="colour"):
        import_csv(index, path)
    assert index.count() == 0


def test_generated_population_imports_with_its_duplicates(
    index: ResidentIndex, tmp_path: Path
) -> None:
    people = list(population(300, duplicate_rate=0.2, seed=3))
    path = tmp_path / "pop.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(p.as_row() for p in people)
    report = import_csv(index, path)
    assert report.bad_rows == []
    # Nearly every duplicate is linked; the rest go to review, none is silent.
    assert report.linked >= 0.9 * 60
    assert report.created + report.linked == 360
    assert report.created - report.reviews <= 300


def test_statistics_are_refreshed_each_time_the_index_doubles(
    index: ResidentIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 80 new residents in batches of 10 into an empty index: after 10, 20, 40 and 80
    # (the index doubled each time), and once more at the end.
    people = [p for p in population(80, duplicate_rate=0.0, seed=5)]
    path = tmp_path / "pop.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(p.as_row() for p in people)
    sizes: list[int] = []
    refresh = index.refresh_statistics
    monkeypatch.setattr(
        index, "refresh_statistics", lambda: (sizes.append(index.count()), refresh())[1]
    )
    report = import_csv(index, path, batch_size=10)
    assert report.created == 80
    assert sizes == [10, 20, 40, 80, 80]
    # A second file into the now larger index refreshes only at its end.
    sizes.clear()
    more = tmp_path / "more.csv"
    _write(more, GOOD)
    import_csv(index, more, batch_size=1)
    assert sizes == [82]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "HCM_EMPI_DATABASE": f"sqlite:///{tmp_path / 'cli.db'}",
        "HCM_EMPI_MASTER_KEYS": "2026a=" + base64.b64encode(os.urandom(32)).decode(),
        "HCM_EMPI_INDEX_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


def test_cli_import_search_merge_stats(tmp_path: Path) -> None:
    env = _env(tmp_path)
    runner = CliRunner()
    path = _write(tmp_path / "his.csv", [GOOD[0], BAD[0], GOOD[1]])
    report = tmp_path / "bad.csv"
    result = runner.invoke(main, ["empi", "import", str(path), "--report", str(report)], env=env)
    assert result.exit_code == 1, result.output
    assert "2 new residents" in result.output
    assert "line 3 (record R3): name" in result.output
    assert list(csv.reader(report.open(encoding="utf-8")))[1][:3] == ["3", "R3", "name"]
    # Flagged rows are kept and counted; with none refused the import succeeds.
    dirty = _write(tmp_path / "dirty.csv", DIRTY)
    result = runner.invoke(main, ["empi", "import", str(dirty)], env=env)
    assert result.exit_code == 0, result.output
    assert "4 new residents" in result.output
    assert "0 bad rows" in result.output
    assert "4 records flagged, kept: birth_invalid 1, birth_missing 3, id_checksum 1" in (
        result.output
    )
    assert "110105194912310021" not in result.output

    result = runner.invoke(
        main, ["empi", "search", "--name", "張秀英", "--birth-date", "1949-12-31"], env=env
    )
    assert result.exit_code == 0, result.output
    first = json.loads(result.output.splitlines()[0])
    assert "name: same" in first["agreements"]

    result = runner.invoke(main, ["empi", "stats"], env=env)
    assert json.loads(result.output) == {
        "active_residents": 6,
        "merged_residents": 0,
        "open_reviews": 0,
    }
    engine = storage.create_engine(env["HCM_EMPI_DATABASE"])
    with engine.connect() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM empi_residents").all()]
    engine.dispose()
    result = runner.invoke(
        main, ["empi", "merge", ids[0], ids[1], "--reason", "test", "--operator", "op"], env=env
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        main, ["empi", "unmerge", ids[1], "--reason", "test", "--operator", "op"], env=env
    )
    assert json.loads(result.output)["action"] == "unmerge"
    result = runner.invoke(
        main, ["empi", "unmerge", ids[1], "--reason", "again", "--operator", "op"], env=env
    )
    assert result.exit_code == 1
    assert "not merged" in result.output


def test_cli_refuses_bad_keys_without_echoing_them(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env["HCM_EMPI_INDEX_KEY"] = "c2hvcnQ="  # "short"
    path = _write(tmp_path / "his.csv", GOOD)
    result = CliRunner().invoke(main, ["empi", "import", str(path)], env=env)
    assert result.exit_code == 2
    assert "32 bytes" in result.output
    assert env["HCM_EMPI_MASTER_KEYS"].split("=", 1)[1] not in result.output
    assert "c2hvcnQ=" not in result.output


def test_cli_lists_duplicates_by_record_id(tmp_path: Path) -> None:
    env = _env(tmp_path)
    runner = CliRunner()
    rows = [
        ["A1", "王芳", "2", "1990-05-01", "", "13900000001", "", ""],
        ["B7", "王 芳", "2", "1990-05-01", "", "", "", "C9"],
        ["A2", "李娜", "2", "1980-01-01", "", "", "", ""],
    ]
    path = _write(tmp_path / "his.csv", rows)
    assert runner.invoke(main, ["empi", "import", str(path)], env=env).exit_code == 0
    result = runner.invoke(main, ["empi", "duplicates"], env=env)
    assert result.exit_code == 0, result.output
    lines = list(csv.reader(io.StringIO(result.output)))
    assert lines[0][:2] == ["record_ids_a", "record_ids_b"]
    assert len(lines) == 2
    assert sorted([lines[1][0], lines[1][1]]) == ["A1", "B7"]
    assert lines[1][5] == "review"
    result = runner.invoke(
        main, ["empi", "duplicates", "--format", "json", "--links-only"], env=env
    )
    assert result.output == ""


def test_conflicts_and_duplicates_inside_one_batch(index: ResidentIndex, tmp_path: Path) -> None:
    rows = [
        ["R1", "张秀英", "2", "", "11010519491231002X", "", "", "C1"],
        [
            "R2",
            "张秀英",
            "2",
            "",
            "１１０１０５１９４９１２３１００２ｘ",
            "",
            "",
            "",
        ],  # same person
        ["R3", "李雷", "1", "", "440524188001010014", "", "", "C1"],  # R1's card, other ID
        ["R4", "王芳", "2", "1990-05-01", "", "13900000001", "", "C4"],
        ["R5", "王芳", "2", "1990-05-01", "", "13900000001", "", ""],  # linked on demographics
        ["R6", "王芳", "2", "1990-05-01", "", "", "", ""],  # no phone: a review, not a link
    ]
    report = import_csv(index, _write(tmp_path / "his.csv", rows), batch_size=100)
    assert (report.created, report.linked, report.reviews) == (4, 2, 2)
    assert report.bad_rows == []
    assert report.flags["identifier_conflict"] == 1
    zhang = index.lookup("card_number", "C1")
    assert zhang is not None
    assert index.source_records(zhang.resident_id) == [("his", "R1"), ("his", "R2")]
    # R3 names a person whose card is R1's: kept apart without the card, reviewed.
    li = index.lookup("id_number", "440524188001010014")
    assert li is not None
    assert li.identifier(IdentifierKind.CARD_NUMBER) is None
    assert "identifier_conflict" in li.flags
    assert index.source_records(li.resident_id) == [("his", "R3")]
    wang = index.lookup("card_number", "C4")
    assert wang is not None
    assert index.source_records(wang.resident_id) == [("his", "R4"), ("his", "R5")]
    conflict, review = index.reviews()
    assert (conflict.resident_id, conflict.candidate_id) == (li.resident_id, zhang.resident_id)
    assert conflict.reason.startswith("identifier conflict")
    assert review.candidate_id == wang.resident_id
    assert index.source_records(review.resident_id) == [("his", "R6")]
    assert index.count() == 4


def test_cli_rewraps_under_a_new_master_key_and_trains(tmp_path: Path) -> None:
    env = _env(tmp_path)
    runner = CliRunner()
    path = _write(tmp_path / "his.csv", GOOD)
    assert runner.invoke(main, ["empi", "import", str(path)], env=env).exit_code == 0
    new_key = base64.b64encode(os.urandom(32)).decode()
    env["HCM_EMPI_MASTER_KEYS"] += f",2026b={new_key}"
    env["HCM_EMPI_CURRENT_KEY"] = "2026b"
    result = runner.invoke(main, ["empi", "rewrap"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"rewrapped": 3, "master_keys_in_use": ["2026b"]}
    # The old key can go: the index opens and reads with the new one alone.
    env["HCM_EMPI_MASTER_KEYS"] = f"2026b={new_key}"
    result = runner.invoke(
        main, ["empi", "search", "--name", "张秀英", "--birth-date", "1949-12-31"], env=env
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip()
    result = runner.invoke(main, ["empi", "train"], env=env)
    assert result.exit_code == 0, result.output
    assert "pairs" in json.loads(result.output)
