"""Transcripts through the whole pipeline as real processes (Redis, PostgreSQL or SQLite,
an S3 server over HTTP, ffmpeg, pocketsphinx): speech said by espeak-ng at known times on
two users' tracks of one room (one with a pause) comes back as words on the room's clock
under the right user, in a VTT that parses, found by search, a flag word flagged; media
workers and the transcribe worker are apart. An engine that fails leaves the recording
archived and sends transcript.failed."""

import hashlib
import io
import json
import time
from pathlib import Path

import pytest
import webvtt
from standardwebhooks.webhooks import Webhook

from storage.domain import GmeRecordingKey
from storage.domain.rooms import room_id
from tests.support.media import speech_track
from tests.support.signing import sign_gme
from tests.support.stack import Stack, parse_body
from tests.support.waits import wait_for

BIZ, SECRET, ROOM = 1400000000, "transcript-test-key", "500"
TASK = 446946705284000888
# user: [(clock second of 10:00:ss, seconds, [(word, second in the segment)])]
USERS = {
    "alice": [(0, 7.0, [("alpha", 1.0), ("bravo", 2.2), ("charlie", 4.6)])],
    "bob": [(2, 3.0, [("delta", 0.8)]), (9, 3.0, [("hotel", 0.5), ("india", 1.6)])],
}
WORDS = sorted({w for segments in USERS.values() for _, _, said in segments for w, _ in said})
FLAG = "bravo"
TOLERANCE_S = 0.5


def recording_id(user: str) -> str:
    return GmeRecordingKey(BIZ, ROOM, user, str(TASK), 0).recording_id


def callback(user: str, event_type: int, seq: int, file_name: str) -> bytes:
    return json.dumps(
        {
            "BizID": BIZ, "RoomID": ROOM, "UserID": user, "TaskID": TASK, "RecordMode": 0,
            "Timestamp": int(time.time()), "EventType": event_type,
            "Detail": {"SeqNo": seq, "FileName": file_name},
        }
    ).encode()  # fmt: skip


def sign(body: bytes) -> str:
    return sign_gme(SECRET, body)


def say(tmp_path: Path, s3_client, bucket: str, users: dict) -> tuple[list[bytes], dict]:
    """Upload each user's segments; return the callbacks and, per user, each word's sound
    (start, end) on the room's clock (second 0 = 10:00:00, alice's first segment)."""
    bodies, expected = [], {}
    for user, segments in users.items():
        for seq, (second, seconds, said) in enumerate(segments):
            key = f"{BIZ}_{ROOM}_{user}/2026-11-21-10-00-{second:02d}_{TASK}_audio.mp3"
            path = tmp_path / f"{user}-{seq}.mp3"
            for word, (a, b) in speech_track(path, said, seconds).items():
                expected.setdefault(user, {})[word] = (second + a, second + b)
            s3_client.upload_file(str(path), bucket, f"cos/{key}")
            bodies += [callback(user, ev, seq, key) for ev in (1, 2, 3)]
    return bodies, expected


def get_json(s3_client, bucket: str, key: str) -> dict:
    return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def notes(receiver, kind: str) -> list:
    return [r for r in receiver.requests if parse_body(r)["type"] == kind]


def env_for(tmp_path, database_url, s3_endpoint, bucket, redis_url, receiver, whsec, **extra):
    return {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": database_url,
        "RECPIPE_BROKER_URL": redis_url,
        "RECPIPE_GME_SOURCE_URL": f"s3://{bucket}/cos?endpoint_url={s3_endpoint}",
        "RECPIPE_ARCHIVE_URL": f"s3://{bucket}/archive?endpoint_url={s3_endpoint}",
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_NOTIFY_URLS": receiver.url,
        "RECPIPE_NOTIFY_SECRET": whsec,
        "RECPIPE_SETTLE_SECONDS": "2",
        "RECPIPE_MAX_WAIT_SECONDS": "4",
        "RECPIPE_SWEEP_SECONDS": "1",
        **extra,
    }


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"


@pytest.fixture
def stack(tmp_path, database_url, s3_endpoint, bucket, redis_url, receiver, whsec):
    (tmp_path / "words.txt").write_text("\n".join(WORDS) + "\n")
    (tmp_path / "flags.txt").write_text(f"# flagged for review\n{FLAG.upper()}\n")
    env = env_for(
        tmp_path, database_url, s3_endpoint, bucket, redis_url, receiver, whsec,
        RECPIPE_TRANSCRIBE="pocketsphinx",
        RECPIPE_POCKETSPHINX_WORDS=str(tmp_path / "words.txt"),
        RECPIPE_FLAG_WORDS=str(tmp_path / "flags.txt"),
    )  # fmt: skip
    s = Stack(env, tmp_path / "logs")
    s.start_webhook()
    s.start_worker("media", queues="light,media")
    s.start_worker("speech", concurrency=1, beat=False, queues="transcribe")
    yield s
    s.stop()


def test_words_come_back_on_the_rooms_clock_under_the_right_user(
    stack: Stack, s3_client, bucket, receiver, whsec, tmp_path: Path
):
    """Each user's transcript on its own timeline, the room's on the room's clock; VTT;
    search; a flag; signed transcript.ready after recording.archived and room.archived."""
    bodies, expected = say(tmp_path, s3_client, bucket, USERS)
    for body in bodies:
        assert stack.post_gme(body, sign(body)) == 200
    rid = room_id(BIZ, ROOM, str(TASK))
    for user in USERS:
        assert stack.wait_for_state(recording_id(user), ("archived", "failed"), 120).state == (
            "archived"
        ), stack.log_text()
    assert stack.wait_for_state(rid, ("archived", "failed"), 120).state == "archived"
    wait_for(lambda: len(notes(receiver, "transcript.ready")) >= 3, timeout=180,
             what="three transcript.ready")  # fmt: skip

    starts = {"alice": 0.0, "bob": 2.0}  # each recording's timeline starts at its first segment
    for user in USERS:
        prefix = f"archive/gme/{BIZ}/{recording_id(user)}/"
        manifest = get_json(s3_client, bucket, prefix + "manifest.json")
        doc = get_json(s3_client, bucket, "archive/" + manifest["transcript"]["json"]["key"])
        assert doc["engine"] == "pocketsphinx" and doc["language"] == "en"
        said = [w for s in doc["segments"] for w in s["words"]]
        assert {s["speaker"] for s in doc["segments"]} == {user}
        for word, (a, b) in expected[user].items():
            near = [w for w in said if w["w"] == word
                    and abs(w["start_s"] - (a - starts[user])) <= TOLERANCE_S
                    and abs(w["end_s"] - (b - starts[user])) <= TOLERANCE_S]  # fmt: skip
            assert near, (user, word, a - starts[user], doc)
        # A constrained decoder may hear a word twice in one sound, never in the silence.
        for w in said:
            assert any(a - TOLERANCE_S <= w["start_s"] + starts[user] <= b + TOLERANCE_S
                       for a, b in expected[user].values()), (user, w)  # fmt: skip
            assert 0.0 <= w["p"] <= 1.0
        data = s3_client.get_object(
            Bucket=bucket, Key="archive/" + manifest["transcript"]["json"]["key"]
        )
        raw = data["Body"].read()
        assert manifest["transcript"]["json"]["sha256"] == hashlib.sha256(raw).hexdigest()
        vtt = s3_client.get_object(Bucket=bucket, Key=prefix + f"{recording_id(user)}.vtt")
        vtt_text = vtt["Body"].read().decode()
        assert (
            manifest["transcript"]["vtt"]["sha256"] == hashlib.sha256(vtt_text.encode()).hexdigest()
        )
        captions = webvtt.from_buffer(io.StringIO(vtt_text)).captions
        assert {c.voice for c in captions} == {user}
        assert [c.text for c in captions] == [s["text"] for s in doc["segments"]]
        assert [c.start_in_seconds for c in captions] == [
            int(s["start_s"]) for s in doc["segments"]
        ]

    # The room's transcript: both users merged by time on the room's clock.
    room_prefix = f"archive/gme/{BIZ}/rooms/{rid}/"
    room_manifest = get_json(s3_client, bucket, room_prefix + "manifest.json")
    room_doc = get_json(s3_client, bucket, "archive/" + room_manifest["transcript"]["json"]["key"])
    said = [(w["w"], s["speaker"], w["start_s"]) for s in room_doc["segments"] for w in s["words"]]
    starts = [s["start_s"] for s in room_doc["segments"]]
    assert starts == sorted(starts)  # merged by time
    for user, words in expected.items():
        for word, (a, _b) in words.items():
            assert any(w == word and u == user and abs(t - a) <= TOLERANCE_S
                       for w, u, t in said), (user, word, a, said)  # fmt: skip
    assert {u for _, u, _ in said} == set(USERS)
    captions = webvtt.from_buffer(
        io.StringIO(get_json_text(s3_client, bucket, room_prefix + f"{rid}.vtt"))
    ).captions
    assert [c.voice for c in captions] == [s["speaker"] for s in room_doc["segments"]]

    # A flag: alice's "bravo", with its time, in the JSON and in transcript.ready.
    alice_key = f"archive/gme/{BIZ}/{recording_id('alice')}/{recording_id('alice')}.transcript.json"
    [flag] = get_json(s3_client, bucket, alice_key)["flags"]
    assert (flag["speaker"], flag["match"]) == ("alice", FLAG.upper())
    assert flag["text"] and "<" not in json.dumps(flag)
    assert abs(flag["start_s"] - expected["alice"][FLAG][0]) <= TOLERANCE_S
    [flagged] = stack.ledger.transcript_flags(reviewed=False)
    assert flagged.recording_id == recording_id("alice")

    # Search, served by the ledger.
    hits = stack.ledger.search_transcripts("charlie")
    assert {(h.recording_id, h.speaker, h.room_id) for h in hits} == {
        (recording_id("alice"), "alice", rid)
    }
    assert any(abs(h.start_s - expected["alice"]["charlie"][0]) <= TOLERANCE_S for h in hits)
    [hit] = stack.ledger.search_transcripts("hotel")
    assert hit.speaker == "bob" and hit.recording_id == recording_id("bob")
    assert abs(hit.room_start_s - expected["bob"]["hotel"][0]) <= TOLERANCE_S
    assert abs(hit.start_s - (expected["bob"]["hotel"][0] - 2.0)) <= TOLERANCE_S

    # Notifications: archived first, then signed transcript.ready with the summary.
    time.sleep(1)
    ready = notes(receiver, "transcript.ready")
    assert len(ready) == 3
    for note in ready:
        Webhook(whsec).verify(note.body, note.headers)
    by_id = {}
    for note in ready:
        body = parse_body(note)
        about = body.get("recording") or body.get("room")
        by_id[about["id"]] = (note, body)
    assert set(by_id) == {recording_id("alice"), recording_id("bob"), rid}
    note, body = by_id[recording_id("alice")]
    assert note.headers["webhook-id"] == f"msg_{recording_id('alice')}_r1_transcript_ready"
    assert body["transcript"]["json"] == f"s3://{bucket}/{alice_key}"
    assert body["transcript"]["words"] >= 3 and body["transcript"]["speakers"] == ["alice"]
    assert [f["match"] for f in body["flags"]] == [FLAG.upper()]
    assert parse_body(by_id[rid][0])["transcript"]["speakers"] == ["alice", "bob"]
    order = [parse_body(r)["type"] for r in receiver.requests]
    assert order.index("room.archived") < max(
        i for i, t in enumerate(order) if t == "transcript.ready"
    )
    for user in USERS:
        first_archived = next(
            i for i, r in enumerate(receiver.requests)
            if parse_body(r)["type"] == "recording.archived"
            and parse_body(r)["recording"]["id"] == recording_id(user)
        )  # fmt: skip
        first_ready = next(
            i for i, r in enumerate(receiver.requests)
            if parse_body(r)["type"] == "transcript.ready"
            and (parse_body(r).get("recording") or {}).get("id") == recording_id(user)
        )  # fmt: skip
        assert first_archived < first_ready

    # The media workers never took a transcription: the speech worker did them all.
    media_log = (stack.logs / "media.log").read_text()
    speech_log = (stack.logs / "speech.log").read_text()
    assert '"task": "recpipe.transcribe"' not in media_log
    assert '"task": "recpipe.transcribe"' in speech_log
    assert speech_log.count("transcript.ready") == 3


def get_json_text(s3_client, bucket: str, key: str) -> str:
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


@pytest.fixture
def broken_engine_stack(tmp_path, pg_url, s3_endpoint, bucket, redis_url, receiver, whsec):
    """whisper on a model directory with every file but no model in them: the worker
    starts (the directory is complete), the engine fails when it loads."""
    model = tmp_path / "broken-model"
    model.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        (model / name).write_text("not a model")
    env = env_for(
        tmp_path, pg_url, s3_endpoint, bucket, redis_url, receiver, whsec,
        RECPIPE_TRANSCRIBE="whisper", RECPIPE_WHISPER_MODEL=str(model),
    )  # fmt: skip
    s = Stack(env, tmp_path / "logs")
    s.start_webhook()
    s.start_worker()
    yield s
    s.stop()


def test_an_engine_that_fails_leaves_the_recording_archived_and_sends_transcript_failed(
    broken_engine_stack: Stack, s3_client, bucket, receiver, whsec, tmp_path: Path
):
    stack = broken_engine_stack
    bodies, _ = say(tmp_path, s3_client, bucket, {"zoe": USERS["alice"]})
    for body in bodies:
        assert (
            stack.post_gme(
                body.replace(b'"RecordMode": 0', b'"RecordMode": 1'),
                sign(body.replace(b'"RecordMode": 0', b'"RecordMode": 1')),
            )
            == 200
        )
    rid = GmeRecordingKey(BIZ, ROOM, "zoe", str(TASK), 1).recording_id
    assert stack.wait_for_state(rid, ("archived", "failed"), 120).state == "archived"
    wait_for(lambda: notes(receiver, "transcript.failed"), timeout=120, what="transcript.failed")
    [failed] = notes(receiver, "transcript.failed")
    Webhook(whsec).verify(failed.body, failed.headers)
    body = parse_body(failed)
    assert body["recording"]["id"] == rid and body["error"].startswith("engine: ")
    assert failed.headers["webhook-id"] == f"msg_{rid}_r1_transcript_failed"
    assert [parse_body(r)["type"] for r in receiver.requests].count("recording.archived") == 1
    recording = stack.ledger.recording(rid)
    assert recording.state == "archived" and recording.revision == 1
    transcript = stack.ledger.transcript_of(rid)
    assert transcript.state == "failed" and transcript.attempts == 3
    manifest = get_json(s3_client, bucket, f"archive/gme/{BIZ}/{rid}/manifest.json")
    assert "transcript" not in manifest
