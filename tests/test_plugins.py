"""Plugin discovery, enabling, loading errors, settings, and containment of failures."""

from __future__ import annotations

import contextvars
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware, SettingsModel, hookimpl
from hcmiddleware.config import ConfigPath, Secret, load_config, parse_config
from hcmiddleware.errors import (
    ConfigError,
    HisError,
    PluginCallError,
    PluginLoadError,
    PluginTimeoutError,
    PluginUnavailableError,
)
from hcmiddleware.models import HospitalPatient, Resident

GOOD_PLUGIN = """
from hcmiddleware import hookimpl, SettingsModel

class Settings(SettingsModel):
    greeting: str = "hello"

SEEN = []

@hookimpl
def hcm_add_config(settings):
    settings.add("{name}", Settings)

def hcm_configure(middleware):
    SEEN.append(middleware.plugin_settings("{name}").greeting)

def not_a_hook():
    raise AssertionError("ordinary functions are never called")
"""


def config(**plugins: Any) -> Any:
    return parse_config({"plugins": plugins})


def resident() -> Resident:
    return Resident(resident_id="r-1", name="王芳")


# --- discovery and enabling ----------------------------------------------------------


def test_installed_but_disabled_plugin_is_not_imported(install_plugin: Any) -> None:
    module = install_plugin("quiet", GOOD_PLUGIN.replace("{name}", "quiet"))
    with Middleware(config(enabled=[])) as mw:
        infos = {i.name: i for i in mw.plugins()}
        assert infos["quiet"].enabled is False
        assert "quiet" not in mw.enabled_plugins()
    assert module not in sys.modules


def test_enabled_plugin_is_loaded_configured_and_listed(install_plugin: Any) -> None:
    module = install_plugin("greeter", GOOD_PLUGIN.replace("{name}", "greeter"))
    cfg = parse_config({"plugins": {"enabled": ["greeter"], "greeter": {"greeting": "你好"}}})
    with Middleware(cfg) as mw:
        info = next(i for i in mw.plugins() if i.name == "greeter")
        assert info.enabled
        assert info.version == "1.0"
        assert info.hooks == ("hcm_add_config", "hcm_configure")
        assert sys.modules[module].SEEN == ["你好"]
        assert mw.plugin_settings("greeter").greeting == "你好"


def test_missing_plugin_names_itself_and_lists_installed(install_plugin: Any) -> None:
    install_plugin("greeter", GOOD_PLUGIN.replace("{name}", "greeter"))
    with pytest.raises(PluginLoadError) as caught:
        Middleware(config(enabled=["greeterr"]))
    err = caught.value
    assert err.plugin == "greeterr"
    assert "greeter" in err.installed
    assert "did you mean 'greeter'" in err.hint


def test_plugin_raising_on_import(install_plugin: Any) -> None:
    install_plugin("broken", "raise RuntimeError('database driver missing')\n")
    with pytest.raises(PluginLoadError) as caught:
        Middleware(config(enabled=["broken"]))
    assert caught.value.plugin == "broken"
    assert "database driver missing" in caught.value.message
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_entry_point_naming_a_missing_attribute(install_plugin: Any) -> None:
    install_plugin("misnamed", "X = 1\n", target="hcm_test_misnamed:NoSuchClass")
    with pytest.raises(PluginLoadError, match="failed to load"):
        Middleware(config(enabled=["misnamed"]))


def test_unknown_hook_is_refused(install_plugin: Any) -> None:
    install_plugin("typo", "def hcm_his_registr_patient(resident):\n    return None\n")
    with pytest.raises(PluginLoadError) as caught:
        Middleware(config(enabled=["typo"]))
    assert caught.value.plugin == "typo"
    assert "hcm_his_registr_patient" in caught.value.message


def test_wrong_hook_argument_is_refused() -> None:
    class Bad:
        def hcm_card_removed(self, reader: str, colour: str) -> None: ...

    with pytest.raises(PluginLoadError, match="colour"):
        Middleware(plugins={"bad": Bad()})


def test_hook_wrappers_are_refused() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def hcm_card_removed(self, reader: str) -> Any:
            return (yield)

    with pytest.raises(PluginLoadError, match="wrapper"):
        Middleware(plugins={"wrapper": Wrapper()})


def test_reserved_name_is_refused() -> None:
    class P:
        pass

    with pytest.raises(PluginLoadError, match="cannot be a plugin's name"):
        Middleware(plugins={"enabled": P()})


# --- settings ----------------------------------------------------------------------------


class Settings(SettingsModel):
    url: str
    retries: int = 3


class WithSettings:
    def hcm_add_config(self, settings: Any) -> None:
        settings.add("svc", Settings)


def test_plugin_settings_are_validated_with_its_model() -> None:
    cfg = parse_config({"plugins": {"svc": {"url": "http://127.0.0.1:1", "retries": 5}}})
    with Middleware(cfg, plugins={"svc": WithSettings()}) as mw:
        assert mw.plugin_settings("svc") == Settings(url="http://127.0.0.1:1", retries=5)


class FileSettings(SettingsModel):
    token: Secret
    store: ConfigPath


class WithFiles:
    def hcm_add_config(self, settings: Any) -> None:
        settings.add("files", FileSettings)


def test_plugin_paths_and_secret_files_are_taken_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "etc"
    site.mkdir()
    (site / "token.txt").write_text("s3cret\n", encoding="utf-8")
    (site / "hcm.toml").write_text(
        '[plugins.files]\ntoken = { file = "token.txt" }\nstore = "his/store.db"\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # the service starts from elsewhere
    with Middleware(load_config(site / "hcm.toml"), plugins={"files": WithFiles()}) as mw:
        settings = mw.plugin_settings("files")
        assert isinstance(settings, FileSettings)
        assert settings.token.get_secret_value() == "s3cret"
        assert settings.store == site / "his" / "store.db"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({}, "plugins.svc.url"),  # required key missing
        ({"url": "x", "retrys": 1}, "plugins.svc.retrys"),  # typo
        ({"url": "x", "retries": "many"}, "plugins.svc.retries"),  # wrong type
    ],
)
def test_bad_plugin_section(section: dict[str, Any], key: str) -> None:
    cfg = parse_config({"plugins": {"svc": section} if section else {}})
    with pytest.raises(ConfigError) as caught:
        Middleware(cfg, plugins={"svc": WithSettings()})
    assert caught.value.key == key


def test_section_for_a_plugin_without_settings() -> None:
    class Plain:
        def hcm_card_removed(self, reader: str) -> None: ...

    cfg = parse_config({"plugins": {"plain": {"x": 1}}})
    with pytest.raises(ConfigError, match="takes no settings"):
        Middleware(cfg, plugins={"plain": Plain()})


# --- containment ---------------------------------------------------------------------------


class RaisingHis:
    def hcm_his_lookup_patient(self, resident: Resident) -> HospitalPatient:
        raise ConnectionResetError("peer reset")


class RefusingHis:
    def hcm_his_lookup_patient(self, resident: Resident) -> HospitalPatient:
        raise HisError("patient is locked in the HIS", hint="ask the records office")


class HangingHis:
    def __init__(self) -> None:
        self.release = threading.Event()

    def hcm_his_lookup_patient(self, resident: Resident) -> None:
        self.release.wait(30)


class Listener:
    def __init__(self) -> None:
        self.removed: list[str] = []
        self.failures: list[tuple[str, str]] = []

    def hcm_card_removed(self, reader: str) -> None:
        self.removed.append(reader)

    def hcm_plugin_failed(self, plugin: str, hook: str) -> None:
        self.failures.append((plugin, hook))


class RaisingListener:
    def hcm_card_removed(self, reader: str) -> None:
        raise ValueError("display unplugged")


def test_raising_handler_is_a_typed_error_naming_the_plugin() -> None:
    with Middleware(plugins={"his-a": RaisingHis()}) as mw:
        with pytest.raises(PluginCallError) as caught:
            mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1")
        err = caught.value
        assert (err.plugin, err.hook) == ("his-a", "hcm_his_lookup_patient")
        assert isinstance(err.__cause__, ConnectionResetError)
        assert mw.dispatcher.health["his-a"].failures == 1
        # the core keeps working
        mw.audit("card.read", actor="t1")


def test_typed_refusal_passes_through_tagged_with_the_plugin() -> None:
    with Middleware(plugins={"his-b": RefusingHis()}) as mw:
        with pytest.raises(HisError) as caught:
            mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1")
        assert caught.value.plugin == "his-b"
        assert caught.value.hint == "ask the records office"


def test_failing_listener_is_contained_and_reported() -> None:
    listener = Listener()
    with Middleware(plugins={"bad-display": RaisingListener(), "listener": listener}) as mw:
        assert mw.hooks.hcm_card_removed(reader="R0") == []
        assert listener.removed == ["R0"]
        assert listener.failures == [("bad-display", "hcm_card_removed")]
        assert "display unplugged" in (mw.dispatcher.health["bad-display"].last_error or "")


def test_hanging_handler_times_out_and_core_keeps_working() -> None:
    his = HangingHis()
    cfg = parse_config({"plugins": {"timeouts": {"slow-his": 0.2}, "max_stalled_calls": 2}})
    try:
        with Middleware(cfg, plugins={"slow-his": his}) as mw:
            t0 = time.perf_counter()
            with pytest.raises(PluginTimeoutError) as caught:
                mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1")
            assert time.perf_counter() - t0 < 1.0
            assert caught.value.plugin == "slow-his"
            assert caught.value.timeout == 0.2
            with pytest.raises(PluginTimeoutError):
                mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1")
            # two calls hang: the third is refused at once instead of piling up threads
            t0 = time.perf_counter()
            with pytest.raises(PluginUnavailableError):
                mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1")
            assert time.perf_counter() - t0 < 0.1
            # other hooks and the core still work
            mw.audit("card.read", actor="t1")
            assert mw.dispatcher.health["slow-his"].stalled == 2
            # when the system behind it answers again, the slots free up
            his.release.set()
            _wait_unstalled(mw, "slow-his")
            assert mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1") is None
    finally:
        his.release.set()


def _wait_unstalled(mw: Middleware, plugin: str) -> None:
    """Wait (up to 5 s) until none of ``plugin``'s calls is stalled any more."""
    deadline = time.monotonic() + 5
    while mw.dispatcher.health[plugin].stalled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mw.dispatcher.health[plugin].stalled == 0


class ThreadNoting:
    """Answers at once, noting the thread and a context variable of each call; can hang."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.seen: list[str] = []
        self.hang_next = False
        self.release = threading.Event()

    def hcm_his_lookup_patient(self, resident: Resident) -> None:
        self.threads.append(threading.get_ident())
        self.seen.append(WHERE.get())
        if self.hang_next:
            self.hang_next = False
            self.release.wait(30)


WHERE: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="-")


def test_calls_reuse_a_worker_thread_and_see_the_callers_context() -> None:
    his = ThreadNoting()
    with Middleware(plugins={"his": his}) as mw:
        for where in ("kiosk-1", "kiosk-2", "kiosk-3"):
            WHERE.set(where)
            mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1")
        assert his.seen == ["kiosk-1", "kiosk-2", "kiosk-3"]
        assert len(set(his.threads)) == 1, "one worker thread served the three calls"
        assert threading.get_ident() not in his.threads, "never on the caller's thread"


def test_a_worker_stuck_in_a_timed_out_call_takes_no_other() -> None:
    his = ThreadNoting()
    cfg = parse_config({"plugins": {"timeouts": {"his": 0.2}}})
    try:
        with Middleware(cfg, plugins={"his": his}) as mw:
            mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1")
            his.hang_next = True
            with pytest.raises(PluginTimeoutError):
                mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1")
            t0 = time.perf_counter()
            assert mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1") is None
            assert time.perf_counter() - t0 < 0.15, "the next call did not queue behind it"
            stuck, fresh = his.threads[1], his.threads[2]
            assert stuck == his.threads[0]
            assert fresh != stuck
            assert mw.dispatcher.health["his"].stalled == 1
            his.release.set()
            _wait_unstalled(mw, "his")
            for _ in range(3):
                mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1")
            assert set(his.threads[3:]) <= {stuck, fresh}, "both threads serve calls again"
    finally:
        his.release.set()


def test_closing_ends_the_idle_worker_threads() -> None:
    his = ThreadNoting()
    with Middleware(plugins={"his-idle": his}) as mw:
        mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H1")
        workers = [t for t in threading.enumerate() if t.name == "hcm-plugin-his-idle"]
        assert len(workers) == 1
    workers[0].join(5)
    assert not workers[0].is_alive()


def test_firstresult_takes_the_first_answer_in_pluggy_order() -> None:
    class First:
        def hcm_his_lookup_patient(self, resident: Resident) -> HospitalPatient:
            return HospitalPatient(hospital_code="H", patient_id="late", resident_id="r-1")

    class Site:
        @hookimpl(tryfirst=True)
        def hcm_his_lookup_patient(self, resident: Resident) -> HospitalPatient:
            return HospitalPatient(hospital_code="H", patient_id="site", resident_id="r-1")

    with Middleware(plugins={"first": First(), "site": Site()}) as mw:
        got = mw.hooks.hcm_his_lookup_patient(resident=resident(), hospital_code="H")
        assert got.patient_id == "site"


def test_missing_hook_argument_is_a_caller_error() -> None:
    with Middleware() as mw, pytest.raises(TypeError, match="reader"):
        mw.hooks.hcm_card_removed()


def test_configure_failure_stops_start_and_unconfigures_the_others() -> None:
    events: list[str] = []

    class Good:
        def hcm_configure(self) -> None:
            events.append("good configured")

        def hcm_unconfigure(self) -> None:
            events.append("good unconfigured")

    class Bad:
        @hookimpl(trylast=True)
        def hcm_configure(self) -> None:
            raise OSError("port 2575 in use")

    with pytest.raises(PluginCallError) as caught:
        Middleware(plugins={"good": Good(), "bad": Bad()})
    assert caught.value.plugin == "bad"
    assert events == ["good configured", "good unconfigured"]


def test_late_registration_is_configured() -> None:
    class Late:
        def __init__(self) -> None:
            self.configured = False

        def hcm_add_config(self, settings: Any) -> None:
            settings.add("late", Settings)

        def hcm_configure(self, middleware: Middleware) -> None:
            self.configured = middleware.plugin_settings("late").url == "u"

    cfg = parse_config({"plugins": {"late": {"url": "u"}}})
    with Middleware(cfg) as mw:
        late = Late()
        mw.register(late, name="late")
        assert late.configured
        assert "late" in mw.enabled_plugins()


def test_late_registration_failure_leaves_nothing_behind() -> None:
    class Bad:
        def hcm_add_config(self, settings: Any) -> None:
            settings.add("bad", Settings)  # 'url' is required and not given

    with Middleware() as mw:
        with pytest.raises(ConfigError):
            mw.register(Bad(), name="bad")
        assert "bad" not in mw.enabled_plugins()
        assert mw.pm.get_plugin("bad") is None
