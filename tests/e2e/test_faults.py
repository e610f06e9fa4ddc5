"""Faults, round two (issue 16), injected into recpipe running as real processes: the ledger
stopped mid-burst, the object store cut mid-chain or for good. Each outcome is checked by
content: the archived objects and their sound, the ledger, the notifications."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from storage.ledger import utcnow
from tests.support.faults import PostgresServer, TcpProxy, wait_ready
from tests.support.media import make_tone
from tests.support.recordings import (
    BIZ,
    TONES,
    Recording,
    archive_keys,
    callbacks_of,
    check_archive,
    check_sound,
    make_env,
    manifest,
    migrate,
    recording,
    sign,
    upload,
    wait_all,
)
from tests.support.required import missing
from tests.support.stack import Stack, parse_body, stack_env
from tests.support.waits import wait_for


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("tones")
    return [make_tone(folder / f"{seq}.mp3", hz, 1.0) for seq, hz in enumerate(TONES)]


@pytest.fixture
def own_postgres():
    server = PostgresServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def s3_proxy(s3_endpoint: str):
    """The S3 server behind a proxy the test can cut."""
    parts = urlsplit(s3_endpoint)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 80)
    yield proxy
    proxy.close()


def current_run(stack: Stack, rec: Recording):
    current = stack.ledger.recording(rec.id)
    return stack.ledger.run(current.current_run_id) if current and current.current_run_id else None


def test_ledger_stopped_mid_burst_refuses_with_503_and_everything_recovers_without_restart(
    own_postgres: PostgresServer, redis_url, s3_endpoint, bucket, s3_client, receiver, tones,
    tmp_path: Path,
):  # fmt: skip
    """PostgreSQL stops in the middle of a burst of callbacks while a chain is waiting for a
    media worker: every callback is answered 200 (and stored) or 503, never 500; the chain
    dispatched before the outage and started during it runs within a minute of the ledger's
    return; the refused callbacks, sent again, are stored once; webhook, workers and beat go
    on without a restart, with no stale connection left in their pools."""
    own_postgres._run("createdb", "-h", "127.0.0.1", "-p", str(own_postgres.port), "recpipe")
    database_url = own_postgres.url.rsplit("/", 1)[0] + "/recpipe"
    migrate(database_url)
    waiting = recording(10, segments=2)
    burst = [recording(11 + i, segments=2 + i % 2) for i in range(6)]
    after = recording(30, segments=2)
    for rec in [waiting, *burst, after]:
        upload(s3_client, bucket, rec, tones)
    env = make_env(
        tmp_path, database_url, redis_url, s3_endpoint, bucket,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_STUCK_AFTER_SECONDS="900",
    )  # fmt: skip
    stack = Stack(env, tmp_path / "logs")
    try:
        stack.start_webhook()
        stack.start_worker("light", concurrency=2, beat=True, queues="light")

        # A chain dispatched, its message waiting for a media worker.
        assert [stack.post_gme(b, sign(b)) for b in callbacks_of(waiting)] == [200] * 6
        wait_for(
            lambda: (run := current_run(stack, waiting)) is not None and run.state == "queued",
            timeout=30,
            what="the waiting recording's run to be dispatched",
        )

        bodies = [b for rec in burst for b in callbacks_of(rec)]
        answers: dict[bytes, int] = {}

        stopper = threading.Thread(target=own_postgres.stop)

        def post(body: bytes) -> None:
            answers[body] = stack.post_gme(body, sign(body))
            if len(answers) == len(bodies) // 3:  # a third in: the ledger goes away
                stopper.start()
            time.sleep(0.1)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post, bodies))
        stopper.join()
        # The media worker starts while the ledger is down: it takes the waiting chain.
        stack.start_worker("media", concurrency=2, beat=False, queues="media")
        statuses = Counter(answers.values())
        assert set(statuses) <= {200, 503} and statuses[503] > 0, statuses
        more = [stack.post_gme(b, sign(b)) for b in callbacks_of(after)]
        assert set(more) == {503}, more
        time.sleep(8)
        assert stack.processes["media"].poll() is None
        own_postgres.start()
        back = utcnow()

        wait_ready(stack.internal_url)
        # The vendor sends the refused ones again: every one is stored now, at once.
        refused = [b for b, status in answers.items() if status == 503] + callbacks_of(after)
        with ThreadPoolExecutor(8) as pool:
            again = list(pool.map(lambda b: stack.post_gme(b, sign(b)), refused))
        assert again == [200] * len(refused)

        ids = [rec.id for rec in [waiting, *burst, after]]
        states = wait_all(stack, ids, timeout=120)
        assert Counter(states.values()) == {"archived": len(ids)}, stack.log_text()
        [run] = stack.ledger.runs_for(waiting.id)
        assert run.finished_at is not None
        assert run.finished_at > back, stack.log_text()  # finished once the ledger was back
        for rec in [waiting, *burst, after]:
            assert [r.revision for r in stack.ledger.runs_for(rec.id)] == [1]
            stored = stack.ledger.callbacks(recording_ids=[rec.id])
            told = Counter((json.loads(c.body)["EventType"], json.loads(c.body)["Detail"]["SeqNo"])
                           for c in stored)  # fmt: skip
            assert told == Counter((ev, seq) for seq in range(len(rec.keys)) for ev in (1, 2, 3))
        check_archive(s3_client, bucket, [waiting, *burst, after])
        check_sound(s3_client, bucket, waiting, tones, tmp_path)

        wait_for(lambda: len(receiver.requests) >= len(ids), timeout=60, what="notifications")
        time.sleep(2)
        got = [parse_body(r) for r in receiver.requests]
        assert sorted(b["recording"]["id"] for b in got) == sorted(ids)
        assert {b["type"] for b in got} == {"recording.archived"}
        assert all(p.poll() is None for p in stack.processes.values()), "a process died"
        # Nothing failed on a connection the outage left behind once the ledger was back:
        # the chain of the recording whose callbacks were all stored after it ran at once.
        [late] = stack.ledger.runs_for(after.id)
        assert late.attempts == 1
        media_log = (tmp_path / "logs" / "media.log").read_text()
        retried = [line for line in media_log.splitlines() if late.id in line and "retry" in line]
        assert retried == []
        # Beat led throughout: the outage neither stopped it nor made it stand by.
        light_log = (tmp_path / "logs" / "light.log").read_text()
        assert "beat.leading" in light_log and "beat.standby" not in light_log
    finally:
        stack.stop()


def test_object_store_cut_mid_chain_is_retried_by_time_and_archived_once(
    s3_proxy: TcpProxy, redis_url, pg_url, bucket, s3_client, receiver, tones, tmp_path: Path
):
    """The S3 server is cut for 40 s while one run transcodes (so its archive fails) and
    another is fetching: both runs retry with backoff, by time rather than a handful of
    tries, and reach the archive once, complete, with nothing partial left."""
    long_files = [make_tone(tmp_path / f"l{seq}.mp3", hz, 10.0) for seq, hz in enumerate(TONES)]
    archiving = recording(40, segments=3)
    fetching = recording(41, segments=2)
    upload(s3_client, bucket, archiving, long_files)
    upload(s3_client, bucket, fetching, tones)
    env = make_env(
        tmp_path, pg_url, redis_url, s3_proxy.endpoint, bucket,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_AUDIO_FORMATS="m4a,mp3,opus",
    )  # fmt: skip
    migrate(pg_url)
    stack = Stack(env, tmp_path / "logs")
    try:
        stack.start_webhook()
        stack.start_worker("worker", concurrency=2, beat=True)
        assert [stack.post_gme(b, sign(b)) for b in callbacks_of(archiving)] == [200] * 9

        def transcoding():
            run = current_run(stack, archiving)
            return run is not None and run.steps and run.steps[-1]["step"] == "transcode"

        wait_for(transcoding, timeout=60, interval=0.05, what="the transcode step")
        s3_proxy.cut()
        assert [stack.post_gme(b, sign(b)) for b in callbacks_of(fetching)] == [200] * 6
        time.sleep(40)
        for rec in (archiving, fetching):
            assert stack.ledger.recording(rec.id).state == "processing", stack.log_text()
        assert archive_keys(s3_client, bucket) == [], "partial objects while the store is down"
        s3_proxy.restore()

        ids = [archiving.id, fetching.id]
        states = wait_all(stack, ids, timeout=120)
        assert states == {rid: "archived" for rid in ids}, stack.log_text()
        check_archive(s3_client, bucket, [archiving, fetching], formats=("m4a", "mp3", "opus"))
        check_sound(s3_client, bucket, fetching, tones, tmp_path)
        check_sound(s3_client, bucket, archiving, long_files, tmp_path)
        for rec, step in ((archiving, "archive"), (fetching, "fetch")):
            [run] = stack.ledger.runs_for(rec.id)
            failed = [s for s in run.steps if s["step"] == step and s.get("ok") is False]
            assert failed and "object store unavailable" in failed[0]["error"], run.steps
            assert [s["step"] for s in run.steps if s.get("ok")][-1] == "archive"
        # Retried by time, not by a handful of tries (the old budget was four attempts).
        assert stack.ledger.runs_for(archiving.id)[0].attempts >= 5

        wait_for(lambda: len(receiver.requests) >= 2, timeout=60, what="notifications")
        time.sleep(2)
        got = [parse_body(r) for r in receiver.requests]
        assert sorted(b["recording"]["id"] for b in got) == sorted(ids)
        assert {b["type"] for b in got} == {"recording.archived"}
    finally:
        stack.stop()


def test_object_store_that_stays_down_fails_the_run_with_the_reason_and_reprocess_repairs_it(
    s3_proxy: TcpProxy, redis_url, pg_url, bucket, s3_client, receiver, tones, tmp_path: Path
):
    """Past RECPIPE_STORE_RETRY_SECONDS the run fails, saying the object store is
    unavailable, in the ledger and in the notification; once the store is back
    `recpipe reprocess` archives revision 2 with the right sound."""
    rec = recording(50, segments=3)
    upload(s3_client, bucket, rec, tones)
    env = make_env(
        tmp_path, pg_url, redis_url, s3_proxy.endpoint, bucket,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_STORE_RETRY_SECONDS="8",
    )  # fmt: skip
    migrate(pg_url)
    stack = Stack(env, tmp_path / "logs")
    try:
        stack.start_webhook()
        stack.start_worker("worker", concurrency=2, beat=True)
        s3_proxy.cut()
        assert [stack.post_gme(b, sign(b)) for b in callbacks_of(rec)] == [200] * 9
        failed = stack.wait_for_state(rec.id, ("archived", "failed"), timeout=90)
        assert failed.state == "failed", stack.log_text()
        assert "object store unavailable" in (failed.error or ""), failed.error
        assert "gave up after" in failed.error
        wait_for(lambda: receiver.requests, timeout=60, what="the failure notification")
        [note] = [parse_body(r) for r in receiver.requests]
        assert note["type"] == "recording.failed" and "object store unavailable" in note["error"]
        assert archive_keys(s3_client, bucket) == []

        s3_proxy.restore()
        subprocess.run(
            [sys.executable, "-m", "recpipe", "reprocess", rec.id, "--wait", "--timeout", "90"],
            env=stack.env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        assert stack.ledger.recording(rec.id).state == "archived"
        assert [(r.revision, r.state) for r in stack.ledger.runs_for(rec.id)] == [
            (1, "failed"),
            (2, "archived"),
        ]
        check_archive(s3_client, bucket, [rec])
        assert manifest(s3_client, bucket, rec)["revision"] == 2
        check_sound(s3_client, bucket, rec, tones, tmp_path)
        wait_for(lambda: len(receiver.requests) >= 2, timeout=60, what="the archived notice")
        assert parse_body(receiver.requests[-1])["type"] == "recording.archived"
    finally:
        stack.stop()


def test_a_second_beat_stays_idle_saying_so_and_takes_over_when_the_first_dies(
    redis_url, pg_url, s3_endpoint, bucket, s3_client, receiver, tones, tmp_path: Path
):
    """Two beats by mistake: the second finds the ledger's lease held, logs `beat.standby`
    and sends nothing; recordings are archived and notified once; when the first beat is
    killed the second takes the lease and sends the sweeps."""
    rec = recording(60, segments=2)
    upload(s3_client, bucket, rec, tones)
    env = make_env(
        tmp_path, pg_url, redis_url, s3_endpoint, bucket, RECPIPE_NOTIFY_URLS=receiver.url
    )
    migrate(pg_url)
    stack = Stack(env, tmp_path / "logs")
    logs = tmp_path / "logs"

    def logged(name: str, event: str) -> list[dict]:
        lines = (logs / f"{name}.log").read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if event in line and line.startswith("{")]

    try:
        stack.start_webhook()
        stack.start_worker("worker", concurrency=2, beat=False)
        stack.start_beat("beat1")
        wait_for(lambda: logged("beat1", "beat.leading"), timeout=30, what="beat1 to lead")
        stack.start_beat("beat2")
        [standby] = wait_for(lambda: logged("beat2", "beat.standby"), timeout=30, what="standby")
        assert standby["leader"] == logged("beat1", "beat.leading")[0]["holder"]

        assert [stack.post_gme(b, sign(b)) for b in callbacks_of(rec)] == [200] * 6
        assert stack.wait_for_state(rec.id, ("archived", "failed")).state == "archived"
        wait_for(lambda: receiver.requests, timeout=30, what="the notification")
        time.sleep(3)
        assert len(receiver.requests) == 1
        assert [r.revision for r in stack.ledger.runs_for(rec.id)] == [1]
        assert logged("beat1", "Sending due task")
        assert logged("beat2", "Sending due task") == [], "the standby beat sent a task"

        stack.kill("beat1")
        wait_for(lambda: logged("beat2", "beat.leading"), timeout=40, what="beat2 to take over")
        wait_for(lambda: logged("beat2", "Sending due task"), timeout=10, what="beat2's sweeps")
    finally:
        stack.stop()


def test_worker_killed_mid_archive_leaves_one_set_of_objects_matching_the_manifest(
    s3_proxy: TcpProxy, s3_endpoint, redis_url, pg_url, bucket, s3_client, receiver,
    tmp_path: Path,
):  # fmt: skip
    """The archive is slowed so the worker can be SIGKILLed after some objects were written
    and before the manifest: the attempt that takes over leaves exactly one set of objects,
    and the manifest's sizes and checksums are those of the objects in the store."""
    files = [make_tone(tmp_path / f"k{seq}.mp3", hz, 20.0) for seq, hz in enumerate(TONES)]
    rec = recording(70, segments=3)
    upload(s3_client, bucket, rec, files)
    formats = ("m4a", "mp3", "opus", "wav", "flac")
    env = make_env(
        tmp_path, pg_url, redis_url, s3_endpoint, bucket,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_AUDIO_FORMATS=",".join(formats),
        RECPIPE_ARCHIVE_URL=f"s3://{bucket}/archive?endpoint_url={s3_proxy.endpoint}",
        RECPIPE_STUCK_AFTER_SECONDS="10",
    )  # fmt: skip
    migrate(pg_url)
    s3_proxy.rate = 1_500_000  # bytes a second: the archive step takes several seconds
    stack = Stack(env, tmp_path / "logs")
    prefix = f"archive/gme/{BIZ}/{rec.id}/"
    try:
        stack.start_webhook()
        stack.start_worker("worker", concurrency=1, beat=True)
        assert [stack.post_gme(b, sign(b)) for b in callbacks_of(rec)] == [200] * 9

        def partly_archived():
            names = [k.removeprefix(prefix) for k in archive_keys(s3_client, bucket)]
            return names if names and "manifest.json" not in names else None

        written = wait_for(partly_archived, timeout=120, interval=0.05, what="some objects")
        stack.kill("worker")
        names = [k.removeprefix(prefix) for k in archive_keys(s3_client, bucket)]
        assert "manifest.json" not in names and len(names) < len(formats), names
        killed = current_run(stack, rec)
        assert killed.state == "running" and killed.steps[-1]["step"] == "archive"

        s3_proxy.rate = None
        stack.start_worker("worker2", concurrency=1, beat=True)
        assert wait_all(stack, [rec.id], timeout=120) == {rec.id: "archived"}, stack.log_text()
        [run] = stack.ledger.runs_for(rec.id)
        assert (run.revision, run.attempts) == (1, 2), written
        check_archive(s3_client, bucket, [rec], formats=formats)
        found = manifest(s3_client, bucket, rec)
        assert found["run_id"] == run.id and found["revision"] == 1
        for output in found["outputs"]:
            body = s3_client.get_object(Bucket=bucket, Key=f"archive/{output['key']}")["Body"]
            data = body.read()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (
                output["bytes"],
                output["sha256"],
            ), output["key"]
        check_sound(s3_client, bucket, rec, files, tmp_path)
        wait_for(lambda: receiver.requests, timeout=30, what="the notification")
        time.sleep(2)
        assert [parse_body(r)["type"] for r in receiver.requests] == ["recording.archived"]
    finally:
        stack.stop()


@pytest.fixture
def small_scratch(tmp_path: Path):
    """A 1 MiB tmpfs as scratch disk (root only: tests in CI run as root)."""
    import os

    if os.geteuid() != 0:
        missing("root, to mount a tmpfs")
    mount = tmp_path / "scratch"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_scratch_disk_full_fails_the_recording_with_the_reason_and_the_worker_serves_others(
    small_scratch: Path, s3_endpoint, redis_url, pg_url, bucket, s3_client, receiver, tones,
    tmp_path: Path,
):  # fmt: skip
    """A recording too big for the scratch disk fails, saying the disk is full; the worker
    goes on to archive a small one, and the scratch disk is left empty."""
    big_files = [make_tone(tmp_path / f"b{seq}.mp3", hz, 30.0) for seq, hz in enumerate(TONES)]
    big, small = recording(80, segments=3), recording(81, segments=2)
    upload(s3_client, bucket, big, big_files)
    upload(s3_client, bucket, small, tones)
    env = make_env(
        tmp_path, pg_url, redis_url, s3_endpoint, bucket,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_SCRATCH_DIR=str(small_scratch),
        RECPIPE_STORE_RETRY_SECONDS="6", RECPIPE_AUDIO_FORMATS="m4a,wav",
    )  # fmt: skip
    migrate(pg_url)
    stack = Stack(env, tmp_path / "logs")
    try:
        stack.start_webhook()
        stack.start_worker("worker", concurrency=1, beat=True)
        assert [stack.post_gme(b, sign(b)) for b in callbacks_of(big)] == [200] * 9
        failed = stack.wait_for_state(big.id, ("archived", "failed"), timeout=120)
        assert failed.state == "failed", stack.log_text()
        assert "No space left on device" in (failed.error or ""), failed.error
        assert "gave up after" in failed.error and "scratch disk full" in failed.error
        assert [stack.post_gme(b, sign(b)) for b in callbacks_of(small)] == [200] * 6
        done = stack.wait_for_state(small.id, ("archived", "failed"), timeout=60)
        assert done.state == "archived", (done.error, stack.log_text())
        check_sound(s3_client, bucket, small, tones, tmp_path)
        assert list(small_scratch.iterdir()) == []
        assert archive_keys(s3_client, bucket) == sorted(
            f"archive/gme/{BIZ}/{small.id}/{name}"
            for name in (
                f"{small.id}.m4a",
                f"{small.id}.peaks.json",
                f"{small.id}.wav",
                "manifest.json",
                "timeline.json",
            )
        )
        wait_for(lambda: len(receiver.requests) >= 2, timeout=30, what="notifications")
        notes = {parse_body(r)["recording"]["id"]: parse_body(r) for r in receiver.requests}
        assert notes[big.id]["type"] == "recording.failed"
        assert "No space left on device" in notes[big.id]["error"]
        assert stack.processes["worker"].poll() is None
    finally:
        stack.stop()


def test_css_source_that_never_ends_fails_at_its_time_bound_with_the_reason(
    redis_url, pg_url, s3_endpoint, bucket, receiver, tmp_path: Path
):
    """A CSS file served as a trickle of bytes (each well within the read timeout) and a
    live HLS playlist that keeps growing: each recording fails at
    RECPIPE_CSS_FETCH_MAX_SECONDS with that reason in the ledger and the notification, and
    the worker stops heart-beating for them."""
    from tests.support.css import KEY, T0, callback
    from tests.support.hostile import Hostile

    hostile = Hostile()
    env = stack_env(
        tmp_path, pg_url, redis_url, s3_endpoint, bucket,
        RECPIPE_CSS_CALLBACK_KEY=KEY, RECPIPE_CSS_ALLOWED_HOSTS=f"127.0.0.1:{hostile.port}",
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_SETTLE_SECONDS="1",
        RECPIPE_CSS_FETCH_MAX_SECONDS="3",
    )  # fmt: skip
    migrate(pg_url)
    stack = Stack(env, tmp_path / "logs")
    try:
        stack.start_webhook()
        stack.start_worker("worker", concurrency=2, beat=True)
        sources = {"trickle": ("mp4", "/trickle"), "live": ("hls", "/endless.m3u8")}
        ids = {}
        for stream, (fmt, path) in sources.items():
            body = callback(stream, f"{stream}-1", fmt, hostile.url(path), T0, T0 + 60)
            assert stack.post_css(body) == 200
            [ids[stream]] = stack.ledger.find_recordings(f"{stream}-1")
        for stream, rid in ids.items():
            failed = stack.wait_for_state(rid, ("archived", "failed"), timeout=60)
            assert failed.state == "failed", (stream, stack.log_text())
            assert "still downloading after 3 s" in failed.error, failed.error
            assert "trickles or never ends" in failed.error
            run = stack.ledger.run(failed.current_run_id)
            [fetch] = [s for s in run.steps if s["step"] == "fetch"]
            assert fetch["ok"] is False and "never ends" in fetch["error"]
        wait_for(lambda: len(receiver.requests) >= 2, timeout=30, what="notifications")
        notes = [parse_body(r) for r in receiver.requests]
        assert {n["type"] for n in notes} == {"recording.failed"}
        assert all("never ends" in n["error"] for n in notes)
    finally:
        stack.stop()
        hostile.close()


def test_a_queued_run_whose_message_was_lost_is_handed_out_again_within_the_requeue_time(
    redis_url, pg_url, s3_endpoint, bucket, s3_client, receiver, tones, tmp_path: Path
):
    """A run's message vanishes from the media queue (the broker lost it): with the queue
    idle, the sweep hands the run out again after RECPIPE_REQUEUE_AFTER_SECONDS, not after
    RECPIPE_STUCK_AFTER_SECONDS (15 minutes here), and it is archived once."""
    import redis

    rec = recording(90, segments=2)
    upload(s3_client, bucket, rec, tones)
    env = make_env(
        tmp_path, pg_url, redis_url, s3_endpoint, bucket,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_STUCK_AFTER_SECONDS="900",
        RECPIPE_REQUEUE_AFTER_SECONDS="5",
    )  # fmt: skip
    migrate(pg_url)
    stack = Stack(env, tmp_path / "logs")
    client = redis.Redis.from_url(redis_url)
    try:
        stack.start_webhook()
        stack.start_worker("light", concurrency=1, beat=True, queues="light")
        assert [stack.post_gme(b, sign(b)) for b in callbacks_of(rec)] == [200] * 6
        wait_for(
            lambda: (run := current_run(stack, rec)) is not None and run.state == "queued",
            timeout=30,
            what="the run to be dispatched",
        )
        wait_for(lambda: client.llen("media") == 1, timeout=10, what="its message")
        client.delete("media")  # lost
        stack.start_worker("media", concurrency=1, beat=False, queues="media")
        done = stack.wait_for_state(rec.id, ("archived", "failed"), timeout=60)
        assert done.state == "archived", stack.log_text()
        [run] = stack.ledger.runs_for(rec.id)
        assert (run.revision, run.attempts) == (1, 1)
        assert '"redispatched_runs": 1' in (tmp_path / "logs" / "light.log").read_text()
        check_archive(s3_client, bucket, [rec])
        wait_for(lambda: receiver.requests, timeout=30, what="the notification")
        time.sleep(2)
        assert len(receiver.requests) == 1
    finally:
        client.close()
        stack.stop()


# Where the ledger stops in a chain. Each pause is a statement of the chain held inside the
# test's PostgreSQL (a trigger that sleeps, once) until the test stops the server under it:
# the step's first write, the run's end, the notification's creation.
PAUSED_STATEMENTS = {
    **{
        step: f"BEFORE UPDATE ON runs FOR EACH ROW "
        f"WHEN (NEW.step = '{step}' AND OLD.step IS DISTINCT FROM NEW.step)"
        for step in ("fetch", "concat", "transcode", "archive")
    },
    "finish": "BEFORE UPDATE ON runs FOR EACH ROW "
    "WHEN (NEW.state = 'archived' AND OLD.state = 'running')",
    "notify": "BEFORE INSERT ON notifications FOR EACH ROW",
    # The notification is created (its INSERT held a few seconds, then committed); the
    # ledger stops as its delivery task reads it.
    "deliver": "BEFORE INSERT ON notifications FOR EACH ROW",
}
# "start" is the run's start committed and its answer lost: the ledger stops while the
# worker reads the run back (held behind a lock on the segments table).
CHAIN_POSITIONS = ("start", *PAUSED_STATEMENTS)


class LedgerControl:
    """A connection of the test's own to its PostgreSQL, to pause the chain's statements
    and to see what the server's sessions wait for."""

    def __init__(self, server: PostgresServer, dbname: str):
        self.conninfo = f"host={server.host} port={server.port} user=postgres dbname={dbname}"
        self.conn: Any = None

    def connect(self) -> None:
        import psycopg

        self.close()
        self.conn = psycopg.connect(self.conninfo, autocommit=True)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()  # after the server stopped under it too
            self.conn = None

    def one(self, sql: str, *args: object) -> Any:
        row = self.conn.execute(sql, args).fetchone()
        return row[0] if row else None

    def pause(self, position: str, seconds: float) -> None:
        """The statement at `position` sleeps `seconds`, the first time it runs only (a
        sequence is not rolled back with the statement)."""
        name = f"recpipe_pause_{position}"
        self.conn.execute(f"CREATE SEQUENCE {name}")
        self.conn.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF nextval('{name}') = 1 THEN PERFORM pg_sleep({seconds}); END IF; "
            "RETURN NEW; END $$"
        )
        self.conn.execute(f"CREATE TRIGGER {name} {PAUSED_STATEMENTS[position]} "
                          f"EXECUTE FUNCTION {name}()")  # fmt: skip

    def unpause(self, position: str) -> None:
        name = f"recpipe_pause_{position}"
        table = "notifications" if "notifications" in PAUSED_STATEMENTS[position] else "runs"
        self.conn.execute(f"DROP TRIGGER {name} ON {table}")
        self.conn.execute(f"DROP FUNCTION {name}")
        self.conn.execute(f"DROP SEQUENCE {name}")

    def sleeping(self) -> bool:
        return bool(self.one("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"))

    def blocked(self) -> bool:
        return bool(self.one("SELECT count(*) FROM pg_locks WHERE NOT granted"))

    def run_state(self, recording_id: str) -> str | None:
        return self.one(
            "SELECT runs.state FROM runs JOIN recordings ON runs.id = recordings.current_run_id"
            " WHERE recordings.id = %s",
            recording_id,
        )


def test_the_ledger_stopped_at_each_position_of_a_chain_and_every_outcome_is_notified(
    own_postgres: PostgresServer, redis_url, s3_endpoint, bucket, s3_client, receiver, tones,
    tmp_path: Path,
):  # fmt: skip
    """For each position of a chain (the run's start, each step, its end, the notification's
    creation, its delivery), the ledger stops there for a few seconds: once it is back the
    recording is archived once and its `recording.archived` reaches the receiver, long
    before a stale heartbeat (15 minutes here) or the sweep's slow safety net could help.
    A retry of the media task takes back the run its own earlier attempt started."""
    own_postgres._run("createdb", "-h", "127.0.0.1", "-p", str(own_postgres.port), "recpipe")
    database_url = own_postgres.url.rsplit("/", 1)[0] + "/recpipe"
    migrate(database_url)
    recs = {position: recording(100 + i, segments=2) for i, position in enumerate(CHAIN_POSITIONS)}
    for rec in recs.values():
        upload(s3_client, bucket, rec, tones)
    env = make_env(
        tmp_path, database_url, redis_url, s3_endpoint, bucket,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_STUCK_AFTER_SECONDS="900",
    )  # fmt: skip
    stack = Stack(env, tmp_path / "logs")
    control = LedgerControl(own_postgres, "recpipe")

    def notified(rec: Recording) -> list[dict]:
        bodies = [parse_body(r) for r in list(receiver.requests)]
        return [b for b in bodies if b["recording"]["id"] == rec.id]

    def stop_and_restart() -> float:
        own_postgres.stop()
        time.sleep(5)
        own_postgres.start()
        control.connect()
        return time.monotonic()

    def send(rec: Recording) -> None:
        """The callbacks, each sent again (as the vendor does) while answered 503: the
        webhook's first requests after an outage may still meet it."""
        for body in callbacks_of(rec):
            wait_for(lambda b=body: stack.post_gme(b, sign(b)) == 200, timeout=30,
                     what="the callback stored")  # fmt: skip

    try:
        stack.start_webhook()
        stack.start_worker("light", concurrency=2, beat=True, queues="light")
        for position, rec in recs.items():
            control.connect()
            if position == "start":
                # The run is queued before any media worker runs; the segments are locked
                # before one starts, so its start commits and its read-back waits.
                send(rec)
                wait_for(lambda r=rec: control.run_state(r.id) == "queued", timeout=120,
                         what="the run to be queued")  # fmt: skip
                control.conn.autocommit = False
                control.conn.execute("LOCK TABLE segments IN ACCESS EXCLUSIVE MODE")
                stack.start_worker("media", concurrency=2, beat=False, queues="media")
                wait_for(lambda r=rec: control.run_state(r.id) == "running" and control.blocked(),
                         timeout=60, what="the run started, its read-back waiting")  # fmt: skip
            elif position == "deliver":
                control.pause(position, 3)
                send(rec)
                wait_for(control.sleeping, timeout=60, what="the notification's creation")
                # Queued behind the creation: granted as it commits, before the delivery
                # task reads the notification.
                control.conn.autocommit = False
                control.conn.execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
                wait_for(control.blocked, timeout=60, what="the delivery's read to wait")
            else:
                control.pause(position, 600)
                send(rec)
                wait_for(control.sleeping, timeout=60, what=f"the chain at {position}")
            back = stop_and_restart()
            if position in PAUSED_STATEMENTS:
                control.unpause(position)

            wait_for(lambda r=rec: notified(r), timeout=120, interval=0.1,
                     what=f"the notification after a stop at {position}")  # fmt: skip
            # Reported, not asserted (run with -s to read it): timings belong in benches.
            print(f"ledger stopped at {position}: notified {time.monotonic() - back:.1f} s "
                  "after it was back")  # fmt: skip
            assert {b["type"] for b in notified(rec)} == {"recording.archived"}, position
            done = stack.wait_for_state(rec.id, ("archived", "failed"), timeout=30)
            assert done.state == "archived", (position, done.error)
            [run] = stack.ledger.runs_for(rec.id)
            assert run.revision == 1 and run.state == "archived"
            # The stop interrupted the media task's first attempt; its retry took the run
            # back. Stops after the run's end leave it at one attempt.
            assert run.attempts == (1 if position in ("notify", "deliver") else 2), position
        check_archive(s3_client, bucket, list(recs.values()))
        assert all(p.poll() is None for p in stack.processes.values()), "a process died"
    finally:
        control.close()
        stack.stop()
