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
