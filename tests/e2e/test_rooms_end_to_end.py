"""A room of three users through the whole pipeline as real processes (Redis, PostgreSQL,
an S3 server over HTTP, real ffmpeg): staggered joins, one user's pause, shuffled and
duplicated callbacks, one lost upload found in the source listing; then a late user
makes the room's revision 2."""

import hashlib
import json
import random
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from standardwebhooks.webhooks import Webhook

from storage.domain.rooms import room_id
from tests.support.media import ANALYSIS_RATE, decode, duration, level_at
from tests.support.rooms import RoomTask
from tests.support.signing import sign_gme
from tests.support.stack import Stack, parse_body
from tests.support.waits import wait_for

BIZ, SECRET, ROOM = 1400000000, "room-test-key", "300"
TASK = 446946705284000777  # > 2**53
# user: (tone Hz, [(clock second of 10:00:ss, seconds), ...]): staggered joins, B pauses.
USERS = {
    "alice": (440.0, [(0, 6.0)]),
    "bob": (660.0, [(2, 2.0), (8, 2.5)]),
    "carol": (990.0, [(4, 5.0)]),
}
LOST = ("carol", 0)  # this segment's upload callback never comes
# (second on the room's clock, users heard) for windows of the mix.
WINDOWS = [
    (1.0, {"alice"}),
    (3.0, {"alice", "bob"}),
    (5.0, {"alice", "carol"}),  # bob is muted from 4 to 8
    (7.0, {"carol"}),
    (8.6, {"bob", "carol"}),
    (10.0, {"bob"}),
]
# The same for revision 2 of a room of alice and carol, whom dave joins at 12 s.
WINDOWS_2 = [
    (1.0, {"alice"}),
    (5.0, {"alice", "carol"}),
    (7.0, {"carol"}),
    (10.5, set()),
    (12.7, {"dave"}),
]


@pytest.fixture
def stack(tmp_path: Path, s3_endpoint, bucket, pg_url, redis_url, receiver, whsec):
    env = {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": pg_url,
        "RECPIPE_BROKER_URL": redis_url,
        "RECPIPE_GME_SOURCE_URL": f"s3://{bucket}/cos?endpoint_url={s3_endpoint}",
        "RECPIPE_ARCHIVE_URL": f"s3://{bucket}/archive?endpoint_url={s3_endpoint}",
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_NOTIFY_URLS": receiver.url,
        "RECPIPE_NOTIFY_SECRET": whsec,
        "RECPIPE_SETTLE_SECONDS": "2",
        "RECPIPE_MAX_WAIT_SECONDS": "4",
        "RECPIPE_SWEEP_SECONDS": "1",
    }
    s = Stack(env, tmp_path / "logs")
    s.start_webhook()
    s.start_worker()
    yield s
    s.stop()


_ROOM_TASK = RoomTask(BIZ, ROOM, TASK)
recording_id, callback = _ROOM_TASK.recording_id, _ROOM_TASK.callback


def assert_heard_where_they_spoke(mix: Path, windows, users) -> None:
    """At each (second, users heard) window, each of `users` is heard if listed, else
    silent: the level of their tone in the mix around that second."""
    samples = decode(mix)
    for at, heard in windows:
        for user, (hz, _segments) in users.items():
            level = level_at(samples, at, hz)
            if user in heard:
                assert level > 0.01, f"{user} not heard at {at}s ({level:.4f})"
            else:
                assert level < 0.001, f"{user} heard at {at}s ({level:.4f})"


def sign(body: bytes) -> str:
    return sign_gme(SECRET, body)


def speak(tmp_path: Path, s3_client, bucket, users: dict, lost=None) -> list[bytes]:
    """Upload each user's segments (tones at -35 dBFS) and return their callbacks."""

    def upload(key: str, path: Path) -> None:
        s3_client.upload_file(str(path), bucket, f"cos/{key}")

    return _ROOM_TASK.speak(tmp_path, users, upload, lost)


def post_all(stack: Stack, bodies: list[bytes], seed: int) -> None:
    rng = random.Random(seed)
    rng.shuffle(bodies)
    bodies[2:2] = [bodies[0], bodies[-1]]  # duplicates
    for body in bodies:
        assert stack.post_gme(body, sign(body)) == 200


def rms(samples: np.ndarray, start: float, end: float) -> float:
    chunk = samples[int(start * ANALYSIS_RATE) : int(end * ANALYSIS_RATE)]
    return float(np.sqrt(np.mean(chunk**2)))


def integrated_loudness(path: Path) -> float:
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
         "-af", "ebur128", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    return float(re.search(r"I:\s+(-?[\d.]+) LUFS", log[log.rfind("Summary:") :]).group(1))


def archived_keys(s3_client, bucket, prefix: str) -> list[str]:
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def get_json(s3_client, bucket, key: str) -> dict:
    return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def room_notes(receiver) -> list:
    return [r for r in receiver.requests if parse_body(r)["type"].startswith("room.")]


def test_a_room_of_three_users_is_mixed_on_one_clock(
    stack: Stack, s3_client, bucket, receiver, whsec, tmp_path: Path
):
    """Who is heard when, the pause, speech spans, loudness, peaks, one signed room.archived."""
    post_all(stack, speak(tmp_path, s3_client, bucket, USERS, lost=LOST), seed=13)
    for user in USERS:
        state = stack.wait_for_state(recording_id(user), ("archived", "failed"), timeout=120)
        assert state.state == "archived", (user, stack.log_text())
    rid = room_id(BIZ, ROOM, str(TASK))
    room = stack.wait_for_state(rid, ("archived", "failed"), timeout=120)
    assert room.state == "archived", stack.log_text()
    assert room.revision == 1

    prefix = f"archive/gme/{BIZ}/rooms/{rid}/"
    assert archived_keys(s3_client, bucket, prefix) == sorted([
        f"{prefix}{rid}.m4a", f"{prefix}{rid}.peaks.json",
        f"{prefix}manifest.json", f"{prefix}timeline.json",
    ])  # fmt: skip
    manifest = get_json(s3_client, bucket, f"{prefix}manifest.json")
    assert manifest["revision"] == 1
    by_user = {p["UserID"]: p for p in manifest["participants"]}
    assert set(by_user) == set(USERS)
    assert {u: p["offset_s"] for u, p in by_user.items()} == {"alice": 0, "bob": 2, "carol": 4}
    assert by_user["carol"]["recording_id"] == recording_id("carol")
    assert abs(by_user["bob"]["duration_s"] - 8.5) < 0.2  # 2 s, a 4 s pause, 2.5 s
    assert sorted(s["UserID"] for s in manifest["sources"]) == sorted(USERS)

    mix = tmp_path / "room.m4a"
    s3_client.download_file(bucket, f"{prefix}{rid}.m4a", str(mix))
    assert abs(duration(mix) - 10.5) < 0.25
    assert_heard_where_they_spoke(mix, WINDOWS, USERS)
    assert abs(integrated_loudness(mix) - (-16.0)) <= 1.5
    assert manifest["loudness"]["target_lufs"] == -16.0

    speech = {entry["UserID"]: entry["spans"] for entry in manifest["speech"]}
    expected = {"alice": [[0, 6]], "bob": [[2, 4], [8, 10.5]], "carol": [[4, 9]]}
    for user, spans in expected.items():
        assert len(speech[user]) == len(spans), (user, speech[user])
        for got, want in zip(speech[user], spans, strict=True):
            assert abs(got[0] - want[0]) <= 0.5 and abs(got[1] - want[1]) <= 0.5, (user, got)
    assert get_json(s3_client, bucket, f"{prefix}timeline.json")["speech"] == manifest["speech"]

    peaks = get_json(s3_client, bucket, f"{prefix}{rid}.peaks.json")
    assert peaks["version"] == 2 and peaks["channels"] == 1 and peaks["bits"] == 16
    assert len(peaks["data"]) == 2 * peaks["length"]
    assert abs(peaks["length"] * peaks["samples_per_pixel"] / peaks["sample_rate"] - 10.5) < 0.3

    # Bob's own track is silent in his pause (4 s of it, from 2 s on his clock).
    bob_prefix = f"archive/gme/{BIZ}/{recording_id('bob')}/"
    bob = tmp_path / "bob.m4a"
    s3_client.download_file(bucket, f"{bob_prefix}{recording_id('bob')}.m4a", str(bob))
    bob_samples = decode(bob)
    assert rms(bob_samples, 2.3, 5.7) < 0.001 and rms(bob_samples, 0.3, 1.7) > 0.05
    assert abs(integrated_loudness(bob) - (-16.0)) <= 1.5
    bob_manifest = get_json(s3_client, bucket, f"{bob_prefix}manifest.json")
    assert bob_manifest["gaps"] == [{"start_s": 2.0, "duration_s": 4.0, "reason": "pause"}] or (
        len(bob_manifest["gaps"]) == 1 and abs(bob_manifest["gaps"][0]["duration_s"] - 4.0) < 0.1
    )
    # Carol's lost upload was found in the source listing.
    carol = stack.ledger.recording(recording_id("carol"))
    assert [s.recovered for s in carol.segments] == [True]

    wait_for(lambda: room_notes(receiver), timeout=30, what="room.archived")
    time.sleep(2)
    [note] = room_notes(receiver)
    Webhook(whsec).verify(note.body, note.headers)
    body = parse_body(note)
    assert body["type"] == "room.archived" and body["error"] is None
    assert note.headers["webhook-id"] == f"msg_{rid}_r1_archived"
    assert body["room"]["id"] == rid and body["room"]["revision"] == 1
    assert body["room"]["TaskID"] == str(TASK) and body["room"]["RoomID"] == ROOM
    assert body["room"]["participants"] == manifest["participants"]
    assert body["manifest"] == f"s3://{bucket}/{prefix}manifest.json"
    [artifact] = body["artifacts"]
    assert artifact["sha256"] == hashlib.sha256(mix.read_bytes()).hexdigest()


def test_a_late_user_makes_revision_2_of_the_room(
    stack: Stack, s3_client, bucket, receiver, tmp_path: Path
):
    """Two users make revision 1; a third who comes later makes revision 2 under the same
    prefix, with nothing duplicated; both revisions are notified once each."""
    first = {u: USERS[u] for u in ("alice", "carol")}
    post_all(stack, speak(tmp_path, s3_client, bucket, first), seed=3)
    rid = room_id(BIZ, ROOM, str(TASK))
    assert stack.wait_for_state(rid, ("archived", "failed"), timeout=120).state == "archived"
    prefix = f"archive/gme/{BIZ}/rooms/{rid}/"
    assert len(get_json(s3_client, bucket, f"{prefix}manifest.json")["participants"]) == 2

    late = {"dave": (1320.0, [(12, 1.5)])}
    post_all(stack, speak(tmp_path, s3_client, bucket, late), seed=4)
    wait_for(
        lambda: (r := stack.ledger.recording(rid)) and r.revision == 2 and r.state == "archived",
        timeout=120,
        what="revision 2",
        interval=0.5,
    )
    manifest = get_json(s3_client, bucket, f"{prefix}manifest.json")
    assert manifest["revision"] == 2
    assert {p["UserID"]: p["offset_s"] for p in manifest["participants"]} == {
        "alice": 0, "carol": 4, "dave": 12,
    }  # fmt: skip
    assert archived_keys(s3_client, bucket, prefix) == sorted([
        f"{prefix}{rid}.m4a", f"{prefix}{rid}.peaks.json",
        f"{prefix}manifest.json", f"{prefix}timeline.json",
    ])  # fmt: skip
    mix = tmp_path / "room2.m4a"
    s3_client.download_file(bucket, f"{prefix}{rid}.m4a", str(mix))
    assert abs(duration(mix) - 13.5) < 0.25
    # Everyone is still heard where they spoke, and only there, at the same loudness.
    users = {**first, **late}
    assert_heard_where_they_spoke(mix, WINDOWS_2, users)
    assert abs(integrated_loudness(mix) - (-16.0)) <= 1.5
    assert manifest["loudness"]["target_lufs"] == -16.0
    wait_for(lambda: len(room_notes(receiver)) >= 2, timeout=30, what="both room notifications")
    time.sleep(2)
    ids = sorted(n.headers["webhook-id"] for n in room_notes(receiver))
    assert ids == [f"msg_{rid}_r1_archived", f"msg_{rid}_r2_archived"]
    assert [r.revision for r in stack.ledger.runs_for(rid)] == [1, 2]
