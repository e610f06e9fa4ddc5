import pytest

from foundation.config import ConfigError, Settings


def test_css_settings_have_safe_defaults():
    s = Settings.from_env({})
    assert s.css_allowed_hosts == ("{appid}.vod2.myqcloud.com",)
    assert s.css_app_ids == frozenset() and not s.css_allow_broad_hosts
    assert s.video_formats == ("mp4", "m4a") and s.css_join_gap_seconds == 5.0


def test_css_settings_are_read_from_the_environment():
    s = Settings.from_env(
        {
            "RECPIPE_VIDEO_FORMATS": "M4A",
            "RECPIPE_CSS_JOIN_GAP_SECONDS": "2.5",
            "RECPIPE_CSS_ALLOWED_HOSTS": "*.vod2.myqcloud.com, 127.0.0.1",
            "RECPIPE_CSS_MAX_HLS_SEGMENTS": "50",
        }
    )
    assert s.video_formats == ("m4a",) and s.css_join_gap_seconds == 2.5
    assert s.css_allowed_hosts == ("*.vod2.myqcloud.com", "127.0.0.1")
    assert s.css_max_hls_segments == 50


@pytest.mark.parametrize(
    ("name", "value"),
    [("RECPIPE_VIDEO_FORMATS", "mkv"), ("RECPIPE_VIDEO_FORMATS", ""),
     ("RECPIPE_CSS_JOIN_GAP_SECONDS", "soon"), ("RECPIPE_CSS_MAX_FILE_BYTES", "0"),
     ("RECPIPE_CSS_APP_IDS", "1253000000,abc"), ("RECPIPE_CSS_ALLOW_BROAD_HOSTS", "maybe")],
)  # fmt: skip
def test_bad_css_settings_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
