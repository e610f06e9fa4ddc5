"""Promises that were tested only as pure units, now end to end with real processes:
`recpipe run` on the embedded defaults, finalizing at RECPIPE_MAX_WAIT_SECONDS with a SeqNo
missing, failing when nothing was uploaded, the sweep handing work to a real broker after
its messages were lost, redelivery (`--all-failed`, `--include-disabled`, `--dry-run`, the
`recpipe.redeliver` task, the sweep re-sending a lost delivery), and the archived sound of
revision 2 and of `reprocess` when the set of outputs changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import update

from storage.domain import NotificationState
from storage.ledger import utcnow
from storage.ledger.tables import Notification
from tests.support.media import decode, dominant_frequency, make_tone
from tests.support.recordings import (
    BIZ,
    SECRET,
    TONES,
    archive_keys,
    callbacks_of,
    check_sound,
    make_env,
    manifest,
    migrate,
    recording,
    sign,
    upload,
)
from tests.support.services import free_port
from tests.support.stack import Receiver, Stack, parse_body, stack_env
from tests.support.waits import wait_for

CLI = [sys.executable, "-m", "recpipe"]


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("tones")
    return [make_tone(folder / f"{seq}.mp3", hz, 1.0) for seq, hz in enumerate(TONES)]


def test_recpipe_run_on_the_embedded_defaults_archives_a_recording(tones, tmp_path: Path):
    """`recpipe run` alone (SQLite, the embedded broker, a local archive): a worker and beat
    on the embedded broker take a recording from callbacks to its archived sound."""
    data = tmp_path / "var"
    rec = recording(200, segments=3)
    for key, path in zip(rec.keys, tones, strict=True):
        (data / "source" / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / "source" / key)
    port = free_port()
    env = {
        "RECPIPE_DATA_DIR": str(data),
        "RECPIPE_DATABASE_URL": f"sqlite:///{data / 'ledger.sqlite3'}",
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_SETTLE_SECONDS": "2",
        "RECPIPE_SWEEP_SECONDS": "1",
    }
    stack = Stack(env, tmp_path / "logs")
    stack.port, stack.url = port, f"http://127.0.0.1:{port}"
    try:
        stack._spawn("run", [*CLI, "run", "--port", str(port), "--concurrency", "1"])
        wait_for(lambda: requests.get(f"{stack.url}/healthz", timeout=1).ok, what="recpipe run")
        assert [stack.post_gme(b, sign(b)) for b in callbacks_of(rec)] == [200] * 9
        done = stack.wait_for_state(rec.id, ("archived", "failed"), timeout=120)
        assert done.state == "archived", (done.error, stack.log_text())
        archived = data / "archive" / "gme" / str(BIZ) / rec.id
        assert sorted(p.name for p in archived.iterdir()) == [
            f"{rec.id}.m4a", f"{rec.id}.peaks.json", "manifest.json", "timeline.json"
        ]  # fmt: skip
        samples, start = decode(archived / f"{rec.id}.m4a"), 0.0
        for hz in TONES:
            assert abs(dominant_frequency(samples, start + 0.5) - hz) < 15
            start += 1.0
        assert json.loads((archived / "manifest.json").read_text())["revision"] == 1
    finally:
        stack.stop()


def test_max_wait_and_nothing_uploaded_through_the_sweep_after_the_broker_lost_everything(
    redis_url, pg_url, s3_endpoint, bucket, s3_client, receiver, tones, tmp_path: Path
):
    """Callbacks are stored while no worker runs, and the broker restarts empty: nothing of
    them was in it (the webhook sends nothing; beat's settle clock hands each recording out
    from the ledger once it is due). One never got SeqNo 1 uploaded: it is archived at
    RECPIPE_MAX_WAIT_SECONDS with 1 missing and the others' tones in order. One had nothing
    uploaded: it fails, saying so."""
    import redis

    gap = recording(210, segments=3)
    empty = recording(211, segments=2)
    for seq in (0, 2):
        s3_client.put_object(
            Bucket=bucket, Key=f"cos/{gap.keys[seq]}", Body=tones[seq].read_bytes()
        )
    env = make_env(
        tmp_path, pg_url, redis_url, s3_endpoint, bucket,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_MAX_WAIT_SECONDS="8",
    )  # fmt: skip
    migrate(pg_url)
    stack = Stack(env, tmp_path / "logs")
    try:
        stack.start_webhook()
        told = [
            gap.callback(ev, seq) for seq in range(3) for ev in (1, 2, 3) if (ev, seq) != (3, 1)
        ]
        told += [empty.callback(1, 0), empty.callback(1, 1), empty.callback(2, 1)]
        assert [stack.post_gme(b, sign(b)) for b in told] == [200] * len(told)
        client = redis.Redis.from_url(redis_url)
        assert client.dbsize() == 0, "the webhook handed something to the broker"
        client.flushdb()  # the broker restarts empty
        client.close()

        stack.start_worker("worker", concurrency=2, beat=True)
        states = {
            rec.id: stack.wait_for_state(rec.id, ("archived", "failed"), timeout=90).state
            for rec in (gap, empty)
        }
        assert states == {gap.id: "archived", empty.id: "failed"}, stack.log_text()
        assert "recording.settled" in (tmp_path / "logs" / "worker.log").read_text()

        found = manifest(s3_client, bucket, gap)
        assert found["missing"] == [1] and [s["seq_no"] for s in found["sources"]] == [0, 2]
        local = tmp_path / "gap.m4a"
        s3_client.download_file(bucket, f"archive/gme/{BIZ}/{gap.id}/{gap.id}.m4a", str(local))
        samples = decode(local)
        # SeqNo 1 is left out (its place in time is not kept: segments are joined end to
        # end); the two that came are there, in order.
        assert abs(len(samples) / 16000 - 2.0) < 0.3
        assert abs(dominant_frequency(samples, 0.5) - TONES[0]) < 15
        assert abs(dominant_frequency(samples, 1.5) - TONES[2]) < 15
        failed = stack.ledger.recording(empty.id)
        assert failed.error == "no segment was uploaded before the maximum wait"

        wait_for(lambda: len(receiver.requests) >= 2, timeout=30, what="notifications")
        notes = {parse_body(r)["recording"]["id"]: parse_body(r) for r in receiver.requests}
        assert notes[gap.id]["type"] == "recording.archived"
        assert notes[gap.id]["segments"] == {"included": [0, 2], "missing": [1]}
        assert notes[empty.id]["type"] == "recording.failed"
    finally:
        stack.stop()


def test_redeliver_all_failed_include_disabled_dry_run_the_task_and_the_sweep(
    redis_url, pg_url, s3_endpoint, bucket, s3_client, tones, tmp_path: Path
):
    """Two recordings, one endpoint down past its attempts (failed), one answering 410
    (disabled): `--dry-run` lists and sends nothing; `--all-failed` re-sends the failed ones
    of both; the `recpipe.redeliver` task through the broker with include_disabled re-sends
    one disabled; a pending delivery whose task was lost is re-sent by the sweep."""
    down, gone = Receiver(fail_first=99), Receiver(answer=410)
    recs = [recording(220, segments=2), recording(221, segments=2)]
    for rec in recs:
        upload(s3_client, bucket, rec, tones)
    env = make_env(
        tmp_path, pg_url, redis_url, s3_endpoint, bucket,
        RECPIPE_NOTIFY_URLS=f"{down.url},{gone.url}", RECPIPE_NOTIFY_MAX_ATTEMPTS="2",
    )  # fmt: skip
    migrate(pg_url)
    stack = Stack(env, tmp_path / "logs")

    def cli(*args: str) -> str:
        return subprocess.run(
            [*CLI, *args], env=stack.env, capture_output=True, text=True, check=True, timeout=60
        ).stdout

    def notes(url: str):
        found = []
        for rec in recs:
            run_id = stack.ledger.recording(rec.id).current_run_id
            found += [n for n in stack.ledger.notifications_for_run(run_id) if n.url == url]
        return found

    try:
        stack.start_webhook()
        stack.start_worker("worker", concurrency=2, beat=True)
        for rec in recs:
            assert [stack.post_gme(b, sign(b)) for b in callbacks_of(rec)] == [200] * 6
        for rec in recs:
            assert stack.wait_for_state(rec.id, ("archived", "failed")).state == "archived"
        wait_for(
            lambda: (
                [n.state for n in notes(down.url)] == ["failed"] * 2
                and [n.state for n in notes(gone.url)] == ["disabled"] * 2
            ),
            timeout=60,
            what="failed and disabled deliveries",
        )
        sent = (len(down.requests), len(gone.requests))
        assert sent == (4, 2)

        listed = cli("redeliver", "--all-failed", "--dry-run")
        assert sorted(line.split(":")[0] for line in listed.splitlines()) == sorted(
            r.id for r in recs
        )
        assert down.url in listed and gone.url not in listed
        both = cli("redeliver", "--all-failed", "--include-disabled", "--dry-run")
        assert gone.url in both and down.url in both
        time.sleep(2)
        assert (len(down.requests), len(gone.requests)) == sent, "a dry run sent something"

        down.fail_first = 0
        cli("redeliver", "--all-failed")
        wait_for(lambda: [n.state for n in notes(down.url)] == ["delivered"] * 2, timeout=30,
                 what="the failed deliveries re-sent")  # fmt: skip
        assert len(gone.requests) == 2, "a disabled URL was re-sent without --include-disabled"
        ids = {r.headers["webhook-id"] for r in down.requests}
        assert ids == {f"msg_{rec.id}_r1_archived" for rec in recs}

        gone.answer = 204
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "tasks", "call", "recpipe.redeliver",
             "--args", json.dumps([recs[0].id, True])],
            env=stack.env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_for(lambda: len(gone.requests) == 3, timeout=30, what="the task's redelivery")
        assert gone.requests[-1].headers["webhook-id"] == f"msg_{recs[0].id}_r1_archived"
        assert [n.state for n in notes(gone.url)] == ["delivered", "disabled"]

        # A delivery left pending long ago, its task lost: the sweep sends it again.
        [lost] = [n for n in notes(gone.url) if n.state == "disabled"]
        with stack.ledger.session() as s:
            s.execute(
                update(Notification)
                .where(Notification.id == lost.id)
                .values(state=NotificationState.PENDING, updated_at=utcnow() - timedelta(hours=2))
            )
        wait_for(lambda: len(gone.requests) == 4, timeout=30, what="the sweep's redelivery")
        assert gone.requests[-1].headers["webhook-id"] == f"msg_{recs[1].id}_r1_archived"
        wait_for(
            lambda: stack.ledger.notification(lost.id).state == NotificationState.DELIVERED,
            timeout=30,
            what="the swept delivery recorded",
        )
    finally:
        stack.stop()
        down.close()
        gone.close()


def test_revision_2_and_reprocess_with_fewer_outputs_archive_the_right_sound(
    redis_url, pg_url, s3_endpoint, bucket, s3_client, receiver, tones, tmp_path: Path
):
    """A segment uploaded after the archive makes revision 2, whose sound has all three
    tones in order; `reprocess` after the outputs changed (m4a+mp3 to m4a) makes revision 3,
    removes the mp3 an older revision left, and its m4a still sounds right."""
    rec = recording(230, segments=3)
    upload(s3_client, bucket, rec, tones[:2])  # SeqNo 2 is uploaded after revision 1
    env = make_env(
        tmp_path, pg_url, redis_url, s3_endpoint, bucket,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_AUDIO_FORMATS="m4a,mp3",
    )  # fmt: skip
    migrate(pg_url)
    stack = Stack(env, tmp_path / "logs")
    prefix = f"archive/gme/{BIZ}/{rec.id}/"
    try:
        stack.start_webhook()
        stack.start_worker("worker", concurrency=2, beat=True)
        first = [rec.callback(ev, seq) for seq in range(2) for ev in (1, 2, 3)]
        assert [stack.post_gme(b, sign(b)) for b in first] == [200] * 6
        wait_for(lambda: stack.ledger.recording(rec.id).state == "archived", timeout=90,
                 what="revision 1")  # fmt: skip
        assert manifest(s3_client, bucket, rec)["missing"] == []
        assert [s["seq_no"] for s in manifest(s3_client, bucket, rec)["sources"]] == [0, 1]
        body = tones[2].read_bytes()
        s3_client.put_object(Bucket=bucket, Key=f"cos/{rec.keys[2]}", Body=body)
        late = [rec.callback(ev, 2) for ev in (1, 2, 3)]
        assert [stack.post_gme(b, sign(b)) for b in late] == [200] * 3
        wait_for(
            lambda: (r := stack.ledger.recording(rec.id)).revision == 2 and r.state == "archived",
            timeout=90,
            what="revision 2",
        )
        assert manifest(s3_client, bucket, rec)["revision"] == 2
        check_sound(s3_client, bucket, rec, tones, tmp_path)
        assert archive_keys(s3_client, bucket) == [
            f"{prefix}{rec.id}.m4a", f"{prefix}{rec.id}.mp3", f"{prefix}{rec.id}.peaks.json",
            f"{prefix}manifest.json", f"{prefix}timeline.json",
        ]  # fmt: skip

        stack.kill("worker", sig=15)
        stack.env["RECPIPE_AUDIO_FORMATS"] = "m4a"
        stack.start_worker("worker", concurrency=2, beat=True)
        subprocess.run(
            [*CLI, "reprocess", rec.id, "--wait", "--timeout", "90"],
            env=stack.env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        assert [(r.revision, r.state) for r in stack.ledger.runs_for(rec.id)][-1] == (3, "archived")
        assert archive_keys(s3_client, bucket) == [
            f"{prefix}{rec.id}.m4a",
            f"{prefix}{rec.id}.peaks.json",
            f"{prefix}manifest.json",
            f"{prefix}timeline.json",
        ]
        found = manifest(s3_client, bucket, rec)
        assert found["revision"] == 3 and [o["format"] for o in found["outputs"]] == ["m4a"]
        check_sound(s3_client, bucket, rec, tones, tmp_path)
    finally:
        stack.stop()


def test_css_bridging_file_when_one_side_is_already_archived(
    redis_url, pg_url, s3_endpoint, bucket, s3_client, receiver, tmp_path: Path
):
    """A CSS file that bridges two recordings of one stream, the first already archived:
    a second one never processed is folded into the first (revision 2 holds all three
    files, their tones in order); a second one already archived keeps its own identity and
    archive, and only the first gets a revision 2 with the bridging file."""
    from tests.support.css import KEY, T0, archived_file, callback
    from tests.support.media import make_video
    from tests.support.stack import FileServer

    www = tmp_path / "www"
    www.mkdir()
    tones_hz = {"a": 440.0, "bridge": 660.0, "b": 880.0}
    for name, hz in tones_hz.items():
        make_video(www / f"{name}.mp4", hz, 2.0)
    server = FileServer(www)
    env = stack_env(
        tmp_path, pg_url, redis_url, s3_endpoint, bucket,
        RECPIPE_CSS_CALLBACK_KEY=KEY, RECPIPE_CSS_ALLOWED_HOSTS=server.allowed,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_SETTLE_SECONDS="3",
        RECPIPE_VIDEO_FORMATS="m4a",
    )  # fmt: skip
    migrate(pg_url)
    stack = Stack(env, tmp_path / "logs")

    def post(stream: str, name: str, start: int, end: int) -> str:
        file_id = f"{stream}-{name}"
        body = callback(stream, file_id, "mp4", server.url(f"{name}.mp4"), T0 + start, T0 + end)
        assert stack.post_css(body) == 200
        [rid] = stack.ledger.find_recordings(file_id)
        return rid

    def archived(rid: str, revision: int) -> None:
        wait_for(
            lambda: (
                (r := stack.ledger.recording(rid)).revision == revision and r.state == "archived"
            ),
            timeout=90,
            what=f"{rid} revision {revision}",
        )

    def sound(rid: str, names: list[str]) -> None:
        run = stack.ledger.run(stack.ledger.recording(rid).current_run_id)
        [m4a] = run.result["artifacts"]
        samples = decode(archived_file(s3_client, bucket, m4a, tmp_path / f"{rid}.m4a"))
        assert abs(len(samples) / 16000 - 2.0 * len(names)) < 0.5
        for i, name in enumerate(names):
            assert abs(dominant_frequency(samples, 2.0 * i + 1.0) - tones_hz[name]) < 15, name

    try:
        stack.start_webhook()
        stack.start_worker("worker", concurrency=2, beat=True)
        # One side archived, the other never processed: folded in.
        first = post("one", "a", 0, 2)
        archived(first, 1)
        second = post("one", "b", 10, 12)
        assert second != first
        assert post("one", "bridge", 4, 7) == first
        archived(first, 2)
        assert stack.ledger.recording(second) is None
        assert stack.ledger.find_recordings("one-b") == [first]
        run = stack.ledger.run(stack.ledger.recording(first).current_run_id)
        assert run.result["css"]["file_ids"] == ["one-a", "one-bridge", "one-b"]
        sound(first, ["a", "bridge", "b"])

        # Both sides archived: the later one keeps its identity and archive.
        left, right = post("two", "a", 0, 2), post("two", "b", 10, 12)
        archived(left, 1)
        archived(right, 1)
        assert post("two", "bridge", 4, 7) == left
        archived(left, 2)
        assert stack.ledger.recording(right).revision == 1
        assert stack.ledger.find_recordings("two-b") == [right]
        sound(left, ["a", "bridge"])
        sound(right, ["b"])
        wait_for(lambda: len(receiver.requests) >= 5, timeout=30, what="notifications")
        revisions = sorted(
            (parse_body(r)["recording"]["id"], parse_body(r)["recording"]["revision"])
            for r in receiver.requests
        )
        assert revisions == sorted([(first, 1), (first, 2), (left, 1), (left, 2), (right, 1)])
    finally:
        stack.stop()
        server.close()
