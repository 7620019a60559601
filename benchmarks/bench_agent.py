"""The local agent: a card read and a resident lookup over HTTP on loopback, beside the
same calls made directly on the SDK (through ``mw.acting_as``, as the agent makes them).

The agent runs as ``hcm agent serve`` in a process of its own (uvicorn, httptools);
the load comes from this process (httpx, keep-alive connections). Latency: one client,
calls one after the other (p50, p99). Throughput: ``--clients`` clients at once for
``--seconds`` seconds. The card is the sample card in vpcd behind pcscd, read with the
software SAM (``parts=identity,insurance``, the registration read). Goals: the agent
adds at most 2 ms at p99; 500 lookups a second on 2 cores. What the agent adds is
measured per call: on one keep-alive connection from a raw-socket client, each
lookup's (and card read's) round trip less the ``Server-Timing: svc`` the agent reports
for it; and beside each call, the same call made on the SDK in this process (kept open
on the same database and reader), alternately just before and just after it, so that
the two sets are taken in the same moments and the agent's p99 can be set against the
SDK's without the minute between two runs in it.

The throughput load comes from ``wrk`` when it is installed (``apt-get install wrk``:
a C load generator that takes a few percent of a core) and otherwise from httpx threads
in this process, which take most of one of the two cores the agent runs on
(``--load httpx`` forces them; the figures say which was used). ``--no-card`` leaves
pcscd and the card read out (the lookups only).

A workstation is seldom idle. ``--busy N`` keeps N other processes spinning on the CPU
for the whole run (the SDK's calls and the agent's alike), as a busy front end or a
virus scan would; ``--nice N`` gives the agent's process the scheduling priority a
service unit would (``Nice=N`` in systemd; below 0 needs root or CAP_SYS_NICE), and
only the agent: the client, pcscd and the SDK's calls keep theirs.

Run: ``python benchmarks/bench_agent.py [--lookups N] [--reads N] [--clients C]
[--seconds S] [--load wrk|httpx] [--no-card] [--busy N] [--nice N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx

from hcmiddleware import Caller, Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.config import load_config
from hcmiddleware.gb11643 import check_character
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS as KEYS
from hcmiddleware.testing import audit_key, empi_keys
from hcmiddleware.testing.pcscd import USER_READER, Pcscd

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
GOAL_OVERHEAD_MS = 2.0
GOAL_LOOKUPS_PER_S = 500
RESIDENTS = 500


def _toml(value: Any) -> str:
    import json

    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def write_config(folder: Path, port: int) -> tuple[Path, str]:
    token = secrets.token_urlsafe(32)
    (folder / "desk.token").write_text(token + "\n", encoding="utf-8")
    keys = folder / "keys"
    sections: dict[str, dict[str, Any]] = {
        "middleware": {"data_dir": str(folder / "data"), "institution_code": "210100000001"},
        "readers": {"user": USER_READER},
        "sam": {"keys": str(KEYS)},
        "empi": empi_keys(keys),
        "audit": audit_key(keys),
        # a benchmark measures the agent, not its rate limit
        "agent": {"port": port, "rate_limit": 100000.0, "rate_burst": 100000},
        "agent.tokens.desk-01": {
            "token": {"file": "desk.token"},
            "user": "emp-1",
            "role": "registration",
            "terminal": "desk-01",
        },
    }
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in body.items()) + "\n"
        for name, body in sections.items()
    )
    path = folder / "hcm.toml"
    path.write_text(text, encoding="utf-8")
    return path, token


def id_number(i: int) -> str:
    first = f"210102{1950 + i % 50:04d}{1 + i % 12:02d}{1 + i % 28:02d}{i % 1000:03d}"
    return first + check_character(first)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def timed(call: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1000)
    return out


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    """The machine's load averages and CPU pressure: how shared it is right now."""
    text = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    pressure = Path("/proc/pressure/cpu")
    if pressure.exists():
        some = pressure.read_text().split()[1]  # avg10=…: % of time something waited
        text += f"; CPU pressure {some.split('=')[1]}% (10 s)"
    return text


def throughput(call: Callable[[httpx.Client], object], base: str, headers: dict[str, str],
               clients: int, seconds: float) -> float:  # fmt: skip
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def run(i: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            while time.perf_counter() < stop:
                call(client)
                done[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


_WRK_SCRIPT = """
local numbers = {%s}
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  local value = numbers[math.random(#numbers)]
  return wrk.format("GET", "/v1/residents/lookup?kind=id_number&value=" .. value)
end
"""


def _ms(text: str) -> float:
    """A wrk duration (``812.00us``, ``2.10ms``, ``1.02s``) in milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise SystemExit(f"wrk printed a duration this cannot read: {text!r}")
    number, unit = found.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(
    base: str, token: str, numbers: list[str], clients: int, seconds: float
) -> tuple[float, float, float]:
    """Random lookups under ``wrk`` for ``seconds`` over ``clients`` connections:
    (requests a second, p50 ms, p99 ms). Every answer must be a 200."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % (", ".join(f'"{n}"' for n in numbers), token))
    try:
        out = subprocess.run(
            ["wrk", f"-t{min(2, clients)}", f"-c{clients}", f"-d{seconds:g}s", "--latency",
             "-s", script.name, base],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failed lookups:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    return rate, p50, p99


def per_call(
    port: int, token: str, paths: list[str], sdk: Callable[[int], object] | None = None
) -> tuple[list[float], list[float], list[float]]:
    """Each of ``paths`` requested in sequence on one keep-alive connection, from a
    client of a few lines on a raw socket (next to nothing of its own): for each call
    the round trip and the service's own time the agent reports (``Server-Timing:
    svc``), in ms. Their difference, call by call, is what the agent added to that call.

    With ``sdk``, ``sdk(i)`` — the same call made directly on the SDK — is timed next
    to each request, before it on even calls and after it on odd ones: the two are
    taken in the same moments, so the machine's pace falls on both alike (the third
    list)."""
    import socket

    trips: list[float] = []
    services: list[float] = []
    direct: list[float] = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        for i, path in enumerate(paths):
            if sdk is not None and i % 2 == 0:
                direct.append(timed(lambda i=i: sdk(i), 1)[0])
            request = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
            start = time.perf_counter()
            sock.sendall(request)
            status = reader.readline()
            length, svc = 0, float("nan")
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "server-timing":
                    svc = float(value.split("dur=")[1])
            reader.read(length)
            trips.append((time.perf_counter() - start) * 1000)
            if b" 200 " not in status:
                raise SystemExit(f"{path} was answered {status!r}")
            services.append(svc)
            if sdk is not None and i % 2 == 1:
                direct.append(timed(lambda i=i: sdk(i), 1)[0])
    return trips, services, direct


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--load", choices=("wrk", "httpx"),
                        default="wrk" if shutil.which("wrk") else "httpx")  # fmt: skip
    parser.add_argument("--no-card", action="store_true", help="lookups only: no pcscd")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="N other processes spinning on the CPU throughout")  # fmt: skip
    parser.add_argument("--nice", type=int, default=None, metavar="N",
                        help="the agent's niceness (systemd Nice=)")  # fmt: skip
    args = parser.parse_args()
    if args.no_card:
        args.reads = 0
    started_load = load()
    folder = Path(tempfile.mkdtemp(prefix="hcm-bench-agent-"))
    with socket_port() as port:
        pass
    config_path, token = write_config(folder, port)
    caller = Caller(user="emp-1", role="registration", terminal="desk-01")
    numbers = [id_number(i) for i in range(RESIDENTS)]
    rng = random.Random(7)
    rows: list[tuple[str, str, float, float, float]] = []

    with contextlib.ExitStack() as card_stack:
        card_stack.enter_context(Busy(args.busy))
        if not args.no_card:
            pcscd = card_stack.enter_context(Pcscd())
            card_stack.enter_context(
                VpcdCard(EmulatedCard.from_files(PROFILE, KEYS), pcscd.user_port)
            )
            pcscd.wait_card(True)
        # -- directly on the SDK -----------------------------------------------------------
        # kept open through the agent's part too: the interleaved calls below
        mw = card_stack.enter_context(Middleware(load_config(config_path)))
        for i, number in enumerate(numbers):
            mw.residents.enrol(
                name=f"测试{i}",
                sex=1 if int(number[16]) % 2 else 2,
                id_number=number,
                source="bench",
            )
        unbound = timed(lambda: mw.residents.lookup("id_number", rng.choice(numbers)),
                        args.lookups)  # fmt: skip
        s = mw.acting_as(caller)
        s.residents.lookup("id_number", numbers[0])  # warm
        direct_lookup = timed(lambda: s.residents.lookup("id_number", rng.choice(numbers)),
                              args.lookups)  # fmt: skip
        direct_read: list[float] = []
        if args.reads:
            s.terminal.read(parts="identity,insurance")
            direct_read = timed(lambda: s.terminal.read(parts="identity,insurance"), args.reads)
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < args.seconds:
            s.residents.lookup("id_number", rng.choice(numbers))
            n += 1
        direct_rate = n / args.seconds

        # -- through the agent -------------------------------------------------------------
        server = subprocess.Popen(
            [sys.executable, "-c", "from hcmiddleware.cli import main; main()",
             "--config", str(config_path), "agent", "serve"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            assert server.stdout is not None
            assert server.stdout.readline().startswith("listening")
            if args.nice is not None:
                renice(server.pid, args.nice)
            base = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:

                def lookup(c: httpx.Client = client) -> None:
                    value = rng.choice(numbers)
                    r = c.get("/v1/residents/lookup", params={"kind": "id_number", "value": value})
                    assert r.status_code == 200, r.text

                def read(c: httpx.Client = client) -> None:
                    r = c.get("/v1/card", params={"parts": "identity,insurance"})
                    assert r.status_code == 200, r.text

                for _ in range(50):
                    lookup()
                agent_lookup = timed(lookup, args.lookups)
                agent_read: list[float] = []
                if args.reads:
                    read()
                    agent_read = timed(read, args.reads)
            paths = [
                f"/v1/residents/lookup?kind=id_number&value={rng.choice(numbers)}"
                for _ in range(args.lookups)
            ]

            def sdk_lookup(i: int) -> None:
                s.residents.lookup("id_number", paths[i].rsplit("=", 1)[1])

            trips, services, beside = per_call(port, token, paths, sdk_lookup)
            read_trips: list[float] = []
            read_services: list[float] = []
            read_beside: list[float] = []
            if args.reads:
                read_trips, read_services, read_beside = per_call(
                    port,
                    token,
                    ["/v1/card?parts=identity,insurance"] * args.reads,
                    lambda i: s.terminal.read(parts="identity,insurance"),
                )
            wrk_one: tuple[float, float, float] | None = None
            if args.load == "wrk":  # one connection, calls in sequence: the latency
                wrk_one = run_wrk(base, token, numbers, 1, args.seconds)
            before = cpu_seconds(server.pid)
            wrk_latency = ""
            if args.load == "wrk":
                agent_rate, w50, w99 = run_wrk(base, token, numbers, args.clients, args.seconds)
                wrk_latency = f"p50 {w50:.2f} ms, p99 {w99:.2f} ms"
            else:
                agent_rate = throughput(
                    lambda c: lookup(c), base, headers, args.clients, args.seconds
                )
            agent_cpu = (cpu_seconds(server.pid) - before) / (agent_rate * args.seconds)
        finally:
            server.terminate()
            server.wait(60)

    for what, direct, agent in (
        ("resident lookup", direct_lookup, agent_lookup),
        ("card read (identity,insurance)", direct_read, agent_read),
    ):
        if not direct:
            continue
        d50, d99 = percentiles(direct)
        a50, a99 = percentiles(agent)
        rows.append((what, "SDK (acting_as)", d50, d99, 1000 / statistics.mean(direct)))
        rows.append((what, "agent, httpx", a50, a99, 1000 / statistics.mean(agent)))
        rows.append((what, "overhead, httpx", a50 - d50, a99 - d99, float("nan")))
        if what == "resident lookup" and wrk_one is not None:
            rate, w50, w99 = wrk_one
            rows.append((what, "agent, wrk", w50, w99, rate))
            rows.append((what, "overhead, wrk", w50 - d50, w99 - d99, float("nan")))

    print(f"machine: {os.cpu_count()} cores (shared); load at start {started_load}, "
          f"at end {load()}")  # fmt: skip
    print(f"{RESIDENTS} residents; {args.lookups} lookups, {args.reads} reads, one client "
          "in sequence")  # fmt: skip
    niceness = args.nice if args.nice is not None else os.getpriority(os.PRIO_PROCESS, 0)
    print(f"other load: {args.busy} busy processes; the agent's niceness: {niceness}")
    print(f"{'call':<32} {'path':<18} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for what, path, p50, p99, rate in rows:
        rate_text = "" if rate != rate else f"{rate:8.0f}"
        print(f"{what:<32} {path:<18} {p50:8.2f} {p99:8.2f} {rate_text:>8}")
    u50, u99 = percentiles(unbound)
    print(f"lookup on the SDK without a caller (mw.residents, no per-call audit entry): "
          f"p50 {u50:.2f} ms, p99 {u99:.2f} ms")  # fmt: skip
    print(f"lookups/s, one caller in-process on the SDK: {direct_rate:.0f}")
    print(f"lookups/s through the agent, {args.clients} clients for {args.seconds:g} s "
          f"(load generator {args.load}, in the same machine): {agent_rate:.0f} "
          f"(goal {GOAL_LOOKUPS_PER_S})" + (f"; under that load {wrk_latency}"
                                            if wrk_latency else ""))  # fmt: skip
    print(f"agent process CPU per lookup under that load: {agent_cpu * 1000:.2f} ms "
          f"(what a shared machine disturbs least; the agent's Python runs one thread at "
          f"a time, so about {1 / agent_cpu:.0f} lookups/s on the core it has)")  # fmt: skip
    d99 = percentiles(direct_lookup)[1]
    overhead99 = (wrk_one[2] if wrk_one else percentiles(agent_lookup)[1]) - d99
    print(f"lookup p99 through the agent less the SDK's p99 ({'wrk' if wrk_one else 'httpx'}, "
          f"one connection; two runs' tails): {overhead99:.2f} ms")  # fmt: skip
    print("per call, one raw-socket connection, each call beside the same call on the SDK "
          "(alternately before and after it):")  # fmt: skip
    for what, t, svc, direct in (
        ("resident lookup", trips, services, beside),
        ("card read (identity,insurance)", read_trips, read_services, read_beside),
    ):
        if not t:
            continue
        t50, t99 = percentiles(t)
        s50, s99 = percentiles(svc)
        d50, d99 = percentiles(direct)
        added = [a - b for a, b in zip(t, svc, strict=True)]
        a50, a99 = percentiles(added)
        over = sum(1 for a in added if a > GOAL_OVERHEAD_MS)
        print(f"  {what}: the SDK p50 {d50:.2f} / p99 {d99:.2f} ms; through the agent "
              f"p50 {t50:.2f} / p99 {t99:.2f} ms, of which the service (Server-Timing svc) "
              f"p50 {s50:.2f} / p99 {s99:.2f} ms")  # fmt: skip
        print(f"  {what}: agent less SDK, same moments: p50 {t50 - d50:.2f} ms, "
              f"p99 {t99 - d99:.2f} ms; what the agent adds, call by call (round trip - svc): "
              f"p50 {a50:.2f} ms, p99 {a99:.2f} ms (goal <= {GOAL_OVERHEAD_MS} ms); "
              f"over {GOAL_OVERHEAD_MS} ms: {over} of {len(added)} calls, the worst "
              f"{max(added):.2f} ms")  # fmt: skip
    return 0


def renice(pid: int, niceness: int) -> None:
    """Set every thread of ``pid`` to ``niceness`` (Linux keeps it per thread; threads
    started later inherit it from the thread that starts them)."""
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            os.setpriority(os.PRIO_PROCESS, int(task), niceness)
    except PermissionError:
        raise SystemExit(
            f"--nice {niceness}: not permitted; a niceness below 0 needs root or CAP_SYS_NICE"
        ) from None


class Busy:
    """``n`` processes spinning on the CPU while the block runs."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._spinning: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Busy:
        for _ in range(self.n):
            self._spinning.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self._spinning:
            process.kill()
        for process in self._spinning:
            process.wait(10)


class socket_port:  # noqa: N801 - used as a context manager
    """A free loopback port."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
