"""The reference HIS checks each message structure once: its verdicts stay hl7apy's own."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from hcm_his_reference import ReferenceHis
from hcm_his_reference.validation import StructureCheck, dump, learn, load, strict_problem

START, END = b"\x0b", b"\x1c\x0d"
#: what the HL7 adapter sends, one file per message type (the HIS's inbound traffic)
GOLDEN = Path(__file__).parents[2] / "adapters" / "his" / "hl7" / "golden"

#: values hl7apy's strict datatypes refuse in some positions and accept in others
ODD_VALUES = ("9" * 300, "X" * 25, "欧" * 21, "20261399", "1.2.3", "20240229", "A\\F\\B")


def _golden(name: str) -> str:
    return (GOLDEN / f"{name}.er7").read_text(encoding="utf-8").rstrip("\n").replace("\n", "\r")


def _kind(problem: str | None) -> str:
    """``valid``, or the name of the hl7apy exception that refused the message."""
    return "valid" if problem is None else problem.split(":", 1)[0]


def _with_value(text: str, segment: int, index: int, value: str) -> str:
    """``text`` with the first value of one field (``|``-split index) replaced."""
    lines = text.split("\r")
    fields = lines[segment].split("|")
    first = re.match(r"[^~^&]*", fields[index])
    assert first is not None
    fields[index] = value + fields[index][first.end() :]
    lines[segment] = "|".join(fields)
    return "\r".join(lines)


@pytest.mark.parametrize("name", ["qbp_z04", "ras_o17", "adt_a01"])
def test_a_remembered_structure_gives_the_full_parses_verdict(name: str) -> None:
    original = _golden(name)
    check = StructureCheck()
    assert check(original) is None
    assert (check.parsed, len(check)) == (1, 1)
    decided_by_memory: set[str] = set()
    for s, line in enumerate(original.split("\r")):
        fields = line.split("|")
        for index in range(2 if s == 0 else 1, len(fields)):
            if not re.match(r"[^~^&]", fields[index]):
                continue  # empty here: a value would make another structure
            for value in ODD_VALUES:
                text = _with_value(original, s, index, value)
                reused = check.reused
                got = _kind(check(text))
                assert got == _kind(strict_problem(text)), (name, fields[0], index, value)
                if check.reused > reused:
                    decided_by_memory.add(got)
    assert "valid" in decided_by_memory
    assert decided_by_memory - {"valid"}, "a bad value is refused without the full parse too"


def test_another_structure_gets_the_full_parse() -> None:
    check = StructureCheck()
    query = _golden("qbp_z04")
    assert check(query) is None
    # the same query with one more value (QPD-3 a third component): another structure
    assert check(query.replace("\rRCP", "^X\rRCP", 1)) is None
    assert (check.parsed, check.reused, len(check)) == (2, 0, 2)
    # a segment missing is a structure hl7apy refuses; it is not remembered
    broken = _golden("adt_a01").replace("\rPID|", "\rXYZ|", 1)
    assert _kind(check(broken)) == _kind(strict_problem(broken)) != "valid"
    assert check(broken) is not None
    assert (check.parsed, len(check)) == (4, 2), "a refused structure is parsed each time"


def _mllp(address: tuple[str, int], text: str) -> str:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(START + text.encode("utf-8") + END)
        data = b""
        while END not in data:
            chunk = sock.recv(65536)
            assert chunk, "connection closed"
            data += chunk
    return data[1:].partition(END)[0].decode("utf-8")


def _a28(control_id: str, resident: str, birth: str = "19800101") -> str:
    return "\r".join(
        [
            "MSH|^~\\&|KIOSK|H|REFHIS|H0001|20261127093000||ADT^A28^ADT_A05|"
            f"{control_id}|P|2.5|||AL|NE||UNICODE UTF-8",
            "EVN||20261127093000",
            f"PID|1||{resident}^^^HCMEMPI^PI||张三||{birth}|M",
            "PV1|1|N",
        ]
    )


@pytest.mark.parametrize("cache", [True, False])
def test_the_his_refuses_a_bad_value_in_a_known_structure(tmp_path: Path, cache: bool) -> None:
    with ReferenceHis(tmp_path / "h.db", validation_cache=cache) as his:
        assert "MSA|AA|C1" in _mllp(his.mllp_address, _a28("C1", "R1"))
        assert "MSA|AA|C2" in _mllp(his.mllp_address, _a28("C2", "R2"))
        bad = _a28("C3", "R3", birth="19801399")  # no 13th month
        answer = _mllp(his.mllp_address, bad)
        assert "MSA|AR|C3" in answer
        assert "101^^HL70357" in answer
        patients = his.store._all("SELECT resident_id FROM patient ORDER BY resident_id")
        assert [p["resident_id"] for p in patients] == ["R1", "R2"]
        check = his.hl7.check
        if cache:
            assert isinstance(check, StructureCheck)
            # the adapter's A28 structure: known from the start, never parsed in full
            assert (check.parsed, check.reused) == (0, 3)
        else:
            assert check is strict_problem


def test_the_shipped_structures_are_those_of_the_adapters_messages() -> None:
    from hcm_his_hl7.shapes import catalog

    made = learn(catalog())  # a full parse of one message of every structure
    if os.environ.get("HCM_REGEN_GOLDEN"):
        dump(made)
    assert made == load(), "structures.json is stale: run the tests with HCM_REGEN_GOLDEN=1"


@pytest.mark.parametrize("name", ["adt_a04", "qbp_q23", "ras_o17"])
def test_a_shipped_structure_gives_the_full_parses_verdict_at_once(name: str) -> None:
    original = _golden(name)
    check = StructureCheck(load())
    assert check(original) is None
    assert (check.parsed, check.reused) == (0, 1), "known from the start"
    # a value too long in the second segment's last field that holds one: the same
    # structure, refused by its datatype without a full parse, as the full parse does
    fields = original.split("\r")[1].split("|")
    index = max(i for i, f in enumerate(fields) if i and re.match(r"[^~^&]", f))
    refused = _with_value(original, 1, index, "9" * 300)
    verdict = _kind(strict_problem(refused))
    assert verdict != "valid"
    assert _kind(check(refused)) == verdict
    assert (check.parsed, check.reused) == (0, 2)


def test_structures_of_another_hl7apy_are_not_used(tmp_path: Path) -> None:
    stale = tmp_path / "structures.json"
    dump(load(), stale)
    assert load(stale) == load()
    document = stale.read_text(encoding="utf-8").replace('"hl7apy":"', '"hl7apy":"0.0.0-', 1)
    stale.write_text(document, encoding="utf-8")
    assert load(stale) == {}
