"""`recpipe simulate`: a short real recording and its signed callbacks, as the vendor sends them."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from recpipe.config import Settings
from storage.domain import GmeRecordingKey
from storage.objectstore import store_from_url
from webhook.verify import gme_signature

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
