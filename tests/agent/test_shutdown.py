"""``hcm agent serve`` as a real process: SIGTERM while a top-up is with a slow bank.

The call in flight finishes and is answered, the movement ends journalled in its final
state, the process exits 0, and nothing new is let in meanwhile.
"""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hcm_bank_soap.reference import MONEY_OPERATIONS, FaultPlan, SoapServer
from hcm_bank_soap.reference import serve as serve_bank

from hcmiddleware import Middleware
from hcmiddleware.config import load_config
from hcmiddleware.testing import audit_key, empi_keys

from .conftest import free_port, serving

CARD = "1100000000000001"
ID_NUMBER = "110105198001010032"


@pytest.fixture
def slow_bank(tmp_path: Path) -> Iterator[SoapServer]:
    server = serve_bank(tmp_path / "bank-ledger.db")
    server.service.ledger.bind(CARD, "6222000011112222", ID_NUMBER)  # type: ignore[attr-defined]
    server.set_faults(FaultPlan(delay=1.0, delay_seconds=1.5, operations=MONEY_OPERATIONS))
    yield server
    server.stop()


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def write_config(folder: Path, bank: SoapServer, port: int) -> tuple[Path, str]:
    token = secrets.token_urlsafe(32)
    (folder / "till.token").write_text(token + "\n", encoding="utf-8")
    keys = folder / "keys"
    sections: dict[str, dict[str, Any]] = {
        "middleware": {"data_dir": str(folder / "data"), "institution_code": "210100000001"},
        "empi": empi_keys(keys),
        "audit": audit_key(keys),
        "plugins": {"enabled": ["bank-soap"]},
        "plugins.bank-soap": {"wsdl": bank.wsdl_url, "timeout": 10.0},
        "agent": {"port": port, "shutdown_grace": 20.0},
        "agent.tokens.till-1": {
            "token": {"file": "till.token"},
            "user": "u-till",
            "role": "cashier",
            "terminal": "till-1",
        },
    }
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in body.items()) + "\n"
        for name, body in sections.items()
    )
    path = folder / "hcm.toml"
    path.write_text(text, encoding="utf-8")
    return path, token


def test_sigterm_lets_the_top_up_in_flight_finish_journalled(
    tmp_path: Path, slow_bank: SoapServer
) -> None:
    port = free_port()
    config, token = write_config(tmp_path, slow_bank, port)
    with serving(config) as process:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        answers: list[httpx.Response] = []

        def top_up() -> None:
            answers.append(
                httpx.post(
                    f"{base}/v1/journal/top-up",
                    headers=headers,
                    json={"key": "till-1-0001", "card_number": CARD, "amount": "25.00"},
                    timeout=30,
                )
            )

        caller = threading.Thread(target=top_up)
        caller.start()
        time.sleep(0.6)  # the bank holds the request 1.5 s
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(httpx.TransportError):  # nothing new is let in
            httpx.get(f"{base}/v1/health", timeout=2)
        caller.join(30)
        assert process.wait(30) == 0, process.stderr.read()
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    moved = answer.json()
    assert moved["state"] == "confirmed"
    with Middleware(load_config(config)) as mw:
        entry = mw.journal.get(moved["transaction_id"])
        assert entry.done
        assert entry.state.value == "confirmed"
        assert mw.audit.verify().ok
        # the payment's states audit the call (with the till's user); no agent.call
        assert mw.audit.entries(action="agent.call") == []
        assert {e.user for e in mw.audit.entries(action="journal.*")} == {"u-till"}
    assert slow_bank.service.ledger.balance(CARD) == 25  # type: ignore[attr-defined]
