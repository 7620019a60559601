"""The agent over HTTP: tokens, roles, the card, the index, and every refusal typed."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from hcmiddleware.card.emulator import EmulatedCard

from .conftest import ORIGIN, Agent

PROBLEM = "application/problem+json"
CARD_NUMBER = "210000000012345678"
ID_NUMBER = "210102198503121239"


def problem(response: Any, status: int, title: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["title"] == title
    assert body["type"] == f"urn:hcmiddleware:error:{title}"
    assert body["status"] == status
    assert body["detail"]
    assert body["hint"]
    return body


def agent_calls(agent: Agent) -> list[Any]:
    return agent.audited_calls()


# --- tokens and roles -------------------------------------------------------------------


def test_no_token_wrong_token_and_a_malformed_header_are_401(agent: Agent) -> None:
    problem(agent.client.get("/v1/me"), 401, "AgentAuthError")
    wrong = {"Authorization": "Bearer " + "x" * 43}
    problem(agent.client.get("/v1/me", headers=wrong), 401, "AgentAuthError")
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    problem(agent.client.get("/v1/me", headers=basic), 401, "AgentAuthError")
    # refused calls are audited too, without a caller
    refused = [e for e in agent_calls(agent) if e.outcome == "refused"]
    assert len(refused) == 3
    assert all(e.actor == "agent" and e.details["status"] == "401" for e in refused)


def test_each_token_acts_as_its_workstation(agent: Agent) -> None:
    assert agent.get("/v1/me", "desk").json() == {
        "user": "u-desk", "role": "registration", "terminal": "ws-desk"
    }  # fmt: skip
    assert agent.get("/v1/me", "nurse").json()["role"] == "nurse"
    (entry,) = [e for e in agent_calls(agent) if e.user == "u-nurse"]
    assert (entry.role, entry.terminal, entry.outcome) == ("nurse", "ws-nurse", "ok")
    assert entry.details["operation"] == "GET /v1/me"


def test_a_call_is_audited_once_by_the_services_or_by_the_agent(agent: Agent) -> None:
    resident = agent.mw.residents.enrol(name="张三", sex=1, id_number=ID_NUMBER, source="t")
    found = agent.get("/v1/residents/lookup", params={"kind": "id_number", "value": ID_NUMBER})
    assert found.status_code == 200, found.text
    missing = agent.get(
        "/v1/residents/lookup", params={"kind": "id_number", "value": "11010519491231002X"}
    )
    assert missing.status_code == 404
    problem(agent.get("/v1/card", "audit"), 403, "AccessDeniedError")  # the role's refusal
    assert agent.get("/v1/me", "nurse").status_code == 200  # no service: the agent's entry
    # the lookups are the index's entries, with the caller; the refusal the session's
    lookups = agent.mw.audit.entries(action="residents.lookup")
    first = lookups[0]
    assert (first.user, first.terminal, first.subject, first.outcome) == (
        "u-desk", "ws-desk", resident.resident_id, "ok"
    )  # fmt: skip
    assert len(lookups) == 2
    assert len(agent.mw.audit.entries(action="access.refused")) == 1
    calls = agent_calls(agent)
    assert [(e.user, e.details["operation"]) for e in calls] == [("u-nurse", "GET /v1/me")]


def test_a_token_of_another_role_is_refused_before_the_service(agent: Agent) -> None:
    # an auditor may not read the card; the reader is never touched (no card is in it)
    body = problem(agent.get("/v1/card", "audit"), 403, "AccessDeniedError")
    assert (body["role"], body["operation"], body["reason"]) == (
        "auditor", "terminal.read", "operation"
    )  # fmt: skip
    assert agent.mw.audit.entries(action="card.read") == []
    (refused,) = agent.mw.audit.entries(action="access.refused")
    assert (refused.user, refused.role, refused.terminal) == ("u-audit", "auditor", "ws-audit")
    body = problem(agent.get("/v1/console/status", "desk"), 403, "AccessDeniedError")
    assert body["operation"] == "console.status"


# --- the card ---------------------------------------------------------------------------


def test_card_read_parts_and_the_dll_items(agent: Agent, card: EmulatedCard) -> None:
    read = agent.get("/v1/card", params={"parts": "identity"})
    assert read.status_code == 200, read.text
    data = read.json()
    assert data["parts"] == ["identity"]
    assert data["cardholder"]["id_number"] == ID_NUMBER
    assert data["issuer"]["card_number"] == CARD_NUMBER
    assert data["clinical"] is None  # not read, not empty
    # the DLL's iR_DDF1EF06Info: items 11-15 as the DLL gives them
    dll = agent.post("/dll/iR_DDF1EF06Info").json()
    assert dll["code"] == 0
    assert dll["items"] == {
        "11": "王堃喆", "12": "1", "13": "01", "14": "19850312", "15": ID_NUMBER
    }  # fmt: skip
    info = agent.post("/dll/wsc_GetCardInfo", json={"items": [8, 16, 57]}).json()
    assert info["items"] == {"8": CARD_NUMBER, "16": "13800000001", "57": "210000"}
    # audited with the caller
    reads = agent.mw.audit.entries(action="card.read")
    assert reads
    assert all(e.actor == "u-desk" and e.outcome == "ok" for e in reads)


def test_no_card_is_a_typed_409_and_dll_code_103(agent: Agent, pcscd: Any) -> None:
    pcscd.wait_card(False)
    problem(agent.get("/v1/card"), 409, "CardAbsentError")
    dll = agent.post("/dll/iR_DDF1EF05Info").json()
    assert (dll["code"], dll["error"]) == (103, "CardAbsentError")
    assert dll["hint"]


def test_an_unknown_part_or_item_is_a_parameter_error(agent: Agent, card: EmulatedCard) -> None:
    problem(agent.get("/v1/card", params={"parts": "identity,tattoos"}), 422, "CardPartError")
    dll = agent.post("/dll/wsc_GetCardInfo", json={"items": [11, 99]}).json()
    assert (dll["code"], dll["error"]) == (101, "CardPartError")
    assert agent.mw.residents.count() == 0


def test_a_role_sees_only_its_categories(agent: Agent, card: EmulatedCard) -> None:
    # registration may not see clinical data: the DLL's basics are refused, typed
    body = problem(agent.post("/dll/iR_DF02EF05Info"), 403, "AccessDeniedError")
    assert body["role"] == "registration"
    # and a full read takes only the parts of its categories
    read = agent.get("/v1/card").json()
    assert "basics" not in read["parts"]
    assert "identity" in read["parts"]
    assert read["clinical"] is None


def test_a_card_pulled_mid_read_enrols_nobody(agent: Agent, card: EmulatedCard) -> None:
    card.pull_after(5)  # the registration read is 8 APDUs: gone at the 6th
    problem(agent.post("/v1/residents/from-card"), 409, "CardAbsentError")
    assert agent.mw.residents.count() == 0
    (failed,) = agent.mw.audit.entries(action="card.read")
    assert failed.outcome == "failed"


def test_two_tabs_reading_at_once_take_turns(agent: Agent, card: EmulatedCard) -> None:
    answers: list[Any] = []

    def tab() -> None:
        answers.append(agent.get("/v1/card", params={"parts": "identity,insurance"}))

    tabs = [threading.Thread(target=tab) for _ in range(2)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join(60)
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()


def test_a_read_waiting_longer_than_card_wait_is_409_busy(agent: Agent) -> None:
    state = agent.client.app.state.agent  # type: ignore[attr-defined]
    state.settings = state.settings.model_copy(update={"card_wait": 0.1})
    with state.card():  # another read holds the reader
        body = problem(agent.get("/v1/card"), 409, "AgentBusyError")
        assert agent.post("/dll/iR_DDF1EF06Info").json()["code"] == 107
    assert "busy" in body["detail"]


# --- the resident index and the services ------------------------------------------------


def test_lookup_and_not_found(agent: Agent, card: EmulatedCard) -> None:
    enrolled = agent.post("/v1/residents/from-card").json()
    found = agent.get("/v1/residents/lookup", params={"kind": "card_number", "value": CARD_NUMBER})
    assert found.status_code == 200
    assert found.json()["resident_id"] == enrolled["resident_id"]
    missing = agent.get(
        "/v1/residents/lookup", params={"kind": "id_number", "value": "11010519491231002X"}
    )
    problem(missing, 404, "ResidentNotFoundError")
    problem(agent.get("/v1/residents/nobody"), 404, "ResidentNotFoundError")
    bad = agent.get("/v1/residents/lookup", params={"kind": "id_number", "value": "123"})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith(PROBLEM)


def test_a_capability_missing_from_the_config_is_501_naming_it(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from hcmiddleware import Middleware
    from hcmiddleware.agent import create_app

    from .conftest import agent_config

    config, tokens = agent_config(tmp_path / "d")
    bare = config.model_copy(update={"plugins": type(config.plugins)()})  # no HIS adapter
    with Middleware(bare) as mw, TestClient(create_app(mw)) as client:
        headers = {"Authorization": f"Bearer {tokens['desk']}"}
        resident = mw.residents.enrol(name="李雷", sex=1, id_number="440524188001010014")
        asked = client.post(
            "/v1/his/patients", headers=headers, json={"resident_id": resident.resident_id}
        )
        body = problem(asked, 501, "NoAdapterError")
        assert body["capability"] == "his.patients"
        assert "his.patients" in body["detail"]
        assert mw.residents.hospital_id(resident.resident_id, "210100000001") is None


# --- what the guard refuses -------------------------------------------------------------


def test_origins(agent: Agent) -> None:
    allowed = agent.client.get("/v1/me", headers=agent.headers(Origin=ORIGIN))
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    body = problem(
        agent.client.get("/v1/me", headers=agent.headers(Origin="https://evil.example")),
        403,
        "AgentOriginError",
    )
    assert body["origin"] == "https://evil.example"
    preflight = agent.client.options(
        "/v1/card", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    problem(
        agent.client.options("/v1/card", headers={"Origin": "https://evil.example"}),
        403,
        "AgentOriginError",
    )


def test_a_50_mb_body_is_413_before_it_is_read(agent: Agent) -> None:
    big = b"{" + b" " * (50 * 1024 * 1024) + b"}"
    response = agent.client.post(
        "/v1/residents/search",
        content=big,
        headers=agent.headers(**{"Content-Type": "application/json"}),
    )
    problem(response, 413, "AgentRequestError")


def test_a_large_body_without_length_is_cut_off(agent: Agent) -> None:
    def chunks() -> Any:
        for _ in range(64):
            yield b" " * 65536

    response = agent.client.post(
        "/v1/residents/search",
        content=chunks(),
        headers=agent.headers(**{"Content-Type": "application/json"}),
    )
    problem(response, 413, "AgentRequestError")


def test_malformed_json_and_invalid_fields(agent: Agent) -> None:
    headers = agent.headers(**{"Content-Type": "application/json"})
    problem(
        agent.client.post("/v1/residents/search", content=b'{"name": ', headers=headers),
        400,
        "AgentRequestError",
    )
    body = problem(agent.post("/v1/residents/search", json={"name": ""}), 422, "AgentRequestError")
    assert body["problems"][0]["loc"] == "body.name"
    assert "value" not in json.dumps(body["problems"])  # what was sent is not echoed
    body = problem(
        agent.post(
            "/v1/journal/pay", "till", json={"key": "k", "card_number": "1", "amount": "0.001"}
        ),
        422,
        "AgentRequestError",
    )


def test_the_rate_limiter_is_per_workstation() -> None:
    from hcmiddleware.agent.guard import RateLimiter
    from hcmiddleware.errors import AgentRateLimitError

    limits = RateLimiter(rate=1.0, burst=3)
    for _ in range(3):
        limits.take("ws")
    with pytest.raises(AgentRateLimitError) as refused:
        limits.take("ws")
    assert 0 < refused.value.retry_after <= 1.0
    limits.take("other")


def test_rate_limit_over_http(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from hcmiddleware import Middleware
    from hcmiddleware.agent import create_app

    from .conftest import agent_config

    config, tokens = agent_config(tmp_path / "d", rate_limit=1.0, rate_burst=2)
    with Middleware(config) as mw, TestClient(create_app(mw)) as client:
        headers = {"Authorization": f"Bearer {tokens['desk']}"}
        assert [client.get("/v1/me", headers=headers).status_code for _ in range(2)] == [200, 200]
        third = client.get("/v1/me", headers=headers)
        body = problem(third, 429, "AgentRateLimitError")
        assert int(third.headers["retry-after"]) >= 1
        assert body["retry_after"] > 0
        other = {"Authorization": f"Bearer {tokens['nurse']}"}
        assert client.get("/v1/me", headers=other).status_code == 200


def test_wrong_tokens_are_limited_per_address(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Token guessing is slowed: past the budget of wrong tokens an address is refused
    429 before its token is looked at — a right token too, so a hit looks like a miss —
    and the agent says so once in its log, without the tokens."""
    from fastapi.testclient import TestClient

    from hcmiddleware import Middleware
    from hcmiddleware.agent import create_app

    from .conftest import agent_config

    config, tokens = agent_config(
        tmp_path / "d", auth_failure_burst=3, auth_failures_per_minute=0.5
    )
    right = {"Authorization": f"Bearer {tokens['desk']}"}
    guesses = [{"Authorization": "Bearer " + c * 43} for c in "abcde"]
    with (
        Middleware(config) as mw,
        TestClient(create_app(mw)) as client,
        caplog.at_level(logging.WARNING, logger="hcmiddleware.agent"),
    ):
        assert client.get("/v1/me", headers=right).status_code == 200  # no failure counted
        for guess in guesses[:2]:
            problem(client.get("/v1/me", headers=guess), 401, "AgentAuthError")
        problem(client.get("/v1/me"), 401, "AgentAuthError")  # no token counts as well
        refused = client.get("/v1/me", headers=guesses[3])
        body = problem(refused, 429, "AgentRateLimitError")
        assert "wrong token" in body["detail"]
        assert int(refused.headers["retry-after"]) >= 100  # 0.5 a minute: 2 min for one
        problem(client.get("/v1/me", headers=right), 429, "AgentRateLimitError")
        # the console page needs no token and is still served
        assert client.get("/console").status_code == 200
        assert client.app.state.agent.calls.flush()  # type: ignore[attr-defined]
        statuses = [e.details["status"] for e in mw.audit.entries(action="agent.call")]
    assert statuses == ["200", "401", "401", "401", "429", "429"]
    warnings = [r.getMessage() for r in caplog.records if "wrong token" in r.getMessage()]
    assert len(warnings) == 1
    assert not any(t in warnings[0] for t in ("a" * 43, tokens["desk"]))


def test_a_rate_bucket_store_forgets_buckets_that_refilled() -> None:
    from hcmiddleware.agent import guard

    limits = guard.RateLimiter(rate=1e9, burst=2)  # refills at once
    for i in range(guard._MAX_BUCKETS + 10):
        limits.take(f"ip:10.0.{i // 256}.{i % 256}")
    assert len(limits._buckets) <= guard._MAX_BUCKETS + 1


def test_the_access_log_holds_no_personal_data(
    agent: Agent, card: EmulatedCard, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hcmiddleware.agent.access"):
        agent.post("/v1/residents/from-card")
        agent.get("/v1/residents/lookup", params={"kind": "id_number", "value": ID_NUMBER})
        agent.get("/v1/card")
    lines = [r.getMessage() for r in caplog.records if r.name == "hcmiddleware.agent.access"]
    assert len(lines) == 3
    assert "desk GET /v1/residents/lookup 200" in lines[1]
    text = "\n".join(lines)
    for personal in (
        ID_NUMBER,
        CARD_NUMBER,
        "王堃喆",
        "13800000001",
        "Bearer",
        agent.tokens["desk"],
    ):
        assert personal not in text


def test_fastapis_own_telemetry_sees_no_call(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an OpenTelemetry provider in the process (a site's, or a library's), FastAPI
    would open a span per request with the path and the query — an ID number; the agent
    turns its telemetry off: its own access log and audit entries are the record."""
    from opentelemetry import trace

    spans: list[tuple[str, Any]] = []

    class Tracer(trace.NoOpTracer):
        def start_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
            spans.append((name, kwargs.get("attributes")))
            return super().start_span(name, *args, **kwargs)

    class Provider(trace.TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
            return Tracer()

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: Provider())
    found = agent.get("/v1/residents/lookup", params={"kind": "id_number", "value": ID_NUMBER})
    assert found.status_code == 404  # nobody enrolled: the call went all the way through
    assert spans == []


def test_the_openapi_document_comes_from_the_models(agent: Agent) -> None:
    doc = agent.client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for model in ("CardRead", "Resident", "Problem", "DllAnswer", "MovementOut", "Alarm"):
        assert model in schemas
    card = doc["paths"]["/v1/card"]["get"]
    assert card["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CardRead"
    )
    assert "501" in card["responses"]
    assert "iR_DDF1EF06Info" in {
        op["post"]["operationId"] for p, op in doc["paths"].items() if p.startswith("/dll/iR")
    }
