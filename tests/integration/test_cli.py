"""The operator commands run as a user runs them (`python -m recpipe ...` in a subprocess)
against PostgreSQL, a broker and real stores: what they print, what they change, and the one
line and non-zero exit of every failure."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import update

from storage.ledger import Ledger, utcnow
from tests.support.cli import BIZ, TASK, cli, queue_length
from tests.support.services import free_port
from tests.support.waits import wait_for
from webhook.callbacks import parse_css, parse_gme


def one_line_failure(result: subprocess.CompletedProcess[str], starts: str, code: int = 1) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(f"recpipe: {starts}"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def store(
    cli_ledger: Ledger, seq: int, event_type: int = 3, task: str = TASK, user: str = "999", now=None
):
    """A GME callback stored as intake stores it (body and bookkeeping)."""
    body = json.dumps(
        {
            "BizID": BIZ, "RoomID": "100", "UserID": user, "TaskID": int(task), "RecordMode": 1,
            "Timestamp": int(time.time()), "EventType": event_type,
            "Detail": {"SeqNo": seq, "FileName": f"{BIZ}_100/{seq}_{task}_audio.mp3"},
        }
    )  # fmt: skip
    event = parse_gme(body.encode())
    result = cli_ledger.record_gme_event(
        event, body, {"Signature": "checked-at-intake"}, now=now or utcnow(), settle_seconds=30
    )
    return result


def archived_run(cli_ledger: Ledger, rid: str) -> str:
    """A finished revision with timed steps, an artifact and a delivered notification."""
    run_id = cli_ledger.claim(rid, now=utcnow(), force=True)
    for step in ("fetch", "concat", "transcode", "archive"):
        cli_ledger.step(run_id, step, now=utcnow())
        cli_ledger.step(run_id, step, now=utcnow(), ok=True, seconds=0.25)
    artifact = {"url": "file:///a/x.m4a", "format": "m4a", "bytes": 1234, "sha256": "ab",
                "duration_s": 6.5}  # fmt: skip
    result = {"included": [0], "missing": [], "artifacts": [artifact]}
    cli_ledger.finish_run(
        run_id, now=utcnow(), result=result, manifest_url="file:///a/manifest.json"
    )
    [note] = cli_ledger.create_notifications(
        run_id, "recording.archived", f"msg_{rid}_r1_archived", "{}", ["http://127.0.0.1:9/hooks"],
        utcnow(),
    )  # fmt: skip
    cli_ledger.record_attempt(note, now=utcnow(), status_code=503, error="HTTP 503", duration_ms=5,
                          final_state=None)  # fmt: skip
    cli_ledger.record_attempt(note, now=utcnow(), status_code=204, error=None, duration_ms=4,
                          final_state="delivered")  # fmt: skip
    return run_id


# -- status ---------------------------------------------------------------------------


def test_status_lists_recent_recordings_filtered_by_state_as_table_and_json(cli_env, cli_ledger):
    archived = store(cli_ledger, 0).recording_id
    collecting = store(cli_ledger, 0, user="1000").recording_id
    archived_run(cli_ledger, archived)

    table = cli(cli_env, "status")
    assert table.returncode == 0, table.stderr
    assert archived in table.stdout and collecting in table.stdout

    only = cli(cli_env, "status", "--state", "archived", "--json")
    assert only.returncode == 0, only.stderr
    rows = json.loads(only.stdout)
    assert [(r["id"], r["state"], r["revision"]) for r in rows] == [(archived, "archived", 1)]
    assert rows[0]["identity"]["TaskID"] == TASK


def test_status_of_one_recording_shows_segments_steps_artifacts_and_notifications(
    cli_env, cli_ledger
):
    rid = store(cli_ledger, 0).recording_id
    store(cli_ledger, 1, event_type=1)
    run_id = archived_run(cli_ledger, rid)

    shown = cli(cli_env, "status", rid)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"{rid}  archived  revision 1" in text
    assert "segments" in text and "uploaded" in text and "started" in text
    assert f"run {run_id}: revision 1, archived" in text
    for step in ("fetch", "concat", "transcode", "archive"):
        assert step in text
    assert "file:///a/x.m4a" in text and "manifest file:///a/manifest.json" in text
    assert "http://127.0.0.1:9/hooks" in text and "delivered" in text

    detail = json.loads(cli(cli_env, "status", rid, "--json").stdout)
    assert [(s["seq_no"], s["state"]) for s in detail["segments"]] == [
        (0, "uploaded"),
        (1, "started"),
    ]
    [run] = detail["runs"]
    assert [s["step"] for s in run["steps"]] == ["fetch", "concat", "transcode", "archive"]
    assert all(s["ok"] and "finished_at" in s for s in run["steps"])
    assert run["artifacts"][0]["format"] == "m4a"
    [note] = run["notifications"]
    assert note["state"] == "delivered" and note["attempts"] == 2
    assert [a["status"] for a in note["delivery_attempts"]] == [503, 204]


def test_status_by_taskid_of_several_users_lists_each_and_finds_css_by_stream_id(
    cli_env, cli_ledger
):
    first, second = store(cli_ledger, 0).recording_id, store(cli_ledger, 0, user="2").recording_id
    css_file = parse_css(
        {
            "event_type": 100, "appid": 1253000000, "app": "push.example.com", "appname": "live",
            "stream_id": "live_7", "file_id": "f-77", "file_format": "mp4",
            "start_time": 1700000000, "end_time": 1700000060, "duration": 60,
            "video_url": "https://1253000000.vod2.myqcloud.com/x/f-77.mp4",
            "t": 1700000600, "sign": "0" * 32,
        }
    )  # fmt: skip
    css = cli_ledger.record_css_file(
        css_file, "{}", {}, now=utcnow(), settle_seconds=60, join_gap_seconds=5
    ).recording_id

    both = json.loads(cli(cli_env, "status", TASK, "--json").stdout)
    assert sorted(d["id"] for d in both) == sorted([first, second])
    assert json.loads(cli(cli_env, "status", "live_7", "--json").stdout)["id"] == css
    assert json.loads(cli(cli_env, "status", "f-77", "--json").stdout)["id"] == css


# -- failures are one line ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("status", "gme-nope"),
        ("reprocess", "gme-nope"),
        ("reprocess", "gme-nope", "--dry-run"),
        ("replay", "gme-nope"),
    ],
)
def test_an_unknown_id_is_one_line_and_exit_1(cli_env, cli_ledger, args):
    store(cli_ledger, 0)
    one_line_failure(cli(cli_env, *args), "no recording matches 'gme-nope'")


@pytest.mark.parametrize(
    ("args", "starts"),
    [
        (("reprocess", "--since", "yesterday-ish"), "--since: cannot read 'yesterday-ish'"),
        (("reprocess", "--status", "failed", "--until", "soon"), "--until: cannot read 'soon'"),
        (("reprocess", "--status", "broken"), "--status: 'broken' is not one of"),
        (("reprocess", "--source", "rtmp"), "--source: 'rtmp' is not one of gme, css"),
        (("reprocess", TASK, "--from-step", "mux"), "--from-step: 'mux' is not one of fetch"),
        (("reprocess",), "name recordings"),
        (("replay", "--since", "last week"), "--since: cannot read 'last week'"),
        (("replay",), "name recordings"),
        (("status", "--state", "done"), "--state: 'done' is not one of"),
    ],
)
def test_a_bad_filter_is_one_line_and_exit_2(cli_env, cli_ledger, args, starts):
    rid = store(cli_ledger, 0).recording_id
    one_line_failure(cli(cli_env, *args), starts, code=2)
    assert cli_ledger.recording(rid).revision == 0


def never_dispatched(cli_ledger: Ledger) -> None:
    """As a ledger from before beat's settle clock may hold: callbacks whose settle task
    the broker refused at intake."""
    from storage.ledger.tables import Callback

    with cli_ledger.session() as s:
        s.execute(update(Callback).values(dispatched_at=None))


@pytest.mark.parametrize("args", [("reprocess", TASK), ("reprocess", TASK, "--wait")])
def test_an_unreachable_broker_is_one_line_and_nothing_is_claimed(cli_env, cli_ledger, args):
    rid = store(cli_ledger, 0).recording_id
    never_dispatched(cli_ledger)
    down = {**cli_env, "RECPIPE_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    one_line_failure(cli(down, *args), "broker unreachable: redis:")
    recording = cli_ledger.recording(rid)
    assert recording.revision == 0 and recording.state == "collecting"
    assert [c.dispatched_at for c in cli_ledger.callbacks()] == [None]


@pytest.mark.parametrize(
    "args", [("status",), ("status", TASK), ("reprocess", TASK), ("replay", "--undispatched")]
)
def test_an_unreachable_ledger_is_one_line(cli_env, args):
    down = {**cli_env, "RECPIPE_DATABASE_URL": f"postgresql+psycopg://u@127.0.0.1:{free_port()}/x"}
    one_line_failure(cli(down, *args), "ledger unreachable: ")


def test_an_unmigrated_ledger_is_one_line_pointing_at_migrate(cli_env, tmp_path):
    bare = {**cli_env, "RECPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    result = cli(bare, "status")
    one_line_failure(result, "ledger error: ")
    assert "recpipe migrate" in result.stderr


# -- reprocess (no worker: what is claimed and handed to the broker) -----------------


def test_reprocess_dry_run_lists_what_would_run_and_changes_nothing(cli_env, cli_ledger):
    rid = store(cli_ledger, 0).recording_id
    done = store(cli_ledger, 0, user="2").recording_id
    archived_run(cli_ledger, done)

    media = cli(cli_env, "reprocess", TASK, "--dry-run")
    assert media.returncode == 0, media.stderr
    assert f"would reprocess {rid}: revision 1: fetch, concat" in media.stdout
    assert f"would reprocess {done}: revision 2: fetch, concat" in media.stdout
    notify = cli(cli_env, "reprocess", TASK, "--from-step", "notify", "--dry-run")
    assert f"would refuse {rid}: no finished run to notify about" in notify.stdout
    assert f"would notify {done}: re-send revision 1's recording.archived" in notify.stdout
    assert "1 of 2 would run (dry run)" in notify.stdout
    assert (cli_ledger.recording(rid).revision, cli_ledger.recording(done).revision) == (0, 1)
    assert queue_length(cli_env, "media") == 0


@pytest.mark.parametrize("cli_env", ["redis", "amqp"], indirect=True)
def test_reprocess_makes_a_new_revision_and_hands_its_chain_to_the_broker(cli_env, cli_ledger):
    rid = store(cli_ledger, 0).recording_id
    first = archived_run(cli_ledger, rid)

    result = cli(cli_env, "reprocess", rid, "--from-step", "transcode")
    assert result.returncode == 0, result.stderr
    recording = cli_ledger.recording(rid)
    assert recording.revision == 2 and recording.state == "processing"
    assert recording.current_run_id != first
    run = cli_ledger.run(recording.current_run_id)
    assert run.state == "queued" and run.result == {"from_step": "transcode"}
    assert f"{rid}: queued run {run.id}, revision 2" in result.stdout
    assert queue_length(cli_env, "media") == 1

    again = cli(cli_env, "reprocess", rid)
    one_line_failure(again, "1 of 1 not reprocessed")
    assert cli_ledger.recording(rid).revision == 2
    assert f"{rid}: not reprocessed: already processing" in again.stdout


def test_reprocess_by_filter_takes_only_the_matching_recordings(cli_env, cli_ledger):
    old = store(cli_ledger, 0, now=utcnow() - timedelta(days=2)).recording_id
    failed = store(cli_ledger, 0, user="2").recording_id
    fine = store(cli_ledger, 0, user="3").recording_id
    for rid in (old, failed):  # revision 1 fails
        run_id = cli_ledger.claim(rid, now=utcnow())
        assert run_id is not None
        cli_ledger.fail_run(run_id, now=utcnow(), error="gave up")

    result = cli(cli_env, "reprocess", "--status", "failed", "--since", "1d", "--source", "gme")
    assert result.returncode == 0, result.stderr
    revisions = {rid: cli_ledger.recording(rid).revision for rid in (old, failed, fine)}
    assert revisions == {old: 1, failed: 2, fine: 0}


@pytest.mark.parametrize("cli_env", ["redis", "amqp"], indirect=True)
def test_reprocess_notify_resends_the_current_outcome_without_a_new_revision(cli_env, cli_ledger):
    rid = store(cli_ledger, 0).recording_id
    run_id = archived_run(cli_ledger, rid)

    result = cli(cli_env, "reprocess", rid, "--from-step", "notify")
    assert result.returncode == 0, result.stderr
    assert f"{rid}: re-send revision 1's recording.archived to 1 URL(s)" in result.stdout
    assert cli_ledger.recording(rid).revision == 1
    [note] = cli_ledger.notifications_for_run(run_id)
    assert note.state == "pending" and note.webhook_id == f"msg_{rid}_r1_archived"
    assert queue_length(cli_env, "light") == 1

    never = store(cli_ledger, 0, user="2").recording_id
    refused = cli(cli_env, "reprocess", never, "--from-step", "notify")
    one_line_failure(refused, "1 of 1 not reprocessed")
    assert f"{never}: not reprocessed: no finished run to notify about" in refused.stdout


# -- replay ---------------------------------------------------------------------------


def test_replay_reapplies_undispatched_callbacks_without_a_broker(cli_env, cli_ledger):
    """Replaying writes the recording's settle time again (beat's clock settles it from
    there): nothing is sent, and a broker that is down does not matter."""
    rid = store(cli_ledger, 0).recording_id
    store(cli_ledger, 1)
    store(cli_ledger, 2, event_type=1)
    never_dispatched(cli_ledger)
    before = cli_ledger.recording(rid)
    cli_env = {**cli_env, "RECPIPE_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}

    dry = cli(cli_env, "replay", "--undispatched", "--dry-run")
    assert dry.returncode == 0 and "3 callback(s) would be replayed (dry run)" in dry.stdout

    result = cli(cli_env, "replay", "--undispatched")
    assert result.returncode == 0, result.stderr
    assert "3 dispatched, 0 undispatched, 0 refused" in result.stdout
    assert all(c.dispatched_at is not None for c in cli_ledger.callbacks())
    after = cli_ledger.recording(rid)
    assert after.segments == before.segments and after.state == "collecting"
    assert after.last_event_at > before.last_event_at
    assert after.settle_due_at > before.settle_due_at

    nothing = cli(cli_env, "replay", "--undispatched")
    assert nothing.returncode == 0 and "nothing to replay" in nothing.stdout


def test_replay_by_recording_and_time_range_selects_their_callbacks(cli_env, cli_ledger):
    now = utcnow()
    store(cli_ledger, 0, now=now - timedelta(hours=5))
    store(cli_ledger, 1, now=now - timedelta(minutes=1))
    other = store(cli_ledger, 0, user="2").recording_id
    never_dispatched(cli_ledger)

    by_time = cli(cli_env, "replay", TASK, "--since", "1h", "--dry-run")
    assert by_time.stdout.count("would replay") == 2  # seq 1 of the first user, and the other
    by_recording = cli(cli_env, "replay", other)
    assert by_recording.returncode == 0, by_recording.stderr
    assert "1 dispatched" in by_recording.stdout
    assert [c.recording_id for c in cli_ledger.callbacks(undispatched=True)] == [
        c.recording_id for c in cli_ledger.callbacks() if c.recording_id != other
    ]


# -- doctor ---------------------------------------------------------------------------


def test_doctor_passes_on_a_working_setup_with_s3(cli_env, s3_endpoint, bucket):
    s3 = {
        **cli_env,
        "RECPIPE_ARCHIVE_URL": f"s3://{bucket}/archive?endpoint_url={s3_endpoint}",
        "RECPIPE_GME_SOURCE_URL": f"s3://{bucket}/cos?endpoint_url={s3_endpoint}",
    }
    result = cli(s3, "doctor")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    names = [line.split()[1].rstrip(":") for line in lines]
    assert names == [
        "configuration", "ledger", "broker", "archive", "source", "ffmpeg", "ffprobe", "transcribe"
    ]  # fmt: skip
    assert all(line.startswith("ok   ") for line in lines)
    assert "postgresql, schema" in lines[1] and "ffprobe version" in lines[-2]


def test_doctor_says_which_check_fails_one_line_each(cli_env, tmp_path, s3_endpoint):
    broken = {
        **cli_env,
        "RECPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'unmigrated.sqlite3'}",
        "RECPIPE_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "RECPIPE_ARCHIVE_URL": f"s3://no-such-bucket-recpipe/a?endpoint_url={s3_endpoint}",
        "RECPIPE_GME_SOURCE_URL": (tmp_path / "missing").as_uri(),
    }
    result = cli(broken, "doctor")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    by_name = {line.split()[1].rstrip(":"): line for line in result.stdout.splitlines()}
    assert by_name["configuration"].startswith("ok")
    assert (
        by_name["ledger"].startswith("FAIL ledger: schema at None")
        and "migrate" in by_name["ledger"]
    )
    assert by_name["broker"].startswith("FAIL broker: redis: ")
    assert by_name["archive"].startswith("FAIL archive: ")
    assert by_name["source"] == f"FAIL source: {(tmp_path / 'missing').as_uri()} is not a directory"
    assert by_name["ffmpeg"].startswith("ok")


def test_doctor_reports_a_bad_configuration_and_stops(cli_env):
    result = cli({**cli_env, "RECPIPE_ARCHIVE_URL": "ftp://x/y"}, "doctor")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "FAIL configuration: RECPIPE_ARCHIVE_URL: scheme must be one of s3, file, got 'ftp://x/y'"
    ]


# -- a newcomer's first commands: simulate, serve, status in a pipe -------------------


def _without_columns() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


@pytest.mark.parametrize("kind", ["gme", "css"])
def test_simulate_with_no_webhook_running_is_one_line(cli_env, kind):
    """`recpipe simulate gme|css` when nothing listens at --url: one line naming the URL."""
    url, files = f"http://127.0.0.1:{free_port()}", free_port()
    css = {
        "RECPIPE_CSS_CALLBACK_KEY": "cli-test-css",
        "RECPIPE_CSS_ALLOWED_HOSTS": f"127.0.0.1:{files}",
    }
    serving = ("--port", str(files)) if kind == "css" else ()
    result = cli({**cli_env, **css}, "simulate", kind, "--url", url, "--seconds", "1", *serving)
    one_line_failure(result, f"no webhook answers at {url}/callbacks/{kind}")


@pytest.mark.parametrize(
    "terminal",
    [{}, {"COLUMNS": "40"}, {"COLUMNS": "40", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}],
    ids=["pipe", "pipe-40-columns", "terminal-40-columns"],
)
def test_status_table_keeps_recording_ids_whole_in_a_pipe_at_any_width(
    cli_env, cli_ledger, terminal
):
    """Piped to a file (no tty: rich's 80 columns) or on a narrow terminal, every recording
    id and state in the table is on one line, whole, so it can be copied into the next
    command."""
    ids = [store(cli_ledger, 0, user=user).recording_id for user in ("999", "1000")]
    failed = store(cli_ledger, 0, user="1001").recording_id
    run_id = cli_ledger.claim(failed, now=utcnow(), force=True)
    assert run_id is not None
    cli_ledger.fail_run(run_id, now=utcnow(), error="fetch failed: " + "a long reason " * 8)
    result = subprocess.run(
        [sys.executable, "-m", "recpipe", "status"],
        env={**_without_columns(), **cli_env, **terminal},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for rid in [*ids, failed]:
        assert any(rid in line for line in lines), (rid, result.stdout)
    assert any(failed in line and " failed " in line for line in lines), result.stdout
    assert sum(" collecting " in line for line in lines) == 2, result.stdout


def test_serve_on_a_port_in_use_is_one_line(cli_env):
    """Another process listens on --port: one line and exit 1, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(cli_env, "serve", "--port", str(port))
    one_line_failure(result, f"cannot listen on 127.0.0.1:{port}: ")


def test_serve_with_its_internal_port_in_use_is_one_line(cli_env):
    """RECPIPE_INTERNAL_LISTEN taken by another process: one line naming it, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        internal = {**cli_env, "RECPIPE_INTERNAL_LISTEN": f"127.0.0.1:{port}"}
        result = cli(internal, "serve", "--port", str(free_port()))
    one_line_failure(result, f"cannot listen on 127.0.0.1:{port}: ")


def test_serve_refuses_broad_css_hosts_in_one_line(cli_env):
    """CSS intake with `*.myqcloud.com` (anyone can make a bucket there) does not start."""
    broad = {
        **cli_env,
        "RECPIPE_CSS_CALLBACK_KEY": "cli-test-css",
        "RECPIPE_CSS_ALLOWED_HOSTS": "*.myqcloud.com",
    }
    result = cli(broad, "serve", "--port", str(free_port()))
    one_line_failure(
        result, "configuration error: RECPIPE_CSS_ALLOWED_HOSTS: '*.myqcloud.com'", code=2
    )


def test_serve_makes_no_control_socket_outside_the_data_dir(cli_env, tmp_path):
    """Serving writes nothing outside RECPIPE_DATA_DIR: no control socket under ~ (as
    gunicorn's went to ~/.gunicorn), nothing else in HOME."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    server = subprocess.Popen(
        [sys.executable, "-m", "recpipe", "serve", "--port", str(port)],
        env={**child_env, **cli_env, "HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), what="the webhook to answer")
    finally:
        server.send_signal(signal.SIGTERM)
        _out, err = server.communicate(timeout=60)
    assert "Control socket" not in err, err
    assert list(home.iterdir()) == []


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_stop_marks_a_tasks_collecting_recordings_due_now(cli_env, cli_ledger):
    """Beat's clock looks at them within a second: nothing is sent."""
    stored = [store(cli_ledger, 0, event_type=1), store(cli_ledger, 0, event_type=1, user="1000")]
    result = cli(cli_env, "stop", TASK)
    assert result.returncode == 0, result.stderr
    for intake in stored:
        assert f"{intake.recording_id}: stopped" in result.stdout
        recording = cli_ledger.recording(intake.recording_id)
        assert recording.stopped_at is not None
        assert recording.settle_due_at <= utcnow()
    assert queue_length(cli_env, "light") == 0


def test_stop_of_an_unknown_task_is_one_line_and_exit_1(cli_env, cli_ledger):
    one_line_failure(cli(cli_env, "stop", "446946705284000999"), "no recording of GME task")
