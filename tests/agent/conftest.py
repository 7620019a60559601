"""An agent on a real Middleware: pcscd with the vpcd readers, the software card and SAM,
the sample HIS, and three workstations of three roles."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hcmiddleware import Middleware
from hcmiddleware.agent import create_app
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS as KEYS
from hcmiddleware.testing import audit_key, empi_keys
from hcmiddleware.testing.pcscd import USER_READER, Pcscd
from hcmiddleware.testing.plugin import embedded_config

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
ORIGIN = "https://his.example.org"
HOSPITAL = "210100000001"
ROLES = {
    "desk": "registration",
    "till": "cashier",
    "nurse": "nurse",
    "doc": "doctor",
    "admin": "administrator",
    "audit": "auditor",
}
#: hospital IT's role as a site would widen it for the console: the audit chain and alarms
IT_ROLE = {
    "operations": [
        "residents.*", "his.provides", "his.check", "cards.*", "journal.entries",
        "journal.get", "journal.history", "journal.recover", "audit.verify", "audit.head",
        "audit.record", "ward.alarms",
    ],
    "categories": ["identity", "money"],
}  # fmt: skip


@dataclass
class Agent:
    mw: Middleware
    client: TestClient
    tokens: dict[str, str]

    def headers(self, who: str = "desk", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", **extra}

    def get(self, path: str, who: str = "desk", **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers(who), **kw)

    def post(self, path: str, who: str = "desk", **kw: Any) -> Any:
        return self.client.post(path, headers=self.headers(who), **kw)

    def audited_calls(self) -> list[Any]:
        """The agent's ``agent.call`` entries, once everything queued is written."""
        assert self.client.app.state.agent.calls.flush()  # type: ignore[attr-defined]
        return self.mw.audit.entries(action="agent.call")


def agent_config(
    data_dir: Path,
    *,
    plugins: dict[str, Any] | None = None,
    sections: dict[str, Any] | None = None,
    **agent: Any,
) -> Any:
    """A config with a token file per workstation in ``data_dir``; the tokens too.

    ``plugins`` replaces the ``[plugins]`` section (default: the sample HIS);
    ``sections`` adds others (``printing`` …); the keyword arguments are ``[agent]``'s.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    tokens: dict[str, str] = {}
    section: dict[str, Any] = {}
    for name, role in ROLES.items():
        tokens[name] = secrets.token_urlsafe(32)
        path = data_dir / f"{name}.token"
        path.write_text(tokens[name] + "\n", encoding="utf-8")
        path.chmod(0o600)
        section[name] = {"token": {"file": str(path)}, "user": f"u-{name}", "role": role,
                         "terminal": f"ws-{name}"}  # fmt: skip
    config = embedded_config(
        data_dir,
        middleware={"institution_code": HOSPITAL},
        readers={"user": USER_READER},
        sam={"keys": str(KEYS)},
        plugins=plugins if plugins is not None else {"enabled": ["sample-his"]},
        access={"roles": {"administrator": IT_ROLE}},
        agent={"tokens": section, "allowed_origins": [ORIGIN], **agent},
        **(sections or {}),
    )
    return config, tokens


@pytest.fixture(scope="module")
def pcscd() -> Iterator[Pcscd]:
    # per module, like the other PC/SC tests: a pcscd left running for the whole session
    # would stop the tests that need the machine's pcscd socket to themselves
    with Pcscd() as daemon:
        yield daemon


@pytest.fixture
def card(pcscd: Pcscd) -> Iterator[EmulatedCard]:
    """The sample resident's card in the user reader."""
    pcscd.wait_card(False)
    emulated = EmulatedCard.from_files(PROFILE, KEYS)
    with VpcdCard(emulated, pcscd.user_port):
        pcscd.wait_card(True)
        yield emulated
    pcscd.wait_card(False)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    config, tokens = agent_config(tmp_path / "hcm-data")
    with Middleware(config) as mw, TestClient(create_app(mw)) as client:
        yield Agent(mw, client, tokens)
        client.app.state.agent.close()  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    base: str
    agent: Agent
    #: a second origin the agent allows: where tests serve examples/ from
    page_port: int


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The agent under uvicorn on a loopback port, in a thread of this process."""
    import uvicorn

    page_port = free_port()
    config, tokens = agent_config(
        tmp_path / "hcm-data", allowed_origins=[ORIGIN, f"http://127.0.0.1:{page_port}"]
    )
    port = free_port()
    with Middleware(config) as mw:
        app = create_app(mw)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                           lifespan="off")
        )  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the agent did not start"
            time.sleep(0.02)
        try:
            yield Served(f"http://127.0.0.1:{port}", Agent(mw, TestClient(app), tokens), page_port)
        finally:
            app.state.agent.events.close()
            server.should_exit = True
            thread.join(10)
            app.state.agent.close()


def toml_value(value: Any) -> str:
    """A value as TOML writes it (strings, numbers, lists, inline tables)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(folder: Path, port: int, **extra: dict[str, Any]) -> Path:
    """An hcm.toml in ``folder`` for ``hcm agent serve`` on ``port``: one workstation
    (``desk-1``, registration) whose token is in ``folder/desk.token``; ``extra``
    sections are added or replace the ones named."""
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
            f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in body.items()) + "\n"
            for name, body in sections.items()
        ),
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def serving(config: Path) -> Iterator[subprocess.Popen[str]]:
    """``hcm agent serve`` on ``config`` in a process of its own, once it listens;
    stopped after (SIGTERM, then killed if it does not end) unless it ended already."""
    hcm = [sys.executable, "-c", "from hcmiddleware.cli import main; main()"]
    process = subprocess.Popen(
        [*hcm, "--config", str(config), "agent", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line if line else process.stderr.read()
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the calls handed to the agent's worker threads, in order (a route's
    own name, not the timing wrapper's)."""
    import hcmiddleware.agent.workers as workers_module

    names: list[str] = []
    original = workers_module.Workers.run

    async def counted(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        called = args[0] if fn is workers_module._timed else fn
        names.append(getattr(called, "__name__", "?"))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(workers_module.Workers, "run", counted)
    return names
