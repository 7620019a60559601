"""Face checks in the runtime: backend and liveness hooks, card photo, encrypted enrolment."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sample_faces import load_people, to_jpeg

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.config import parse_config
from hcmiddleware.face.dlib_backend import DlibBackend
from hcmiddleware.face.samples import KIOSK_LIVE_PHOTO
from hcmiddleware.models import LivenessResult
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS as KEYS
from hcmiddleware.testing import HookRecorder, empi_keys

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
LIVE = KIOSK_LIVE_PHOTO.read_bytes()


def make(tmp_path: Path, **kwargs: Any) -> Middleware:
    cfg = parse_config(
        {
            "middleware": {"data_dir": str(tmp_path)},
            "sam": {"keys": str(KEYS)},
            "empi": empi_keys(tmp_path / "keys"),
        }
    )
    return Middleware(cfg, **kwargs)


@pytest.fixture(scope="module")
def hopper() -> bytes:
    return to_jpeg(load_people()["hopper"])


def test_cardholder_matches_their_card_photo(tmp_path: Path) -> None:
    with make(tmp_path) as mw:
        recorder = HookRecorder(mw)
        card = mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS))
        result = mw.faces.verify_card(LIVE, card, resident_id="r-1", context="kiosk:K1")
        assert result.matched, result
        assert recorder.last("hcm_face_verified").kwargs["result"] is result
        event = recorder.last("hcm_audit_event").kwargs["event"]
        assert (event.action, event.outcome, event.subject) == ("face.verify", "ok", "r-1")


def test_someone_else_is_refused(tmp_path: Path, hopper: bytes) -> None:
    with make(tmp_path) as mw:
        card = mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS))
        result = mw.faces.verify_card(hopper, card, resident_id="r-1")
        assert result.status == "no_match"
        assert result.distance is not None
        assert result.threshold is not None
        assert result.distance > result.threshold


def test_a_liveness_plugin_saying_no_refuses_the_pass(tmp_path: Path) -> None:
    seen: list[str] = []

    class Kiosk:
        def hcm_face_liveness(self, image: bytes, context: str) -> LivenessResult:
            seen.append(context)
            return LivenessResult(live=False, reason="printed photo")

    with make(tmp_path, plugins={"kiosk": Kiosk()}) as mw:
        card = mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS))
        result = mw.faces.verify_card(LIVE, card, resident_id="r-1", context="kiosk:K7")
        assert result.status == "refused"
        assert not result.matched
        assert seen == ["kiosk:K7"]


def test_a_backend_plugin_is_used(tmp_path: Path) -> None:
    provided = DlibBackend()

    class Vendor:
        def hcm_face_backend(self, name: str) -> DlibBackend | None:
            return provided if name == "dlib" else None

    with make(tmp_path, plugins={"vendor": Vendor()}) as mw:
        assert mw.faces.service.backend is provided


def test_enrolment_refuses_a_second_record_and_stores_encrypted(
    tmp_path: Path, hopper: bytes
) -> None:
    with make(tmp_path) as mw:
        recorder = HookRecorder(mw)
        assert mw.faces.enrol("resident-a", LIVE).status == "enrolled"
        assert mw.faces.enrol("resident-b", hopper).status == "enrolled"
        again = mw.faces.enrol("resident-c", LIVE)
        assert again.status == "duplicate"
        found = recorder.last("hcm_face_duplicates_found").kwargs
        assert found["resident_id"] == "resident-c"
        assert [c[0] for c in found["candidates"]] == ["resident-a"]
        with mw.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT resident_id FROM face_templates")).all()
        assert sorted(r[0] for r in rows) == ["resident-a", "resident-b"]
    with make(tmp_path) as mw:  # after a restart the gallery is loaded from the store
        hits = mw.faces.enrolment.search(LIVE, top=1)
        assert hits[0].resident_id == "resident-a"


def test_cli_enrol_and_search_use_the_configured_store(tmp_path: Path, hopper: bytes) -> None:
    from click.testing import CliRunner

    from hcmiddleware.cli import main

    cfg = tmp_path / "hcm.toml"
    keys = empi_keys(tmp_path / "keys")
    cfg.write_text(
        f'[middleware]\ndata_dir = "{tmp_path / "data"}"\n[empi]\n'
        f'master_keys = {{ k1 = {{ file = "{keys["master_keys"]["k1"]["file"]}" }} }}\n'
        f'index_key = {{ file = "{keys["index_key"]["file"]}" }}\n',
        encoding="utf-8",
    )
    (tmp_path / "hopper.jpg").write_bytes(hopper)
    runner = CliRunner()
    base = ["--config", str(cfg), "face"]
    enrolled = runner.invoke(main, [*base, "enrol", "r-9", str(KIOSK_LIVE_PHOTO)])
    assert enrolled.exit_code == 0, enrolled.output
    other = runner.invoke(main, [*base, "enrol", "r-10", str(tmp_path / "hopper.jpg")])
    assert other.exit_code == 0, other.output
    found = runner.invoke(main, [*base, "search", "--json", "--top", "1", str(KIOSK_LIVE_PHOTO)])
    assert found.exit_code == 0, found.output
    assert '"r-9"' in found.output
    site = {"middleware": {"data_dir": str(tmp_path / "data")}, "empi": keys}
    with Middleware(parse_config(site)) as mw:
        assert mw.faces.enrolment.search(hopper, top=1)[0].resident_id == "r-10"
