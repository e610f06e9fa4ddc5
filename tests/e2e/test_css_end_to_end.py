"""CSS recordings through the whole pipeline as real processes: ffmpeg-made mp4, flv, HLS
and aac files served by a real HTTP server, Redis as broker, PostgreSQL as ledger, an S3
server over HTTP as archive."""

import json
import random
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.css import APPID, KEY, T0, archived_file, callback
from tests.support.media import decode, dominant_frequency, duration, make_hls, make_video, streams
from tests.support.services import free_port
from tests.support.stack import FileServer, Stack, parse_body, stack_env
from tests.support.waits import wait_for

SPLIT = [(440.0, 2.0), (880.0, 3.0)]  # (tone Hz, seconds) of the split stream's files
LATE = (1320.0, 1.5)


@pytest.fixture
def media(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    for i, (hz, seconds) in enumerate([*SPLIT, LATE]):
        make_video(root / f"split{i}.mp4", hz, seconds)
    make_video(root / "one.flv", 550.0, 2.5)
    make_hls(root / "hls", 660.0, 3.0)
    make_video(root / "voice.aac", 770.0, 2.0, video=("-vn",))
    server = FileServer(root)
    yield server, root
    server.close()


@pytest.fixture
def stack(tmp_path: Path, s3_endpoint, bucket, pg_url, redis_url, receiver, whsec, media):
    env = {
        **stack_env(tmp_path, pg_url, redis_url, s3_endpoint, bucket),
        "RECPIPE_CSS_CALLBACK_KEY": KEY,
        # The file server, and a port of 127.0.0.1 where nothing listens (unreachable).
        "RECPIPE_CSS_ALLOWED_HOSTS": f"{media[0].allowed},127.0.0.1:{free_port()}",
        "RECPIPE_NOTIFY_URLS": receiver.url,
        "RECPIPE_NOTIFY_SECRET": whsec,
        # Should a message be lost, the sweep takes the run over soon rather than after
        # the default 15 minutes.
        "RECPIPE_STUCK_AFTER_SECONDS": "30",
    }
    s = Stack(env, tmp_path / "logs")
    s.start_webhook()
    s.start_worker()
    yield s
    s.stop()


def test_css_formats_archive_split_streams_join_in_order_and_bad_urls_fail_alone(
    stack: Stack, media, s3_client, bucket, receiver, whsec, tmp_path: Path
):
    """mp4 (split in two), flv, hls and aac files archive as mp4+m4a with the right
    durations and streams; the split stream is one recording with its tones in order;
    a disallowed URL is refused at intake (400, nothing stored) and an unreachable one
    fails only its own recording, with the reason; a file arriving after the archive makes
    revision 2."""
    server, root = media
    gone = stack.env["RECPIPE_CSS_ALLOWED_HOSTS"].rsplit(":", 1)[1]
    lengths = [duration(root / f"split{i}.mp4") for i in range(3)]
    split = [
        callback("split", f"s{i}", "mp4", server.url(f"split{i}.mp4"), T0 + 2 * i, T0 + 2 * i + 2)
        for i in range(2)
    ]
    singles = {
        "flv": callback("flvcam", "f1", "flv", server.url("one.flv"), T0, T0 + 3),
        "hls": callback("hlscam", "h1", "hls", server.url("hls/master.m3u8"), T0, T0 + 3),
        "aac": callback("radio", "a1", "aac", server.url("voice.aac"), T0, T0 + 2),
        "unreachable": callback("gone", "u1", "mp4", f"http://127.0.0.1:{gone}/a.mp4", T0, T0 + 2),
    }
    disallowed = callback(
        "sneaky", "x1", "mp4", f"http://localhost:{server.port}/one.flv", T0, T0 + 2
    )
    assert stack.post_css(disallowed) == 400
    assert stack.ledger.find_recordings("x1") == []
    bodies = [*split, *singles.values()]
    random.Random(3).shuffle(bodies)
    bodies.insert(2, split[1])  # a vendor retry
    for body in bodies:
        assert stack.post_css(body) == 200

    def recording_of(file_id: str):
        [rid] = stack.ledger.find_recordings(file_id)
        try:
            return stack.wait_for_state(rid, ("archived", "failed"), timeout=180)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stack.log_text()}") from None

    runs = {}
    for name, file_id in [("split", "s0"), ("flv", "f1"), ("hls", "h1"), ("aac", "a1")]:
        recording = recording_of(file_id)
        assert recording.state == "archived", (name, recording.error, stack.log_text())
        runs[name] = stack.ledger.run(recording.current_run_id)
    assert stack.ledger.find_recordings("s1") == [runs["split"].recording_id]

    expected = {"split": sum(lengths[:2]), "flv": 2.5, "hls": 3.0, "aac": 2.0}
    for name, run in runs.items():
        formats = {a["format"]: a for a in run.result["artifacts"]}
        assert sorted(formats) == (["m4a"] if name == "aac" else ["m4a", "mp4"]), name
        for fmt, artifact in formats.items():
            path = archived_file(s3_client, bucket, artifact, tmp_path / f"{name}.{fmt}")
            assert duration(path) == pytest.approx(expected[name], abs=0.25), (name, fmt)
            assert streams(path) == (["h264", "aac"] if fmt == "mp4" else ["aac"]), (name, fmt)

    samples = decode(tmp_path / "split.m4a")
    start = 0.0
    for (hz, _), length in zip(SPLIT, lengths, strict=False):
        found = dominant_frequency(samples, start + length / 2)
        assert abs(found - hz) < 15, f"expected {hz} Hz at {start + length / 2:.2f}s, found {found}"
        start += length

    unreachable = recording_of("u1")
    assert unreachable.state == "failed" and "cannot connect" in unreachable.error

    wait_for(lambda: len(receiver.requests) >= 5, timeout=60, what="five notifications")
    bodies_by_id = {}
    for received in receiver.requests:
        Webhook(whsec).verify(received.body, received.headers)
        note = parse_body(received)
        bodies_by_id[note["recording"]["id"]] = note
    split_note = bodies_by_id[runs["split"].recording_id]
    assert split_note["type"] == "recording.archived"
    assert split_note["recording"]["source"] == "css"
    assert split_note["recording"]["css"] == {
        "appid": APPID, "app": "push.example.com", "appname": "live", "stream_id": "split",
        "file_ids": ["s0", "s1"], "start_time": T0, "end_time": T0 + 4,
    }  # fmt: skip
    assert split_note["segments"] == {"included": [0, 1], "missing": []}
    failed_note = bodies_by_id[unreachable.id]
    assert failed_note["type"] == "recording.failed" and "cannot connect" in failed_note["error"]
    manifest_key = split_note["manifest"].split(f"s3://{bucket}/", 1)[1]
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    assert [s["file_id"] for s in manifest["sources"]] == ["s0", "s1"]

    # A third part of the split stream after its archive: revision 2 with all three.
    late = callback("split", "s2", "mp4", server.url("split2.mp4"), T0 + 4, T0 + 6)
    assert stack.post_css(late) == 200
    rid = runs["split"].recording_id
    assert stack.ledger.find_recordings("s2") == [rid]
    wait_for(
        lambda: (r := stack.ledger.recording(rid)).revision == 2 and r.state == "archived",
        timeout=120,
        what="revision 2",
    )
    second = stack.ledger.run(stack.ledger.recording(rid).current_run_id)
    [m4a] = [a for a in second.result["artifacts"] if a["format"] == "m4a"]
    assert m4a["duration_s"] == pytest.approx(sum(lengths), abs=0.25)
    assert second.result["css"]["file_ids"] == ["s0", "s1", "s2"]
    names = sorted(
        o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix="archive/")["Contents"]
    )
    prefix = f"archive/css/{APPID}/{rid}/"
    assert [n for n in names if n.startswith(prefix)] == [
        f"{prefix}{rid}.m4a", f"{prefix}{rid}.mp4", f"{prefix}manifest.json",
    ]  # fmt: skip
