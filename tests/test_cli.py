"""The ``hcm`` command as hospital IT runs it: a real process, real exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import __version__

SAMPLE = '[plugins]\nenabled = ["sample-his"]\n[plugins.sample-his]\n'
HCM = shutil.which("hcm", path=str(Path(sys.executable).parent)) or "hcm"


def hcm(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [HCM, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    out = hcm("--version")
    assert out.returncode == 0
    assert __version__ in out.stdout


def test_plugins_list_json_shows_installed_and_enabled(tmp_path: Path) -> None:
    cfg = tmp_path / "hcm.toml"
    cfg.write_text('[plugins]\nenabled = ["sample-his"]\n', encoding="utf-8")
    out = hcm("--config", str(cfg), "plugins", "list", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["sample-his"]["enabled"] is True
    assert rows["sample-his"]["distribution"] == "hcm-his-sample"
    assert "hcm_his_register_patient" in rows["sample-his"]["hooks"]
    assert rows["hcm.core-checks"]["origin"] == "builtin"


def test_plugins_list_without_config_shows_installed_as_disabled(tmp_path: Path) -> None:
    out = hcm("plugins", "list", cwd=tmp_path)
    assert out.returncode == 0
    assert "sample-his" in out.stdout
    assert "disabled" in out.stdout


def test_config_check_ok(tmp_path: Path) -> None:
    cfg = tmp_path / "hcm.toml"
    cfg.write_text(
        '[plugins]\nenabled = ["sample-his"]\n[plugins.sample-his]\nhospital_code = "H1"\n'
        "[plugins.other]\nx = 1\n",
        encoding="utf-8",
    )
    out = hcm("config", "check", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout
    assert "other is not enabled" in out.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[plugins\n", "not valid TOML"),
        ("[middleware]\nsite_nam = 1\n", "middleware.site_nam: unknown key"),
        ("[plugins]\ncall_timeout = 'x'\n", "plugins.call_timeout"),
        ('[plugins]\nenabled = ["sampel-his"]\n', "did you mean 'sample-his'"),
        (
            SAMPLE + 'api_token = {env = "HCM_T_UNSET"}\n',
            "HCM_T_UNSET is not set",
        ),
        (
            SAMPLE + 'api_token = "hunter2"\n',
            "may not be written into the config file",
        ),
        (
            SAMPLE + 'minutes_per_patient = "x"\n',
            "plugins.sample-his.minutes_per_patient",
        ),
    ],
)
def test_config_check_bad_input_exits_2_with_one_clear_message(
    tmp_path: Path, text: str, expected: str
) -> None:
    cfg = tmp_path / "hcm.toml"
    cfg.write_text(text, encoding="utf-8")
    out = hcm("config", "check", str(cfg), cwd=tmp_path)
    assert out.returncode == 2
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    assert "hunter2" not in out.stderr + out.stdout
    if "not installed" not in out.stderr:
        assert str(cfg) in out.stderr


def test_plugin_raising_on_import_exits_2_and_debug_shows_traceback(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "hcm_boom.py").write_text("raise ImportError('no module named vendor_sdk')\n")
    dist = site / "hcm_boom-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hcm-boom\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[hcmiddleware]\nboom = hcm_boom\n")
    cfg = tmp_path / "hcm.toml"
    cfg.write_text('[plugins]\nenabled = ["boom"]\n', encoding="utf-8")
    env = {"PYTHONPATH": str(site)}
    out = hcm("config", "check", str(cfg), cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert "plugin 'boom'" in out.stderr
    assert f"{cfg}: plugins.enabled:" in out.stderr
    assert "vendor_sdk" in out.stderr
    assert "Traceback" not in out.stderr
    debug = hcm("--debug", "config", "check", str(cfg), cwd=tmp_path, env=env)
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr


def test_doctor_json_all_ok(tmp_path: Path) -> None:
    cfg = tmp_path / "hcm.toml"
    cfg.write_text(
        f'[middleware]\ndata_dir = "{tmp_path / "data"}"\n[plugins]\nenabled = ["sample-his"]\n',
        encoding="utf-8",
    )
    out = hcm("--config", str(cfg), "doctor", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True
    checks = {(r["plugin"], r["check"]) for r in report["checks"]}
    assert {
        ("core", "config"),
        ("sample-his", "loaded"),
        ("sample-his", "store"),
        ("hcm.core-checks", "database"),
    } <= checks


def test_doctor_lines_say_what_to_do(tmp_path: Path) -> None:
    cfg = tmp_path / "hcm.toml"
    cfg.write_text(
        '[database]\nurl = "postgresql+psycopg://x@127.0.0.1:1/none"\n'
        '[readers]\nuser = "No Such Reader 00 00"\n',
        encoding="utf-8",
    )
    out = hcm("--config", str(cfg), "doctor", cwd=tmp_path)
    assert out.returncode == 1
    assert "FAIL  hcm.core-checks: database" in out.stdout
    assert "what to do:" in out.stdout
    assert "reader" in out.stdout


def test_doctor_with_broken_config_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "hcm.toml"
    cfg.write_text("[middleware]\nfoo = 1\n", encoding="utf-8")
    out = hcm("--config", str(cfg), "doctor", "--json", cwd=tmp_path)
    assert out.returncode == 2
    assert json.loads(out.stdout)["ok"] is False


def test_hooks_reference_is_printed() -> None:
    out = hcm("plugins", "hooks")
    assert out.returncode == 0
    assert "## `hcm_his_register_patient`" in out.stdout


def test_demo_runs_the_journey(tmp_path: Path) -> None:
    out = hcm("demo", "--data-dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "journey complete" in out.stdout
    assert "FAILED" not in out.stdout
    assert "skipped" not in out.stdout  # face backend and bank adapter are installed here
    assert "marked paid in the HIS" in out.stdout
