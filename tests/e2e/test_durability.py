"""Faults injected for real into recpipe running as processes: a burst of shuffled,
duplicated and partly lost callbacks, a worker SIGKILLed mid-chain, a broker stopped while
callbacks arrive, downstream endpoints failing, answering 410 or recovering.

Each test runs its own redis-server as broker: no other test run on the machine can
consume or flush its messages, and the outage test can stop it. A missing redis-server
fails these tests rather than skipping them (`make services`, run by `make test`, installs
it), so they never vanish from a run."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from storage.domain import NotificationState
from tests.support.faults import RedisServer
from tests.support.media import decode, dominant_frequency, duration, make_tone
from tests.support.recordings import (
    BIZ,
    SECRET,
    TONES,
    archive_keys,
    manifest,
    post_all,
    recording,
    upload,
    wait_all,
)  # fmt: skip
from tests.support.stack import Receiver, Stack, parse_body
from tests.support.waits import wait_for


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One short tone file per SeqNo, made once and reused as every recording's segments."""
    folder = tmp_path_factory.mktemp("tones")
    return [make_tone(folder / f"{seq}.mp3", hz, 1.0) for seq, hz in enumerate(TONES)]


@pytest.fixture
def make_stack(tmp_path: Path, s3_endpoint: str, bucket: str, pg_url: str, whsec: str):
    """make_stack(broker_url, notify_urls, **env) -> a Stack with its webhook started."""
    stacks: list[Stack] = []

    def make(broker_url: str, notify_urls: list[str], **extra: str) -> Stack:
        env = {
            "RECPIPE_DATA_DIR": str(tmp_path / "var"),
            "RECPIPE_DATABASE_URL": pg_url,
            "RECPIPE_BROKER_URL": broker_url,
            "RECPIPE_GME_SOURCE_URL": f"s3://{bucket}/cos?endpoint_url={s3_endpoint}",
            "RECPIPE_ARCHIVE_URL": f"s3://{bucket}/archive?endpoint_url={s3_endpoint}",
            "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
            "RECPIPE_NOTIFY_URLS": ",".join(notify_urls),
            "RECPIPE_NOTIFY_SECRET": whsec,
            "RECPIPE_SETTLE_SECONDS": "2",
            "RECPIPE_SWEEP_SECONDS": "1",
            "RECPIPE_MAX_WAIT_SECONDS": "30",
            **extra,
        }
        stack = Stack(env, tmp_path / "logs")
        stacks.append(stack)
        stack.start_webhook()
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def test_burst_of_shuffled_duplicated_and_lost_callbacks_archives_every_recording_once(
    own_redis, make_stack, receiver, tones, s3_client, bucket, whsec, tmp_path: Path
):
    """50 recordings, their callbacks shuffled together with 30% duplicates, some upload
    callbacks (and some segments' every callback) lost while the files are in the source:
    every recording is archived once, complete and in SeqNo order, and notified once."""
    rng = random.Random(4)
    recordings = [recording(i, segments=2 + i % 2, room=str(100 + i % 4)) for i in range(50)]
    lost: dict[str, set[tuple[int, int]]] = {}  # recording id -> dropped (event, seq)
    bodies: list[bytes] = []
    for i, rec in enumerate(recordings):
        upload(s3_client, bucket, rec, tones)
        events = {(ev, seq) for seq in range(len(rec.keys)) for ev in (1, 2, 3)}
        if i % 4 == 1:  # the upload callback of one segment never comes
            events.discard((3, rng.randrange(len(rec.keys))))
        elif i % 10 == 2:  # nothing at all about the last segment
            events -= {(ev, len(rec.keys) - 1) for ev in (1, 2, 3)}
        elif i % 10 == 7 and len(rec.keys) == 3:  # nothing about the middle one
            events -= {(ev, 1) for ev in (1, 2, 3)}
        if len(events) < 3 * len(rec.keys):
            lost[rec.id] = {(ev, seq) for seq in range(len(rec.keys)) for ev in (1, 2, 3)} - events
        bodies.extend(rec.callback(ev, seq) for ev, seq in sorted(events))
    bodies += rng.sample(bodies, k=int(len(bodies) * 0.3))
    rng.shuffle(bodies)
    assert len(lost) >= 12

    stack = make_stack(own_redis.url, [receiver.url])
    # Every callback is in before any worker runs, so no recording settles half-told.
    assert Counter(post_all(stack, bodies)) == {200: len(bodies)}
    # As in production: media work in a pool of its own, so notifications do not queue
    # behind transcodes.
    stack.start_worker("media", concurrency=3, beat=False, queues="media")
    stack.start_worker("light", concurrency=1, queues="light")

    ids = [rec.id for rec in recordings]
    states = wait_all(stack, ids, timeout=300)
    assert Counter(states.values()) == {"archived": len(ids)}, stack.log_text()

    names = archive_keys(s3_client, bucket)
    assert names == sorted(
        f"archive/gme/{BIZ}/{rec.id}/{name}"
        for rec in recordings
        for name in (f"{rec.id}.m4a", f"{rec.id}.peaks.json", "manifest.json", "timeline.json")
    )
    for rec in recordings:
        runs = stack.ledger.runs_for(rec.id)
        assert [(r.revision, r.state) for r in runs] == [(1, "archived")], rec.id
        found = manifest(s3_client, bucket, rec)
        seqs = list(range(len(rec.keys)))
        assert [s["seq_no"] for s in found["sources"]] == seqs, (rec.id, lost.get(rec.id))
        assert [s["key"] for s in found["sources"]] == list(rec.keys)
        assert found["missing"] == [] and found["revision"] == 1
        assert runs[0].result["included"] == seqs

    # The sound is in the right order, also where segments were recovered from the source.
    for rec in [r for r in recordings if r.id in lost][:3] + recordings[:1]:
        local = tmp_path / f"{rec.id}.m4a"
        s3_client.download_file(bucket, f"archive/gme/{BIZ}/{rec.id}/{rec.id}.m4a", str(local))
        samples, start = decode(local), 0.0
        for seq in range(len(rec.keys)):
            length = duration(tones[seq])
            found_hz = dominant_frequency(samples, start + length / 2)
            assert abs(found_hz - TONES[seq]) < 15, (rec.id, seq, found_hz)
            start += length

    wait_for(lambda: len(receiver.requests) >= len(ids), timeout=60, what="notifications")
    time.sleep(2)  # a duplicate would have arrived by now
    bodies_received = [parse_body(r) for r in receiver.requests]
    assert sorted(b["recording"]["id"] for b in bodies_received) == sorted(ids)
    assert {b["type"] for b in bodies_received} == {"recording.archived"}
    for received in receiver.requests:
        Webhook(whsec).verify(received.body, received.headers)


def test_worker_killed_mid_chain_is_taken_over_and_the_recording_completes_once(
    own_redis, make_stack, receiver, s3_client, bucket, tmp_path: Path
):
    """SIGKILL of the whole worker while its run is in the middle of the media chain: after a
    restart beat's sweep takes the run over, and there is one archive, one notification."""
    files = [make_tone(tmp_path / f"long{seq}.mp3", hz, 20.0) for seq, hz in enumerate(TONES)]
    rec = recording(900, segments=3)
    upload(s3_client, bucket, rec, files)
    stack = make_stack(
        own_redis.url,
        [receiver.url],
        RECPIPE_STUCK_AFTER_SECONDS="10",
        RECPIPE_AUDIO_FORMATS="m4a,mp3,opus",
    )
    stack.start_worker(concurrency=1)
    bodies = [rec.callback(ev, seq) for seq in range(3) for ev in (1, 2, 3)]
    assert post_all(stack, bodies) == [200] * len(bodies)

    def running_run():
        current = stack.ledger.recording(rec.id)
        run = stack.ledger.run(current.current_run_id) if current.current_run_id else None
        return run if run is not None and run.state == "running" else None

    run = wait_for(running_run, timeout=60, interval=0.05, what="the run to start")
    stack.kill("worker")
    killed = stack.ledger.run(run.id)
    assert killed.state == "running", "the chain finished before the kill: nothing was tested"
    killed_in = killed.steps[-1]["step"] if killed.steps else "start"

    stack.start_worker(name="worker2", concurrency=1)
    assert wait_all(stack, [rec.id], timeout=120) == {rec.id: "archived"}, stack.log_text()

    [final] = stack.ledger.runs_for(rec.id)
    assert final.id == run.id and final.revision == 1 and final.attempts == 2, killed_in
    assert [s["step"] for s in final.steps if s["attempt"] == 2 and s.get("ok")] == [
        "fetch", "concat", "transcode", "archive",
    ]  # fmt: skip
    prefix = f"archive/gme/{BIZ}/{rec.id}/"
    outputs = [f"{rec.id}.{fmt}" for fmt in ("m4a", "mp3", "opus")] + [
        f"{rec.id}.peaks.json",
        "manifest.json",
        "timeline.json",
    ]
    assert archive_keys(s3_client, bucket) == sorted(prefix + name for name in outputs)
    assert [s["seq_no"] for s in manifest(s3_client, bucket, rec)["sources"]] == [0, 1, 2]
    # The sound of the attempt that took over: each segment's tone, in order.
    local = tmp_path / "taken-over.m4a"
    s3_client.download_file(bucket, f"{prefix}{rec.id}.m4a", str(local))
    samples, start = decode(local), 0.0
    for seq, path in enumerate(files):
        length = duration(path)
        assert abs(dominant_frequency(samples, start + length / 2) - TONES[seq]) < 15, seq
        start += length
    assert abs(duration(local) - start) < 0.5

    wait_for(lambda: receiver.requests, timeout=30, what="the notification")
    time.sleep(2)
    assert {r.headers["webhook-id"] for r in receiver.requests} == {f"msg_{rec.id}_r1_archived"}
    [note] = stack.ledger.notifications_for_run(run.id)
    assert note.state == NotificationState.DELIVERED


@pytest.fixture
def own_redis(tmp_path: Path):
    if shutil.which("redis-server") is None:  # `make services` installs it
        pytest.fail("redis-server is not installed: `make services` installs it")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_broker_outage_loses_nothing_and_callbacks_are_answered_throughout(
    own_redis: RedisServer, make_stack, receiver, tones, s3_client, bucket
):
    """The broker is stopped while callbacks arrive: each is still stored and answered 200,
    readiness says the broker is down, and once it is back every recording is archived."""
    import requests

    before = recording(500, segments=2)
    during = [recording(501 + i, segments=2 + i % 2) for i in range(4)]
    for rec in [before, *during]:
        upload(s3_client, bucket, rec, tones)
    stack = make_stack(own_redis.url, [receiver.url])
    stack.start_worker()

    first = [before.callback(ev, seq) for seq in range(2) for ev in (1, 2, 3)]
    assert post_all(stack, first) == [200] * len(first)
    own_redis.stop()
    bodies = [rec.callback(ev, seq) for rec in during for seq in range(2) for ev in (1, 2, 3)]
    random.Random(9).shuffle(bodies)
    assert post_all(stack, bodies + bodies[:5], threads=4) == [200] * (len(bodies) + 5)
    ready = requests.get(f"{stack.internal_url}/readyz", timeout=10)
    assert ready.status_code == 503 and "broker" in ready.json()["reasons"]
    for rec in during:  # stored, though nothing could be handed to the broker
        assert stack.ledger.recording(rec.id).state == "collecting"
    time.sleep(3)  # past the settle window, with the broker still down
    own_redis.start()

    ids = [rec.id for rec in [before, *during]]
    states = wait_all(stack, ids, timeout=120)
    assert Counter(states.values()) == {"archived": len(ids)}, stack.log_text()
    for rec in [before, *during]:
        assert [s["seq_no"] for s in manifest(s3_client, bucket, rec)["sources"]] == list(
            range(len(rec.keys))
        )
        assert [r.revision for r in stack.ledger.runs_for(rec.id)] == [1]
    wait_for(lambda: len(receiver.requests) >= len(ids), timeout=60, what="notifications")
    assert sorted(parse_body(r)["recording"]["id"] for r in receiver.requests) == sorted(ids)
    assert requests.get(f"{stack.internal_url}/readyz", timeout=10).status_code == 200


def test_failing_endpoint_is_retried_until_it_recovers_410_stops_and_failed_can_be_redelivered(
    own_redis, make_stack, tones, s3_client, bucket
):
    """Three endpoints: one answers 503 twice then recovers (delivered on the third attempt),
    one answers 410 (disabled after one attempt), one is down past the attempt limit (shown
    as failed by `recpipe status`, delivered by `recpipe redeliver` once it is back)."""
    recovering, gone, down = Receiver(fail_first=2), Receiver(answer=410), Receiver(fail_first=99)
    try:
        rec = recording(700, segments=2)
        upload(s3_client, bucket, rec, tones)
        urls = {"recovering": recovering.url, "gone": gone.url, "down": down.url}
        stack = make_stack(own_redis.url, list(urls.values()), RECPIPE_NOTIFY_MAX_ATTEMPTS="3")
        stack.start_worker()
        bodies = [rec.callback(ev, seq) for seq in range(2) for ev in (1, 2, 3)]
        assert post_all(stack, bodies) == [200] * len(bodies)
        assert stack.wait_for_state(rec.id, ("archived", "failed")).state == "archived"
        run_id = stack.ledger.recording(rec.id).current_run_id

        def final_states():
            notes = stack.ledger.notifications_for_run(run_id)
            finished = [n for n in notes if n.state != NotificationState.PENDING]
            return notes if len(notes) == 3 and len(finished) == 3 else None

        notes = wait_for(final_states, timeout=90, interval=0.5, what="final delivery states")
        by_name = {name: next(n for n in notes if n.url == url) for name, url in urls.items()}
        assert [len(recovering.requests), len(gone.requests), len(down.requests)] == [3, 1, 3]
        assert by_name["recovering"].state == NotificationState.DELIVERED
        assert (by_name["gone"].state, by_name["gone"].attempts) == ("disabled", 1)
        failed = by_name["down"]
        assert (failed.state, failed.attempts, failed.last_status) == ("failed", 3, 503)

        cli = [sys.executable, "-m", "recpipe"]
        listing = subprocess.run(
            [*cli, "status", "--json"], env=stack.env, capture_output=True, check=True
        )
        [row] = json.loads(listing.stdout)
        assert (row["id"], row["state"], row["notification"]) == (rec.id, "archived", "failed")

        down.fail_first = 0  # the endpoint is back
        subprocess.run([*cli, "redeliver", rec.id], env=stack.env, check=True, capture_output=True)
        wait_for(lambda: len(down.requests) == 4, timeout=30, what="the redelivery")
        wait_for(
            lambda: stack.ledger.notification(failed.id).state == NotificationState.DELIVERED,
            timeout=30,
            what="the redelivered notification to be recorded",
        )
        webhook_ids = {r.headers["webhook-id"] for r in down.requests + recovering.requests}
        assert webhook_ids == {f"msg_{rec.id}_r1_archived"}
        time.sleep(2)
        assert len(gone.requests) == 1 and len(recovering.requests) == 3
        detail = subprocess.run(
            [*cli, "status", rec.id, "--json"], env=stack.env, capture_output=True, check=True
        )
        assert json.loads(detail.stdout)["notification"] == "disabled"
    finally:
        for r in (recovering, gone, down):
            r.close()
