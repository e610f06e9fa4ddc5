"""Settling: finalize a recording once it has been quiet long enough and is complete (or
waited out), after looking in the source for segments whose upload callback was lost."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from foundation.config import Settings
from storage.domain import RecordingState
from storage.domain.rooms import ROOM_SOURCE
from storage.ledger import RecordingView, utcnow
from tasks.css.settle import decide_css
from tasks.gme.settle import Decision, decide, recovered_segments
from tasks.rooms.settle import settle_room
from tasks.services import Services, bind_recording

log = structlog.get_logger("recpipe.tasks")

# A waiting settle task schedules its next look itself when that is at most this far off;
# a longer wait is left to beat's sweep (it settles from the settle time in the ledger).
LONGEST_COUNTDOWN = timedelta(hours=6)


def _schedules_itself(recheck_at: datetime, now: datetime) -> bool:
    return recheck_at - now <= LONGEST_COUNTDOWN


@dataclass(frozen=True)
class SettleOutcome:
    action: str  # "skip", "wait", "finalize" or "fail"
    run_id: str | None = None
    recheck_at: datetime | None = None
    # A waiting task looks again at `recheck_at` (else another pending settle task looks no
    # later, or beat's sweep will).
    looks_again: bool = False


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
    if recording.source == ROOM_SOURCE:
        action, run_id, recheck_at = settle_room(services, recording_id, now)
        soon = recheck_at is not None and _schedules_itself(recheck_at, now)
        return SettleOutcome(action, run_id, recheck_at, looks_again=soon)
    bind_recording(recording)
    decision = _decide(recording, now, cfg)
    quiet = decision.action != "wait" or decision.look_in_source
    if quiet and reconcile(services, recording, now):
        recording = services.ledger.recording(recording_id) or recording
        decision = _decide(recording, now, cfg)
    if decision.action == "wait":
        recheck_at = decision.recheck_at or now
        # The look is recorded as the recording's wake: an event that makes it due sooner
        # hands out a settle task of its own. When another pending task is recorded to look
        # no later, this one ends (a task per event would otherwise go on waking).
        wake_at = recheck_at if _schedules_itself(recheck_at, now) else None
        again = services.ledger.postpone(recording_id, recheck_at, wake_at=wake_at, now=now)
        return SettleOutcome("wait", recheck_at=recheck_at, looks_again=again)
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
        recording,
        now,
        settle_seconds=cfg.settle_seconds,
        max_wait_seconds=cfg.max_wait_seconds,
        complete_seconds=cfg.settle_complete_seconds,
    )
