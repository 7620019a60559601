"""``hcm agent serve`` as a real process: what its HTTP server trusts of a request."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hcmiddleware.agent.server import listen
from hcmiddleware.errors import AgentListenError

from .conftest import free_port, serving, write_config


def test_x_forwarded_for_does_not_change_whom_the_rate_limit_counts(tmp_path: Path) -> None:
    """The agent is called on loopback, never through a proxy: a page that sends
    X-Forwarded-For is still the one client it is (its burst of two, then 429)."""
    port = free_port()
    with serving(write_config(tmp_path, port)):
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
    with serving(write_config(tmp_path, free_port(), logging={"level": "INFO"})) as process:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "card index ready: 0 entries" in stderr, stderr


# --- where it listens -----------------------------------------------------------------------


def _serve(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    hcm = [sys.executable, "-c", "from hcmiddleware.cli import main; main()"]
    return subprocess.run(
        [*hcm, "--config", str(config), "agent", "serve", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_port_another_program_holds_is_said_before_anything_is_opened(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(write_config(tmp_path, port))
    assert done.returncode == 1, done.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}: another program holds the port" in (
        done.stderr
    )
    assert "--port" in done.stderr  # what to do
    assert "Traceback" not in done.stderr
    assert "hcm agent on" not in done.stderr  # it never said it was serving
    assert not (tmp_path / "data").exists()  # the database was never opened


def test_the_port_on_the_command_line_is_the_one_checked(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(config, "--port", str(port))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_a_host_that_is_not_this_machines_is_said_so(tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine
    config = write_config(
        tmp_path, free_port(), agent={"port": free_port(), "allow_remote": True,
                                      "host": "192.0.2.1"}
    )  # fmt: skip
    done = _serve(config)
    assert done.returncode == 1, done.stderr
    assert "192.0.2.1 is not an address of this machine" in done.stderr
    assert "127.0.0.1" in done.stderr  # the hint names the default
    assert not (tmp_path / "data").exists()


def test_a_host_name_that_does_not_resolve_is_said_so() -> None:
    with pytest.raises(AgentListenError, match="not a name this machine can resolve") as caught:
        listen("no-such-host.invalid", free_port())
    assert (caught.value.host, caught.value.port) == ("no-such-host.invalid", caught.value.port)


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.EACCES, "not permitted (a port below 1024 needs a privilege)"),
        (errno.EADDRINUSE, "another program holds the port"),
        (errno.EADDRNOTAVAIL, "is not an address of this machine"),
        (errno.EMFILE, "Too many open files"),
    ],
)
def test_each_refusal_to_listen_names_its_cause(code: int, said: str) -> None:
    from hcmiddleware.agent.server import _listen_error

    error = _listen_error(OSError(code, os.strerror(code)), "127.0.0.1", 80)
    assert said in str(error)
    assert error.hint


def test_the_socket_made_first_is_the_one_served(tmp_path: Path) -> None:
    """The command line binds before it opens the Middleware and the server takes
    that socket: the agent answers on it, and a second agent on the same port is
    refused while the first runs."""
    port = free_port()
    config = write_config(tmp_path, port)
    with serving(config):
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).status_code == 200
        second = tmp_path / "second"
        second.mkdir()
        done = _serve(write_config(second, port))
        assert done.returncode == 1
        assert "another program holds the port" in done.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).status_code == 200
