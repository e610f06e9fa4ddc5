"""GME recordings of tones for the end-to-end tests: their keys and callbacks, uploaded to
the source, posted signed to a running webhook, and checked in the archive (exactly the
expected objects, each segment's tone heard in SeqNo order)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from storage.domain import GmeRecordingKey
from storage.ledger import Ledger
from tests.support.media import decode, dominant_frequency, duration
from tests.support.signing import sign_gme
from tests.support.stack import Stack, stack_env
from tests.support.waits import wait_for

BIZ, SECRET = 1400000000, "durability-test-key"
TASK_BASE = 446946705284100000  # > 2**53
TONES = (440.0, 880.0, 1320.0)  # the tone of SeqNo 0, 1, 2


@dataclass(frozen=True)
class Recording:
    task_id: int
    room: str
    keys: tuple[str, ...]  # by SeqNo, relative to the source prefix

    @property
    def id(self) -> str:
        return GmeRecordingKey(BIZ, self.room, "999", str(self.task_id), 1).recording_id

    def callback(self, event_type: int, seq: int) -> bytes:
        return json.dumps(
            {
                "BizID": BIZ, "RoomID": self.room, "UserID": "999", "TaskID": self.task_id,
                "RecordMode": 1, "Timestamp": int(time.time()), "EventType": event_type,
                "Detail": {"SeqNo": seq, "FileName": self.keys[seq]},
            }
        ).encode()  # fmt: skip


def sign(body: bytes) -> str:
    return sign_gme(SECRET, body)


def recording(task_offset: int, segments: int, room: str = "100") -> Recording:
    task = TASK_BASE + task_offset
    keys = tuple(
        f"{BIZ}_{room}/2026-11-21-10-00-{seq:02d}_{task}_audio.mp3" for seq in range(segments)
    )
    return Recording(task, room, keys)


def upload(s3_client, bucket: str, rec: Recording, files: list[Path]) -> None:
    for key, path in zip(rec.keys, files, strict=False):
        s3_client.put_object(Bucket=bucket, Key=f"cos/{key}", Body=path.read_bytes())


def post_all(stack: Stack, bodies: list[bytes], threads: int = 8) -> list[int]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda body: stack.post_gme(body, sign(body)), bodies))


def archive_keys(s3_client, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="archive/"
    ):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)


def manifest(s3_client, bucket: str, rec: Recording) -> dict:
    key = f"archive/gme/{BIZ}/{rec.id}/manifest.json"
    return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def wait_all(stack: Stack, ids: list[str], timeout: float) -> dict[str, str]:
    def settled():
        states = {rid: getattr(stack.ledger.recording(rid), "state", None) for rid in ids}
        return states if all(s in ("archived", "failed") for s in states.values()) else None

    try:
        return wait_for(settled, timeout=timeout, interval=1, what=f"{len(ids)} recordings")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.log_text()}") from None


def make_env(tmp_path: Path, database_url: str, broker_url: str, s3: str, bucket: str, **extra):
    """A GME stack's settings (`stack_env` with the source and the keys)."""
    gme = {
        "RECPIPE_GME_SOURCE_URL": f"s3://{bucket}/cos?endpoint_url={s3}",
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_MAX_WAIT_SECONDS": "30",
    }
    return stack_env(tmp_path, database_url, broker_url, s3, bucket, **{**gme, **extra})


def migrate(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.migrate()
    ledger.dispose()


def callbacks_of(rec: Recording) -> list[bytes]:
    return [rec.callback(ev, seq) for seq in range(len(rec.keys)) for ev in (1, 2, 3)]


def check_sound(s3_client, bucket: str, rec: Recording, files: list[Path], tmp_path: Path) -> None:
    """The archived m4a holds each segment's tone, in SeqNo order."""
    local = tmp_path / f"{rec.id}.m4a"
    s3_client.download_file(bucket, f"archive/gme/{BIZ}/{rec.id}/{rec.id}.m4a", str(local))
    samples, start = decode(local), 0.0
    for seq in range(len(rec.keys)):
        length = duration(files[seq])
        found = dominant_frequency(samples, start + length / 2)
        assert abs(found - TONES[seq]) < 15, (rec.id, seq, found)
        start += length


def check_archive(s3_client, bucket: str, recs: list[Recording], formats=("m4a",)) -> None:
    """Exactly the outputs and the manifest of each recording; the manifest lists them."""
    assert archive_keys(s3_client, bucket) == sorted(
        f"archive/gme/{BIZ}/{rec.id}/{name}"
        for rec in recs
        for name in [
            *(f"{rec.id}.{fmt}" for fmt in formats),
            f"{rec.id}.peaks.json",
            "manifest.json",
            "timeline.json",
        ]
    )
    for rec in recs:
        found = manifest(s3_client, bucket, rec)
        assert [s["seq_no"] for s in found["sources"]] == list(range(len(rec.keys)))
        for output in found["outputs"]:
            head = s3_client.head_object(Bucket=bucket, Key=f"archive/{output['key']}")
            assert head["ContentLength"] == output["bytes"], output
