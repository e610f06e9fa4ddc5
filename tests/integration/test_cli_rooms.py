"""Rooms for operators: `recpipe status --rooms`, `recpipe status <room id>` (users,
participants with their offsets, revisions) and `recpipe reprocess <room id>`."""

from __future__ import annotations

import json
import time

from storage.domain.rooms import room_id
from storage.ledger import Ledger, utcnow
from tests.support.cli import BIZ, TASK, cli, queue_length
from webhook.callbacks import parse_gme


def user_recording(cli_ledger: Ledger, user: str, second: int) -> str:
    """A RecordMode 0 user's recording with one uploaded segment, archived."""
    name = f"{BIZ}_200_{user}/2026-11-21-10-00-{second:02d}_{TASK}_audio.mp3"
    body = json.dumps(
        {
            "BizID": BIZ, "RoomID": "200", "UserID": user, "TaskID": int(TASK), "RecordMode": 0,
            "Timestamp": int(time.time()), "EventType": 3,
            "Detail": {"SeqNo": 0, "FileName": name},
        }
    )  # fmt: skip
    rid = cli_ledger.record_gme_event(
        parse_gme(body.encode()), body, {}, now=utcnow(), settle_seconds=30
    ).recording_id
    run_id = cli_ledger.claim(rid, now=utcnow(), force=True)
    artifact = {"url": f"file:///a/{rid}.m4a", "format": "m4a", "bytes": 10, "sha256": "ab",
                "duration_s": 5.0}  # fmt: skip
    cli_ledger.finish_run(run_id, now=utcnow(), result={"artifacts": [artifact]}, manifest_url="m")
    return rid


def test_status_lists_rooms_and_shows_one_and_reprocess_takes_a_room_id(cli_env, cli_ledger):
    alice, bob = user_recording(cli_ledger, "alice", 0), user_recording(cli_ledger, "bob", 3)
    assert cli_ledger.note_room_member(alice, now=utcnow(), settle_seconds=30) is None  # one user
    rid = cli_ledger.note_room_member(bob, now=utcnow(), settle_seconds=30)
    assert rid == room_id(BIZ, "200", TASK)
    assert cli_ledger.note_room_member(bob, now=utcnow(), settle_seconds=30) == rid  # no change
    run_id = cli_ledger.claim(rid, now=utcnow())
    participants = [
        {"UserID": "alice", "recording_id": alice, "revision": 1, "offset_s": 0.0,
         "duration_s": 5.0},
        {"UserID": "bob", "recording_id": bob, "revision": 1, "offset_s": 3.0, "duration_s": 5.0},
    ]  # fmt: skip
    cli_ledger.finish_run(
        run_id, now=utcnow(), result={"participants": participants}, manifest_url="file:///m"
    )

    listed = cli(cli_env, "status", "--rooms")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if rid in line]
    assert "archived" in row and " 2 " in row  # two users, revision 1
    as_json = json.loads(cli(cli_env, "status", "--rooms", "--json").stdout)
    assert as_json[0]["id"] == rid and as_json[0]["users"] == 2 and as_json[0]["TaskID"] == TASK

    shown = cli(cli_env, "status", rid)
    assert shown.returncode == 0, shown.stderr
    assert "revision 1" in shown.stdout and "participants" in shown.stdout
    assert alice in shown.stdout and bob in shown.stdout and "3.000" in shown.stdout
    detail = json.loads(cli(cli_env, "status", rid, "--json").stdout)
    assert detail["source"] == "room"
    assert {m["UserID"] for m in detail["members"]} == {"alice", "bob"}
    assert detail["runs"][0]["participants"] == participants
    # The newest archived revision's, at the top: what the console's `GET /api/v1/rooms/{id}`
    # serves (the same function).
    assert detail["participants"] == participants and detail["mixed_revision"] == 1
    assert detail["manifest"] == "file:///m"
    for user_id in (alice, bob):
        assert json.loads(cli(cli_env, "status", user_id, "--json").stdout)["room"] == rid

    by_task = json.loads(cli(cli_env, "status", TASK, "--json").stdout)
    assert sorted(r["id"] for r in by_task) == sorted([alice, bob])  # the room by its own id

    again = cli(cli_env, "reprocess", rid)
    assert again.returncode == 0, again.stderr
    room = cli_ledger.recording(rid)
    assert room.revision == 2 and room.state == "processing"
    assert queue_length(cli_env, "media") == 1


def test_simulate_room_makes_staggered_users_with_a_pause(tmp_path):
    """Three users 2 s apart; the second has two segments 4 s apart (a pause); one
    duplicate callback; every key in the source."""
    from foundation.config import Settings
    from recpipe.simulate import simulate_gme_room
    from tasks.gme.timeline import segment_start

    settings = Settings.from_env(
        {"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_GME_SECRET_KEYS": f"{BIZ}=k"}
    )
    made = simulate_gme_room(settings, BIZ, users=3, seconds=2.0, seed=1)
    bodies = [json.loads(body) for _label, body, _sig in made.callbacks]
    assert len(bodies) == 4 * 3 + 1 and {b["RecordMode"] for b in bodies} == {0}
    names = sorted({(b["UserID"], b["Detail"]["SeqNo"], b["Detail"]["FileName"]) for b in bodies})
    starts = {(u, s): segment_start(n, settings.gme_time_zone) for u, s, n in names}
    first = starts[("user1", 0)]
    assert [(starts[(u, 0)] - first).total_seconds() for u in ("user1", "user2", "user3")] == [
        0, 2, 4
    ]  # fmt: skip
    assert (starts[("user2", 1)] - starts[("user2", 0)]).total_seconds() == 3  # 1 s + 2 s pause
    for _u, _s, name in names:
        assert (tmp_path / "source" / name).is_file()
    assert made.room_id == room_id(BIZ, bodies[0]["RoomID"], str(bodies[0]["TaskID"]))
