"""Fixtures: an audit database of each kind, Middlewares on it, and a real rsyslog."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.plugin import MiddlewareFactory

MakeAudited = Callable[..., Middleware]


@pytest.fixture
def audit_db(fresh_database: str) -> str:
    """An empty database of each kind, as a URL (PostgreSQL: a schema of its own)."""
    return fresh_database


@pytest.fixture
def audited(audit_db: str, hcm_make_middleware: MiddlewareFactory) -> MakeAudited:
    """Make a started Middleware on ``audit_db``; keyword arguments are ``[audit]`` keys.

    (``audit_db`` first: the database outlives the Middlewares, which checkpoint at close.)
    """

    def make(plugins: Any = (), **audit: Any) -> Middleware:
        return hcm_make_middleware(plugins=plugins, database={"url": audit_db}, audit=dict(audit))

    return make


def fill(mw: Middleware, count: int, *, start: int = 0) -> None:
    """Append ``count`` ordinary entries: card reads and visits for a few residents."""
    for i in range(start, start + count):
        if i % 3 == 0:
            mw.audit("card.read", actor="kiosk-03", reader="Virtual PCD 00 00")
        else:
            mw.audit(
                "flow.outpatient.register",
                actor="kiosk-03",
                subject=f"r-{i % 5:04d}",
                department="NEI",
                queue_number=str(i),
            )


def raw(mw: Middleware, sql: str, **params: Any) -> None:
    """Run ``sql`` on the audit database directly: what someone with a database client does."""
    with mw.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


# --- a real syslog receiver ---------------------------------------------------------------

RSYSLOG_CONF = """\
global(workDirectory="{folder}")
module(load="imtcp")
template(name="fields" type="string"
         string="%syslogfacility%|%syslogseverity%|%app-name%|%msgid%|%hostname%|%msg%\\n")
ruleset(name="received") {{
  action(type="omfile" file="{folder}/received.log" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="received")
"""


class Rsyslog:
    """rsyslogd on a loopback port with a private config, writing what it receives to a file."""

    def __init__(self, folder: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.folder, self.port, self.process = folder, port, process
        self.received = folder / "received.log"

    def lines(self, count: int, timeout: float = 10.0) -> list[str]:
        """The first ``count`` messages received, waiting until they have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.received.read_text("utf-8") if self.received.exists() else ""
            found = text.splitlines()
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    """A real rsyslogd (Debian's ``rsyslog``) listening for TCP syslog on loopback."""
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(binary).exists():
        pytest.fail("rsyslogd is not installed: apt-get install rsyslog (.ci/run does)")
    folder = tmp_path / "rsyslog"
    folder.mkdir()
    port = _free_port()
    conf = folder / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(folder=folder, port=port), encoding="utf-8")
    process = subprocess.Popen(
        [binary, "-n", "-f", str(conf), "-i", str(folder / "rsyslogd.pid")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                out = process.stdout.read().decode() if process.stdout else ""
                process.kill()
                pytest.fail(f"rsyslogd did not start: {out}")
            time.sleep(0.05)
    yield Rsyslog(folder, port, process)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
