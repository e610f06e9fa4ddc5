"""`recpipe simulate`: a short real recording and its signed callbacks, as the vendor sends them."""

from __future__ import annotations

import base64
import functools
import json
import random
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from foundation.config import Settings
from storage.domain import GmeRecordingKey
from storage.domain.rooms import room_id
from storage.objectstore import store_from_url
from webhook.verify import css_sign, gme_signature

# (label, body, Signature header)
Callback = tuple[str, bytes, str]


@dataclass(frozen=True)
class SimulatedRecording:
    recording_id: str
    keys: list[str]
    callbacks: list[Callback]


def tone(path: Path, frequency: float, seconds: float, sample_rate: int = 44100) -> None:
    """An mp3 sine tone, made with ffmpeg's own generator."""
    source = f"sine=frequency={frequency}:duration={seconds}:sample_rate={sample_rate}"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", source,
            "-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k", str(path),
        ],
        check=True,
    )  # fmt: skip


def gme_body(key: GmeRecordingKey, event_type: int, seq_no: int, file_name: str) -> bytes:
    payload = {
        "BizID": key.biz_id,
        "RoomID": key.room_id,
        "UserID": key.user_id,
        "TaskID": int(key.task_id),
        "RecordMode": key.record_mode,
        "Timestamp": int(time.time()),
        "EventType": event_type,
        "Detail": {"SeqNo": seq_no, "FileName": file_name},
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def sign_gme(secret: bytes, body: bytes) -> str:
    return base64.b64encode(gme_signature(secret, body)).decode()


def simulate_gme_recording(
    settings: Settings,
    biz_id: int,
    *,
    segments: int = 3,
    first_seconds: float = 4.0,
    seed: int | None = None,
) -> SimulatedRecording:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    key = GmeRecordingKey(
        biz_id=biz_id,
        room_id=str(rng.randint(100, 99999)),
        user_id=str(rng.randint(100, 99999)),
        task_id=str(446946705284000000 + rng.randint(0, 10**15)),
        record_mode=1,
    )
    store = store_from_url(settings.gme_source_url)
    secret = settings.gme_secret_keys[biz_id]
    started = datetime.now(UTC)
    keys: list[str] = []
    callbacks: list[Callback] = []
    with tempfile.TemporaryDirectory() as tmp:
        offset = 0.0
        for seq in range(segments):
            seconds = round(first_seconds * (1.0, 1.5, 0.75)[seq % 3], 2)
            stamp = (started + timedelta(seconds=offset)).strftime("%Y-%m-%d-%H-%M-%S")
            file_name = f"{biz_id}_{key.room_id}/{stamp}_{key.task_id}_audio_{seq}.mp3"
            local = Path(tmp) / f"{seq}.mp3"
            tone(local, 330.0 * (seq + 1), seconds)
            store.put(file_name, local, "audio/mpeg")
            keys.append(file_name)
            offset += seconds
            for event_type in (1, 2, 3):
                body = gme_body(key, event_type, seq, file_name)
                label = f"seq {seq} event {event_type}"
                callbacks.append((label, body, sign_gme(secret, body)))
    rng.shuffle(callbacks)
    uploads = [c for c in callbacks if c[0].endswith("event 3")]
    duplicate = rng.choice(uploads)
    callbacks.insert(rng.randrange(len(callbacks) + 1), (duplicate[0] + " (again)", *duplicate[1:]))
    return SimulatedRecording(key.recording_id, keys, callbacks)


@dataclass(frozen=True)
class SimulatedRoom:
    room_id: str
    recording_ids: list[str]
    callbacks: list[Callback]


def simulate_gme_room(
    settings: Settings,
    biz_id: int,
    *,
    users: int = 3,
    seconds: float = 4.0,
    seed: int | None = None,
) -> SimulatedRoom:
    """Several users of one task (RecordMode 0), joining 2 s apart, each a tone of its
    own; the second user mutes after `seconds`/2 for `seconds` and speaks again (two
    segments). Callbacks shuffled, with a duplicate."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    room = str(rng.randint(100, 99999))
    task_id = str(446946705284000000 + rng.randint(0, 10**15))
    store = store_from_url(settings.gme_source_url)
    secret = settings.gme_secret_keys[biz_id]
    started = datetime.now(UTC)
    callbacks: list[Callback] = []
    recording_ids = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(users):
            user = f"user{n + 1}"
            key = GmeRecordingKey(biz_id, room, user, task_id, 0)
            recording_ids.append(key.recording_id)
            join = 2.0 * n
            # (start on the room's clock, length): user 2 pauses between two segments.
            pieces = (
                [(join, seconds)]
                if n != 1
                else [(join, seconds / 2), (join + seconds * 1.5, seconds / 2)]
            )
            for seq, (at, length) in enumerate(pieces):
                stamp = (started + timedelta(seconds=at)).strftime("%Y-%m-%d-%H-%M-%S")
                file_name = f"{biz_id}_{room}_{user}/{stamp}_{task_id}_audio_{seq}.mp3"
                local = Path(tmp) / f"{user}-{seq}.mp3"
                tone(local, 330.0 * (n + 1), length)
                store.put(file_name, local, "audio/mpeg")
                for event_type in (1, 2, 3):
                    body = gme_body(key, event_type, seq, file_name)
                    callbacks.append(
                        (f"{user} seq {seq} event {event_type}", body, sign_gme(secret, body))
                    )
    rng.shuffle(callbacks)
    duplicate = rng.choice(callbacks)
    callbacks.insert(rng.randrange(len(callbacks) + 1), (duplicate[0] + " (again)", *duplicate[1:]))
    return SimulatedRoom(room_id(biz_id, room, task_id), recording_ids, callbacks)


def post_callbacks(url: str, callbacks: list[Callback], timeout: float = 10.0) -> list[int]:
    statuses = []
    with requests.Session() as session:
        for _label, body, signature in callbacks:
            response = session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", "Signature": signature},
                timeout=timeout,
            )
            statuses.append(response.status_code)
    return statuses


# -- CSS ---------------------------------------------------------------------------


def video(path: Path, frequency: float, seconds: float, extra: tuple[str, ...] = ()) -> None:
    """A small H.264/AAC test-pattern video whose sound is a sine tone."""
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=15:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "15",
            "-c:a", "aac", "-b:a", "64k", "-shortest", *extra, str(path),
        ],
        check=True,
    )  # fmt: skip


class MediaServer:
    """Serves a directory over HTTP from a thread, the way the VOD domain serves files."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = ThreadingHTTPServer((host, port), handler)
        self.host, self.port = host, int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def css_body(
    key: str, appid: int, stream: str, file_id: str, fmt: str, url: str, start: int, end: int
) -> dict[str, object]:
    """A CSS event 100 body as the vendor sends it, signed: `t` 10 minutes ahead."""
    t = int(time.time()) + 600
    return {
        "event_type": 100, "appid": appid, "app": "push.example.com", "appname": "live",
        "stream_id": stream, "channel_id": stream, "file_id": file_id,
        "record_file_id": file_id, "file_format": fmt, "task_id": "",
        "start_time": start, "end_time": end, "start_time_usec": 0, "end_time_usec": 0,
        "duration": end - start, "file_size": 0, "stream_param": "", "video_url": url,
        "media_start_time": 0, "record_bps": 0,
        "callback_ext": json.dumps({"video_codec": "h264", "resolution": "320x240"}),
        "t": t, "sign": css_sign(key, t),
    }  # fmt: skip


@dataclass(frozen=True)
class SimulatedCss:
    recordings: dict[str, str]  # label -> one file id of that recording
    callbacks: list[tuple[str, dict[str, object]]]


def simulate_css_recordings(
    key: str,
    appid: int,
    folder: Path,
    server: MediaServer,
    *,
    seconds: float = 3.0,
    seed: int | None = None,
) -> SimulatedCss:
    """A stream split into two mp4 files with adjacent time ranges (different tones, so the
    join order is audible) and one HLS recording, made in `folder` (which `server` serves),
    with their callbacks shuffled and one sent twice."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    run = f"{int(time.time())}{rng.randint(100, 999)}"
    start = int(time.time()) - 60
    callbacks: list[tuple[str, dict[str, object]]] = []
    split_stream = f"demo_split_{run}"
    for part, frequency in enumerate((440.0, 880.0)):
        name = f"{split_stream}_{part}.mp4"
        video(folder / name, frequency, seconds)
        file_id = f"{run}{part}"
        begin = start + int(part * seconds)
        body = css_body(
            key, appid, split_stream, file_id, "mp4", server.url(name), begin, begin + int(seconds)
        )
        callbacks.append((f"{split_stream} part {part}", body))
    hls_stream = f"demo_hls_{run}"
    hls = folder / hls_stream
    hls.mkdir()
    video(
        hls / "index.m3u8", 660.0, seconds,
        ("-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"),
    )  # fmt: skip
    hls_id = f"{run}9"
    callbacks.append(
        (
            f"{hls_stream} (hls)",
            css_body(
                key, appid, hls_stream, hls_id, "hls", server.url(f"{hls_stream}/index.m3u8"),
                start, start + int(seconds),
            ),
        )
    )  # fmt: skip
    rng.shuffle(callbacks)
    duplicate = rng.choice(callbacks)
    callbacks.insert(rng.randrange(len(callbacks) + 1), (duplicate[0] + " (again)", duplicate[1]))
    return SimulatedCss({split_stream: f"{run}0", hls_stream: hls_id}, callbacks)


def post_css_callbacks(
    url: str, callbacks: list[tuple[str, dict[str, object]]], timeout: float = 10.0
) -> list[int]:
    with requests.Session() as session:
        return [session.post(url, json=body, timeout=timeout).status_code for _, body in callbacks]
