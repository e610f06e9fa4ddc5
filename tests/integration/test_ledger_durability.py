"""The ledger's part in losing nothing, on PostgreSQL and SQLite: recovered segments,
step timings, notifications that were never created, redelivery and its visibility."""

from datetime import timedelta
from pathlib import Path

from foundation.config import Settings
from storage.domain import NotificationState, lifecycle
from storage.ledger import Ledger, utcnow
from storage.objectstore import store_from_url
from tasks import sweeping
from tasks.services import Services
from tests.support.ledger import RID, key_of, record


def finished_run(ledger: Ledger, now=None) -> str:
    record(ledger, 0)
    run_id = ledger.claim(RID, now=utcnow())
    ledger.start_run(run_id, worker="a", now=utcnow(), stale_after=60)
    ledger.finish_run(run_id, now=now or utcnow(), result={}, manifest_url="file:///m")
    return run_id


def notify(ledger: Ledger, run_id: str, urls: list[str]) -> list[int]:
    return ledger.create_notifications(
        run_id, "recording.archived", f"msg_{RID}_r1_archived", "{}", urls, utcnow()
    )


def finish_attempt(ledger: Ledger, notification_id: int, status: int, state: str) -> None:
    ledger.record_attempt(
        notification_id,
        now=utcnow(),
        status_code=status,
        error=None,
        duration_ms=5,
        final_state=state,
    )


def test_segment_whose_upload_callback_was_lost_is_recovered_as_uploaded(ledger: Ledger):
    record(ledger, 0, event_type=1)
    record(ledger, 0, event_type=2)
    record(ledger, 1)
    added = ledger.add_recovered_segments(RID, [(0, key_of(0)), (2, key_of(2))], utcnow())
    segments = ledger.recording(RID).segments
    assert [(s.seq_no, s.state, s.recovered) for s in segments] == [
        (0, "uploaded", True),
        (1, "uploaded", False),
        (2, "uploaded", True),
    ]
    assert added == 1  # seq 2 is new; seq 0 was known and moved forward


def test_a_finished_step_is_written_back_with_its_facts(ledger: Ledger):
    record(ledger, 0)
    run_id = ledger.claim(RID, now=utcnow())
    ledger.start_run(run_id, worker="a", now=utcnow(), stale_after=60)
    ledger.step(run_id, "fetch", now=utcnow())
    ledger.step(run_id, "fetch", now=utcnow(), ok=True, seconds=0.5)
    [step] = ledger.run(run_id).steps
    assert (step["step"], step["ok"], step["seconds"], step["attempt"]) == ("fetch", True, 0.5, 1)
    assert "finished_at" in step


def test_finished_run_without_notifications_is_leased_until_the_grace_passes(ledger: Ledger):
    now = utcnow()
    run_id = finished_run(ledger, now=now - timedelta(seconds=120))
    grace = now - timedelta(seconds=60)
    assert ledger.lease_unnotified_runs(now, grace) == [run_id]
    assert ledger.lease_unnotified_runs(now, grace) == []
    later = now + timedelta(seconds=61)
    assert ledger.lease_unnotified_runs(later, later - timedelta(seconds=60)) == [run_id]
    notify(ledger, run_id, [])  # no URL configured: still notified
    far = later + timedelta(hours=1)
    assert ledger.lease_unnotified_runs(far, far - timedelta(seconds=60)) == []


def test_sweep_sends_the_notify_task_of_a_finished_run_whose_task_was_lost(
    ledger: Ledger, tmp_path: Path
):
    settings = Settings.from_env(
        {"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_STUCK_AFTER_SECONDS": "30"}
    )
    source, archive = store_from_url(settings.gme_source_url), store_from_url(settings.archive_url)
    services = Services(settings, ledger, source, archive)
    now = utcnow()
    run_id = finished_run(ledger, now=now)
    notified: list[str] = []

    def sweep(at):
        return sweeping.sweep(
            services,
            redispatch_run=lambda rid: None,
            notify=notified.append,
            redeliver=lambda nid: None,
            now=at,
        )

    assert sweep(now + timedelta(seconds=5)).renotified == []
    assert sweep(now + timedelta(seconds=31)).renotified == [run_id]
    assert sweep(now + timedelta(seconds=32)).renotified == []
    assert notified == [run_id]


def test_finally_failed_notification_is_visible_and_reopened_with_its_webhook_id(
    ledger: Ledger,
):
    run_id = finished_run(ledger)
    assert ledger.notification_summary([RID]) == {}
    ok, down, gone = notify(ledger, run_id, ["http://a/h", "http://b/h", "http://c/h"])
    assert ledger.notification_summary([RID]) == {RID: "pending"}
    finish_attempt(ledger, ok, 204, NotificationState.DELIVERED)
    finish_attempt(ledger, gone, 410, NotificationState.DISABLED)
    assert ledger.notification_summary([RID]) == {RID: "pending"}
    for _ in range(3):
        finish_attempt(ledger, down, 503, "")
    finish_attempt(ledger, down, 503, NotificationState.FAILED)
    assert ledger.notification_summary([RID, "gme-unknown"]) == {RID: "failed"}
    assert ledger.recordings_with_failed_notifications() == [RID]

    assert ledger.reopen_notifications(RID, utcnow()) == [down]
    reopened = ledger.notification(down)
    assert (reopened.state, reopened.attempts) == ("pending", 0)
    assert reopened.webhook_id == f"msg_{RID}_r1_archived"
    assert ledger.reopen_notifications(RID, utcnow()) == []  # twice is harmless
    finish_attempt(ledger, down, 204, NotificationState.DELIVERED)
    assert ledger.notification_summary([RID]) == {RID: "disabled"}
    assert ledger.recordings_with_failed_notifications() == []
    assert ledger.reopen_notifications(RID, utcnow(), include_disabled=True) == [gone]


def test_run_lost_between_claim_and_dispatch_is_redispatched_then_failed_with_a_reason(
    ledger: Ledger, tmp_path: Path
):
    """A claimed run whose chain never reached the broker is handed out by the sweep once
    the look that claimed it had its time to send it (not while it may still be sending:
    that made a second message under load); one that keeps dying is failed after three
    attempts, so the recording is not left processing."""
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    source, archive = store_from_url(settings.gme_source_url), store_from_url(settings.archive_url)
    services = Services(settings, ledger, source, archive)
    record(ledger, 0)
    run_id = ledger.claim(RID, now=utcnow())
    dispatched: list[str] = []
    notified: list[str] = []

    def sweep(at):
        return sweeping.sweep(
            services,
            redispatch_run=dispatched.append,
            notify=notified.append,
            redeliver=lambda nid: None,
            now=at,
        )

    now = utcnow()
    assert sweep(now).redispatched_runs == []  # the look may still be sending it
    now += timedelta(seconds=lifecycle.UNSENT_AFTER_SECONDS + 1)
    assert sweep(now).redispatched_runs == [run_id]
    stuck = settings.stuck_after_seconds
    for attempt in range(3):  # each attempt's worker dies without a heartbeat
        ledger.mark_run_dispatched(run_id, now)
        ledger.start_run(run_id, worker=f"w{attempt}", now=now, stale_after=stuck)
        now += timedelta(seconds=stuck + 1)
        report = sweep(now)
    assert report.failed_runs == [run_id] and notified == [run_id]
    recording = ledger.recording(RID)
    assert recording.state == "failed" and "stuck" in (recording.error or "")
