"""What the Celery tasks do, as plain functions over the ledger and the stores.

Each function is safe to run twice: it re-reads state by id and acts only when the
state still calls for it.
"""

from __future__ import annotations

import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars

from foundation.config import Settings
from storage.ledger import Ledger, RecordingView, RunView, utcnow
from storage.models import RecordingState, RunState, SegmentState
from storage.objectstore import ObjectStore
from tasks import css, metrics
from tasks.archive import publish
from tasks.media import MediaError, Tools, concatenate, fetch_sources, transcode
from tasks.settle import Decision, decide, decide_css, missing_seq_nos, recovered_segments

log = structlog.get_logger("recpipe.tasks")


@dataclass(frozen=True)
class Services:
    settings: Settings
    ledger: Ledger
    source: ObjectStore
    archive: ObjectStore
    tools: Tools = field(default_factory=Tools)


@dataclass(frozen=True)
class SettleOutcome:
    action: str  # "skip", "wait", "finalize" or "fail"
    run_id: str | None = None
    recheck_at: datetime | None = None


def reconcile(services: Services, recording: RecordingView, now: datetime) -> int:
    """Add segments present in the source whose upload callback never arrived."""
    task_id = recording.identity.get("TaskID")
    if recording.source != "gme" or not task_id:
        return 0
    folders = {posixpath.dirname(s.file_name) for s in recording.segments}
    listing: list[str] = []
    for folder in sorted(folders):
        prefix = f"{folder}/" if folder else ""
        try:
            listing.extend(obj.key for obj in services.source.list(prefix))
        except Exception as exc:  # listing is a best effort; finalizing goes on without it
            log.warning("reconcile.list_failed", recording_id=recording.id, error=str(exc))
    found = recovered_segments(recording.segments, str(task_id), listing)
    if not found:
        return 0
    added = services.ledger.add_recovered_segments(recording.id, found, now)
    log.info("reconcile.recovered", recording_id=recording.id, segments=[s for s, _ in found])
    return added or len(found)


def settle(services: Services, recording_id: str, now: datetime | None = None) -> SettleOutcome:
    """Finalize a recording if it has been quiet long enough and is complete (or waited out)."""
    now = now or utcnow()
    cfg = services.settings
    recording = services.ledger.recording(recording_id)
    if recording is None or recording.state != RecordingState.COLLECTING:
        return SettleOutcome("skip")
    bind_recording(recording)
    decision = _decide(recording, now, cfg)
    quiet = decision.action != "wait" or bool(decision.missing)
    if quiet and reconcile(services, recording, now):
        recording = services.ledger.recording(recording_id) or recording
        decision = _decide(recording, now, cfg)
    if decision.action == "wait":
        recheck_at = decision.recheck_at or now
        services.ledger.postpone(recording_id, recheck_at)
        return SettleOutcome("wait", recheck_at=recheck_at)
    run_id = services.ledger.claim(
        recording_id, now=now, expected_last_event_at=recording.last_event_at
    )
    if run_id is None:
        return SettleOutcome("skip")
    if decision.action == "fail":
        services.ledger.fail_run(run_id, now=now, error=decision.reason)
        log.warning("recording.failed", recording_id=recording_id, error=decision.reason)
        return SettleOutcome("fail", run_id)
    log.info(
        "recording.finalizing",
        recording_id=recording_id,
        run_id=run_id,
        segments=len(decision.included),
        missing=list(decision.missing),
    )
    return SettleOutcome("finalize", run_id)


def _decide(recording: RecordingView, now: datetime, cfg: Settings) -> Decision:
    if recording.source == "css":
        return decide_css(recording, now, settle_seconds=cfg.settle_seconds)
    return decide(
        recording, now, settle_seconds=cfg.settle_seconds, max_wait_seconds=cfg.max_wait_seconds
    )


def bind_recording(recording: RecordingView, **more: Any) -> None:
    """Put the recording into the context of every later log line of this task (Celery's
    task_prerun clears it for the next task; see tasks.celery)."""
    bind_contextvars(recording_id=recording.id, provider=recording.source, **more)


class StepRecorder:
    """Times each step of a run in the ledger and in metrics, keeps the run's heartbeat
    fresh, and puts the step into the context of every log line written during it."""

    def __init__(self, ledger: Ledger, run_id: str, label: str):
        self.ledger, self.run_id, self.label = ledger, run_id, label

    def heartbeat(self) -> None:
        self.ledger.heartbeat(self.run_id, utcnow())

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = utcnow()
        self.ledger.step(self.run_id, step, now=started)
        bound = log.bind(recording_id=self.label, run_id=self.run_id, step=step)
        bound.info("step.started")
        context = bind_contextvars(step=step)  # for lines written inside the step
        try:
            yield
        except Exception as exc:
            metrics.count_step_failure(step, storage=not isinstance(exc, MediaError))
            self.ledger.step(self.run_id, step, now=utcnow(), ok=False, error=str(exc))
            bound.warning("step.failed", error=str(exc))
            raise
        finally:
            reset_contextvars(**context)
        finished = utcnow()
        seconds = round((finished - started).total_seconds(), 3)
        metrics.observe_step(step, seconds)
        self.ledger.step(self.run_id, step, now=finished, ok=True, seconds=seconds)
        bound.info("step.finished", seconds=seconds)


def process(services: Services, run_id: str, worker: str) -> RunView | None:
    """fetch → concat (join) → transcode → archive for one run, in one scratch directory.

    Returns the finished run, or None when the run is done or another worker holds it.
    A MediaError fails the recording with its message; any other error propagates so
    the task can retry.
    """
    cfg = services.settings
    run = services.ledger.start_run(
        run_id, worker=worker, now=utcnow(), stale_after=cfg.stuck_after_seconds
    )
    if run is None:
        return None
    recording = run.recording
    bind_recording(recording, run_id=run_id)
    step = StepRecorder(services.ledger, run_id, recording.id)
    cfg.scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=cfg.scratch_dir))
    try:
        media = _css_media if recording.source == "css" else _gme_media
        result, manifest_url = media(services, run, step, scratch)
        services.ledger.finish_run(run_id, now=utcnow(), result=result, manifest_url=manifest_url)
        log.info(
            "recording.archived", recording_id=recording.id, run_id=run_id, manifest=manifest_url
        )
    except MediaError as exc:
        services.ledger.fail_run(run_id, now=utcnow(), error=str(exc))
        log.warning("recording.failed", recording_id=recording.id, run_id=run_id, error=str(exc))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return services.ledger.run(run_id)


def _gme_media(
    services: Services, run: RunView, step: StepRecorder, scratch: Path
) -> tuple[dict[str, Any], str]:
    cfg, recording = services.settings, run.recording
    segments = [
        (s.seq_no, s.file_name) for s in recording.segments if s.state == SegmentState.UPLOADED
    ]
    missing = list(missing_seq_nos(recording.segments))
    if not segments:
        raise MediaError(f"recording {recording.id} has no uploaded segment")
    with step("fetch"):
        sources = fetch_sources(
            services.source, segments, scratch, services.tools,
            label=recording.id, concurrency=cfg.fetch_concurrency, heartbeat=step.heartbeat,
        )  # fmt: skip
    with step("concat"):
        joined, plan = concatenate(
            sources, scratch, services.tools, label=recording.id, heartbeat=step.heartbeat
        )
    with step("transcode"):
        outputs = transcode(
            joined, plan, cfg.audio_formats, recording.id, scratch, services.tools,
            label=recording.id, heartbeat=step.heartbeat,
        )  # fmt: skip
    with step("archive"):
        artifacts, manifest_url = publish(services.archive, run, sources, outputs, missing)
    result: dict[str, Any] = {
        "included": [s.seq_no for s in sources],
        "missing": missing,
        "artifacts": artifacts,
        "sources": [s.manifest_entry() for s in sources],
    }
    return result, manifest_url


def _css_media(
    services: Services, run: RunView, step: StepRecorder, scratch: Path
) -> tuple[dict[str, Any], str]:
    """A CSS recording: its files fetched by URL under the fetch policy, joined in
    start-time order, then an mp4 and an m4a (RECPIPE_VIDEO_FORMATS)."""
    cfg, recording = services.settings, run.recording
    if not recording.files:
        raise MediaError(f"recording {recording.id} has no file")
    with step("fetch"):
        sources = css.fetch_files(
            recording.files, scratch, services.tools, css.fetch_policy(cfg),
            label=recording.id, heartbeat=step.heartbeat,
        )  # fmt: skip
        css.require_audio(sources, cfg.video_formats, label=recording.id)
    with step("concat"):
        joined, probe = css.join(
            sources, scratch, services.tools, label=recording.id, heartbeat=step.heartbeat
        )
    with step("transcode"):
        outputs = css.make_outputs(
            joined, probe, cfg.video_formats, recording.id, scratch, services.tools,
            label=recording.id, heartbeat=step.heartbeat,
        )  # fmt: skip
    with step("archive"):
        artifacts, manifest_url = publish(services.archive, run, sources, outputs, [])
    result: dict[str, Any] = {
        "included": [s.seq_no for s in sources],
        "missing": [],
        "artifacts": artifacts,
        "sources": [s.manifest_entry() for s in sources],
        # The identity of exactly the files this revision holds, for the notification.
        "css": recording.details,
    }
    return result, manifest_url


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
    now: datetime | None = None,
    max_run_attempts: int = 3,
) -> SweepReport:
    """Periodic safety net: settle due recordings, recover stuck runs, finished runs that
    were never notified, and deliveries."""
    now = now or utcnow()
    cfg, ledger = services.settings, services.ledger
    lease = timedelta(seconds=max(cfg.sweep_seconds * 3, 30))
    settled = ledger.lease_due_recordings(now, until=now + lease)
    for recording_id in settled:
        settle_later(recording_id)
    if settled:
        ledger.mark_recordings_dispatched(settled, now)

    redispatched, failed = [], []
    for run_id, attempts in ledger.stale_runs(now, cfg.stuck_after_seconds):
        if attempts >= max_run_attempts:
            ledger.fail_run(run_id, now=now, error=f"stuck: no progress after {attempts} attempts")
            failed.append(run_id)
            notify(run_id)
        else:
            redispatch_run(run_id)
            redispatched.append(run_id)

    # A run that finished (or was failed above) but whose notify task was lost.
    renotified = ledger.lease_unnotified_runs(now, now - timedelta(seconds=cfg.stuck_after_seconds))
    for run_id in renotified:
        notify(run_id)

    stale_after = timedelta(seconds=max(cfg.stuck_after_seconds, 1200))
    redelivered = ledger.stale_notifications(now - stale_after)
    for notification_id in redelivered:
        ledger.touch_notification(notification_id, now)
        redeliver(notification_id)
    return SweepReport(settled, redispatched, failed, redelivered, renotified)


# -- reprocessing (recpipe reprocess, the recpipe.reprocess task) ---------------------------

MEDIA_STEPS = ("fetch", "concat", "transcode", "archive")
STEPS = (*MEDIA_STEPS, "notify")


class UnknownStepError(ValueError):
    """A --from-step that is not one of the chain's steps."""

    def __init__(self, step: str):
        super().__init__(f"unknown step {step!r}: choose from {', '.join(STEPS)}")


@dataclass(frozen=True)
class ReprocessPlan:
    """What reprocessing one recording from a step would do, before doing it."""

    recording_id: str
    action: str  # "media" (a new revision), "notify" (re-send), or "refuse"
    detail: str


def plan_reprocess(
    recording: RecordingView, current: RunView | None, from_step: str, notify_urls: tuple[str, ...]
) -> ReprocessPlan:
    """Pure: the recording and its current run in, the plan out.

    fetch, concat, transcode and archive run in one task in one scratch directory that
    is removed when the task ends, so the inputs of concat, transcode and archive never
    outlive a run: from any of them, the media task runs again from fetch, as a new
    revision under the same archive prefix. notify re-sends the current revision's
    outcome (same webhook-id and body, so receivers deduplicate) without new media.
    """
    if from_step not in STEPS:
        raise UnknownStepError(from_step)
    rid = recording.id
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
    action: str  # "queued", "notified" or "refused"
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
    plan = plan_reprocess(recording, current, from_step, urls)
    if plan.action == "refuse":
        return ReprocessOutcome(recording_id, "refused", plan.detail)
    if plan.action == "notify" and current is not None:
        from tasks import notify

        body = notify.encode(notify.notification_body(current))
        created = ledger.create_notifications(
            current.id, notify.event_type(current), notify.webhook_id(current), body, urls, now
        )
        rearmed = ledger.rearm_notifications(current.id, urls, now)
        ids = (*created, *rearmed)
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
