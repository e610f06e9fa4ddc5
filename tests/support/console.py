"""What the console's tests share: people and tokens, signing in through the form, and
recordings stored the way intake stores them, with hostile text in every field that came
from a callback."""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recpipe.console import auth
from storage.ledger import Ledger, utcnow
from webhook.callbacks import parse_css, parse_gme

BIZ = 1400000000
PASSWORD = "a long enough password"
# Breaks out of HTML text, attributes, a <script> block and a template, if printed raw.
HOSTILE = "\"'><script>alert(1)</script><img src=x onerror=alert(2)>{{7*7}}&amp;</script>"


@dataclass
class People:
    read_token: str
    operate_token: str


def add_people(ledger: Ledger) -> People:
    ledger.add_user("vera", "viewer", auth.hash_password(PASSWORD))
    ledger.add_user("otto", "operator", auth.hash_password(PASSWORD))
    read, operate = auth.new_token(), auth.new_token()
    ledger.add_token("reader", "read", auth.hash_token(read))
    ledger.add_token("robot", "operate", auth.hash_token(operate))
    return People(read, operate)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


_addresses = itertools.count(1)


def sign_in(client: Any, name: str, password: str = PASSWORD) -> Any:
    """Sign in through the form. A Flask test client is one browser: each signs in from an
    address of its own, as people do (sign-ins from one address are throttled)."""
    if client.environ_base.get("REMOTE_ADDR") == "127.0.0.1":
        n = next(_addresses)
        client.environ_base["REMOTE_ADDR"] = f"10.77.{n // 250}.{n % 250 + 1}"
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login", data={"name": name, "password": password, "csrf_token": token, "next": "/"}
    )


def store_gme(ledger: Ledger, seq: int, *, task: str, user: str = "999", room: str = "100") -> str:
    body = json.dumps(
        {
            "BizID": BIZ, "RoomID": room, "UserID": user, "TaskID": int(task), "RecordMode": 1,
            "Timestamp": int(time.time()), "EventType": 3,
            "Detail": {"SeqNo": seq, "FileName": f"{BIZ}_100/{seq}_{task}_audio.mp3"},
        }
    )  # fmt: skip
    return ledger.record_gme_event(
        parse_gme(body.encode()), body, {}, now=utcnow(), settle_seconds=30
    ).recording_id


def store_css(ledger: Ledger, *, text: str, **fields: Any) -> str:
    """A CSS file of stream live_7 with `text` in app, stream_param and callback_ext;
    `fields` override the callback's."""
    event = parse_css(
        {
            "event_type": 100, "appid": 1253000000, "app": text, "appname": "live",
            "stream_id": "live_7", "file_id": "f-77", "file_format": "mp4",
            "start_time": 1700000000, "end_time": 1700000060, "duration": 60,
            "video_url": "https://1253000000.vod2.myqcloud.com/x/f-77.mp4",
            "stream_param": text, "callback_ext": text, "t": 1700000600, "sign": "0" * 32,
            **fields,
        }
    )  # fmt: skip
    return ledger.record_css_file(
        event, "{}", {}, now=utcnow(), settle_seconds=60, join_gap_seconds=5
    ).recording_id


def archived_run(
    ledger: Ledger, rid: str, archive: Path, *, notification: str = "delivered", error: str = ""
) -> str:
    """A finished revision with timed steps, a real m4a in the local archive and a
    notification that was `delivered` or finally `failed`."""
    run_id = ledger.claim(rid, now=utcnow(), force=True)
    assert run_id
    for step in ("fetch", "concat", "transcode", "archive"):
        ledger.step(run_id, step, now=utcnow())
        ledger.step(run_id, step, now=utcnow(), ok=True, seconds=0.25)
    media = archive / "gme" / str(BIZ) / rid / f"{rid}.m4a"
    media.parent.mkdir(parents=True, exist_ok=True)
    media.write_bytes(bytes(range(256)) * 40)
    artifact = {"url": media.as_uri(), "format": "m4a", "bytes": media.stat().st_size,
                "sha256": "ab", "duration_s": 6.5}  # fmt: skip
    result = {"included": [0], "missing": [], "artifacts": [artifact]}
    ledger.finish_run(run_id, now=utcnow(), result=result, manifest_url="file:///m.json")
    [note] = ledger.create_notifications(
        run_id, "recording.archived", f"msg_{rid}_r1_archived", "{}",
        ["http://127.0.0.1:9/hooks"], utcnow(),
    )  # fmt: skip
    ledger.record_attempt(note, now=utcnow(), status_code=503, error=error or "HTTP 503",
                          duration_ms=5, final_state=None)  # fmt: skip
    ledger.record_attempt(note, now=utcnow(), status_code=None if notification == "failed" else 204,
                          error=error or None, duration_ms=4,
                          final_state=notification)  # fmt: skip
    return run_id


def store_user(ledger: Ledger, *, task: str, user: str, room: str, second: int) -> str:
    """A RecordMode 0 user's recording (one of a room) with one uploaded segment that
    starts `second` seconds into 10:00 on the room's clock."""
    name = f"{BIZ}_{room}_{user}/2026-11-21-10-00-{second:02d}_{task}_audio.mp3"
    body = json.dumps(
        {
            "BizID": BIZ, "RoomID": room, "UserID": user, "TaskID": int(task), "RecordMode": 0,
            "Timestamp": int(time.time()), "EventType": 3,
            "Detail": {"SeqNo": 0, "FileName": name},
        }
    )  # fmt: skip
    return ledger.record_gme_event(
        parse_gme(body.encode()), body, {}, now=utcnow(), settle_seconds=30
    ).recording_id


@dataclass
class StoredRoom:
    id: str
    members: list[str]
    participants: list[dict[str, Any]]


def archived_room(
    ledger: Ledger, archive: Path, *, task: str, room: str, users: list[tuple[str, float]]
) -> StoredRoom:
    """Users (UserID, offset on the room's clock) archived, their room mixed: a real m4a
    in the local archive under gme/<BizID>/rooms/<room id>/ with a timeline.json whose
    speech spans are on the room's clock, as the pipeline writes them."""
    members = []
    for user, offset in users:
        rid = store_user(ledger, task=task, user=user, room=room, second=int(offset))
        archived_run(ledger, rid, archive)
        members.append(rid)
    found = {ledger.note_room_member(rid, now=utcnow(), settle_seconds=30) for rid in members}
    [room_id] = found - {None}
    run_id = ledger.claim(room_id, now=utcnow(), force=True)
    assert run_id
    participants = [
        {"UserID": user, "recording_id": rid, "revision": 1, "offset_s": offset,
         "duration_s": 4.0}
        for (user, offset), rid in zip(users, members, strict=True)
    ]  # fmt: skip
    speech = [
        {"UserID": user, "spans": [[offset + 0.5, offset + 1.5], [offset + 2.0, offset + 3.5]]}
        for user, offset in users
    ]
    folder = archive / "gme" / str(BIZ) / "rooms" / room_id
    folder.mkdir(parents=True, exist_ok=True)
    media = folder / f"{room_id}.m4a"
    media.write_bytes(bytes(range(256)) * 40)
    (folder / "timeline.json").write_text(json.dumps({"participants": participants,
                                                      "speech": speech}))  # fmt: skip
    seconds = max(p["offset_s"] + p["duration_s"] for p in participants)
    artifact = {"url": media.as_uri(), "format": "m4a", "bytes": media.stat().st_size,
                "sha256": "cd", "duration_s": seconds}  # fmt: skip
    result = {"artifacts": [artifact], "participants": participants, "speech": speech}
    manifest = (folder / "manifest.json").as_uri()
    ledger.finish_run(run_id, now=utcnow(), result=result, manifest_url=manifest)
    return StoredRoom(room_id, members, participants)
