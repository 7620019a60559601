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


def init_site(tmp_path: Path, *, plugins: str = "") -> Path:
    """A site made by ``hcm init``, with ``plugins`` enabled."""
    site = tmp_path / "site"
    out = hcm("init", str(site), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    cfg = site / "hcm.toml"
    text = cfg.read_text(encoding="utf-8").replace("enabled = []", f"enabled = [{plugins}]")
    cfg.write_text(text, encoding="utf-8")
    return cfg


def test_doctor_json_all_ok(tmp_path: Path) -> None:
    cfg = init_site(tmp_path, plugins='"sample-his"')
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
        ("hcm.core-checks", "resident index keys"),
    } <= checks


# --- hcm init, paths and keys ------------------------------------------------------

PEOPLE = (
    "record_id,name,sex,birth_date,id_number,phone,address,card_number\n"
    "A1,张秀英,2,1949-12-31,11010519491231002X,13800138000,北京市朝阳区,\n"
)


def test_init_writes_a_config_keys_and_data_and_overwrites_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    out = hcm("init", str(site), "--site-name", 'No. 1 "People\'s" Hospital', cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(site / "hcm.toml") in out.stdout
    assert "back up" in out.stdout
    from hcmiddleware.config import load_config

    config = load_config(site / "hcm.toml")
    assert config.middleware.site_name == 'No. 1 "People\'s" Hospital'
    assert config.middleware.data_dir == site / "data"
    assert config.empi.current_key == "k1"
    keys = sorted((site / "keys").iterdir())
    assert [k.name for k in keys] == [
        "audit-signing.key", "audit-signing.pub", "empi-index.key", "empi-master-k1.key",
    ]  # fmt: skip
    modes = {k.name: oct(k.stat().st_mode & 0o777) for k in keys}
    assert modes.pop("audit-signing.pub") == "0o644"  # the public half, for verifiers
    assert set(modes.values()) == {"0o600"}
    assert config.audit.signing_key is not None
    assert config.audit.hash == "sha256"
    assert oct((site / "keys").stat().st_mode & 0o777) == "0o700"
    assert oct((site / "data").stat().st_mode & 0o777) == "0o700"
    # once more: refused, nothing changed
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    again = hcm("init", str(site), cwd=tmp_path)
    assert again.returncode == 2
    assert "already holds a configuration" in again.stderr
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before
    # a config moved away, the keys left: still refused (they may protect data)
    (site / "hcm.toml").unlink()
    third = hcm("init", str(site), cwd=tmp_path)
    assert third.returncode == 2
    assert "may protect data" in third.stderr
    assert (site / "keys" / "empi-master-k1.key").read_bytes() == before[
        site / "keys" / "empi-master-k1.key"
    ]
    # only the audit key left behind: refused too, nothing written
    for name in ("empi-master-k1.key", "empi-index.key"):
        (site / "keys" / name).unlink()
    fourth = hcm("init", str(site), cwd=tmp_path)
    assert fourth.returncode == 2
    assert "an audit signing key is already there" in fourth.stderr
    assert sorted(p.name for p in (site / "keys").iterdir()) == [
        "audit-signing.key", "audit-signing.pub",
    ]  # fmt: skip


def test_a_restart_from_another_directory_opens_the_same_index(tmp_path: Path) -> None:
    cfg = init_site(tmp_path)
    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    imported = hcm("--config", str(cfg), "empi", "import", "people.csv", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stats = hcm("--config", str(cfg), "empi", "stats", cwd=elsewhere)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["active_residents"] == 1
    assert not list(elsewhere.iterdir()), "nothing is created in the working directory"
    assert not (tmp_path / "data").exists()


def test_no_keys_refuses_and_says_hcm_init(tmp_path: Path) -> None:
    cfg = tmp_path / "hcm.toml"
    cfg.write_text('[middleware]\ndata_dir = "data"\n', encoding="utf-8")
    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    out = hcm("--config", str(cfg), "empi", "import", "people.csv", cwd=tmp_path)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "no encryption keys" in errors[0]
    assert "hcm init" in errors[0]
    assert not list(tmp_path.rglob("*.key"))


def test_a_missing_key_file_on_a_populated_index_loses_nothing(tmp_path: Path) -> None:
    cfg = init_site(tmp_path)
    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    assert hcm("--config", str(cfg), "empi", "import", "people.csv", cwd=tmp_path).returncode == 0
    key = cfg.parent / "keys" / "empi-master-k1.key"
    saved = key.read_bytes()
    database = cfg.parent / "data" / "hcm.db"
    size = database.stat().st_size
    key.unlink()  # lost with a disk, say
    out = hcm("--config", str(cfg), "empi", "stats", cwd=tmp_path)
    assert out.returncode == 2
    assert "empi.master_keys.k1" in out.stderr
    assert "restore" in out.stderr
    assert not key.exists(), "no new key is made in its place"
    assert database.stat().st_size == size
    key.write_bytes(saved)  # restored from the backup: everything is there
    back = hcm("--config", str(cfg), "empi", "stats", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["active_residents"] == 1


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


# --- optional parts not installed ----------------------------------------------------


def hcm_without(modules: list[str], *args: str, cwd: Path) -> Any:
    """``hcm`` in a process where ``modules`` cannot be imported, as if never installed."""
    code = (
        "import sys\n"
        f"for name in {modules!r}:\n"
        "    sys.modules[name] = None  # import raises ModuleNotFoundError\n"
        "from hcmiddleware.cli import main\n"
        "main(prog_name='hcm')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_demo_without_the_face_extra_enrols_without_the_face_check(tmp_path: Path) -> None:
    out = hcm_without(
        ["PIL", "face_recognition", "dlib"],
        "demo", "--data-dir", str(tmp_path / "d"), "--step", "2", "--no-pcsc",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    face_line = next(line for line in out.stdout.splitlines() if line.startswith("[2/2]"))
    assert "face check skipped: it needs the 'face' extra" in face_line
    assert "pip install 'hcmiddleware[face]'" in face_line
    assert "Traceback" not in out.stderr
    assert "journey complete" in out.stdout


def test_face_command_without_the_extra_is_one_line(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"\xff\xd8 not really")
    out = hcm_without(["PIL"], "face", "verify", str(photo), str(photo), cwd=tmp_path)
    assert out.returncode == 3, out.stdout + out.stderr  # hcm face: the check was not made
    assert out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr
    assert "'face' extra" in out.stderr
    assert "pip install 'hcmiddleware[face]'" in out.stderr


@pytest.mark.parametrize(
    ("missing", "config", "command", "extra"),
    [
        # the database driver of a PostgreSQL URL
        (
            "psycopg",
            '[database]\nurl = "postgresql+psycopg://hcm@127.0.0.1/hcm"\n',
            "journal list",
            "postgres",
        ),
        # an enabled adapter that imports the SOAP client
        ("zeep", '[plugins]\nenabled = ["bank-soap"]\n', "plugins list", "soap"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    tmp_path: Path, missing: str, config: str, command: str, extra: str
) -> None:
    cfg = tmp_path / "hcm.toml"
    cfg.write_text(config, encoding="utf-8")
    out = hcm_without([missing], "--config", str(cfg), *command.split(), cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert f"pip install 'hcmiddleware[{extra}]'" in out.stderr
