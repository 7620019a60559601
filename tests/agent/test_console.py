"""The operator console in headless Chromium (Debian's, driven by Playwright), and the
event stream it listens to. Screenshots are kept in test-artifacts/console/."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hcmiddleware.models import Alarm

from .conftest import Served

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


def _alarm() -> Alarm:
    now = dt.datetime.now(dt.UTC)
    return Alarm(
        alarm_id="A-1", wristband_id="WB-0007", kind="emergency", state="open",
        raised_at=now, last_at=now, received_at=now, ward="W3", bed="12",
    )  # fmt: skip


def _events(served: Served, who: str, seen: list[tuple[str, dict[str, Any]]]) -> threading.Thread:
    headers = {"Authorization": f"Bearer {served.agent.tokens[who]}"}

    def listen() -> None:
        with httpx.stream("GET", f"{served.base}/v1/events", headers=headers, timeout=10) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    seen.append((kind, json.loads(line[6:])))

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    return thread


def test_card_and_alarm_events_reach_the_browser_by_role(served: Served) -> None:
    nurse: list[tuple[str, dict[str, Any]]] = []
    desk: list[tuple[str, dict[str, Any]]] = []
    threads = [_events(served, "nurse", nurse), _events(served, "desk", desk)]
    bridge = served.agent.client.app.state.agent.events  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while len(bridge._subs) < 2:  # both streams open
        assert time.monotonic() < deadline
        time.sleep(0.05)
    hooks = served.agent.mw.hooks
    hooks.hcm_card_inserted(reader="Virtual PCD 00 00", atr=bytes.fromhex("3B8C80"))
    hooks.hcm_ward_alarm(alarm=_alarm(), change="raised")
    hooks.hcm_card_removed(reader="Virtual PCD 00 00")
    deadline = time.monotonic() + 5
    while (len(nurse) < 3 or len(desk) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [k for k, _ in nurse] == ["card.inserted", "ward.alarm", "card.removed"]
    assert nurse[0][1] == {"reader": "Virtual PCD 00 00", "atr": "3B8C80"}
    assert nurse[1][1]["alarm"]["bed"] == "12"
    # registration may not see ward alarms: not on its stream
    assert [k for k, _ in desk] == ["card.inserted", "card.removed"]
    served.agent.client.app.state.agent.events.close()  # type: ignore[attr-defined]
    for t in threads:
        t.join(5)
        assert not t.is_alive()


@pytest.fixture
def browser() -> Any:
    playwright = pytest.importorskip("playwright.sync_api")
    assert CHROMIUM.exists(), "Debian's chromium is installed by .ci/run"
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox"])  # fmt: skip
        yield chromium
        chromium.close()


def _shot(page: Any, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)
    assert path.stat().st_size > 10_000


def test_the_console_in_chinese_and_english(served: Served, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # a wrong token: the login says why
    page.goto(f"{served.base}/console?lang=zh")
    page.fill("#token", "not-a-token-of-this-agent-xxxxxxxxxxxxxxxx")
    page.click("button[type=submit]")
    page.wait_for_selector("#login-problem:not([hidden])")
    assert "AgentAuthError" in page.inner_text("#login-problem")
    assert "令牌无效" in page.inner_text("#login-problem")
    # hospital IT's token: every panel
    page.fill("#token", served.agent.tokens["admin"])
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-loaded='1']")
    text = page.inner_text("main")
    for heading in ("读卡器与 SAM", "已启用插件", "健康检查", "今日资金流水", "今日对账",
                    "审计链状态", "病区报警"):  # fmt: skip
        assert heading in text
    assert "sample-his" in page.inner_text("#p-plugins")
    # this agent is not `hcm agent serve`: nothing watches the card events, and it says so
    assert "本代理未监听" in page.inner_text("#p-readers")
    assert "完整" in page.inner_text("#p-audit")  # the chain is intact
    assert page.inner_text("#p-doctor").count("正常") >= 3
    # an alarm raised now appears live, then in the alarms panel
    served.agent.mw.hooks.hcm_ward_alarm(alarm=_alarm(), change="raised")
    page.wait_for_selector("#events li")
    assert "ward.alarm" in page.inner_text("#events")
    _shot(page, "console-zh", tmp_path)
    page.click("#lang")
    page.wait_for_selector("#p-audit >> text=intact")  # (the page's CSP forbids eval)
    assert "Readers and SAM" in page.inner_text("main")
    _shot(page, "console-en", tmp_path)
    assert errors == []


def test_a_panel_the_role_may_not_see_says_so(served: Served, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{served.base}/console?lang=en")
    page.fill("#token", served.agent.tokens["audit"])
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-loaded='1']")
    # an auditor sees the audit chain but not the ward's alarms
    assert "intact" in page.inner_text("#p-audit")
    alarms = page.inner_text("#p-alarms")
    assert "cannot be shown" in alarms
    assert "AccessDeniedError" in alarms
    _shot(page, "console-auditor", tmp_path)


def test_the_example_desk_page_calls_the_agent_from_its_origin(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    import functools
    import http.server

    examples = Path(__file__).resolve().parents[2] / "examples"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(examples))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    pages = http.server.ThreadingHTTPServer(("127.0.0.1", served.page_port), handler)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{served.page_port}/agent_desk.html")
        page.fill("#agent", served.base)
        page.fill("#token", served.agent.tokens["desk"])
        page.click("#dll")  # no card in the reader: the DLL's code, with the hint
        page.wait_for_function("document.querySelector('#out').innerText.includes('code')")
        assert page.inner_text("#out").startswith(("code 103", "code 102"))
        page.fill("#token", "wrong-token-wrong-token-wrong-token-wrong")
        page.click("#read")
        page.wait_for_selector("#problem:not([hidden])")
        assert "401 AgentAuthError" in page.inner_text("#problem")
        _shot(page, "example-desk", tmp_path)
    finally:
        pages.shutdown()
