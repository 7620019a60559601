"""The resident index in the runtime: keys from config, enrolment from a card, hooks."""

from __future__ import annotations

import base64
import stat
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.config import parse_config
from hcmiddleware.errors import ConfigError, DecryptionError
from hcmiddleware.models import IdentifierKind, Resident, Sex
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS as KEYS
from hcmiddleware.testing import HookRecorder, empi_keys

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(32, 64))).decode()


def make(tmp_path: Path, **sections: Any) -> Middleware:
    if "empi" not in sections:
        sections["empi"] = empi_keys(tmp_path / "keys")
    cfg = parse_config(
        {"middleware": {"data_dir": str(tmp_path)}, "sam": {"keys": str(KEYS)}, **sections}
    )
    return Middleware(cfg)


def test_card_holder_is_enrolled_once_and_announced(tmp_path: Path) -> None:
    with make(tmp_path) as mw:
        recorder = HookRecorder(mw)
        card = mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS))
        first = mw.residents.enrol_from_card(card)
        again = mw.residents.enrol_from_card(card)
        assert isinstance(first, Resident)
        assert again.resident_id == first.resident_id
        assert first.name == card.cardholder.name
        assert first.identifier(IdentifierKind.CARD_NUMBER) == card.issuer.card_number
        enrolled = recorder.calls("hcm_empi_resident_enrolled")
        assert [c.kwargs["resident"].resident_id for c in enrolled] == [first.resident_id]


def test_a_known_cards_enrolment_reads_its_resident_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hcmiddleware.empi.store import DirectStore

    with make(tmp_path) as mw:
        card = mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS))
        first = mw.residents.enrol_from_card(card)
        reads: list[str] = []
        real = DirectStore.resident

        def resident(self: DirectStore, resident_id: str) -> Resident:
            reads.append(resident_id)
            return real(self, resident_id)

        monkeypatch.setattr(DirectStore, "resident", resident)
        again = mw.residents.enrol_from_card(card)
        assert reads == [first.resident_id], "nothing added: read once"
        assert again.resident_id == first.resident_id
        assert sorted(again.identifiers, key=repr) == sorted(first.identifiers, key=repr)
        # a replacement card (same ID number, new card number): its number is added, and
        # the answer is the resident as it stands with it
        reads.clear()
        number = card.issuer.card_number[:-4] + "9999"
        replacement = card.model_copy(
            update={"issuer": card.issuer.model_copy(update={"card_number": number})}
        )
        updated = mw.residents.enrol_from_card(replacement)
        assert reads == [first.resident_id] * 2
        assert updated.resident_id == first.resident_id
        held = [i.value for i in updated.identifiers if i.kind == IdentifierKind.CARD_NUMBER]
        assert number in held
        assert card.issuer.card_number in held


def test_without_keys_the_index_does_not_open_and_makes_none(tmp_path: Path) -> None:
    with make(tmp_path, empi={}) as mw:
        with pytest.raises(ConfigError) as caught:
            mw.residents.enrol_from_card(mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS)))
        assert caught.value.key == "empi.master_keys"
        assert "hcm init" in str(caught.value)
    assert not (tmp_path / "keys").exists()
    assert not list(tmp_path.rglob("*.key"))
    assert not list(tmp_path.rglob("*keys*.json"))


def test_keys_survive_a_restart(tmp_path: Path) -> None:
    card = EmulatedCard.from_files(PROFILE, KEYS)
    with make(tmp_path) as mw:
        read = mw.terminal.read(card)
        rid = mw.residents.enrol_from_card(read).resident_id
    for key in (tmp_path / "keys").iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with make(tmp_path) as mw:  # a restart reads the same keys: the data stays readable
        assert mw.residents.get(rid).name == read.cardholder.name


def test_other_keys_on_a_populated_index_refuse_to_open(tmp_path: Path) -> None:
    with make(tmp_path) as mw:
        mw.residents.enrol(name="陈静", sex=Sex.FEMALE, id_number="11010519491231002X")
    with make(tmp_path, empi=empi_keys(tmp_path / "new-keys")) as mw:
        with pytest.raises(DecryptionError) as caught:
            mw.residents.count()
        assert "restore the right key" in str(caught.value)
    with make(tmp_path) as mw:  # nothing was lost: the right keys read it again
        assert mw.residents.count() == 1


def test_configured_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCM_T_MASTER", KEY_A)
    monkeypatch.setenv("HCM_T_INDEX", KEY_B)
    empi = {
        "master_keys": {"2026a": {"env": "HCM_T_MASTER"}},
        "current_key": "2026a",
        "index_key": {"env": "HCM_T_INDEX"},
    }
    with make(tmp_path, empi=empi) as mw:
        assert mw.residents.index.count() == 0
    assert not (tmp_path / "keys").exists()


def test_bad_keys_are_a_config_error_without_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HCM_T_MASTER", "c2hvcnQ=")  # 5 bytes
    monkeypatch.setenv("HCM_T_INDEX", KEY_B)
    empi = {"master_keys": {"k": {"env": "HCM_T_MASTER"}}, "index_key": {"env": "HCM_T_INDEX"}}
    with make(tmp_path, empi=empi) as mw, pytest.raises(ConfigError) as caught:
        _ = mw.residents.index
    assert caught.value.key == "empi"
    assert "c2hvcnQ=" not in str(caught.value)


def test_missing_index_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCM_T_MASTER", KEY_A)
    with (
        make(tmp_path, empi={"master_keys": {"k": {"env": "HCM_T_MASTER"}}}) as mw,
        pytest.raises(ConfigError) as caught,
    ):
        _ = mw.residents.index
    assert caught.value.key == "empi.index_key"


def test_merge_and_unmerge_are_announced(tmp_path: Path) -> None:
    with make(tmp_path) as mw:
        index = mw.residents.index
        a = index.enrol(name="陈静", sex=2, id_number="11010519491231002X").resident.resident_id
        b = index.enrol(name="陈静", sex=2, phone="13800138000").resident.resident_id
        recorder = HookRecorder(mw)
        mw.residents.merge(a, b, reason="same person", operator="clerk-1")
        merged = recorder.last("hcm_empi_residents_merged").kwargs
        assert (merged["survivor"].resident_id, merged["merged"].resident_id) == (a, b)
        mw.residents.unmerge(b, reason="error", operator="clerk-1")
        restored = recorder.last("hcm_empi_resident_unmerged").kwargs
        assert restored["restored"].resident_id == b


def test_hcm_empi_uses_the_configured_index(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hcmiddleware.cli import main

    keys = empi_keys(tmp_path / "keys")
    cfg = tmp_path / "hcm.toml"
    cfg.write_text(
        f'[middleware]\ndata_dir = "{tmp_path / "data"}"\n'
        "[empi]\n"
        f'master_keys = {{ k1 = {{ file = "{keys["master_keys"]["k1"]["file"]}" }} }}\n'
        f'index_key = {{ file = "{keys["index_key"]["file"]}" }}\n',
        encoding="utf-8",
    )
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "record_id,name,sex,birth_date,id_number,phone,address,card_number\n"
        "A1,张秀英,2,1949-12-31,11010519491231002X,13800138000,北京市朝阳区,\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    imported = runner.invoke(main, ["--config", str(cfg), "empi", "import", str(csv_file)])
    assert imported.exit_code == 0, imported.output
    cfg_obj = parse_config({"middleware": {"data_dir": str(tmp_path / "data")}, "empi": keys})
    with Middleware(cfg_obj) as mw:
        found = mw.residents.index.lookup(IdentifierKind.ID_NUMBER, "11010519491231002X")
        assert found is not None
        assert found.name == "张秀英"
