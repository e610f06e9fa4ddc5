"""When a room is mixed: its members noted as their runs end, then the room's settle
decision (`storage.domain.rooms.decide_room`) acted on."""

from __future__ import annotations

from datetime import datetime

import structlog

from storage.domain import RecordingState, RunView
from storage.domain.rooms import decide_room
from storage.ledger import utcnow
from tasks.services import Services

log = structlog.get_logger("recpipe.tasks")


def member_finished(services: Services, run: RunView, now: datetime | None = None) -> str | None:
    """A user's recording ended a run: its room learns of it. Returns the room's id when
    the room collects (a settle task should follow), else None."""
    if run.recording.source != "gme":
        return None
    room = services.ledger.note_room_member(
        run.recording_id, now=now or utcnow(), settle_seconds=services.settings.settle_seconds
    )
    if room:
        log.info("room.collecting", room_id=room, recording_id=run.recording_id)
    return room


def settle_room(
    services: Services, room_id: str, now: datetime
) -> tuple[str, str | None, datetime | None]:
    """(action, run id, recheck time): wait, mix (a claimed run), unchanged or fail."""
    ledger = services.ledger
    room = ledger.recording(room_id)
    if room is None or room.state != RecordingState.COLLECTING:
        return "skip", None, None
    decision = decide_room(
        ledger.room_members(room_id),
        last_change_at=room.last_event_at,
        now=now,
        settle_seconds=services.settings.settle_seconds,
        last_mixed=ledger.last_mixed(room_id),
    )
    if decision.action == "wait":
        ledger.postpone(room_id, decision.recheck_at or now)
        return "wait", None, decision.recheck_at
    if decision.action == "unchanged":
        ledger.settle_unchanged(room_id, now)
        log.info("room.unchanged", room_id=room_id, revision=room.revision)
        return "skip", None, None
    run_id = ledger.claim(room_id, now=now, expected_last_event_at=room.last_event_at)
    if run_id is None:
        return "skip", None, None
    if decision.action == "fail":
        ledger.fail_run(run_id, now=now, error=decision.reason)
        log.warning("room.failed", room_id=room_id, error=decision.reason)
        return "fail", run_id, None
    log.info("room.mixing", room_id=room_id, run_id=run_id, users=len(decision.members))
    return "finalize", run_id, None
