"""``hcm agent serve`` as a real process: what its HTTP server trusts of a request."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx

from hcmiddleware.testing import audit_key, empi_keys

from .conftest import free_port, serving


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    return json.dumps(value)


def _config(folder: Path, port: int, **extra: dict[str, Any]) -> Path:
    (folder / "desk.token").write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    keys = folder / "keys"
    sections: dict[str, dict[str, Any]] = {
        "middleware": {"data_dir": str(folder / "data"), "institution_code": "210100000001"},
        "empi": empi_keys(keys),
        "audit": audit_key(keys),
        "agent": {"port": port, "rate_limit": 0.01, "rate_burst": 2},
        "agent.tokens.desk-1": {
            "token": {"file": "desk.token"},
            "user": "u-desk",
            "role": "registration",
            "terminal": "desk-1",
        },
        **extra,
    }
    path = folder / "hcm.toml"
    path.write_text(
        "".join(
            f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in body.items()) + "\n"
            for name, body in sections.items()
        ),
        encoding="utf-8",
    )
    return path


def test_x_forwarded_for_does_not_change_whom_the_rate_limit_counts(tmp_path: Path) -> None:
    """The agent is called on loopback, never through a proxy: a page that sends
    X-Forwarded-For is still the one client it is (its burst of two, then 429)."""
    port = free_port()
    with serving(_config(tmp_path, port)):
        statuses = [
            httpx.get(
                f"http://127.0.0.1:{port}/v1/health",
                headers={"X-Forwarded-For": f"203.0.113.{i}", "X-Forwarded-Proto": "https"},
                timeout=10,
            ).status_code
            for i in range(1, 4)
        ]
    assert statuses == [200, 200, 429]


def test_the_card_index_is_built_before_the_agent_listens(tmp_path: Path) -> None:
    """A service builds the in-memory index of listed cards as it starts, so the first
    card checks are answered from memory, not the database; it says so in its log."""
    with serving(_config(tmp_path, free_port(), logging={"level": "INFO"})) as process:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "card index ready: 0 entries" in stderr, stderr
