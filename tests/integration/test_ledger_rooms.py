"""The room aggregate on PostgreSQL and SQLite: members noted once, a room from the second
user on, the next revision on a real change only."""

import json
import time
from datetime import timedelta

from storage.domain.rooms import room_id
from storage.ledger import Ledger, utcnow
from webhook.callbacks import parse_gme

BIZ, TASK = 1400000000, "446946705284000555"


def archived_user(ledger: Ledger, user: str, record_mode: int = 0) -> str:
    body = json.dumps(
        {
            "BizID": BIZ, "RoomID": "9", "UserID": user, "TaskID": int(TASK),
            "RecordMode": record_mode, "Timestamp": int(time.time()), "EventType": 3,
            "Detail": {"SeqNo": 0, "FileName": f"{BIZ}_9_{user}/x_{TASK}.mp3"},
        }
    )  # fmt: skip
    rid = ledger.record_gme_event(
        parse_gme(body.encode()), body, {}, now=utcnow(), settle_seconds=30
    ).recording_id
    finish(ledger, rid)
    return rid


def finish(ledger: Ledger, rid: str) -> None:
    run_id = ledger.claim(rid, now=utcnow(), force=True)
    ledger.finish_run(run_id, now=utcnow(), result={"artifacts": []}, manifest_url="m")


def test_a_room_is_made_from_the_second_user_and_changes_only_on_news(ledger: Ledger):
    now = utcnow()
    alice = archived_user(ledger, "alice")
    assert ledger.note_room_member(alice, now=now, settle_seconds=30) is None
    assert ledger.note_room_member(alice, now=now, settle_seconds=30) is None
    bob = archived_user(ledger, "bob")
    rid = ledger.note_room_member(bob, now=now, settle_seconds=30)
    assert rid == room_id(BIZ, "9", TASK) and ledger.room_of(alice) == rid
    room = ledger.recording(rid)
    assert (room.source, room.state, room.revision) == ("room", "collecting", 0)
    assert room.identity == {"BizID": BIZ, "RoomID": "9", "TaskID": TASK}
    assert room.settle_due_at == now + timedelta(seconds=30)
    assert [(m.user_id, m.state, m.revision) for m in ledger.room_members(rid)] == [
        ("alice", "archived", 1), ("bob", "archived", 1)
    ]  # fmt: skip
    assert sorted(ledger.find_recordings(TASK)) == sorted([alice, bob])  # not the room

    run_id = ledger.claim(rid, now=now)
    ledger.finish_run(
        run_id, now=now, result={"members_key": [[alice, 1], [bob, 1]]}, manifest_url="m"
    )
    assert ledger.last_mixed(rid) == [[alice, 1], [bob, 1]]
    later = now + timedelta(seconds=5)
    assert ledger.note_room_member(bob, now=later, settle_seconds=30) is None  # same news
    assert ledger.recording(rid).state == "archived"

    finish(ledger, bob)  # bob reprocessed: revision 2 reopens the room
    assert ledger.note_room_member(bob, now=later, settle_seconds=30) == rid
    reopened = ledger.recording(rid)
    assert reopened.state == "collecting" and reopened.last_event_at == later
    ledger.settle_unchanged(rid, later)  # (as if nothing had changed after all)
    assert ledger.recording(rid).state == "archived"
    assert [(r.id, r.members, r.revision) for r in ledger.recent_rooms()] == [(rid, 2, 1)]


def test_mixed_stream_recordings_make_no_room(ledger: Ledger):
    one, two = archived_user(ledger, "a", record_mode=1), archived_user(ledger, "b", record_mode=1)
    assert ledger.note_room_member(one, now=utcnow(), settle_seconds=30) is None
    assert ledger.note_room_member(two, now=utcnow(), settle_seconds=30) is None
    assert ledger.recent_rooms() == []


def test_the_rooms_gauge_counts_rooms_by_state_and_not_their_users(ledger: Ledger):
    """`recpipe_rooms{state}` reads this: one collecting room, its two users not counted."""

    assert ledger.read_gauges().rooms_by_state == {}
    now = utcnow()
    alice, bob = archived_user(ledger, "alice"), archived_user(ledger, "bob")
    ledger.note_room_member(alice, now=now, settle_seconds=30)
    ledger.note_room_member(bob, now=now, settle_seconds=30)
    assert ledger.read_gauges().rooms_by_state == {"collecting": 1}


def test_two_users_whose_recordings_end_at_once_make_the_room(ledger: Ledger, monkeypatch):
    """Both members are noted at the same moment: whichever counts second sees the other,
    so the room is made. Without the room's lock each would add itself, count one member
    (the other's row not yet committed) and the room would never be made. The two noting
    transactions are held so that each has added its member before either counts, unless
    the first to count is still waiting for the other after 3 s (the lock keeps it out)."""
    import contextlib
    import threading

    from storage.ledger import rooms

    counted = rooms._member_count
    both_added = threading.Barrier(2)

    def count_once_both_added(s, rid):
        with contextlib.suppress(threading.BrokenBarrierError):
            both_added.wait(timeout=3)
        return counted(s, rid)

    alice, bob = archived_user(ledger, "alice"), archived_user(ledger, "bob")
    monkeypatch.setattr(rooms, "_member_count", count_once_both_added)
    now = utcnow()
    results: dict[str, str | None] = {}

    def note(user_rid: str) -> None:
        results[user_rid] = ledger.note_room_member(user_rid, now=now, settle_seconds=30)

    threads = [threading.Thread(target=note, args=(r,)) for r in (alice, bob)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    rid = room_id(BIZ, "9", TASK)
    assert rid in results.values(), results
    room = ledger.recording(rid)
    assert room is not None and room.state == "collecting"
    assert {m.recording_id for m in ledger.room_members(rid)} == {alice, bob}
