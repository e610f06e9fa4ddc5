from pathlib import Path

import pytest

from foundation.config import ConfigError, Settings, parse_gme_keys


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
