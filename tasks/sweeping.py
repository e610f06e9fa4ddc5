"""The periodic safety net (beat's `recpipe.sweep`): what a lost message or a dead worker
left undone is found in the ledger and handed out again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from storage.domain import RunState, lifecycle
from storage.ledger import utcnow
from tasks.notify import outbox
from tasks.services import Services

log = structlog.get_logger("recpipe.tasks")


@dataclass(frozen=True)
class SweepReport:
    settled: list[str]
    redispatched_runs: list[str]
    failed_runs: list[str]
    redelivered: list[int]
    renotified: list[str] = field(default_factory=list)


def sweep(
    services: Services,
    *,
    settle_later: Callable[[str], None],
    redispatch_run: Callable[[str], None],
    notify: Callable[[str], None],
    redeliver: Callable[[int], None],
    media_queue_idle: Callable[[], bool] = lambda: False,
    now: datetime | None = None,
    max_takeovers: int = lifecycle.MAX_TAKEOVERS,
    max_requeues: int = lifecycle.MAX_REQUEUES,
) -> SweepReport:
    """Periodic safety net: settle due recordings, recover stuck runs, finished runs that
    were never notified, and deliveries.

    A queued run waits in the media queue for as long as the queue is busy; but when the
    queue is idle and the run was dispatched more than `requeue_after_seconds` ago, its
    task is gone (a retry that could not be published, a message lost with a broker), and
    it is handed out again at once instead of after `stuck_after_seconds`. A run sent
    again to the idle queue `max_requeues` times that no worker took fails: whatever reads
    that queue is not a media worker, or nothing does. A busy queue may still hold its
    message behind others: that re-send does not count.

    A running run without a heartbeat for `stuck_after_seconds` lost its worker: it goes
    back to the queue as a takeover, or fails once it was taken over `max_takeovers`
    times. Its task's own retries do not count against that."""
    now = now or utcnow()
    cfg, ledger = services.settings, services.ledger
    lease = timedelta(seconds=max(cfg.sweep_seconds * 3, 30))
    settled = ledger.lease_due_recordings(now, until=now + lease)
    for recording_id in settled:
        settle_later(recording_id)
    if settled:
        ledger.mark_recordings_dispatched(settled, now)

    redispatched, failed = [], []

    def give_up(run_id: str, error: str, *, if_state: str | None = None) -> None:
        if ledger.fail_run(run_id, now=now, error=error, if_state=if_state):
            failed.append(run_id)
            log.warning("recording.failed", run_id=run_id, error=error)
            notify(run_id)

    idle = media_queue_idle()
    queued_after = cfg.requeue_after_seconds if idle else None
    for stale in ledger.stale_runs(now, cfg.stuck_after_seconds, queued_after=queued_after):
        if stale.worker_lost:
            if lifecycle.gives_up_on(stale.takeovers, max_takeovers):
                lost = stale.takeovers + 1
                give_up(stale.id, f"stuck: its worker was lost {lost} times")
                continue
            if not ledger.take_over_run(stale.id, now=now, stuck_after=cfg.stuck_after_seconds):
                continue
        elif idle:
            if lifecycle.gives_up_on_queued(stale.requeues, max_requeues):
                error = lifecycle.never_picked_up(stale.requeues)
                give_up(stale.id, error, if_state=RunState.QUEUED)
                continue
            if not ledger.requeue_run(stale.id):
                continue  # a worker took it meanwhile
        redispatch_run(stale.id)
        redispatched.append(stale.id)

    # Outcomes whose notify or delivery task was lost (tasks.notify.outbox).
    renotified = outbox.lost_outcomes(ledger, now)
    for run_id in renotified:
        notify(run_id)
    redelivered = outbox.lost_deliveries(ledger, now)
    for notification_id in redelivered:
        redeliver(notification_id)
    return SweepReport(settled, redispatched, failed, redelivered, renotified)
