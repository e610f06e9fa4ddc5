"""POST /callbacks/css through the Flask app, with a real ledger (SQLite and PostgreSQL)
and the embedded broker: verification, dedupe, and how files become recordings."""

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

import webhook.app
from foundation.config import Settings
from recpipe.webapp import create_app
from storage.ledger import Ledger, utcnow
from storage.ledger.tables import Callback, CssFile
from tests.support.logs import captured_lines
from webhook.verify import css_sign

KEY = "css-test-key"
T0 = 1_700_000_000


def body(file_id: str = "f1", start: int = T0, end: int = T0 + 10, **extra) -> dict:
    t = int(time.time()) + 600
    return {
        "event_type": 100, "appid": 1253000000, "app": "push.example.com", "appname": "live",
        "stream_id": "room_42", "channel_id": "room_42", "file_id": file_id,
        "record_file_id": file_id, "file_format": "mp4", "start_time": start, "end_time": end,
        "duration": end - start, "file_size": 1000,
        "video_url": f"https://1253000000.vod2.myqcloud.com/{file_id}.mp4",
        "callback_ext": '{"video_codec":"h264"}', "t": t, "sign": css_sign(KEY, t), **extra,
    }  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def app_env(request, tmp_path: Path):
    env = {
        "RECPIPE_DATA_DIR": str(tmp_path),
        "RECPIPE_CSS_CALLBACK_KEY": KEY,
        "RECPIPE_CSS_JOIN_GAP_SECONDS": "3",
        "RECPIPE_CSS_APP_IDS": "1253000000",
    }
    if request.param == "postgresql":
        env["RECPIPE_DATABASE_URL"] = request.getfixturevalue("pg_url")
    settings = Settings.from_env(env)
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    app = create_app(settings, ledger=ledger)
    yield app.test_client(), ledger, settings
    ledger.dispose()


def post(client, payload) -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = client.post("/callbacks/css", data=data, content_type="application/json")
    return response.status_code, response.get_json()


def count(ledger: Ledger, model) -> int:
    with ledger.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_a_file_is_stored_once_however_often_the_vendor_retries(app_env):
    client, ledger, settings = app_env
    first = body()
    for attempt in range(3):
        retry = {**first, "t": first["t"] + attempt, "sign": css_sign(KEY, first["t"] + attempt)}
        assert post(client, retry) == (200, {"code": 0})
    assert count(ledger, Callback) == 1 and count(ledger, CssFile) == 1
    with ledger.session() as s:
        assert s.scalar(select(Callback.duplicates)) == 2
        assert s.scalar(select(Callback.dispatched_at)) is not None
    queue = settings.broker_dir / "queue"
    assert not queue.exists() or not any(queue.iterdir()), "nothing sent: the clock settles"
    [rid] = ledger.find_recordings("f1")
    recording = ledger.recording(rid)
    assert rid.startswith("css-room_42-1700000000-")
    assert recording.details["file_ids"] == ["f1"]
    assert recording.details["stream_id"] == "room_42"


def test_other_event_types_are_acknowledged_and_ignored(app_env):
    client, ledger, _ = app_env
    for event_type in (0, 1, 200, 332):
        assert post(client, {**body(), "event_type": event_type}) == (200, {"code": 0})
    assert count(ledger, Callback) == 0


def test_a_bad_callback_ext_is_kept_as_text(app_env):
    client, ledger, _ = app_env
    assert post(client, body(callback_ext="{oops"))[0] == 200
    with ledger.session() as s:
        assert s.scalar(select(CssFile.details))["callback_ext"] == "{oops"


def _signed(payload: dict, t: int, sign: str | None = None) -> dict:
    return {**payload, "t": t, "sign": sign if sign is not None else css_sign(KEY, t)}


@pytest.mark.parametrize(
    ("make", "status", "field"),
    [
        (lambda b: _signed(b, int(time.time()) - 1), 401, None),
        (lambda b: _signed(b, int(time.time()) + 3600), 401, None),
        (lambda b: _signed(b, b["t"], css_sign("other-key", b["t"])), 401, None),
        (lambda b: _signed(b, b["t"], css_sign(KEY, b["t"]).upper()), 401, None),
        (lambda b: {k: v for k, v in b.items() if k != "sign"}, 401, None),
        (lambda b: _signed(b, str(b["t"])), 401, None),
        (lambda b: b"not json", 400, "body"),
        (lambda b: {**b, "file_format": "avi"}, 400, "file_format"),
        (lambda b: {k: v for k, v in b.items() if k != "video_url"}, 400, "video_url"),
        (lambda b: {**b, "start_time": "yesterday"}, 400, "start_time"),
    ],
    ids=[
        "expired", "far-future", "wrong-key", "uppercase-sign", "no-sign", "string-t",
        "not-json", "unknown-format", "no-video-url", "string-start-time",
    ],
)  # fmt: skip
def test_refused_callbacks_store_nothing(app_env, make, status, field):
    client, ledger, _ = app_env
    code, answer = post(client, make(body()))
    assert code == status and "error" in answer
    assert answer.get("field") == field
    assert count(ledger, Callback) == 0 and count(ledger, CssFile) == 0


def test_a_replayed_sign_with_a_forged_file_and_a_foreign_bucket_is_refused(app_env):
    """The sign covers only `t`: a captured callback sent again with another file_id and a
    video_url on a bucket of someone else's is 400 (video_url), stores nothing, and the
    victim stream's recording keeps its one file."""
    client, ledger, _ = app_env
    captured = body("real")
    assert post(client, captured)[0] == 200
    for url in (
        "https://attacker-1300000000.cos.ap-guangzhou.myqcloud.com/x.mp4",
        "https://1300000000.vod2.myqcloud.com/x.mp4",
        "https://1253000000.vod2.myqcloud.com.evil.example/x.mp4",
        "https://evil.example/1253000000.vod2.myqcloud.com/x.mp4",
    ):
        forged = {**captured, "file_id": "forged", "record_file_id": "forged", "video_url": url}
        code, answer = post(client, forged)
        assert (code, answer.get("field")) == (400, "video_url"), url
    assert count(ledger, Callback) == 1 and count(ledger, CssFile) == 1


def test_a_replayed_sign_claiming_another_appid_is_refused(app_env):
    """An attacker's own appid would make `{appid}.vod2.myqcloud.com` their VOD domain: an
    appid outside RECPIPE_CSS_APP_IDS is 401 and nothing is stored."""
    client, ledger, _ = app_env
    forged = {
        **body("forged"),
        "appid": 1300000000,
        "video_url": "https://1300000000.vod2.myqcloud.com/x.mp4",
    }
    assert post(client, forged)[0] == 401
    assert post(client, {**body("forged"), "appid": True})[0] == 401
    assert count(ledger, Callback) == 0


@pytest.mark.parametrize(
    "hosts",
    ["*.myqcloud.com", "*.vod2.myqcloud.com", "*", "{appid}.vod2.myqcloud.com"],
)
def test_css_intake_does_not_start_with_hosts_broader_than_the_operators_own(
    tmp_path: Path, hosts: str
):
    """Default hosts without app ids, or any wildcard over a shared cloud domain: refused at
    start, with one message naming the setting."""
    from foundation.config import ConfigError

    env = {"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_CSS_CALLBACK_KEY": KEY}
    if hosts != "{appid}.vod2.myqcloud.com":
        env |= {"RECPIPE_CSS_ALLOWED_HOSTS": hosts, "RECPIPE_CSS_APP_IDS": "1253000000"}
    settings = Settings.from_env(env)
    with pytest.raises(
        ConfigError, match=r"RECPIPE_CSS_ALLOWED_HOSTS: .*RECPIPE_CSS_ALLOW_BROAD_HOSTS=1"
    ):
        create_app(settings, ledger=Ledger(settings.database_url))


def test_accepting_broad_hosts_warns_at_every_start(tmp_path: Path):
    """RECPIPE_CSS_ALLOW_BROAD_HOSTS=1 starts intake with `*.myqcloud.com`, and each start
    logs a warning naming the pattern."""
    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_CSS_CALLBACK_KEY": KEY,
            "RECPIPE_CSS_ALLOWED_HOSTS": "*.myqcloud.com",
            "RECPIPE_CSS_ALLOW_BROAD_HOSTS": "1",
        }
    )
    ledger = Ledger(settings.database_url)
    for _start in range(2):
        with captured_lines(webhook.app, "recpipe.webhook") as logs:
            create_app(settings, ledger=ledger)
        warnings = [e for e in logs if e["event"] == "css.broad_allowed_hosts"]
        assert len(warnings) == 1 and "'*.myqcloud.com'" in warnings[0]["problem"]
        assert warnings[0]["log_level"] == "warning"
    ledger.dispose()


def test_no_key_configured_refuses_every_css_callback(tmp_path: Path):
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    assert post(create_app(settings, ledger=ledger).test_client(), body())[0] == 401
    ledger.dispose()


def test_touching_files_join_in_start_order_and_distant_ones_do_not(app_env):
    client, ledger, _ = app_env
    # second part first; gap of 2 s (within the 3 s tolerance) to the first part
    assert post(client, body("b", T0 + 12, T0 + 20))[0] == 200
    assert post(client, body("a", T0, T0 + 10))[0] == 200
    assert post(client, body("later", T0 + 100, T0 + 110))[0] == 200
    [joined] = ledger.find_recordings("a")
    assert ledger.find_recordings("b") == [joined]
    recording = ledger.recording(joined)
    assert recording.details["file_ids"] == ["a", "b"]
    assert (recording.details["start_time"], recording.details["end_time"]) == (T0, T0 + 20)
    assert ledger.find_recordings("later") != [joined]
    assert sorted(ledger.find_recordings("room_42")) == sorted(
        [joined, *ledger.find_recordings("later")]
    )


def test_a_file_bridging_two_waiting_runs_merges_them(app_env):
    client, ledger, _ = app_env
    post(client, body("a", T0, T0 + 10))
    post(client, body("c", T0 + 20, T0 + 30))
    assert ledger.find_recordings("a") != ledger.find_recordings("c")
    post(client, body("b", T0 + 10, T0 + 20))
    [rid] = ledger.find_recordings("c")
    assert ledger.find_recordings("a") == [rid]
    assert ledger.recording(rid).details["file_ids"] == ["a", "b", "c"]
    assert len(ledger.recent_recordings()) == 1


def test_a_file_arriving_after_the_archive_makes_a_new_revision(app_env):
    client, ledger, _ = app_env
    post(client, body("a", T0, T0 + 10))
    [rid] = ledger.find_recordings("a")
    now = utcnow()
    run_id = ledger.claim(rid, now=now)
    ledger.finish_run(run_id, now=now, result={}, manifest_url="file:///m.json")
    assert ledger.recording(rid).state == "archived"
    post(client, body("b", T0 + 10, T0 + 20))
    recording = ledger.recording(rid)
    assert recording.state == "collecting" and recording.details["file_ids"] == ["a", "b"]
    second = ledger.claim(rid, now=now + timedelta(seconds=5))
    assert ledger.run(second).revision == 2
