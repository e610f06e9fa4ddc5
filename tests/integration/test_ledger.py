"""The ledger on real PostgreSQL and on SQLite: intake is idempotent, claims happen once."""

from datetime import timedelta

import pytest

from storage.domain import GmeEvent, GmeRecordingKey
from storage.ledger import Ledger, utcnow

KEY = GmeRecordingKey(1400000000, "100", "999", "446946705284000001", 1)


def event(seq: int, event_type: int = 3, key: GmeRecordingKey = KEY) -> GmeEvent:
    return GmeEvent(key, event_type, seq, f"p/{seq}_{key.task_id}_audio.mp3", 1675930605)


def record(ledger: Ledger, ev: GmeEvent, now=None):
    return ledger.record_gme_event(ev, "{}", {}, now=now or utcnow(), settle_seconds=60)


def test_same_callback_twice_is_one_segment(ledger: Ledger):
    first = record(ledger, event(0))
    again = record(ledger, event(0))
    assert not first.duplicate and again.duplicate and again.callback_id == first.callback_id
    recording = ledger.recording(first.recording_id)
    assert [(s.seq_no, s.state) for s in recording.segments] == [(0, "uploaded")]
    assert recording.identity["TaskID"] == "446946705284000001"


def test_segment_state_never_moves_back(ledger: Ledger):
    record(ledger, event(0, 3))
    record(ledger, event(0, 1))
    record(ledger, event(0, 2))
    assert ledger.recording(KEY.recording_id).segments[0].state == "uploaded"


def test_claim_happens_once_and_only_if_unchanged(ledger: Ledger):
    record(ledger, event(0))
    view = ledger.recording(KEY.recording_id)
    stale = view.last_event_at - timedelta(seconds=1)
    assert ledger.claim(KEY.recording_id, now=utcnow(), expected_last_event_at=stale) is None
    run_id = ledger.claim(KEY.recording_id, now=utcnow(), expected_last_event_at=view.last_event_at)
    assert run_id is not None
    assert ledger.claim(KEY.recording_id, now=utcnow()) is None
    run = ledger.run(run_id)
    assert (run.revision, run.state, run.recording.state) == (1, "queued", "processing")


def test_start_run_is_exclusive_until_the_heartbeat_goes_stale(ledger: Ledger):
    record(ledger, event(0))
    run_id = ledger.claim(KEY.recording_id, now=utcnow())
    now = utcnow()
    assert ledger.start_run(run_id, worker="a", now=now, stale_after=60) is not None
    assert ledger.start_run(run_id, worker="b", now=now, stale_after=60) is None
    later = now + timedelta(seconds=61)
    taken = ledger.start_run(run_id, worker="b", now=later, stale_after=60)
    assert taken is not None and taken.attempts == 2


def test_late_segment_after_archive_reopens_for_revision_two(ledger: Ledger):
    record(ledger, event(0))
    run_id = ledger.claim(KEY.recording_id, now=utcnow())
    ledger.start_run(run_id, worker="a", now=utcnow(), stale_after=60)
    ledger.finish_run(run_id, now=utcnow(), result={}, manifest_url="file:///m")
    assert ledger.recording(KEY.recording_id).state == "archived"
    record(ledger, event(0))  # a retry of a known upload does not reopen
    assert ledger.recording(KEY.recording_id).state == "archived"
    record(ledger, event(1))
    reopened = ledger.recording(KEY.recording_id)
    assert reopened.state == "collecting" and reopened.revision == 1
    second = ledger.claim(KEY.recording_id, now=utcnow())
    assert ledger.run(second).revision == 2


def test_segment_arriving_mid_run_settles_again_after_it(ledger: Ledger):
    record(ledger, event(0))
    run_id = ledger.claim(KEY.recording_id, now=utcnow())
    record(ledger, event(1))
    ledger.finish_run(run_id, now=utcnow(), result={}, manifest_url="file:///m")
    assert ledger.recording(KEY.recording_id).state == "collecting"


def test_sweep_lease_hands_a_due_recording_out_once(ledger: Ledger):
    now = utcnow()
    record(ledger, event(0), now=now - timedelta(seconds=120))
    later = now + timedelta(seconds=30)
    assert ledger.lease_due_recordings(now, until=later) == [KEY.recording_id]
    assert ledger.lease_due_recordings(now, until=later) == []
    assert ledger.lease_due_recordings(later, until=later + timedelta(seconds=30)) == [
        KEY.recording_id
    ]


def test_notifications_are_created_once_per_url(ledger: Ledger):
    record(ledger, event(0))
    run_id = ledger.claim(KEY.recording_id, now=utcnow())
    urls = ["http://a/hook", "http://b/hook"]
    first = ledger.create_notifications(run_id, "recording.archived", "msg_1", "{}", urls, utcnow())
    again = ledger.create_notifications(run_id, "recording.archived", "msg_1", "{}", urls, utcnow())
    assert len(first) == 2 and again == []


def test_step_outcomes_are_persisted(ledger: Ledger):
    record(ledger, event(0))
    run_id = ledger.claim(KEY.recording_id, now=utcnow())
    ledger.start_run(run_id, worker="a", now=utcnow(), stale_after=60)
    ledger.step(run_id, "fetch", now=utcnow())
    ledger.step(run_id, "fetch", now=utcnow(), ok=True, seconds=1.5)
    ledger.step(run_id, "concat", now=utcnow())
    ledger.step(run_id, "concat", now=utcnow(), ok=False, error="segment 3 is not audio")
    steps = ledger.run(run_id).steps
    assert [(s["step"], s["ok"]) for s in steps] == [("fetch", True), ("concat", False)]
    assert steps[0]["seconds"] == 1.5 and "finished_at" in steps[0]
    assert steps[1]["error"] == "segment 3 is not audio"


KEPT_STEPS = [
    {"step": "fetch", "started_at": "2026-01-01T08:00:00+00:00", "attempt": 1,
     "finished_at": "2026-01-01T08:00:01+00:00", "ok": True, "seconds": 1.0},
    {"step": "concat", "started_at": "2026-01-01T08:00:01+00:00", "attempt": 1,
     "finished_at": "2026-01-01T08:00:02+00:00", "ok": False, "error": "segment 3 is not audio"},
]  # fmt: skip


@pytest.mark.parametrize("end", ["finish_run", "fail_run", "release_run"])
def test_a_run_ends_with_the_step_list_its_task_kept(ledger: Ledger, end: str):
    """The run's end (archived, failed, or handed back for a retry) stores the step list its
    task kept, the last step's end included, over the one written at that step's start."""
    record(ledger, event(0))
    run_id = ledger.claim(KEY.recording_id, now=utcnow())
    ledger.start_run(run_id, worker="a", now=utcnow(), stale_after=60)
    ledger.write_steps(run_id, [{**KEPT_STEPS[0]}], step="fetch", now=utcnow())
    ends = {
        "finish_run": lambda: ledger.finish_run(
            run_id, now=utcnow(), result={}, manifest_url="file:///m", steps=KEPT_STEPS
        ),
        "fail_run": lambda: ledger.fail_run(
            run_id, now=utcnow(), error="segment 3 is not audio", steps=KEPT_STEPS
        ),
        "release_run": lambda: ledger.release_run(run_id, now=utcnow(), steps=KEPT_STEPS),
    }
    ends[end]()
    run = ledger.run(run_id)
    assert run.steps == KEPT_STEPS
    assert run.state == {"finish_run": "archived", "fail_run": "failed"}.get(end, "queued")
