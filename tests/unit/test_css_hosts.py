"""RECPIPE_CSS_ALLOWED_HOSTS: which patterns are the operator's own, `{appid}`, and the
check a callback's `video_url` gets at intake and at every fetch."""

import pytest

from foundation.config import ConfigError, Settings
from foundation.css_hosts import HostNotAllowedError, broad_patterns, check, expand, intake_warnings

APP = 1253000000


@pytest.mark.parametrize(
    "pattern",
    [
        "*.myqcloud.com",
        "*.vod2.myqcloud.com",
        "*.cos.ap-guangzhou.myqcloud.com",
        "*-1253000000.cos.*.myqcloud.com",
        "*.tencentcos.cn",
        "*.s3.amazonaws.com",
        "*",
        "*.com",
        "*example.com",
        "{appid}.vod2.*.com",
        "x{appid}.vod2.myqcloud.com",
        "{appid}x.vod2.myqcloud.com",
    ],
)
def test_patterns_anyone_can_create_names_under_are_broad(pattern):
    assert [p for p, _ in broad_patterns([pattern], {APP})] == [pattern]


@pytest.mark.parametrize(
    "pattern",
    [
        "{appid}.vod2.myqcloud.com",
        "*.{appid}.vod2.myqcloud.com",
        "media-{appid}.cos.ap-guangzhou.myqcloud.com",
        "*-{appid}.cos.ap-guangzhou.myqcloud.com",
        "1253000000.vod2.myqcloud.com",
        "vod.example.com",
        "*.media.example.com",
        "10.0.0.5",
        "10.0.0.5:8080",
        "[fd00::5]:8080",
        "localhost",
    ],
)
def test_the_operators_own_hosts_are_not_broad(pattern):
    assert broad_patterns([pattern], {APP}) == []


def test_appid_without_configured_app_ids_is_broad():
    """Without RECPIPE_CSS_APP_IDS, `{appid}` is whatever appid a forged callback claims."""
    [(_, why)] = broad_patterns(["{appid}.vod2.myqcloud.com"], set())
    assert "RECPIPE_CSS_APP_IDS" in why


def test_appid_stands_for_the_callbacks_own_configured_appid():
    hosts = expand(["{appid}.vod2.myqcloud.com", "10.0.0.5"], APP, {APP})
    assert hosts == ("1253000000.vod2.myqcloud.com", "10.0.0.5")
    assert check("https://1253000000.vod2.myqcloud.com/a.mp4", hosts).host
    with pytest.raises(HostNotAllowedError, match=r"1300000000\.vod2\.myqcloud\.com is not in"):
        check("https://1300000000.vod2.myqcloud.com/a.mp4", hosts)
    # an appid that is not configured gets none of the `{appid}` hosts
    assert expand(["{appid}.vod2.myqcloud.com", "10.0.0.5"], 1300000000, {APP}) == ("10.0.0.5",)
    assert expand(["{appid}.vod2.myqcloud.com"], None, set()) == ()


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker-1300000000.cos.ap-guangzhou.myqcloud.com/x.mp4",
        "https://1253000000.vod2.myqcloud.com.evil.example/x.mp4",
        "https://x1253000000.vod2.myqcloud.com/x.mp4",
        "https://user@1253000000.vod2.myqcloud.com/x.mp4",
        "ftp://1253000000.vod2.myqcloud.com/x.mp4",
    ],
)
def test_urls_off_the_operators_hosts_are_refused(url):
    with pytest.raises(HostNotAllowedError):
        check(url, expand(["{appid}.vod2.myqcloud.com"], APP, {APP}))


def test_intake_refuses_broad_hosts_unless_accepted_and_then_warns():
    base = {"RECPIPE_CSS_CALLBACK_KEY": "k", "RECPIPE_CSS_ALLOWED_HOSTS": "*.myqcloud.com"}
    with pytest.raises(ConfigError, match=r"^RECPIPE_CSS_ALLOWED_HOSTS: '\*\.myqcloud\.com'"):
        intake_warnings(Settings.from_env(base))
    accepted = Settings.from_env({**base, "RECPIPE_CSS_ALLOW_BROAD_HOSTS": "1"})
    assert ["'*.myqcloud.com' is broader" in line for line in intake_warnings(accepted)] == [True]
    # no CSS key, no CSS intake: nothing to check
    assert intake_warnings(Settings.from_env({"RECPIPE_CSS_ALLOWED_HOSTS": "*"})) == []
    # the default with the operator's app ids is fine
    own = Settings.from_env({"RECPIPE_CSS_CALLBACK_KEY": "k", "RECPIPE_CSS_APP_IDS": str(APP)})
    assert intake_warnings(own) == []
