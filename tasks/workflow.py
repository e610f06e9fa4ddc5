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

from recpipe.config import Settings
from storage.ledger import Ledger, RecordingView, RunView, utcnow
from storage.models import RecordingState, SegmentState
from storage.objectstore import ObjectStore
from tasks.archive import publish
from tasks.media import MediaError, Tools, concatenate, fetch_sources, transcode
from tasks.settle import Decision, decide, missing_seq_nos, recovered_segments

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
    return decide(
        recording, now, settle_seconds=cfg.settle_seconds, max_wait_seconds=cfg.max_wait_seconds
    )


class StepRecorder:
    """Times each step of a run in the ledger and keeps the run's heartbeat fresh."""

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
        try:
            yield
        except Exception as exc:
            self.ledger.step(self.run_id, step, now=utcnow(), ok=False, error=str(exc))
            bound.warning("step.failed", error=str(exc))
            raise
        finished = utcnow()
        seconds = round((finished - started).total_seconds(), 3)
        self.ledger.step(self.run_id, step, now=finished, ok=True, seconds=seconds)
        bound.info("step.finished", seconds=seconds)


def process(services: Services, run_id: str, worker: str) -> RunView | None:
    """fetch → concat → transcode → archive for one run, in one scratch directory.

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
    segments = [
        (s.seq_no, s.file_name) for s in recording.segments if s.state == SegmentState.UPLOADED
    ]
    missing = list(missing_seq_nos(recording.segments))
    step = StepRecorder(services.ledger, run_id, recording.id)
    cfg.scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=cfg.scratch_dir))
    try:
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
