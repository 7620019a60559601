"""``hcm ward`` on a site made by ``hcm init`` (in-process: tests/test_cli.py runs ``hcm``
as a process; here the commands' work is what is tested)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hcmiddleware.cli import main

from .test_mqtt import BROKER, broker, plugin_settings  # noqa: F401  (the broker fixture)

PEOPLE = (
    "record_id,name,sex,birth_date,id_number,phone,address,card_number\n"
    "A1,张秀英,2,1949-12-31,11010519491231002X,13800138000,北京市朝阳区,H12345678\n"
)


def hcm(*args: str, cwd: Path) -> Result:
    """Run ``hcm args`` in-process (``cwd`` is where a hospital's IT would stand)."""
    assert cwd.is_dir()
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site with the sample HIS and one resident holding card H12345678."""
    site = tmp_path / "site"
    assert hcm("init", str(site), cwd=tmp_path).exit_code == 0
    cfg = site / "hcm.toml"
    text = cfg.read_text(encoding="utf-8").replace("enabled = []", 'enabled = ["sample-his"]')
    cfg.write_text(text, encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")
    out = hcm("--config", str(cfg), "empi", "import", str(people), cwd=tmp_path)
    assert out.exit_code == 0, out.stderr
    return cfg


def test_bind_label_verify_and_alarms(site: Path, tmp_path: Path) -> None:
    cfg = ["--config", str(site), "ward"]
    out = hcm(
        *cfg, "bind", "WB-0001", "--card", "H12345678", "--admission", "V1",
        "--patient", "P1", "--ward", "5A", "--bed", "12", cwd=tmp_path,
    )  # fmt: skip
    assert out.exit_code == 0, out.stderr
    assert "bound WB-0001" in out.stdout
    zpl = hcm(*cfg, "label", "WB-0001", cwd=tmp_path)
    assert zpl.exit_code == 0, zpl.stderr
    assert zpl.stdout.startswith("^XA")
    assert "张秀英" in zpl.stdout
    png = hcm(
        *cfg, "label", "WB-0001", "--format", "png", "-o", str(tmp_path / "b.png"), cwd=tmp_path
    )
    assert png.exit_code == 0, png.stderr
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the sample HIS orders a blood count on every visit: bed, name and time apply
    ok = hcm(
        *cfg, "verify", "WB-0001", "V1-O1", "--nurse", "N-1", "--bed", "12", "--json", cwd=tmp_path
    )
    assert ok.exit_code == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    wrong = hcm(*cfg, "verify", "WB-0001", "V1-O1", "--nurse", "N-1", "--bed", "14", cwd=tmp_path)
    assert wrong.exit_code == 1
    assert "FAIL bed" in wrong.stdout
    dead = hcm(*cfg, "rebind", "WB-0001", "WB-0002", cwd=tmp_path)
    assert dead.exit_code == 0, dead.stderr
    again = hcm(*cfg, "label", "WB-0001", cwd=tmp_path)
    assert again.exit_code == 1
    assert "WB-0002" in again.stderr


def test_simulate_plays_bands_the_middleware_confirms(
    broker: tuple[str, int],  # noqa: F811
    make_ward_mw: Any,
    tmp_path: Path,
) -> None:
    from hcm_ward_mqtt import WardMqtt

    prefix = f"hcm-test/{uuid.uuid4().hex[:12]}"
    plugin = WardMqtt()
    mw = make_ward_mw(
        plugins={"ward-mqtt": plugin}, settings={"ward-mqtt": plugin_settings(*broker, prefix)}
    )
    assert plugin.wait_connected(5)
    out = hcm(
        "ward", "simulate", "--bands", "20", "--rate", "200", "--seconds", "1",
        "--emergency-share", "0.1", "--prefix", prefix, "--json", cwd=tmp_path,
    )  # fmt: skip
    assert out.exit_code == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["unconfirmed"] == 0
    assert report["emergencies"] > 0
    assert report["locations"] + report["emergencies"] == 200
    alarms = mw.ward.alarms()
    assert len(alarms) == len({a.wristband_id for a in alarms}) <= 20  # one per band


def test_simulate_without_a_middleware_says_what_is_missing(
    broker: tuple[str, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    prefix = f"hcm-test/{uuid.uuid4().hex[:12]}"
    out = hcm(
        "ward", "simulate", "--bands", "2", "--rate", "20", "--seconds", "0.2",
        "--emergency-share", "1", "--wait", "0.5", "--prefix", prefix, cwd=tmp_path,
    )  # fmt: skip
    assert out.exit_code == 1
    assert "0 calls confirmed" in out.stdout
