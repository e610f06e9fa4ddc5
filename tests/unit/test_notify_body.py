from datetime import UTC, datetime

from storage.domain import RecordingView, RunView
from tasks.notify.body import notification_body

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(source: str, result: dict) -> RunView:
    recording = RecordingView(
        id="gme-1-x", source=source, state="archived", revision=1, first_event_at=T0,
        last_event_at=T0, settle_due_at=None, details={}, identity={"TaskID": "1"},
    )  # fmt: skip
    return RunView("r1", "gme-1-x", 1, "archived", 1, recording, result=result)


def test_a_gme_recording_body_carries_its_timeline_gaps_and_speech():
    timeline = [{"seq_no": 0, "offset_s": 0.0, "duration_s": 2.0}]
    gaps = [{"start_s": 2.0, "duration_s": 5.0, "reason": "pause"}]
    body = notification_body(run("gme", {"timeline": timeline, "gaps": gaps}))
    assert body["timeline"] == timeline and body["gaps"] == gaps and body["speech"] == []


def test_a_css_recording_body_has_no_timeline():
    body = notification_body(run("css", {}))
    assert "timeline" not in body and "gaps" not in body


def test_a_room_body_has_a_room_object_and_a_webhook_id_per_revision():
    from tasks.notify.body import event_type, webhook_id

    room = RecordingView(
        id="room-1-abc", source="room", state="archived", revision=2, first_event_at=T0,
        last_event_at=T0, settle_due_at=None, details={},
        identity={"BizID": 1400000000, "RoomID": "300", "TaskID": "446946705284000777"},
    )  # fmt: skip
    participants = [{"UserID": "a", "recording_id": "gme-1", "offset_s": 0.0, "duration_s": 2.0}]
    speech = [{"UserID": "a", "spans": [[0.0, 2.0]]}]
    done = RunView(
        "r2", "room-1-abc", 2, "archived", 1, room, manifest_url="s3://b/m.json",
        result={"participants": participants, "speech": speech, "artifacts": [{"url": "x"}]},
    )  # fmt: skip
    body = notification_body(done)
    assert body["type"] == event_type(done) == "room.archived" and "recording" not in body
    assert body["room"] == {
        "id": "room-1-abc", "revision": 2, "BizID": 1400000000, "RoomID": "300",
        "TaskID": "446946705284000777", "participants": participants,
    }  # fmt: skip
    assert body["speech"] == speech and body["manifest"] == "s3://b/m.json"
    assert webhook_id(done) == "msg_room-1-abc_r2_archived"
    failed = RunView("r3", "room-1-abc", 3, "failed", 1, room, error="no recording")
    assert notification_body(failed)["type"] == "room.failed"
    assert notification_body(failed)["artifacts"] == [] and webhook_id(failed).endswith("r3_failed")
