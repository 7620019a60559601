"""Workstation tokens: ``hcm init`` comes with one, ``hcm agent token`` makes more, and the
config keeps only their SHA-256 (or the token as a secret, as before)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hcmiddleware import Middleware
from hcmiddleware.agent import create_app
from hcmiddleware.config import load_config, parse_config
from hcmiddleware.errors import ConfigError

HCM = shutil.which("hcm", path=str(Path(sys.executable).parent)) or "hcm"
TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


def hcm(*args: str, cwd: Path) -> Any:
    return subprocess.run(
        [HCM, *args], capture_output=True, text=True, cwd=cwd, timeout=60, env={**os.environ}
    )


def _me(config_file: Path, token: str) -> Any:
    with Middleware(load_config(config_file)) as mw, TestClient(create_app(mw)) as client:
        answer = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        client.app.state.agent.close()  # type: ignore[attr-defined]
    return answer


def test_init_comes_with_a_token_shown_once_and_kept_as_its_digest(tmp_path: Path) -> None:
    out = hcm("init", "site", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("agent token of workstation-1")]
    token = line.rsplit(" ", 1)[1]
    assert TOKEN.match(token)
    site = tmp_path / "site"
    config = load_config(site / "hcm.toml")
    (name, entry), *more = config.agent.tokens.items()
    assert (name, more, entry.token) == ("workstation-1", [], None)
    assert (entry.user, entry.role, entry.terminal) == (
        "operator-1",
        "registration",
        "workstation-1",
    )
    # the token itself is written nowhere in the installation
    for path in site.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    answer = _me(site / "hcm.toml", token)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "user": "operator-1",
        "role": "registration",
        "terminal": "workstation-1",
    }
    assert (
        _me(site / "hcm.toml", token[:-1] + ("A" if token[-1] != "A" else "B")).status_code == 401
    )


def test_a_new_token_for_a_workstation_and_its_rotation(tmp_path: Path) -> None:
    assert hcm("init", "site", cwd=tmp_path).returncode == 0
    config_file = tmp_path / "site" / "hcm.toml"
    made = hcm("agent", "token", "till-02", "--role", "cashier", "--user", "emp-2048", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    first = lines[1].strip()
    assert TOKEN.match(first)
    section = "\n".join(lines[lines.index("[agent.tokens.till-02]") :])
    assert first not in section
    text = config_file.read_text(encoding="utf-8")
    config_file.write_text(text + "\n" + section + "\n", encoding="utf-8")
    assert _me(config_file, first).json() == {
        "user": "emp-2048", "role": "cashier", "terminal": "till-02"
    }  # fmt: skip
    # rotation: a new token's digest in place of the old one; the old token stops working
    again = hcm(
        "agent", "token", "till-02", "--role", "cashier", "--user", "emp-2048", cwd=tmp_path
    )
    second = again.stdout.splitlines()[1].strip()
    assert second != first
    digest = re.search(r'token_sha256 = "([0-9a-f]{64})"', again.stdout)
    assert digest is not None
    old = re.search(
        r'(\[agent.tokens.till-02\]\ntoken_sha256 = ")[0-9a-f]{64}', config_file.read_text()
    )
    assert old is not None
    config_file.write_text(
        config_file.read_text().replace(old.group(0), old.group(1) + digest.group(1)),
        encoding="utf-8",
    )
    assert _me(config_file, first).status_code == 401
    assert _me(config_file, second).json()["role"] == "cashier"


def test_a_bad_workstation_name_is_refused(tmp_path: Path) -> None:
    out = hcm("agent", "token", "desk 01", cwd=tmp_path)
    assert out.returncode == 2
    assert "WORKSTATION" in out.stderr
    assert not re.search(r"[A-Za-z0-9_-]{43}", out.stdout)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({}, "one of them"),
        ({"token_sha256": "ab" * 32, "token": {"env": "HCM_TEST_AGENT_TOKEN"}}, "one of them"),
        ({"token_sha256": "AB" * 32}, "token_sha256"),
        ({"token_sha256": "ab" * 31}, "token_sha256"),
    ],
)
def test_a_token_entry_gives_the_token_or_its_digest(
    entry: dict[str, Any], problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HCM_TEST_AGENT_TOKEN", "t" * 40)
    tokens = {"desk": {**entry, "user": "u", "role": "registration", "terminal": "ws"}}
    with pytest.raises(ConfigError) as refused:
        parse_config({"agent": {"tokens": tokens}})
    assert problem in str(refused.value)


def test_two_workstations_may_not_share_a_token_in_either_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hcmiddleware.config import token_digest

    monkeypatch.setenv("HCM_TEST_AGENT_TOKEN", "t" * 40)
    tokens = {
        "desk": {"token": {"env": "HCM_TEST_AGENT_TOKEN"}, "user": "u", "role": "registration",
                 "terminal": "ws-1"},
        "till": {"token_sha256": token_digest("t" * 40).hex(), "user": "v", "role": "cashier",
                 "terminal": "ws-2"},
    }  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        parse_config({"agent": {"tokens": tokens}})
    assert "share a token" in str(refused.value)


def test_a_token_of_a_role_not_configured_is_refused_every_time(tmp_path: Path) -> None:
    from hcmiddleware.config import new_agent_token
    from hcmiddleware.testing.plugin import embedded_config

    token, digest = new_agent_token()
    tokens = {"mop-1": {"token_sha256": digest, "user": "u-1", "role": "janitor",
                        "terminal": "ws-1"}}  # fmt: skip
    config = embedded_config(tmp_path / "d", agent={"tokens": tokens})
    with Middleware(config) as mw, TestClient(create_app(mw)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(2):  # a failed session is not remembered as a good one
            answer = client.get("/v1/residents/nobody", headers=headers)
            assert answer.status_code == 403, answer.text
            assert answer.json()["title"] == "UnknownRoleError"
        assert len(mw.audit.entries(action="access.refused")) == 2
        client.app.state.agent.close()  # type: ignore[attr-defined]
