"""What beat hands out from the ledger: the settle clock (`settle_due`, about once a second:
every collecting recording whose settle time has come gets one settle look) and the
periodic safety net (`recpipe.sweep`: what a lost message or a dead worker left undone of
runs and notifications is found in the ledger and handed out again)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from storage.domain import RunState, lifecycle
from storage.ledger import Ledger, utcnow
from tasks.notify import outbox
from tasks.services import Services

log = structlog.get_logger("recpipe.tasks")

# The task a settle look runs in (`tasks.jobs.settle`), sent by name from beat.
SETTLE_TASK = "recpipe.settle"
# How often beat's clock looks for due recordings: a recording is looked at at most this
# long after its settle time (plus the time its message waits for a light worker).
CLOCK_SECONDS = 0.5
# A due recording handed out is not handed out again for this long: its look normally
# writes a new settle time within a second or two. A look whose message was lost (a
# broker restart, a worker killed before it acknowledged) is handed out again then.
SETTLE_LEASE = timedelta(seconds=30)


def settle_due(ledger: Ledger, send: Callable[[str], None], now: datetime | None = None) -> int:
    """Beat's clock, once: hand one settle look to each collecting recording whose settle
    time has come (`Ledger.lease_due_recordings`: under a row lock that a second beat's
    clock skips, and leased for SETTLE_LEASE). Returns how many were handed out. A send
    that fails stops this pass; what it did not send is due again when its lease ends."""
    now = now or utcnow()
    due = ledger.lease_due_recordings(now, until=now + SETTLE_LEASE)
    for recording_id in due:
        send(recording_id)
    return len(due)


@dataclass(frozen=True)
class SweepReport:
    redispatched_runs: list[str]
    failed_runs: list[str]
    redelivered: list[int]
    renotified: list[str] = field(default_factory=list)


def sweep(
    services: Services,
    *,
    redispatch_run: Callable[[str], None],
    notify: Callable[[str], None],
    redeliver: Callable[[int], None],
    media_queue_idle: Callable[[], bool] = lambda: False,
    now: datetime | None = None,
    max_takeovers: int = lifecycle.MAX_TAKEOVERS,
    max_requeues: int = lifecycle.MAX_REQUEUES,
) -> SweepReport:
    """Periodic safety net: recover stuck runs, finished runs that were never notified,
    and deliveries.

    A queued run waits in the media queue for as long as the queue is busy (messages in it,
    or a worker on a run, which may hold the run's message prefetched); but when the queue
    is idle and the run was dispatched more than `requeue_after_seconds` ago, its
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
    redispatched, failed = [], []

    def give_up(run_id: str, error: str, *, if_state: str | None = None) -> None:
        if ledger.fail_run(run_id, now=now, error=error, if_state=if_state):
            failed.append(run_id)
            log.warning("recording.failed", run_id=run_id, error=error)
            notify(run_id)

    # Idle: nothing waits in the media queue and no worker is on a run (a busy worker holds
    # the messages it prefetched, unacknowledged, out of the queue's count).
    idle = media_queue_idle() and not ledger.runs_working(now, cfg.stuck_after_seconds)
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
    return SweepReport(redispatched, failed, redelivered, renotified)
