"""Reprocessing (`recpipe reprocess`, the `recpipe.reprocess` task): a recording's chain
again from a step, as a new revision, or its outcome re-sent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from storage.domain import RecordingState, RunState
from storage.ledger import RecordingView, RunView, utcnow
from tasks.notify import outbox
from tasks.services import Services

log = structlog.get_logger("recpipe.tasks")


MEDIA_STEPS = ("fetch", "concat", "transcode", "archive")
STEPS = (*MEDIA_STEPS, "notify", "transcribe")


class UnknownStepError(ValueError):
    """A --from-step that is not one of the chain's steps."""

    def __init__(self, step: str):
        super().__init__(f"unknown step {step!r}: choose from {', '.join(STEPS)}")


@dataclass(frozen=True)
class ReprocessPlan:
    """What reprocessing one recording from a step would do, before doing it."""

    recording_id: str
    action: str  # "media" (a new revision), "notify" (re-send), "transcribe" or "refuse"
    detail: str


def plan_reprocess(
    recording: RecordingView,
    current: RunView | None,
    from_step: str,
    notify_urls: tuple[str, ...],
    *,
    engine: str = "off",
) -> ReprocessPlan:
    """Pure: the recording and its current run in, the plan out.

    fetch, concat, transcode and archive run in one task in one scratch directory that
    is removed when the task ends, so the inputs of concat, transcode and archive never
    outlive a run: from any of them, the media task runs again from fetch, as a new
    revision under the same archive prefix. notify re-sends the current revision's
    outcome (same webhook-id and body, so receivers deduplicate) without new media.
    transcribe makes the current revision's transcript again with `engine` (the
    RECPIPE_TRANSCRIBE of whoever asks), then transcript.ready or transcript.failed.
    """
    if from_step not in STEPS:
        raise UnknownStepError(from_step)
    rid = recording.id
    if from_step == "transcribe":
        if engine == "off":
            return ReprocessPlan(rid, "refuse", "RECPIPE_TRANSCRIBE is off")
        if current is None or current.state != RunState.ARCHIVED:
            return ReprocessPlan(rid, "refuse", "no archived revision to transcribe")
        return ReprocessPlan(
            rid, "transcribe", f"transcribe revision {current.revision} again with {engine}"
        )
    if from_step == "notify":
        if current is None or current.state not in RunState.TERMINAL:
            return ReprocessPlan(rid, "refuse", "no finished run to notify about")
        if not notify_urls:
            return ReprocessPlan(rid, "refuse", "RECPIPE_NOTIFY_URLS is not set")
        event = "recording.archived" if current.state == RunState.ARCHIVED else "recording.failed"
        return ReprocessPlan(
            rid,
            "notify",
            f"re-send revision {current.revision}'s {event} to {len(notify_urls)} URL(s)",
        )
    if recording.state == RecordingState.PROCESSING:
        return ReprocessPlan(rid, "refuse", "already processing")
    detail = f"revision {recording.revision + 1}: fetch, concat, transcode, archive, notify"
    if from_step != "fetch":
        detail += f" (from {from_step}: its input does not outlive a run, so from fetch)"
    return ReprocessPlan(rid, "media", detail)


@dataclass(frozen=True)
class ReprocessOutcome:
    recording_id: str
    action: str  # "queued", "notified", "transcribing" or "refused"
    detail: str
    run_id: str | None = None
    notification_ids: tuple[int, ...] = ()


def reprocess(
    services: Services,
    recording_id: str,
    from_step: str = "fetch",
    *,
    start_chain: Callable[[str], None],
    deliver: Callable[[int], None],
    transcribe: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> ReprocessOutcome:
    """Re-run a recording from `from_step` (see `plan_reprocess`). A media re-run claims a
    new revision (`Ledger.claim(force=True)`); archive's publish replaces the objects under
    the recording's one prefix, so nothing is duplicated."""
    now = now or utcnow()
    ledger, urls = services.ledger, services.settings.notify_urls
    recording = ledger.recording(recording_id)
    if recording is None:
        return ReprocessOutcome(recording_id, "refused", "no such recording")
    current = ledger.run(recording.current_run_id) if recording.current_run_id else None
    plan = plan_reprocess(recording, current, from_step, urls, engine=services.settings.transcribe)
    if plan.action == "refuse":
        return ReprocessOutcome(recording_id, "refused", plan.detail)
    if plan.action == "transcribe" and current is not None and transcribe is not None:
        if not (
            ledger.queue_transcript(current.id, now) or ledger.requeue_transcript(current.id, now)
        ):
            return ReprocessOutcome(recording_id, "refused", "its transcript is being made")
        transcribe(current.id)
        return ReprocessOutcome(recording_id, "transcribing", plan.detail, current.id)
    if plan.action == "notify" and current is not None:
        ids = tuple(outbox.enqueue(ledger, current, urls, now, resend=True))
        for notification_id in ids:
            deliver(notification_id)
        detail = plan.detail if ids else "delivery already under way"
        return ReprocessOutcome(recording_id, "notified", detail, current.id, ids)
    run_id = ledger.claim(recording_id, now=now, force=True, from_step=from_step)
    if run_id is None:
        return ReprocessOutcome(recording_id, "refused", "already processing")
    start_chain(run_id)
    log.info("recording.reprocessing", recording_id=recording_id, run_id=run_id, step=from_step)
    return ReprocessOutcome(recording_id, "queued", plan.detail, run_id)
