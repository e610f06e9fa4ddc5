"""The ledger's queries for operators, on PostgreSQL and SQLite: finding recordings by any
of their ids, selecting by filters and callbacks by arrival, re-applying stored events,
re-arming finished notifications."""

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import text

from storage.domain import GmeEvent, GmeRecordingKey
from storage.ledger import Ledger, utcnow
from webhook.callbacks import parse_css

KEY = GmeRecordingKey(1400000000, "100", "999", "446946705284000001", 1)
OTHER = GmeRecordingKey(1400000000, "100", "1000", "446946705284000001", 1)


def event(seq: int, event_type: int = 3, key: GmeRecordingKey = KEY) -> GmeEvent:
    return GmeEvent(key, event_type, seq, f"p/{seq}_{key.task_id}_audio.mp3", 1675930605)


def record(ledger: Ledger, ev: GmeEvent, now=None):
    return ledger.record_gme_event(ev, "{}", {}, now=now or utcnow(), settle_seconds=60)


def add_css(ledger: Ledger, stream_id: str, file_id: str = "5285890800000009") -> str:
    """A CSS file recorded the way intake records one; returns its recording id."""
    css = parse_css(
        {
            "event_type": 100, "appid": 1253000000, "app": "push.example.com", "appname": "live",
            "stream_id": stream_id, "file_id": file_id, "file_format": "mp4",
            "start_time": 1700000000, "end_time": 1700000060, "duration": 60,
            "video_url": "https://1253000000.vod2.myqcloud.com/x/f.mp4",
            "t": 1700000600, "sign": "0" * 32,
        }
    )  # fmt: skip
    return ledger.record_css_file(
        css, "{}", {}, now=utcnow(), settle_seconds=60, join_gap_seconds=5
    ).recording_id


def test_recordings_are_found_by_id_taskid_and_css_stream_or_file_id(ledger: Ledger):
    record(ledger, event(0))
    record(ledger, event(0, key=OTHER))
    css_a = add_css(ledger, "live_100%", "5285890800000001")
    css_b = add_css(ledger, "live_1000", "5285890800000002")

    assert ledger.find_recordings(KEY.recording_id) == [KEY.recording_id]
    assert sorted(ledger.find_recordings(KEY.task_id)) == sorted(
        [KEY.recording_id, OTHER.recording_id]
    )
    assert ledger.find_recordings("live_100%") == [css_a]
    assert ledger.find_recordings("live_1000") == [css_b]
    assert ledger.find_recordings("5285890800000002") == [css_b]
    # Substrings of an id and LIKE wildcards match nothing.
    assert ledger.find_recordings("live_100") == []
    assert ledger.find_recordings("%") == []
    assert ledger.find_recordings("52858908") == []


def test_selection_filters_by_state_source_and_first_event_time(ledger: Ledger):
    now = utcnow()
    record(ledger, event(0), now=now - timedelta(hours=3))
    record(ledger, event(0, key=OTHER), now=now - timedelta(minutes=10))
    css_a = add_css(ledger, "s")
    failed_run = ledger.claim(KEY.recording_id, now=now)
    assert failed_run is not None
    ledger.fail_run(failed_run, now=now, error="gave up")

    assert ledger.select_recordings(state="failed") == [KEY.recording_id]
    assert ledger.select_recordings(source="css") == [css_a]
    assert ledger.select_recordings(since=now - timedelta(hours=1), source="gme") == [
        OTHER.recording_id
    ]
    assert ledger.select_recordings(until=now - timedelta(hours=1)) == [KEY.recording_id]
    assert ledger.select_recordings(ids=[css_a, OTHER.recording_id], state="failed") == []
    assert ledger.recent_recordings(source="gme", state="collecting")[0].id == OTHER.recording_id


def test_callbacks_select_by_recording_arrival_and_dispatch(ledger: Ledger):
    now = utcnow()
    first = record(ledger, event(0), now=now - timedelta(hours=2))
    second = record(ledger, event(1), now=now - timedelta(minutes=5))
    other = record(ledger, event(0, key=OTHER), now=now)
    # Intake stores callbacks as dispatched; a ledger from before beat's settle clock may
    # hold some whose settle task the broker refused.
    assert all(c.dispatched_at is not None for c in ledger.callbacks())
    with ledger.engine.begin() as conn:
        conn.execute(
            text("UPDATE callbacks SET dispatched_at = NULL WHERE id IN (:a, :b)"),
            {"a": second.callback_id, "b": other.callback_id},
        )

    def ids(**filters) -> list[int]:
        return [c.id for c in ledger.callbacks(**filters)]

    assert ids(recording_ids=[KEY.recording_id]) == [first.callback_id, second.callback_id]
    assert ids(undispatched=True) == [second.callback_id, other.callback_id]
    assert ids(since=now - timedelta(hours=1), until=now) == [second.callback_id]
    [stored] = ledger.callbacks(recording_ids=[OTHER.recording_id])
    assert stored.provider == "gme" and stored.event_type == 3 and stored.dispatched_at is None


def test_reapplying_an_event_is_idempotent_and_restores_lost_bookkeeping(ledger: Ledger):
    record(ledger, event(0))
    before = ledger.recording(KEY.recording_id)
    ledger.reapply_gme_event(event(0), now=utcnow(), settle_seconds=60)
    ledger.reapply_gme_event(event(0, 1), now=utcnow(), settle_seconds=60)
    ledger.reapply_gme_event(event(0, 1), now=utcnow(), settle_seconds=60)
    after = ledger.recording(KEY.recording_id)
    # The segment's state and name stay; which events arrived gains the start.
    assert [replace(s, events=0) for s in after.segments] == [
        replace(s, events=0) for s in before.segments
    ]
    assert [s.events for s in after.segments] == [4 | 1] and after.state == "collecting"
    # A recording whose rows are gone is rebuilt from its stored event.
    ledger.reapply_gme_event(event(2, key=OTHER), now=utcnow(), settle_seconds=60)
    rebuilt = ledger.recording(OTHER.recording_id)
    assert [(s.seq_no, s.state) for s in rebuilt.segments] == [(2, "uploaded")]


def test_rearming_makes_finished_notifications_pending_once(ledger: Ledger):
    record(ledger, event(0))
    run_id = ledger.claim(KEY.recording_id, now=utcnow(), force=True)
    ledger.fail_run(run_id, now=utcnow(), error="x")
    urls = ["http://a.invalid/", "http://b.invalid/"]
    delivered, pending = ledger.create_notifications(run_id, "t", "w", "{}", urls, utcnow())
    ledger.record_attempt(
        delivered, now=utcnow(), status_code=204, error=None, duration_ms=3, final_state="delivered"
    )
    assert ledger.rearm_notifications(run_id, urls, utcnow()) == [delivered]
    note = ledger.notification(delivered)
    assert (note.state, note.attempts, note.delivered_at) == ("pending", 0, None)
    assert ledger.rearm_notifications(run_id, urls, utcnow()) == []
    assert [a.status_code for a in ledger.delivery_attempts(delivered)] == [204]
    assert ledger.notification(pending).state == "pending"


def test_a_steps_end_is_stored_with_its_facts(ledger: Ledger):
    record(ledger, event(0))
    run_id = ledger.claim(KEY.recording_id, now=utcnow(), force=True)
    ledger.step(run_id, "fetch", now=utcnow())
    ledger.step(run_id, "fetch", now=utcnow(), ok=True, seconds=1.5)
    ledger.step(run_id, "concat", now=utcnow())
    ledger.step(run_id, "concat", now=utcnow(), ok=False, error="segment 1 is not audio")
    fetch, concat = ledger.run(run_id).steps
    assert fetch["ok"] is True and fetch["seconds"] == 1.5 and "finished_at" in fetch
    assert concat["ok"] is False and concat["error"] == "segment 1 is not audio"
