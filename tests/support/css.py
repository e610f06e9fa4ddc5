"""CSS recording callbacks as CSS sends them, signed with the key the end-to-end stacks are
given, and a file the pipeline archived, fetched back."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.signing import css_sign

KEY, APPID, T0 = "css-e2e-key", 1253000000, 1_763_700_000


def callback(stream: str, file_id: str, fmt: str, url: str, start: int, end: int) -> dict:
    t = int(time.time()) + 600
    return {
        "event_type": 100, "appid": APPID, "app": "push.example.com", "appname": "live",
        "stream_id": stream, "channel_id": stream, "file_id": file_id, "record_file_id": file_id,
        "file_format": fmt, "start_time": start, "end_time": end, "duration": end - start,
        "video_url": url, "callback_ext": '{"video_codec":"h264"', "t": t,
        "sign": css_sign(KEY, t),
    }  # fmt: skip


def archived_file(s3_client, bucket, artifact: dict, dest: Path) -> Path:
    key = artifact["url"].split(f"s3://{bucket}/", 1)[1]
    s3_client.download_file(bucket, key, str(dest))
    return dest
