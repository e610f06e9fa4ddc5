"""Retention on PostgreSQL and SQLite: `Ledger.prune` deletes exactly the callbacks and
delivery attempts the rule of `storage.domain.retention` lets go, in bounded batches, and
what it keeps still serves the recordings."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from storage.domain import GmeEvent, GmeRecordingKey, NotificationState, retention
from storage.ledger import Ledger, aware, utcnow
from storage.ledger.tables import Callback, DeliveryAttempt, Notification, Recording

NOW = utcnow()
OLD = NOW - timedelta(days=40)
BEFORE = NOW - timedelta(days=30)


def key(user: str) -> GmeRecordingKey:
    return GmeRecordingKey(1400000000, "100", user, "446946705284000016", 1)


def post(ledger: Ledger, k: GmeRecordingKey, seq: int, event_type: int, now) -> None:
    name = f"1400000000_100/2026-10-01-08-00-0{seq}_{k.task_id}_audio.mp3"
    ev = GmeEvent(k, event_type, seq, name, 1675930605)
    ledger.record_gme_event(ev, '{"x": 1}', {}, now=now, settle_seconds=60)


def recording(ledger: Ledger, user: str, *, at, end: str | None, late_event=None) -> str:
    """A recording of two uploaded segments whose callbacks arrived at `at`, run to `end`
    (archived, failed, processing, or None: still collecting)."""
    k = key(user)
    for seq in (0, 1):
        for event_type in (1, 2, 3):
            post(ledger, k, seq, event_type, at)
    if end is not None:
        run_id = ledger.claim(k.recording_id, now=at + timedelta(minutes=1))
        assert run_id is not None
        if end == "archived":
            ledger.finish_run(run_id, now=at + timedelta(minutes=2), result={}, manifest_url="m")
        elif end == "failed":
            ledger.fail_run(run_id, now=at + timedelta(minutes=2), error="gave up")
    if late_event is not None:  # a segment uploaded late: revision 2 is on its way
        post(ledger, k, 2, 3, late_event)
    return k.recording_id


def notification(ledger: Ledger, recording_id: str, url: str, state: str, at) -> int:
    rec = ledger.recording(recording_id)
    assert rec is not None and rec.current_run_id
    [nid] = ledger.create_notifications(
        rec.current_run_id, "recording.archived", f"msg_{url}", "{}", [url], at
    )
    for attempt in range(3):
        final = state if attempt == 2 and state != NotificationState.PENDING else None
        ledger.record_attempt(
            nid, now=at + timedelta(seconds=attempt), status_code=503 if final is None else 200,
            error=None, duration_ms=5, final_state=final,
        )  # fmt: skip
    return nid


def rows(ledger: Ledger) -> tuple[dict[int, dict], dict[int, dict]]:
    """Every callback with its recording's facts, every attempt with its notification's."""
    with ledger.engine.connect() as conn:
        callbacks = conn.execute(
            select(
                Callback.id, Callback.received_at, Callback.dispatched_at, Recording.state,
                Recording.pending_changes, Recording.last_event_at,
            ).outerjoin(Recording, Recording.id == Callback.recording_id)
        ).all()  # fmt: skip
        attempts = conn.execute(
            select(DeliveryAttempt.id, DeliveryAttempt.at, Notification.state).join(
                Notification, Notification.id == DeliveryAttempt.notification_id
            )
        ).all()
    return (
        {
            r[0]: {
                "received_at": aware(r[1]),
                "dispatched_at": aware(r[2]),
                "recording_state": r[3],
                "pending_changes": bool(r[4]),
                "recording_last_event_at": aware(r[5]),
            }
            for r in callbacks
        },
        {r[0]: {"at": aware(r[1]), "notification_state": r[2]} for r in attempts},
    )


@pytest.fixture
def history(ledger: Ledger) -> dict[str, str]:
    """Recordings in every state that matters, old and new, with notifications."""
    ids = {
        "archived_old": recording(ledger, "1", at=OLD, end="archived"),
        "failed_old": recording(ledger, "2", at=OLD, end="failed"),
        "archived_new": recording(ledger, "3", at=NOW - timedelta(days=1), end="archived"),
        "collecting_old": recording(ledger, "4", at=OLD, end=None),
        "processing_old": recording(ledger, "5", at=OLD, end="processing"),
        "reopened": recording(ledger, "6", at=OLD, end="archived", late_event=NOW),
        "undispatched": recording(ledger, "7", at=OLD, end="archived"),
    }
    with ledger.engine.begin() as conn:
        first = conn.execute(
            text("SELECT min(id) FROM callbacks WHERE recording_id = :r"),
            {"r": ids["undispatched"]},
        ).scalar()
        conn.execute(text("UPDATE callbacks SET dispatched_at = NULL WHERE id = :i"), {"i": first})
    notification(ledger, ids["archived_old"], "https://a.example/d", "delivered", OLD)
    notification(ledger, ids["archived_old"], "https://a.example/p", "pending", OLD)
    notification(ledger, ids["archived_old"], "https://a.example/f", "failed", OLD)
    notification(ledger, ids["archived_new"], "https://a.example/d", "delivered", NOW)
    return ids


def test_prune_deletes_exactly_what_the_rule_lets_go(ledger: Ledger, history):
    """Each row survives unless the pure rule says it may go; the dry run counts the same."""
    callbacks, attempts = rows(ledger)
    doomed_callbacks = {
        i for i, r in callbacks.items() if retention.callback_prunable(**r, before=BEFORE)
    }
    doomed_attempts = {
        i for i, r in attempts.items() if retention.attempt_prunable(**r, before=BEFORE)
    }
    # The two old finished recordings (6 callbacks each) and the dispatched 5 of the one
    # with an undispatched callback; the delivered and failed old notifications' attempts.
    assert len(doomed_callbacks) == 6 + 6 + 5
    assert len(doomed_attempts) == 3 + 3

    dry = ledger.prune(BEFORE, dry_run=True)
    assert (dry.callbacks, dry.delivery_attempts) == (17, 6)
    assert rows(ledger) == (callbacks, attempts)

    done = ledger.prune(BEFORE)
    assert (done.callbacks, done.delivery_attempts) == (17, 6)
    left_callbacks, left_attempts = rows(ledger)
    assert set(left_callbacks) == set(callbacks) - doomed_callbacks
    assert set(left_attempts) == set(attempts) - doomed_attempts
    assert ledger.prune(BEFORE).total == 0

    # What the recordings need is still there: segments, runs, notifications.
    archived = history["archived_old"]
    assert [s.state for s in ledger.recording(archived).segments] == ["uploaded", "uploaded"]
    run = ledger.recording(archived).current_run_id
    assert {n.state for n in ledger.notifications_for_run(run)} == {
        "delivered", "pending", "failed"
    }  # fmt: skip


def test_prune_works_in_bounded_batches(ledger: Ledger, history):
    """At most `batch` rows per transaction and `max_batches` transactions per table."""
    first = ledger.prune(BEFORE, batch=4, max_batches=2)
    assert (first.callbacks, first.delivery_attempts) == (8, 6)
    rest = ledger.prune(BEFORE, batch=4)
    assert (rest.callbacks, rest.delivery_attempts) == (9, 0)


def test_a_vendor_retry_after_pruning_changes_nothing(ledger: Ledger, history):
    """The segment bookkeeping, not the callbacks, decides: an old callback sent again
    after its copy was pruned is stored, and its archived recording stays as it was."""
    archived = history["archived_old"]
    before = ledger.recording(archived)
    ledger.prune(BEFORE)
    post(ledger, key("1"), 1, 3, NOW)
    after = ledger.recording(archived)
    assert (after.state, after.revision, after.current_run_id) == (
        "archived", before.revision, before.current_run_id
    )  # fmt: skip


def test_the_beat_job_prunes_by_the_setting_and_counts_what_it_removed(
    ledger: Ledger, history, tmp_path
):
    """`recpipe.prune` (what beat sends hourly) uses RECPIPE_RETENTION_DAYS; 0 does nothing."""
    from prometheus_client import REGISTRY

    from foundation.config import Settings
    from tasks import context, jobs

    def counted(table: str) -> float:
        value = REGISTRY.get_sample_value("recpipe_pruned_rows_total", {"table": table})
        return value or 0.0

    env = {"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_DATABASE_URL": ledger.url}
    seen = {table: counted(table) for table in retention.TABLES}
    seeded = list(context._seeded)  # whatever settings the process had, put back after
    try:
        context.use(Settings.from_env({**env, "RECPIPE_RETENTION_DAYS": "0"}))
        assert jobs.prune() == {}
        assert ledger.prune(BEFORE, dry_run=True).total == 17 + 6
        context.use(Settings.from_env({**env, "RECPIPE_RETENTION_DAYS": "30"}))
        assert jobs.prune() == {"callbacks": 17, "delivery_attempts": 6}
        assert jobs.prune() == {"callbacks": 0, "delivery_attempts": 0}
    finally:
        context._seeded[:] = seeded
        context.reset()
    assert counted("callbacks") - seen["callbacks"] == 17
    assert counted("delivery_attempts") - seen["delivery_attempts"] == 6


def prune_cli(ledger: Ledger, tmp_path, *args: str, days: str = "30"):
    env = {
        **os.environ,
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": ledger.url,
        "RECPIPE_RETENTION_DAYS": days,
    }
    return subprocess.run(
        [sys.executable, "-m", "recpipe", "prune", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_recpipe_prune_counts_in_a_dry_run_then_deletes(ledger: Ledger, history, tmp_path):
    """`recpipe prune --dry-run` changes nothing; without it, the setting's age is used."""
    dry = prune_cli(ledger, tmp_path, "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "callbacks: would delete 17" in dry.stdout
    assert "delivery_attempts: would delete 6" in dry.stdout
    assert ledger.prune(BEFORE, dry_run=True).total == 23

    done = prune_cli(ledger, tmp_path, "--batch", "5")
    assert done.returncode == 0, done.stderr
    assert "callbacks: deleted 17" in done.stdout
    assert "delivery_attempts: deleted 6" in done.stdout
    assert ledger.prune(BEFORE, dry_run=True).total == 0


@pytest.mark.parametrize(
    ("args", "days", "starts"),
    [
        (("--older-than", "a while"), "30", "--older-than: cannot read 'a while'"),
        ((), "0", "RECPIPE_RETENTION_DAYS is 0"),
        (("--older-than", "2999-01-01"), "30", "--older-than: '2999-01-01' is in the future"),
    ],
)
def test_recpipe_prune_refuses_what_it_cannot_use_in_one_line(
    ledger: Ledger, history, tmp_path, args, days, starts
):
    result = prune_cli(ledger, tmp_path, *args, days=days)
    assert result.returncode == 2
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(f"recpipe: {starts}"), result.stderr
    assert ledger.prune(BEFORE, dry_run=True).total == 23
