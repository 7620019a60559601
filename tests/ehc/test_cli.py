"""``hcm ehc`` as a site runs it: the command's exit codes and output.

Most calls go through click's runner in this process (a fresh ``hcm`` process costs
seconds of imports); the last test runs the real command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from hcmiddleware import Middleware

HCM = shutil.which("hcm", path=str(Path(sys.executable).parent)) or "hcm"


class Ran:
    """What a command left: its exit code and output."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def hcm(*args: str, cwd: Path) -> Ran:
    from click.testing import CliRunner

    from hcmiddleware.cli import main

    here = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), env={"HCM_CONFIG": str(cwd / "hcm.toml")})
    finally:
        os.chdir(here)
    return Ran(result.exit_code, result.stdout, result.stderr)


def real_hcm(*args: str, cwd: Path) -> Any:
    return subprocess.run(
        [HCM, *args], capture_output=True, text=True, cwd=cwd, timeout=120,
        env={**os.environ, "HCM_CONFIG": str(cwd / "hcm.toml")},
    )  # fmt: skip


def site(tmp_path: Path) -> str:
    """A site made by ``hcm init`` with a key from ``hcm ehc keygen``; a resident's ID."""
    assert hcm("init", str(tmp_path), cwd=tmp_path).returncode == 0
    made = hcm("ehc", "keygen", "SITE1", "--issuer", "HOSP", "--algorithm", "ed25519",
               cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    with (tmp_path / "hcm.toml").open("a", encoding="utf-8") as config:
        config.write("\n" + made.stdout)
    again = hcm("ehc", "keygen", "SITE1", cwd=tmp_path)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    with Middleware.from_file(tmp_path / "hcm.toml") as mw:
        resident = mw.residents.enrol(name="王芳", sex=2, id_number="11010519491231002X")
    return resident.resident_id


def test_issue_and_verify(tmp_path: Path) -> None:
    resident_id = site(tmp_path)
    issued = hcm("ehc", "issue", "--resident", resident_id, "--dynamic", "--json",
                 "--png", "code.png", "--svg", "code.svg", cwd=tmp_path)  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    answer = json.loads(issued.stdout)
    assert answer["kind"] == "dynamic"
    assert (tmp_path / "code.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "code.svg").read_bytes()

    ok = hcm("ehc", "verify", answer["code"], "--step", "registration", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    accepted = json.loads(ok.stdout)
    assert (accepted["status"], accepted["resident_id"]) == ("accepted", resident_id)
    assert answer["ecard_id"] not in ok.stdout  # the answer names the resident, not the e-card

    again = hcm("ehc", "verify", "--image", "code.png", "--step", "registration",
                cwd=tmp_path)  # fmt: skip
    assert again.returncode == 1
    assert "refused (replayed)" in again.stderr
    other_step = hcm("ehc", "verify", "--image", "code.png", "--step", "payment", cwd=tmp_path)
    assert other_step.returncode == 0, other_step.stderr
    assert "accepted: resident" in other_step.stdout

    static = hcm("ehc", "issue", "--ecard", answer["ecard_id"], cwd=tmp_path).stdout.strip()
    assert static == f"{answer['ecard_id']}:1"
    refused = hcm("ehc", "verify", static, "--json", cwd=tmp_path)
    assert (refused.returncode, json.loads(refused.stdout)["reason"]) == (1, "second_factor")
    assert hcm("ehc", "verify", static, "--id-digits", "31002X", cwd=tmp_path).returncode == 0


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    site(tmp_path)
    garbage = hcm("ehc", "verify", "x" * 10_000, "--json", cwd=tmp_path)
    assert garbage.returncode == 1
    assert json.loads(garbage.stdout)["reason"] == "too_long"
    (tmp_path / "not.png").write_bytes(b"not a picture")
    picture = hcm("ehc", "verify", "--image", "not.png", cwd=tmp_path)
    assert picture.returncode == 1
    assert "refused (image)" in picture.stderr
    both = hcm("ehc", "verify", "x", "--image", "not.png", cwd=tmp_path)
    assert both.returncode == 2
    nothing = hcm("ehc", "issue", cwd=tmp_path)
    assert nothing.returncode == 2
    unsynced = hcm("ehc", "sync", cwd=tmp_path)
    assert unsynced.returncode == 1
    assert "hcm_ehc_revocations" in unsynced.stderr


def test_the_real_command_exits_0_accepted_and_1_refused(tmp_path: Path) -> None:
    resident_id = site(tmp_path)
    code = hcm("ehc", "issue", "--resident", resident_id, "--dynamic", cwd=tmp_path).stdout
    ok = real_hcm("ehc", "verify", code.strip(), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    again = real_hcm("ehc", "verify", code.strip(), cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.startswith("refused (replayed)")
