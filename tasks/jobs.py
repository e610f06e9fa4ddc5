"""The Celery tasks: a few lines each that load by id, call the core (settling, processing,
sweeping, reprocessing, notify), record the outcome.

Arguments are ids (JSON), never objects; every task is safe to run twice.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import requests
import structlog
from celery import Task
from celery.signals import worker_process_init

from foundation import queues
from foundation.queues import MEDIA, TRANSCRIBE
from storage.domain import (
    NotificationState,
    RecordingState,
    RunHolder,
    RunState,
    RunView,
    retention,
)
from storage.ledger import LedgerUnavailableError, utcnow
from storage.objectstore import StoreUnavailableError
from tasks import (
    context,
    expiry,
    forgetting,
    metrics,
    processing,
    reprocessing,
    retrying,
    settling,
    sweeping,
)
from tasks.celery import app
from tasks.notify import delivery, outbox
from tasks.rooms.members import member_finished
from tasks.services import Services, bind_recording
from tasks.transcripts import transcribe as transcribing
from tasks.transcripts.document import load_flag_words

log = structlog.get_logger("recpipe.tasks")


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """A pool process starts with connections of its own, built before its first task
    needs them (that task would otherwise pay for the clients' set-up)."""
    context.reset()
    context.warm_in_background()


def services() -> Services:
    return Services(
        settings=context.settings(),
        ledger=context.ledger(),
        source=context.source_store(),
        archive=context.archive_store(),
    )


def start_chain(run_id: str) -> None:
    """fetch → concat → transcode → archive (one media task), which then notifies: one
    message per run (a notify task of its own would be a second hop for a few queries;
    beat's sweep notifies a finished run whose notifications were never made)."""
    process_recording.delay(run_id)
    context.ledger().mark_run_dispatched(run_id, utcnow())


@app.task(name=sweeping.SETTLE_TASK, acks_late=True, ignore_result=True)
def settle(recording_id: str) -> str:
    """One look at a recording, handed out by beat's clock when its settle time came (or
    by an operator): finalize it and start its chain, fail it, or write when it is due
    again. It never schedules another look itself."""
    outcome = settling.settle(services(), recording_id)
    if outcome.action == "finalize" and outcome.run_id:
        start_chain(outcome.run_id)
    elif outcome.action == "fail" and outcome.run_id:
        notify_run.delay(outcome.run_id)
    return outcome.action


@app.task(name="recpipe.stop_gme_task", acks_late=True, ignore_result=True)
def stop_gme_task(task_id: str) -> list[str]:
    """An operator stops a GME task (`recpipe stop`, the console's
    `POST /api/v1/gme/tasks/{TaskID}/stop`): its collecting recordings are due now (beat's
    clock looks within a second) and finalized as soon as every started segment is
    uploaded, without the quiet window."""
    stopped = context.ledger().stop_gme_task(str(task_id), now=utcnow())
    log.info("gme_task.stopped", task_id=str(task_id), recordings=stopped)
    return stopped


@app.task(
    name="recpipe.process_recording",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # bounded by time: RECPIPE_STORE_RETRY_SECONDS
    ignore_result=True,
)
def process_recording(self: Task, run_id: str, failing_since: float | None = None) -> str:
    svc = services()
    structlog.contextvars.bind_contextvars(run_id=run_id)
    try:
        finished = processing.process(svc, run_id, holder(self))
        notify(svc, run_id, finished)
    except Exception as exc:
        # Nothing on this path may need the ledger: the retry, a later attempt of this
        # task, takes the run back whatever the ledger was last told.
        cause = exc.cause if isinstance(exc, processing.RunInterruptedError) else exc
        if not retrying.is_transient(cause):
            raise  # a bug outside the run's steps (they fail the run): Celery logs it
        budget = svc.settings.store_retry_seconds
        retry_transient(self, run_id, cause, failing_since=failing_since, budget=budget)
        error = f"gave up after {budget:.0f} s of retries: {retrying.describe_fault(cause)}"
        try:
            ended = svc.ledger.fail_run(
                run_id, now=utcnow(), error=error, if_state=(RunState.QUEUED, RunState.RUNNING)
            )
        except LedgerUnavailableError:
            # The run stays queued or running in the ledger; the sweep hands it out again.
            log.error("run.abandoned", run_id=run_id, error=error)
            return run_id
        if ended:
            log.warning("recording.failed", run_id=run_id, error=error)
        notify(svc, run_id)
    return run_id


def holder(task: Task) -> RunHolder:
    """This attempt of this task on this worker, as the run records who holds it."""
    worker = f"{socket.gethostname()}:{task.request.hostname or ''}"
    return RunHolder(worker, str(task.request.id), int(task.request.retries or 0))


def retry_transient(
    task: Task, subject: str, cause: BaseException, *, failing_since: float | None, budget: float
) -> None:
    """Retry `task` after a transient error (`tasks.retrying`), with the one back-off, for
    `budget` seconds since it first failed (`failing_since`, carried by the retries); back
    to the caller once the budget is spent."""
    since = failing_since or time.time()
    elapsed = time.time() - since
    if elapsed >= budget:
        return
    countdown = min(retrying.countdown(task.request.retries), max(1.0, budget - elapsed))
    log.warning("task.retrying", task=task.name, subject=subject, countdown=round(countdown, 1),
                error=retrying.describe_fault(cause), failing_for=round(elapsed, 1))  # fmt: skip
    raise task.retry(
        exc=cause, countdown=countdown, kwargs={**task.request.kwargs, "failing_since": since}
    )


@app.task(
    name="recpipe.notify_run", bind=True, acks_late=True, max_retries=None, ignore_result=True
)
def notify_run(self: Task, run_id: str, failing_since: float | None = None) -> int:
    """Create one notification per downstream URL for the run's outcome and send them.
    With no URL configured the run is still marked notified (there is nobody to tell)."""
    svc = services()
    try:
        return notify(svc, run_id)
    except Exception as exc:
        if not retrying.is_transient(exc):
            raise
        budget = svc.settings.store_retry_seconds
        retry_transient(self, run_id, exc, failing_since=failing_since, budget=budget)
        raise  # past the budget: beat's sweep notifies the run later


def notify(svc: Services, run_id: str, run: RunView | None = None) -> int:
    """notify_run's work; `run`: the run as its media task just left it, if at hand."""
    run = run or svc.ledger.run(run_id)
    if run is None or run.state not in RunState.TERMINAL:
        return 0
    if run.recording.state in RecordingState.TOMBSTONES:
        return 0  # forgotten (or expired) while it ran: nothing of it is said
    bind_recording(run.recording, run_id=run_id)
    created = outbox.enqueue(svc.ledger, run, svc.settings.notify_urls, utcnow())
    for notification_id in created:
        deliver_notification.delay(notification_id)
    # Its transcript follows the archive, on a queue of its own.
    if svc.settings.transcribe != "off" and transcribing.queue(svc.ledger, run):
        transcribe.delay(run_id)
    # A user's recording that ended may complete (or change) its room: its settle time moves.
    member_finished(svc, run)
    # A room's new revision may be the one an erasure waits for (without its player).
    for erasure_id in svc.ledger.erasures_remixing(run.recording_id):
        forget.delay(erasure_id)
    return len(created)


_http = requests.Session()


@app.task(
    name="recpipe.deliver_notification",
    bind=True,
    acks_late=True,
    max_retries=None,
    ignore_result=True,
)
def deliver_notification(
    self: Task, notification_id: int, failing_since: float | None = None
) -> str:
    svc = services()
    try:
        return _deliver(self, svc, notification_id)
    except Exception as exc:
        if not retrying.is_transient(exc):
            raise
        budget = svc.settings.store_retry_seconds
        retry_transient(self, str(notification_id), exc, failing_since=failing_since,
                        budget=budget)  # fmt: skip
        raise  # past the budget: beat's sweep redelivers it later


def _deliver(task: Task, svc: Services, notification_id: int) -> str:
    """One attempt of the notification's delivery; its retry when the receiver did not
    take it (by the receiver's own back-off, up to RECPIPE_NOTIFY_MAX_ATTEMPTS)."""
    cfg = svc.settings
    note = svc.ledger.notification(notification_id)
    if note is None or note.state != NotificationState.PENDING:
        return "skip"
    _bind_notification(note.body, notification_id, note.run_id)
    attempt = delivery.deliver(
        _http, note.url, note.webhook_id, note.body,
        secret=cfg.notify_secret, timeout=cfg.notify_timeout_seconds,
    )  # fmt: skip
    metrics.count_notification_attempt(attempt.status_code)
    attempts_so_far = note.attempts + 1
    final = delivery.state_after(attempt, attempts_so_far, cfg.notify_max_attempts)
    svc.ledger.record_attempt(
        notification_id,
        now=utcnow(),
        status_code=attempt.status_code,
        error=attempt.error,
        duration_ms=attempt.duration_ms,
        final_state=final,
    )
    bound = log.bind(notification_id=notification_id, url=note.url, attempt=attempts_so_far)
    if final is None:
        countdown = delivery.next_attempt_in(attempts_so_far)
        bound.info("notification.retrying", error=attempt.error, countdown=round(countdown, 1))
        raise task.retry(countdown=countdown, kwargs={})  # a fresh count of the ledger's faults
    bound.info("notification." + final, status=attempt.status_code)
    return final


def _bind_notification(body: str, notification_id: int, run_id: str | None) -> None:
    """The recording a notification is about, from its body (the contract's fields)."""
    try:
        recording = json.loads(body).get("recording") or {}
    except ValueError:
        recording = {}
    structlog.contextvars.bind_contextvars(
        recording_id=recording.get("id"),
        provider=recording.get("source"),
        run_id=run_id,
        notification_id=notification_id,
    )


# A transcript is tried this many times (an engine that fails, a store down) before
# transcript.failed; a room's waits this long for its users' transcripts.
TRANSCRIBE_ATTEMPTS = 3
ROOM_TRANSCRIPT_WAIT_SECONDS = 4 * 3600


@app.task(
    name="recpipe.transcribe",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    ignore_result=True,
)
def transcribe(self: Task, run_id: str, waiting_since: float | None = None) -> str:
    """Make an archived run's transcript (`tasks.transcripts.transcribe`) on the
    `transcribe` queue. Whatever fails is retried a few times, then transcript.failed is
    sent; the recording stays archived either way."""
    svc = services()
    structlog.contextvars.bind_contextvars(run_id=run_id)
    cfg = svc.settings
    try:
        flags = load_flag_words(cfg.flag_words) if cfg.flag_words else ()
        outcome = transcribing.transcribe(svc, run_id, context.engine, flag_words=flags)
    except transcribing.TranscriptNotReadyError as exc:
        since = waiting_since or time.time()
        svc.ledger.release_transcript(run_id)
        if time.time() - since < ROOM_TRANSCRIPT_WAIT_SECONDS:
            raise self.retry(countdown=10, kwargs={"waiting_since": since}) from exc
        outcome = transcribing.fail(svc, run_id, f"gave up waiting: {exc}", "timeout")
    except transcribing.SupersededError as exc:
        outcome = transcribing.fail(svc, run_id, str(exc), "store")
    except Exception as exc:
        reason = transcript_failure_reason(exc)
        error = f"{reason}: {retrying.describe_fault(exc)}"
        held = svc.ledger.transcript(run_id)
        if held is not None and held.attempts < TRANSCRIBE_ATTEMPTS:
            svc.ledger.release_transcript(run_id)
            countdown = retrying.countdown(held.attempts)
            log.warning("transcript.retrying", run_id=run_id, error=error, countdown=countdown)
            raise self.retry(exc=exc, countdown=countdown) from exc
        outcome = transcribing.fail(svc, run_id, error, reason)
    for notification_id in outcome.notification_ids:
        deliver_notification.delay(notification_id)
    return outcome.action


def transcript_failure_reason(exc: BaseException) -> str:
    """The failure's label in recpipe_transcript_failures_total."""
    if isinstance(exc, LedgerUnavailableError):
        return "ledger"
    if isinstance(exc, StoreUnavailableError | FileNotFoundError):
        return "store"
    return "engine"


@app.task(name="recpipe.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    report = sweeping.sweep(
        services(),
        redispatch_run=start_chain,
        notify=lambda run_id: notify_run.delay(run_id),
        redeliver=lambda nid: deliver_notification.delay(nid),
        media_queue_idle=lambda: queues.known_depths(services().settings, [MEDIA])[MEDIA] == 0,
    )
    retranscribed = transcribing.redispatch_lost(
        services(),
        lambda run_id: transcribe.delay(run_id),
        queue_idle=lambda: queues.known_depths(services().settings, [TRANSCRIBE])[TRANSCRIBE] == 0,
    )
    counts = {
        "redispatched_runs": len(report.redispatched_runs),
        "failed_runs": len(report.failed_runs),
        "redelivered": len(report.redelivered),
        "renotified": len(report.renotified),
        "retranscribed": len(retranscribed),
    }
    counts["erasures"] = len(
        forgetting.resume_unfinished(services(), lambda erasure_id: forget.delay(erasure_id))
    )
    if any(counts.values()):
        log.info("sweep", **counts)
    return counts


@app.task(
    name=forgetting.FORGET_TASK,
    bind=True,
    acks_late=True,
    max_retries=None,
    ignore_result=True,
)
def forget(self: Task, erasure_id: int, failing_since: float | None = None) -> str:
    """Finish a player's erasure (`tasks.forgetting.finish`) as far as it can go now: on
    the light queue, by id, safe to run twice. The sweep hands out unfinished ones again;
    a room's new revision and a released hold bring it back."""
    svc = services()
    try:
        report = forgetting.finish(
            svc, erasure_id, deliver=lambda nid: deliver_notification.delay(nid)
        )
    except LookupError:
        return "unknown"
    except Exception as exc:
        if not retrying.is_transient(exc):
            raise
        budget = svc.settings.store_retry_seconds
        retry_transient(self, str(erasure_id), exc, failing_since=failing_since, budget=budget)
        raise  # past the budget: beat's sweep hands it out again
    return report.state


# Batches per table per run of the retention job: a first run over a long backlog does a
# bounded share (100,000 rows a table) and the next runs continue.
PRUNE_BATCHES_PER_RUN = 100


@app.task(name="recpipe.prune", ignore_result=True)
def prune() -> dict[str, int]:
    """Beat's hourly retention job: callbacks and delivery attempts of finished work older
    than RECPIPE_RETENTION_DAYS go (`storage.domain.retention`); `recpipe prune` does the
    same by hand."""
    days = context.settings().retention_days
    before = retention.cutoff(utcnow(), days)
    if before is None:
        return {}
    counts = context.ledger().prune(before, max_batches=PRUNE_BATCHES_PER_RUN)
    metrics.count_pruned(counts)
    removed = {"callbacks": counts.callbacks, "delivery_attempts": counts.delivery_attempts}
    if counts.total:
        log.info("prune", before=before.isoformat(), days=days, **removed)
    return removed


@app.task(name="recpipe.expire_media", ignore_result=True)
def expire_media() -> dict[str, int]:
    """Beat's hourly media retention: the archived media of recordings and rooms whose
    newest run ended more than RECPIPE_MEDIA_RETENTION_DAYS ago goes, held ones never, a
    bounded batch a pass (`tasks.expiry`); `recpipe prune --media` does the same by hand."""
    days = context.settings().media_retention_days
    if days is None:
        return {}
    now = utcnow()
    report = expiry.expire_media(
        services(),
        before=retention.cutoff(now, days) or now,
        now=now,
        limit=retention.MEDIA_BATCH,
        deliver=lambda nid: deliver_notification.delay(nid),
    )
    return {"expired": len(report.expired), "purged": len(report.purged), "objects": report.objects}


@app.task(name="recpipe.reprocess", acks_late=True, ignore_result=True)
def reprocess(recording_id: str, from_step: str = "fetch") -> list[dict[str, Any]]:
    """Re-run the recordings a term names (recording id, GME TaskID, CSS stream or file id)
    from `from_step`, as `recpipe reprocess` does: fetch/concat/transcode/archive make a new
    revision under the same archive prefix; notify re-sends the current outcome."""
    svc = services()
    outcomes = [
        reprocessing.reprocess(
            svc,
            rid,
            from_step,
            start_chain=start_chain,
            deliver=lambda nid: deliver_notification.delay(nid),
            transcribe=lambda run_id: transcribe.delay(run_id),
        )
        for rid in svc.ledger.find_recordings(recording_id)
    ]
    for outcome in outcomes:
        log.info("reprocess." + outcome.action, recording_id=outcome.recording_id,
                 run_id=outcome.run_id, detail=outcome.detail)  # fmt: skip
    if not outcomes:
        log.warning("reprocess.unknown", term=recording_id)
    return [
        {"recording_id": o.recording_id, "action": o.action, "run_id": o.run_id, "detail": o.detail}
        for o in outcomes
    ]


@app.task(name="recpipe.redeliver", acks_late=True, ignore_result=True)
def redeliver(recording_id: str, include_disabled: bool = False) -> list[int]:
    """Send a recording's finally failed notifications again (same webhook-id and body),
    with a fresh attempt budget; `include_disabled` also re-sends those a 410 stopped."""
    reopened = outbox.reopen_failed(
        context.ledger(), recording_id, utcnow(), include_disabled=include_disabled
    )
    for notification_id in reopened:
        deliver_notification.delay(notification_id)
    return reopened
