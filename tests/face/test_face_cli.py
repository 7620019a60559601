"""``hcm face verify | enrol | search`` with their exit codes and outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import sample_faces as faces
from click.testing import CliRunner

from hcmiddleware.cli import main
from hcmiddleware.face.store import FaceTemplateRow
from hcmiddleware.storage import Base, create_engine


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, people: dict[str, np.ndarray]) -> Path:
    d = tmp_path_factory.mktemp("photos")
    (d / "hopper_live.jpg").write_bytes(faces.to_jpeg(faces.noise(people["hopper"])))
    (d / "hopper_card.jpg").write_bytes(faces.card_photo(people["hopper"]))
    (d / "astronaut_live.jpg").write_bytes(faces.to_jpeg(people["astronaut"]))
    (d / "hanks_card.jpg").write_bytes(faces.card_photo(people["hanks"]))
    (d / "t1_2_card.jpg").write_bytes(faces.card_photo(people["t1_2"]))
    (d / "corrupt.jpg").write_bytes(faces.to_jpeg(people["hanks"])[:300])
    return d


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_face_group_is_registered() -> None:
    code, out = _run("face", "--help")
    assert code == 0
    for command in ("verify", "enrol", "search"):
        assert command in out


def test_verify_match_exit_0(photos: Path) -> None:
    code, out = _run(
        "face", "verify", str(photos / "hopper_live.jpg"), str(photos / "hopper_card.jpg")
    )
    assert code == 0
    assert out.startswith("match: distance ")
    assert "card_photo" in out


def test_verify_no_match_exit_1(photos: Path) -> None:
    code, out = _run(
        "face", "verify", str(photos / "astronaut_live.jpg"), str(photos / "hopper_card.jpg")
    )
    assert code == 1
    assert out.startswith("no match: distance ")


def test_verify_json(photos: Path) -> None:
    code, out = _run(
        "face",
        "verify",
        "--json",
        "--source",
        "enrolled",
        str(photos / "hopper_live.jpg"),
        str(photos / "hopper_card.jpg"),
    )
    data = json.loads(out)
    assert code == 0
    assert data["status"] == "match"
    assert data["source"] == "enrolled"
    assert 0.0 <= data["distance"] <= data["threshold"]


def test_verify_threshold_override(photos: Path) -> None:
    code, _ = _run(
        "face",
        "verify",
        "--threshold",
        "0.01",
        str(photos / "hopper_live.jpg"),
        str(photos / "hopper_card.jpg"),
    )
    assert code == 1


def test_verify_uses_the_installations_thresholds(photos: Path, tmp_path: Path) -> None:
    config = tmp_path / "hcm.toml"
    config.write_text("[face.thresholds]\ncard_photo = 0.01\n", encoding="utf-8")
    pair = [str(photos / "hopper_live.jpg"), str(photos / "hopper_card.jpg")]
    code, out = _run("--config", str(config), "face", "verify", "--json", *pair)
    assert code == 1, out
    assert json.loads(out)["threshold"] == 0.01
    code, _ = _run("--config", str(config), "face", "verify", "--threshold", "0.5", *pair)
    assert code == 0


def test_verify_unusable_exit_2_says_which_photo(photos: Path) -> None:
    code, out = _run("face", "verify", str(photos / "corrupt.jpg"), str(photos / "hopper_card.jpg"))
    assert code == 2
    assert out.startswith("unusable: live photo:")
    assert "advice (retake): " in out
    code, out = _run(
        "face", "verify", "--json", str(photos / "hopper_live.jpg"), str(photos / "corrupt.jpg")
    )
    assert code == 2
    data = json.loads(out)
    assert (data["status"], data["photo"], data["reason"]) == (
        "unusable",
        "reference",
        "unreadable",
    )
    assert data["advice"]["code"] == "see_staff"
    assert data["detector"] == "hog"


def test_verify_missing_file_exit_2(photos: Path) -> None:
    code, _ = _run("face", "verify", str(photos / "nope.jpg"), str(photos / "hopper_card.jpg"))
    assert code == 2


@pytest.fixture
def db(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'faces.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine, tables=[FaceTemplateRow.__table__])  # type: ignore[list-item]
    engine.dispose()
    return {
        "HCM_DATABASE_URL": url,
        "HCM_FACE_CIPHER": "aesgcm_cipher:from_env",
        "HCM_TEST_FACE_KEY": os.urandom(32).hex(),
    }


def test_enrol_search_and_duplicate(photos: Path, db: dict[str, str]) -> None:
    for rid, name in (("R1", "hopper_card"), ("R2", "hanks_card"), ("R3", "t1_2_card")):
        code, out = _run("face", "enrol", rid, str(photos / f"{name}.jpg"), env=db)
        assert (code, out.strip()) == (0, f"enrolled: {rid}")
    code, out = _run("face", "search", "--top", "2", str(photos / "hopper_live.jpg"), env=db)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("3 enrolled")
    assert lines[1].split()[:2] == ["1", "R1"]
    assert "same person" in lines[1]
    assert len(lines) == 3
    code, out = _run("face", "search", "--json", str(photos / "hopper_live.jpg"), env=db)
    data = json.loads(out)
    assert data["hits"][0]["resident_id"] == "R1"
    assert [h["same_person"] for h in data["hits"]] == [True, False, False]
    # The same face under another resident id is refused, then allowed after review.
    code, out = _run("face", "enrol", "R9", str(photos / "hopper_live.jpg"), env=db)
    assert code == 1
    assert out.startswith("duplicate: the face matches R1")
    code, _ = _run(
        "face", "enrol", "--allow-duplicate", "R9", str(photos / "hopper_live.jpg"), env=db
    )
    assert code == 0


def test_enrol_unusable_photo_exit_2(photos: Path, db: dict[str, str]) -> None:
    code, out = _run("face", "enrol", "--json", "R1", str(photos / "corrupt.jpg"), env=db)
    assert code == 2
    assert json.loads(out)["reason"] == "unreadable"
    assert json.loads(out)["advice"]["code"] == "retake"


def test_enrol_without_cipher_is_a_clear_error(photos: Path, db: dict[str, str]) -> None:
    env = {**db, "HCM_FACE_CIPHER": ""}
    result = CliRunner().invoke(
        main, ["face", "enrol", "R1", str(photos / "hanks_card.jpg")], env=env
    )
    assert result.exit_code == 2
    assert "--cipher" in result.output


def test_search_on_unmigrated_database_exit_3(
    photos: Path, tmp_path: Path, db: dict[str, str]
) -> None:
    env = {**db, "HCM_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = CliRunner().invoke(main, ["face", "search", str(photos / "hanks_card.jpg")], env=env)
    assert result.exit_code == 3
    assert "face_templates" in result.output


def test_verify_without_the_backend_exit_3_with_install_line(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hcmiddleware.face import dlib_backend

    monkeypatch.setattr(dlib_backend, "_module", None)
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    result = CliRunner().invoke(
        main, ["face", "verify", str(photos / "hopper_live.jpg"), str(photos / "hopper_card.jpg")]
    )
    assert result.exit_code == 3
    assert "pip install" in result.output


def test_remove(photos: Path, db: dict[str, str]) -> None:
    _run("face", "enrol", "R1", str(photos / "hanks_card.jpg"), env=db)
    assert _run("face", "remove", "R1", env=db) == (0, "removed: R1\n")
    assert _run("face", "remove", "R1", env=db) == (1, "not enrolled: R1\n")
    code, out = _run("face", "search", "--json", str(photos / "hanks_card.jpg"), env=db)
    assert code == 0
    assert json.loads(out)["hits"] == []
