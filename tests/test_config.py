"""The configuration file: valid files, every kind of bad input, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from hcmiddleware.config import Config, Secret, SettingsModel, default_data_dir, load_config
from hcmiddleware.errors import ConfigError, SecretError


def write(tmp_path: Path, text: str, name: str = "hcm.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


class WithSecret(SettingsModel):
    password: Secret


def test_defaults_run_without_a_file(default_data_folder: Path) -> None:
    config = Config()
    assert config.plugins.enabled == ()
    assert config.middleware.data_dir == default_data_folder
    assert config.database_url == f"sqlite:///{default_data_folder.as_posix()}/hcm.db"


def test_platform_data_dir_is_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HCM_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "hcmiddleware"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "hcmiddleware"
    monkeypatch.chdir(tmp_path / "..")
    assert Config().middleware.data_dir == default_data_dir()


def test_relative_paths_are_taken_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "etc" / "hcm"
    site.mkdir(parents=True)
    (site / "pin.txt").write_text("123456\n", encoding="utf-8")
    path = write(
        site,
        """
        [middleware]
        data_dir = "data"
        [sam]
        keys = "keys/issuer.json"
        pin = { file = "pin.txt" }
        """,
    )
    loaded = []
    for cwd in (tmp_path, site, Path("/")):  # a service restarted from elsewhere
        monkeypatch.chdir(cwd)
        config = load_config(path.relative_to(tmp_path) if cwd == tmp_path else path)
        loaded.append(
            (config.middleware.data_dir, config.sam.keys, config.database_url, config.base_dir)
        )
        assert config.sam.pin is not None
        assert config.sam.pin.get_secret_value() == "123456"
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0][0] == site / "data"
    assert loaded[0][1] == site / "keys" / "issuer.json"
    assert loaded[0][2] == f"sqlite:///{(site / 'data' / 'hcm.db').as_posix()}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///hcm.db", "sqlite:///{site}/hcm.db"),
        ("sqlite+pysqlite:///db/hcm.db?timeout=5", "sqlite+pysqlite:///{site}/db/hcm.db?timeout=5"),
        ("sqlite:////abs/hcm.db", "sqlite:////abs/hcm.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql+psycopg://hcm@127.0.0.1/hcm", "postgresql+psycopg://hcm@127.0.0.1/hcm"),
    ],
)
def test_sqlite_url_is_taken_from_the_config_file(tmp_path: Path, url: str, expected: str) -> None:
    path = write(tmp_path, f'[database]\nurl = "{url}"\n')
    assert load_config(path).database_url == expected.format(site=tmp_path.as_posix())


def test_a_complete_file_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [middleware]
        site_name = "No. 1 Hospital"
        institution_code = "210100000001"
        data_dir = "/var/lib/hcm"
        [database]
        url = "postgresql+psycopg://hcm@127.0.0.1/hcm"
        [readers]
        user = "Virtual PCD 00 00"
        [plugins]
        enabled = ["sample-his"]
        timeouts = { sample-his = 2.5 }
        [plugins.sample-his]
        hospital_code = "H9"
        """,
    )
    config = load_config(path)
    assert config.source == path
    assert config.middleware.institution_code == "210100000001"
    assert config.database_url.startswith("postgresql+psycopg://")
    assert config.plugins.enabled == ("sample-his",)
    assert config.plugins.timeouts == {"sample-his": 2.5}
    assert config.plugins.sections() == {"sample-his": {"hospital_code": "H9"}}


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(ValidationError):
        config.middleware.site_name = "changed"  # type: ignore[misc]


def test_unknown_key_names_file_key_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "[middleware]\nsite_nam = 'x'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    err = caught.value
    assert err.file == str(path)
    assert err.key == "middleware.site_nam"
    assert "site_name" in err.hint
    assert str(path) in str(err)


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[readerz]\nuser = 'x'\n"))
    assert caught.value.key == "readerz"
    assert "readers" in caught.value.hint


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[plugins]\ncall_timeout = 'soon'\n"))
    assert caught.value.key == "plugins.call_timeout"
    assert "number" in caught.value.message


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "[plugins]\ncall_timeout = -1\n[middleware]\nfoo = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    keys = {caught.value.key} | {e.key for e in caught.value.related}
    assert keys == {"plugins.call_timeout", "middleware.foo"}


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[plugins\nenabled = []\n"))
    assert "line 1" in caught.value.message
    assert caught.value.key is None


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "gbk.toml"
    path.write_bytes("[middleware]\nsite_name = '第一医院'\n".encode("gbk"))
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    assert caught.value.file.endswith("nope.toml")


def test_pattern_violation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[middleware]\ninstitution_code = '123'\n"))
    assert caught.value.key == "middleware.institution_code"


def test_duplicate_enabled_plugin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="twice"):
        load_config(write(tmp_path, "[plugins]\nenabled = ['a', 'a']\n"))


# --- secrets ------------------------------------------------------------------------


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCM_TEST_PW", "s3cret-value")
    settings = WithSecret.model_validate({"password": {"env": "HCM_TEST_PW"}})
    assert settings.password.get_secret_value() == "s3cret-value"
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "s3cret-value" not in text


def test_secret_from_file_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("from-file\n", encoding="utf-8")
    settings = WithSecret.model_validate(
        {"password": {"file": "pw.txt"}}, context={"base_dir": str(tmp_path)}
    )
    assert settings.password.get_secret_value() == "from-file"


def test_secret_object_passes_through() -> None:
    settings = WithSecret(password=SecretStr("given"))
    assert settings.password.get_secret_value() == "given"


def test_missing_env_secret_is_a_secret_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HCM_NOT_SET", raising=False)
    from hcmiddleware.config import config_error_from_validation

    with pytest.raises(ValidationError) as caught:
        WithSecret.model_validate({"password": {"env": "HCM_NOT_SET"}})
    err = config_error_from_validation(caught.value, file="x.toml", model=WithSecret)
    assert isinstance(err, SecretError)
    assert err.key == "password"
    assert "HCM_NOT_SET" in err.message
    assert "environment" in err.hint


def test_inline_secret_is_refused_without_echoing_it() -> None:
    from hcmiddleware.config import config_error_from_validation

    with pytest.raises(ValidationError) as caught:
        WithSecret.model_validate({"password": "plain-text-password"})
    err = config_error_from_validation(caught.value, file="x.toml", model=WithSecret)
    assert "env" in err.hint
    assert "plain-text-password" not in str(err)
    assert "plain-text-password" not in repr(err.details())


def test_unreadable_secret_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        WithSecret.model_validate(
            {"password": {"file": "absent.txt"}}, context={"base_dir": str(tmp_path)}
        )
    assert caught.value.errors()[0]["type"] == "secret_missing"


def test_secret_with_both_forms_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        WithSecret.model_validate({"password": {"env": "A", "file": "b"}})
    assert caught.value.errors()[0]["type"] == "secret_form"
