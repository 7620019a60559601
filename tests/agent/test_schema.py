"""Schemathesis against the agent's own OpenAPI document: no 5xx, no answer that breaks
its schema (status, content type, headers, body), for every operation — a few examples
each, to stay fast. The agent runs with pcscd up (a card in the reader or not)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hcmiddleware import Middleware
from hcmiddleware.agent import create_app
from hcmiddleware.testing.pcscd import Pcscd

from .conftest import agent_config

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def agent_schema(pcscd: Pcscd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config, tokens = agent_config(Path(tmp_path_factory.mktemp("schema")) / "data")
    with Middleware(config) as mw:
        app = create_app(mw)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        # the event stream does not end by itself: test_console.py reads it
        yield schema.exclude(path="/v1/events"), tokens["admin"], app
        app.state.agent.close()


def test_every_operation_keeps_its_schema(agent_schema: Any) -> None:
    schema, token, app = agent_schema
    headers = {"Authorization": f"Bearer {token}"}
    failures: dict[str, str] = {}
    made = [0]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)  # fmt: skip
        def run(case: schemathesis.Case) -> None:
            made[0] += 1
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # every operation is run; the failures listed at the end
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    # the calls reached the agent, and each one was audited: by the services (a lookup,
    # a refusal of the role …) or, where they wrote nothing, by the agent
    assert app.state.agent.calls.flush()
    entries = app.state.agent.mw.audit.entries()
    assert len(entries) >= made[0]
    audited = {e.details["operation"] for e in entries if e.action == "agent.call"}
    assert "GET /v1/me" in audited  # it calls no service
