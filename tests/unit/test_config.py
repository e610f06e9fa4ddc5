from pathlib import Path

import pytest

from foundation.config import SETTINGS, VENDOR_SECRETS, ConfigError, Settings, parse_gme_keys


def test_embedded_defaults_need_no_server(tmp_path: Path):
    s = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert s.embedded_broker
    assert s.archive_url == (tmp_path / "archive").as_uri()
    assert s.gme_source_url == (tmp_path / "source").as_uri()
    assert s.gme_secret_keys == {} and s.audio_formats == ("m4a",) and s.settle_seconds == 120


def test_gme_keys_allow_equals_in_key():
    assert parse_gme_keys("1400000000=abc=, 1400000001=x") == {
        1400000000: b"abc=",
        1400000001: b"x",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECPIPE_GME_SECRET_KEYS", "nokey"),
        ("RECPIPE_GME_SECRET_KEYS", "abc=key"),
        ("RECPIPE_AUDIO_FORMATS", "m4a,wma"),
        ("RECPIPE_ARCHIVE_URL", "ftp://host/x"),
        ("RECPIPE_ARCHIVE_URL", "s3:///nobucket"),
        ("RECPIPE_ARCHIVE_URL", "s3://b/p?endpoint=x"),
        ("RECPIPE_BROKER_URL", "kafka://x"),
        ("RECPIPE_SETTLE_SECONDS", "soon"),
        ("RECPIPE_NOTIFY_URLS", "ftp://x"),
        ("RECPIPE_NOTIFY_SECRET", "whsec_"),
        ("RECPIPE_GME_KEY_SCOPE", "loose"),
        ("RECPIPE_GME_GAPS", "squeeze"),
        ("RECPIPE_GAP_SECONDS", "-1"),
        ("RECPIPE_GME_TIME_ZONE", "Asia/Shanghai"),
        ("RECPIPE_LOUDNESS_LUFS", "loud"),
        ("RECPIPE_LOUDNESS_LUFS", "3"),
        ("RECPIPE_SILENCE_DB", "quiet"),
        ("RECPIPE_SILENCE_DB", "6"),
    ],
)
def test_bad_settings_name_the_variable(name, value, tmp_path):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), name: value})


def test_time_and_loudness_settings_default_to_the_contract():
    s = Settings.from_env({})
    assert (s.gme_gaps, s.gap_seconds, s.loudness_lufs, s.silence_db) == ("pad", 2.0, -16.0, -40.0)
    assert str(s.gme_time_zone) == "UTC+08:00"
    off = Settings.from_env({"RECPIPE_LOUDNESS_LUFS": "off", "RECPIPE_GME_GAPS": "join"})
    assert off.loudness_lufs is None and off.gme_gaps == "join"


def _example_env() -> dict[str, str]:
    """deploy/recpipe.env.example's assignments, commented ones too (KEY=VALUE lines)."""
    example = Path(__file__).parents[2] / "deploy" / "recpipe.env.example"
    found = {}
    for line in example.read_text().splitlines():
        key, sep, value = line.lstrip("# ").partition("=")
        if sep and key.isupper() and key.replace("_", "").isalnum():
            found[key] = value
    return found


_PLACEHOLDERS = {k: v for k, v in _example_env().items() if "change-me" in v.lower()}


_SECRETS = {s.env for s in SETTINGS if s.secret} | set(VENDOR_SECRETS)


@pytest.mark.parametrize("name", sorted(set(_PLACEHOLDERS) & _SECRETS))
def test_a_setting_left_at_the_examples_placeholder_is_refused_naming_it(tmp_path: Path, name: str):
    """Each of the example's change-me secrets that recpipe reads stops the start, with
    one line that names the setting."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), name: _PLACEHOLDERS[name]})
    message = str(refused.value)
    assert message.startswith(f"{name}:") and "\n" not in message
    assert _PLACEHOLDERS[name] not in message  # the message does not repeat the value


def test_the_whole_example_env_is_refused_until_its_placeholders_are_replaced(tmp_path: Path):
    env = {**_example_env(), "RECPIPE_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="change-me"):
        Settings.from_env(env)
    replaced = {k: v.replace("change-me", "s3cr3t") for k, v in env.items()}
    replaced["RECPIPE_NOTIFY_SECRET"] = ""
    assert Settings.from_env(replaced).console_secret == (
        "s3cr3t-console-secret-at-least-32-characters"
    )


def test_the_placeholder_is_refused_in_any_case_and_anywhere_in_the_value(tmp_path: Path):
    for value in ("CHANGE-ME-now-" + "x" * 32, "x" * 32 + "change-me"):
        with pytest.raises(ConfigError, match="RECPIPE_CONSOLE_SECRET"):
            Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_CONSOLE_SECRET": value})


def test_the_internal_listener_is_on_loopback_by_default():
    """/readyz and /metrics are never on a public address unless asked for."""
    assert Settings.from_env({}).internal_listen == ("127.0.0.1", 9108)


@pytest.mark.parametrize(
    ("value", "listen"),
    [
        ("0.0.0.0:9200", ("0.0.0.0", 9200)),  # noqa: S104 - parsed, not bound
        ("[::1]:9108", ("::1", 9108)),
        ("off", None),
    ],
)
def test_the_internal_listener_is_read_as_host_and_port(value, listen):
    assert Settings.from_env({"RECPIPE_INTERNAL_LISTEN": value}).internal_listen == listen


@pytest.mark.parametrize("value", ["9108", "127.0.0.1", "127.0.0.1:0", "host:99999", ":9108"])
def test_a_bad_internal_listener_names_the_variable(value):
    with pytest.raises(ConfigError, match="RECPIPE_INTERNAL_LISTEN"):
        Settings.from_env({"RECPIPE_INTERNAL_LISTEN": value})
