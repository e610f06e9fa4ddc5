"""Transcripts through the whole pipeline as real processes (Redis, PostgreSQL or SQLite,
an S3 server over HTTP, ffmpeg, pocketsphinx): speech said by espeak-ng at known times on
two users' tracks of one room (one with a pause) comes back as words on the room's clock
under the right user, in a VTT that parses, found by search, a flag word flagged; media
workers and the transcribe worker are apart. A CSS stream's speech is transcribed as one
speaker, its stream id, and the transcribe worker counts it in its metrics. An engine that
fails leaves the recording archived, sends transcript.failed and is counted by reason."""

import hashlib
import io
import json
import subprocess
import time
from pathlib import Path

import pytest
import requests
import webvtt
from standardwebhooks.webhooks import Webhook

from storage.domain.rooms import room_id
from tests.support.css import APPID as CSS_APPID
from tests.support.css import KEY as CSS_KEY
from tests.support.css import T0 as CSS_T0
from tests.support.css import callback as css_callback
from tests.support.media import speech_track
from tests.support.metrics import sample
from tests.support.rooms import RoomTask
from tests.support.services import free_port
from tests.support.signing import sign_gme
from tests.support.stack import FileServer, Stack, parse_body, stack_env
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


_ROOM_TASK = RoomTask(BIZ, ROOM, TASK)
recording_id, callback = _ROOM_TASK.recording_id, _ROOM_TASK.callback


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
    hits = stack.ledger.search_transcripts("charlie").hits
    assert {(h.recording_id, h.speaker, h.room_id) for h in hits} == {
        (recording_id("alice"), "alice", rid)
    }
    assert any(abs(h.start_s - expected["alice"]["charlie"][0]) <= TOLERANCE_S for h in hits)
    [hit] = stack.ledger.search_transcripts("hotel").hits
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


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_late_user_makes_the_next_revision_of_the_rooms_transcript(
    stack: Stack, s3_client, bucket, receiver, tmp_path: Path
):
    """alice and bob make the room's revision 1 and its transcript; juliet, who comes at
    12 s, makes revision 2, whose transcript has all three on the room's clock, notified
    as revision 2's transcript.ready."""
    first = {"alice": [(0, 3.0, [("alpha", 1.0)])], "bob": [(2, 3.0, [("delta", 0.8)])]}
    bodies, expected = say(tmp_path, s3_client, bucket, first)
    for body in bodies:
        assert stack.post_gme(body, sign(body)) == 200
    rid = room_id(BIZ, ROOM, str(TASK))
    wait_for(lambda: (t := stack.ledger.transcript_of(rid)) and t.state == "ready",
             timeout=180, what="the room's first transcript")  # fmt: skip
    assert stack.ledger.recording(rid).revision == 1

    late_bodies, late = say(tmp_path, s3_client, bucket, {"juliet": [(12, 3.0, [("india", 0.5)])]})
    for body in late_bodies:
        assert stack.post_gme(body, sign(body)) == 200
    wait_for(
        lambda: (t := stack.ledger.transcript_of(rid)) and t.revision == 2 and t.state == "ready",
        timeout=180, what="the room's revision 2 transcript",
    )  # fmt: skip
    doc = get_json(s3_client, bucket, f"archive/gme/{BIZ}/rooms/{rid}/{rid}.transcript.json")
    said = [(w["w"], s["speaker"], w["start_s"]) for s in doc["segments"] for w in s["words"]]
    for user, words in {**expected, **late}.items():
        for word, (a, _b) in words.items():
            assert any(w == word and u == user and abs(t - a) <= TOLERANCE_S
                       for w, u, t in said), (user, word, a, said)  # fmt: skip
    assert stack.ledger.transcript_of(rid, revision=1).document["segments"] != doc["segments"]
    wait_for(
        lambda: any(n.headers["webhook-id"] == f"msg_{rid}_r2_transcript_ready"
                    for n in notes(receiver, "transcript.ready")),
        timeout=60, what="revision 2's transcript.ready",
    )  # fmt: skip


def speech_metrics(stack: Stack) -> int:
    """The port the next worker started serves its metrics on."""
    port = free_port()
    stack.env.update(RECPIPE_METRICS_PORT=str(port), RECPIPE_METRICS_HOST="127.0.0.1")
    return port


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
    speech_metrics(s)
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
    rid = RoomTask(BIZ, ROOM, TASK, record_mode=1).recording_id("zoe")
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
    metrics = f"http://127.0.0.1:{stack.env['RECPIPE_METRICS_PORT']}/metrics"
    text = requests.get(metrics, timeout=10).text
    assert sample(text, "recpipe_transcript_failures_total", reason="engine") == 1


# A CSS stream's words, at their second in its one file.
CSS_SAID = [("golf", 1.0), ("kilo", 3.5)]


@pytest.fixture
def css_stack(tmp_path, pg_url, s3_endpoint, bucket, redis_url, receiver, whsec):
    """A CSS stream's mp4 (test pattern and speech by espeak-ng) on a real HTTP server;
    media workers and a transcribe worker with pocketsphinx."""
    www = tmp_path / "www"
    www.mkdir()
    expected = speech_track(tmp_path / "speech.mp3", CSS_SAID, 6.0)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc=size=160x120:rate=15:duration=6",
         "-i", str(tmp_path / "speech.mp3"), "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-shortest",
         str(www / "talk.mp4")],
        check=True,
    )  # fmt: skip
    server = FileServer(www)
    (tmp_path / "words.txt").write_text("\n".join(w for w, _ in CSS_SAID) + "\n")
    (tmp_path / "flags.txt").write_text("kilo\n")
    env = stack_env(
        tmp_path, pg_url, redis_url, s3_endpoint, bucket,
        RECPIPE_CSS_CALLBACK_KEY=CSS_KEY, RECPIPE_CSS_ALLOWED_HOSTS=server.allowed,
        RECPIPE_NOTIFY_URLS=receiver.url, RECPIPE_NOTIFY_SECRET=whsec,
        RECPIPE_TRANSCRIBE="pocketsphinx",
        RECPIPE_POCKETSPHINX_WORDS=str(tmp_path / "words.txt"),
        RECPIPE_FLAG_WORDS=str(tmp_path / "flags.txt"),
    )  # fmt: skip
    s = Stack(env, tmp_path / "logs")
    s.start_webhook()
    s.start_worker("media", queues="light,media")
    metrics = f"http://127.0.0.1:{speech_metrics(s)}/metrics"
    s.start_worker("speech", concurrency=1, beat=False, queues="transcribe")
    yield s, server, expected, metrics
    s.stop()
    server.close()


def test_a_css_recording_is_transcribed_as_one_speaker_its_stream(
    css_stack, s3_client, bucket, receiver, whsec
):
    """A CSS file's speech comes back on the recording's timeline under its stream id (one
    speaker), beside its media with sha256 in the manifest, in a VTT that parses, found by
    search; transcript.ready, signed, carries the CSS recording as recording.archived does."""
    stack, server, expected, metrics = css_stack
    body = css_callback("talkcam", "t1", "mp4", server.url("talk.mp4"), CSS_T0, CSS_T0 + 6)
    assert stack.post_css(body) == 200
    [rid] = stack.ledger.find_recordings("t1")
    assert stack.wait_for_state(rid, ("archived", "failed"), 180).state == "archived", (
        stack.log_text()
    )
    wait_for(lambda: notes(receiver, "transcript.ready"), timeout=180, what="transcript.ready")

    [archived] = notes(receiver, "recording.archived")
    [ready] = notes(receiver, "transcript.ready")
    Webhook(whsec).verify(ready.body, ready.headers)
    body = parse_body(ready)
    assert body["recording"] == parse_body(archived)["recording"]
    assert body["recording"]["source"] == "css" and body["recording"]["css"]["stream_id"] == (
        "talkcam"
    )
    assert body["transcript"]["speakers"] == ["talkcam"] and body["transcript"]["words"] >= 2
    assert ready.headers["webhook-id"] == f"msg_{rid}_r1_transcript_ready"

    prefix = f"archive/css/{CSS_APPID}/{rid}/"
    manifest = get_json(s3_client, bucket, prefix + "manifest.json")
    raw = get_json_text(s3_client, bucket, prefix + f"{rid}.transcript.json")
    assert manifest["transcript"]["json"]["sha256"] == hashlib.sha256(raw.encode()).hexdigest()
    doc = json.loads(raw)
    assert {s["speaker"] for s in doc["segments"]} == {"talkcam"}
    # pocketsphinx knows one language and gives no probability for it: both are said.
    assert (doc["language"], doc["language_probability"]) == ("en", None)
    assert body["transcript"]["language"] == "en"
    assert body["transcript"]["language_probability"] is None
    said = [w for s in doc["segments"] for w in s["words"]]
    for word, (a, b) in expected.items():
        near = [w for w in said if w["w"] == word and abs(w["start_s"] - a) <= TOLERANCE_S
                and abs(w["end_s"] - b) <= TOLERANCE_S]  # fmt: skip
        assert near, (word, a, b, doc)
    captions = webvtt.from_buffer(
        io.StringIO(get_json_text(s3_client, bucket, prefix + f"{rid}.vtt"))
    ).captions
    assert {c.voice for c in captions} == {"talkcam"}
    [hit] = stack.ledger.search_transcripts("kilo").hits
    assert (hit.recording_id, hit.speaker, hit.source, hit.room_id) == (rid, "talkcam", "css", None)
    [flag] = body["flags"]
    assert (flag["speaker"], flag["match"]) == ("talkcam", "kilo")
    assert abs(flag["start_s"] - expected["kilo"][0]) <= TOLERANCE_S

    # What the transcribe worker counted: one transcript, its words, its flag.
    text = requests.get(metrics, timeout=10).text
    engine = {"engine": "pocketsphinx"}
    assert sample(text, "recpipe_transcribe_seconds_count", **engine) == 1
    assert sample(text, "recpipe_transcribe_realtime_factor_count", **engine) == 1
    assert sample(text, "recpipe_transcribe_realtime_factor_sum", **engine) > 0
    assert sample(text, "recpipe_transcript_words_total", **engine) == body["transcript"]["words"]
    assert sample(text, "recpipe_transcript_flags_total") == 1
