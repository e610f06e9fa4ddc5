"""Settling: a collecting recording that beat's clock found due is looked at, and
finalized (claimed for a run) once its rule says so, failed, or left to wait.

One rule per source, each a pure function answering with one `Decision`:
`tasks.settling.gme.decide_gme`, `tasks.settling.css.decide_css` and
`tasks.settling.rooms.decide_room`. A GME recording missing segments is first looked up in
the source for those whose upload callback was lost."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime

import structlog

from storage.domain import RecordingState
from storage.domain.lifecycle import Decision
from storage.domain.rooms import ROOM_SOURCE
from storage.ledger import RecordingView, utcnow
from tasks.services import Services, bind_recording
from tasks.settling.css import decide_css
from tasks.settling.gme import decide_gme, recovered_segments
from tasks.settling.rooms import decide_room

log = structlog.get_logger("recpipe.tasks")


@dataclass(frozen=True)
class SettleOutcome:
    action: str  # "skip", "wait", "finalize" or "fail"
    run_id: str | None = None
    recheck_at: datetime | None = None  # wait: the settle time written


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
    """Look at a recording once: finalize it if its rule says it is complete (or waited
    out), fail it, or write when it is due again (unless an event moved that meanwhile)."""
    now = now or utcnow()
    ledger = services.ledger
    recording = ledger.recording(recording_id)
    if recording is None or recording.state != RecordingState.COLLECTING:
        return SettleOutcome("skip")
    bind_recording(recording)
    decision = decide(services, recording, now)
    quiet = decision.action != "wait" or decision.look_in_source
    if quiet and reconcile(services, recording, now):
        recording = ledger.recording(recording_id) or recording
        decision = decide(services, recording, now)
    if decision.action == "wait":
        recheck_at = decision.recheck_at or now
        ledger.postpone(recording_id, recheck_at, seen_due=recording.settle_due_at)
        return SettleOutcome("wait", recheck_at=recheck_at)
    if decision.action == "unchanged":
        ledger.settle_unchanged(recording_id, now)
        log.info("room.unchanged", room_id=recording_id, revision=recording.revision)
        return SettleOutcome("skip")
    run_id = ledger.claim(recording_id, now=now, expected_last_event_at=recording.last_event_at)
    if run_id is None:
        return SettleOutcome("skip")
    if decision.action == "fail":
        ledger.fail_run(run_id, now=now, error=decision.reason)
        log.warning("recording.failed", recording_id=recording_id, error=decision.reason)
        return SettleOutcome("fail", run_id)
    if recording.source == ROOM_SOURCE:
        log.info("room.mixing", room_id=recording_id, run_id=run_id, users=len(decision.members))
    else:
        log.info(
            "recording.settled",
            recording_id=recording_id,
            run_id=run_id,
            segments=len(decision.included),
            missing=list(decision.missing),
        )
    return SettleOutcome("finalize", run_id)


def decide(services: Services, recording: RecordingView, now: datetime) -> Decision:
    """The recording's rule, by its source."""
    cfg = services.settings
    if recording.source == ROOM_SOURCE:
        return decide_room(
            services.ledger.room_members(recording.id),
            last_change_at=recording.last_event_at,
            now=now,
            settle_seconds=cfg.settle_seconds,
            last_mixed=services.ledger.last_mixed(recording.id),
        )
    if recording.source == "css":
        return decide_css(recording, now, settle_seconds=cfg.settle_seconds)
    return decide_gme(
        recording,
        now,
        settle_seconds=cfg.settle_seconds,
        max_wait_seconds=cfg.max_wait_seconds,
        complete_seconds=cfg.settle_complete_seconds,
    )
