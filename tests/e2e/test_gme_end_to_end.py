"""A 3-segment GME recording through the whole pipeline as real processes: Redis as broker,
PostgreSQL as ledger, an S3 server over HTTP for source and archive, real ffmpeg."""

import contextlib
import hashlib
import json
import random
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.media import decode, dominant_frequency, duration
from tests.support.signing import sign_gme
from tests.support.stack import Stack, parse_body, stack_env
from tests.support.waits import wait_for

BIZ, SECRET = 1400000000, "e2e-test-key"
TASK_ID = 446946705284000123  # > 2**53
SEGMENTS = [(440.0, 2.0), (880.0, 3.5), (1320.0, 1.5)]  # (tone Hz, seconds) by SeqNo


@pytest.fixture
def stack(request, tmp_path: Path, s3_endpoint, bucket, pg_url, receiver, whsec):
    broker = getattr(request, "param", "redis")
    env = {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": pg_url,
        "RECPIPE_BROKER_URL": request.getfixturevalue(f"{broker}_url"),
        "RECPIPE_GME_SOURCE_URL": f"s3://{bucket}/cos?endpoint_url={s3_endpoint}",
        "RECPIPE_ARCHIVE_URL": f"s3://{bucket}/archive?endpoint_url={s3_endpoint}",
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_NOTIFY_URLS": receiver.url,
        "RECPIPE_NOTIFY_SECRET": whsec,
        "RECPIPE_SETTLE_SECONDS": "2",
        "RECPIPE_SWEEP_SECONDS": "1",
    }
    s = Stack(env, tmp_path / "logs")
    s.start_webhook()
    s.start_worker()
    yield s
    s.stop()


def callback(event_type: int, seq: int, file_name: str) -> bytes:
    return json.dumps(
        {
            "BizID": BIZ, "RoomID": "100", "UserID": "999", "TaskID": TASK_ID, "RecordMode": 1,
            "Timestamp": int(time.time()), "EventType": event_type,
            "Detail": {"SeqNo": seq, "FileName": file_name},
        }
    ).encode()  # fmt: skip


def sign(body: bytes) -> str:
    return sign_gme(SECRET, body)


@pytest.mark.parametrize("stack", ["redis", "amqp"], indirect=True)
def test_shuffled_duplicated_callbacks_make_one_ordered_archive_and_one_notification(
    stack: Stack, tone, s3_client, bucket, receiver, whsec, tmp_path: Path
):
    """Segments of different tones and lengths, callbacks shuffled with a duplicate: one archive,
    the segments' summed duration, each tone at its place, one signed notification."""
    keys, durations = [], []
    for seq, (hz, seconds) in enumerate(SEGMENTS):
        key = f"{BIZ}_100/2026-11-21-10-00-0{seq}_{TASK_ID}_audio.mp3"
        path = tone(f"{seq}.mp3", hz, seconds)
        s3_client.upload_file(str(path), bucket, f"cos/{key}")
        keys.append(key)
        durations.append(duration(path))

    bodies = [callback(ev, seq, key) for seq, key in enumerate(keys) for ev in (1, 2, 3)]
    rng = random.Random(7)
    rng.shuffle(bodies)
    bodies.insert(4, bodies[1])
    for body in bodies:
        assert stack.post_gme(body, sign(body)) == 200

    recording_id = json.loads(stack_recording_id(keys))
    recording = stack.wait_for_state(recording_id, ("archived", "failed"))
    assert recording.state == "archived", stack.log_text()
    run = stack.ledger.run(recording.current_run_id)
    assert [(s["step"], s["ok"]) for s in run.steps] == [
        ("fetch", True), ("concat", True), ("transcode", True), ("archive", True)
    ]  # fmt: skip

    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix="archive/")["Contents"]
    names = sorted(o["Key"] for o in listed)
    prefix = f"archive/gme/{BIZ}/{recording_id}/"
    assert names == [
        f"{prefix}{recording_id}.m4a",
        f"{prefix}{recording_id}.peaks.json",
        f"{prefix}manifest.json",
        f"{prefix}timeline.json",
    ]

    archived = tmp_path / "archived.m4a"
    s3_client.download_file(bucket, f"{prefix}{recording_id}.m4a", str(archived))
    assert abs(duration(archived) - sum(durations)) <= 0.15
    samples = decode(archived)
    start = 0.0
    for (hz, _seconds), length in zip(SEGMENTS, durations, strict=True):
        found = dominant_frequency(samples, start + length / 2)
        assert abs(found - hz) < 15, f"expected {hz} Hz at {start + length / 2:.2f}s, found {found}"
        start += length

    manifest = json.loads(
        s3_client.get_object(Bucket=bucket, Key=f"{prefix}manifest.json")["Body"].read()
    )
    assert [s["seq_no"] for s in manifest["sources"]] == [0, 1, 2]
    assert [s["key"] for s in manifest["sources"]] == keys
    assert manifest["revision"] == 1 and manifest["missing"] == []
    # The names' times (1 s apart) contradict the lengths: each segment follows the last.
    assert [(t["seq_no"], t["offset_s"]) for t in manifest["timeline"]] == [
        (0, 0.0), (1, round(durations[0], 3)), (2, round(durations[0] + durations[1], 3))
    ]  # fmt: skip
    assert manifest["gaps"] == []
    # Normalized to the default -16 LUFS; one tone after another is speech throughout.
    assert abs(manifest["loudness"]["after"]["integrated_lufs"] + 16) <= 1.5
    assert manifest["loudness"]["target_lufs"] == -16.0
    [speech] = manifest["speech"]
    assert speech["UserID"] == "999" and len(speech["spans"]) == 1
    assert speech["spans"][0][0] == 0.0 and abs(speech["spans"][0][1] - sum(durations)) <= 0.5
    timeline_json = json.loads(
        s3_client.get_object(Bucket=bucket, Key=f"{prefix}timeline.json")["Body"].read()
    )
    assert timeline_json["timeline"] == manifest["timeline"]
    assert timeline_json["speech"] == manifest["speech"]
    peaks = json.loads(
        s3_client.get_object(Bucket=bucket, Key=f"{prefix}{recording_id}.peaks.json")["Body"].read()
    )
    assert peaks["version"] == 2 and len(peaks["data"]) == 2 * peaks["length"]

    wait_for(lambda: receiver.requests, timeout=120, what="notification")
    time.sleep(2)  # anything duplicated would have arrived by now
    assert len(receiver.requests) == 1
    received = receiver.requests[0]
    Webhook(whsec).verify(received.body, received.headers)
    body = parse_body(received)
    assert body["type"] == "recording.archived"
    assert body["recording"] == {
        "id": recording_id,
        "source": "gme",
        "revision": 1,
        "gme": {
            "BizID": BIZ,
            "RoomID": "100",
            "UserID": "999",
            "TaskID": str(TASK_ID),
            "RecordMode": 1,
        },
    }
    assert body["segments"] == {"included": [0, 1, 2], "missing": []}
    [artifact] = body["artifacts"]
    assert artifact["url"] == f"s3://{bucket}/{prefix}{recording_id}.m4a"
    assert artifact["format"] == "m4a" and artifact["bytes"] == archived.stat().st_size
    assert artifact["sha256"] == hashlib.sha256(archived.read_bytes()).hexdigest()
    assert abs(artifact["duration_s"] - sum(durations)) <= 0.15
    assert body["manifest"] == f"s3://{bucket}/{prefix}manifest.json"
    assert body["error"] is None
    assert body["timeline"] == manifest["timeline"] and body["gaps"] == []
    assert body["speech"] == manifest["speech"]
    assert received.headers["webhook-id"] == f"msg_{recording_id}_r1_archived"


def stack_recording_id(keys: list[str]) -> str:
    from storage.domain import GmeRecordingKey

    return json.dumps(GmeRecordingKey(BIZ, "100", "999", str(TASK_ID), 1).recording_id)


def test_corrupt_segment_fails_its_recording_and_the_next_one_goes_on(
    stack: Stack, tone, s3_client, bucket, receiver
):
    """A text file posing as a segment fails that recording with a message naming the segment;
    the worker survives and archives the next recording."""
    bad_task, good_task = TASK_ID + 1, TASK_ID + 2
    s3_client.put_object(
        Bucket=bucket, Key=f"cos/{BIZ}_bad/1_{bad_task}_audio.mp3", Body=b"not audio" * 100
    )
    s3_client.upload_file(
        str(tone("g.mp3", 440, 1.0)), bucket, f"cos/{BIZ}_good/1_{good_task}_audio.mp3"
    )
    for task, key in (
        (bad_task, f"{BIZ}_bad/1_{bad_task}_audio.mp3"),
        (good_task, f"{BIZ}_good/1_{good_task}_audio.mp3"),
    ):
        body = json.loads(callback(3, 0, key))
        body["TaskID"] = task
        raw = json.dumps(body).encode()
        assert stack.post_gme(raw, sign(raw)) == 200

    from storage.domain import GmeRecordingKey

    bad_id = GmeRecordingKey(BIZ, "100", "999", str(bad_task), 1).recording_id
    good_id = GmeRecordingKey(BIZ, "100", "999", str(good_task), 1).recording_id
    failed = stack.wait_for_state(bad_id, ("archived", "failed"))
    assert failed.state == "failed"
    assert f"segment 0 ({BIZ}_bad/1_{bad_task}_audio.mp3) of recording {bad_id}" in failed.error
    assert stack.wait_for_state(good_id, ("archived", "failed")).state == "archived"
    wait_for(lambda: len(receiver.requests) >= 2, timeout=120, what="both notifications")
    by_type = {parse_body(r)["type"]: parse_body(r) for r in receiver.requests}
    assert "segment 0" in by_type["recording.failed"]["error"]
    assert by_type["recording.failed"]["artifacts"] == []


@contextlib.contextmanager
def windowed_stack(
    tmp_path: Path, s3_endpoint, bucket, pg_url, redis_url, receiver, *, complete_seconds: str
) -> Iterator[Stack]:
    """A stack whose long quiet window is an hour and whose short one (complete) is
    `complete_seconds`."""
    env = stack_env(
        tmp_path,
        pg_url,
        redis_url,
        s3_endpoint,
        bucket,
        RECPIPE_GME_SOURCE_URL=f"s3://{bucket}/cos?endpoint_url={s3_endpoint}",
        RECPIPE_GME_SECRET_KEYS=f"{BIZ}={SECRET}",
        RECPIPE_NOTIFY_URLS=receiver.url,
        RECPIPE_SETTLE_SECONDS="3600",
        RECPIPE_SETTLE_COMPLETE_SECONDS=complete_seconds,
    )
    s = Stack(env, tmp_path / "logs")
    s.start_webhook()
    s.start_worker()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def patient_stack(tmp_path: Path, s3_endpoint, bucket, pg_url, redis_url, receiver):
    """A stack whose quiet windows are an hour: only a stop finalizes within the test."""
    with windowed_stack(
        tmp_path, s3_endpoint, bucket, pg_url, redis_url, receiver, complete_seconds="3600"
    ) as s:
        yield s


def test_a_stopped_task_is_archived_as_soon_as_its_started_segments_are_uploaded(
    patient_stack: Stack, tone, s3_client, bucket, redis_url, receiver
):
    """`recpipe.stop_gme_task`, sent by name as the console sends it: the recording waits
    for its open segment's upload, then is archived at once, not after the hour's window."""
    from celery import Celery

    stack = patient_stack
    task_id = TASK_ID + 10
    keys = [f"{BIZ}_100/2026-11-21-10-00-0{seq}_{task_id}_audio.mp3" for seq in range(2)]

    def upload(seq: int) -> None:  # as GME does, once the segment is complete
        s3_client.upload_file(str(tone(f"s{seq}.mp3", 440, 1.0)), bucket, f"cos/{keys[seq]}")

    upload(0)

    def post(event_type: int, seq: int) -> None:
        body = json.loads(callback(event_type, seq, keys[seq]))
        body["TaskID"] = task_id
        raw = json.dumps(body).encode()
        assert stack.post_gme(raw, sign(raw)) == 200

    for event_type, seq in ((1, 0), (2, 0), (3, 0), (1, 1)):
        post(event_type, seq)
    from storage.domain import GmeRecordingKey

    recording_id = GmeRecordingKey(BIZ, "100", "999", str(task_id), 1).recording_id
    # A client of its own, as the console's is: only the name, the argument and recpipe's
    # default queue are shared.
    client = Celery(broker=redis_url)
    client.conf.task_default_queue = "light"
    try:
        client.send_task("recpipe.stop_gme_task", args=[str(task_id)])
        wait_for(
            lambda: stack.ledger.recording(recording_id).stopped_at,
            timeout=30,
            what="the stop",
        )
        time.sleep(3)  # segment 1 is open: the stop waits for its upload
        assert stack.ledger.recording(recording_id).state == "collecting"
        post(2, 1)
        upload(1)
        post(3, 1)
        recording = stack.wait_for_state(recording_id, ("archived", "failed"), timeout=60)
        assert recording.state == "archived", stack.log_text()  # within 60 s of windows of 1 h
    finally:
        client.close()
    wait_for(lambda: receiver.requests, timeout=30, what="notification")
    assert parse_body(receiver.requests[0])["segments"] == {"included": [0, 1], "missing": []}


@pytest.fixture
def short_window_stack(tmp_path: Path, s3_endpoint, bucket, pg_url, redis_url, receiver):
    """A stack whose long window is an hour and whose short one (complete) is 2 s."""
    with windowed_stack(
        tmp_path, s3_endpoint, bucket, pg_url, redis_url, receiver, complete_seconds="2"
    ) as s:
        yield s


def test_a_segment_open_past_the_short_window_settles_the_short_window_after_its_upload(
    short_window_stack: Stack, tone, s3_client, bucket, receiver
):
    """While segment 1 is open the recording is due after the hour's window (no look every
    short window); the upload that completes it makes it due the short window after, and
    beat's clock archives it then, not an hour later."""
    from storage.domain import GmeRecordingKey

    stack = short_window_stack
    task_id = TASK_ID + 20
    keys = [f"{BIZ}_100/2026-11-21-10-00-0{seq}_{task_id}_audio.mp3" for seq in range(2)]
    recording_id = GmeRecordingKey(BIZ, "100", "999", str(task_id), 1).recording_id

    def upload(seq: int) -> None:
        s3_client.upload_file(str(tone(f"s{seq}.mp3", 440, 1.0)), bucket, f"cos/{keys[seq]}")

    def post(event_type: int, seq: int) -> None:
        body = json.loads(callback(event_type, seq, keys[seq]))
        body["TaskID"] = task_id
        raw = json.dumps(body).encode()
        assert stack.post_gme(raw, sign(raw)) == 200

    upload(0)
    for event_type, seq in ((1, 0), (2, 0), (3, 0), (1, 1)):
        post(event_type, seq)
    # Segment 1 is open: due the long window (an hour) after its start.
    open_ = stack.ledger.recording(recording_id)
    assert open_.settle_due_at == open_.last_event_at + timedelta(hours=1)
    time.sleep(3)  # longer than the short window: nothing looks in between
    assert stack.ledger.recording(recording_id).state == "collecting"
    post(2, 1)
    upload(1)
    post(3, 1)
    recording = stack.wait_for_state(recording_id, ("archived", "failed"), timeout=60)
    assert recording.state == "archived", stack.log_text()
    wait_for(lambda: receiver.requests, timeout=30, what="notification")
    assert parse_body(receiver.requests[0])["segments"] == {"included": [0, 1], "missing": []}
