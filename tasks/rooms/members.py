"""A room learns of its members as their runs end (its settle rule is
`tasks.settling.rooms.decide_room`)."""

from __future__ import annotations

from datetime import datetime

import structlog

from storage.domain import RunView
from storage.ledger import utcnow
from tasks.services import Services

log = structlog.get_logger("recpipe.tasks")


def member_finished(services: Services, run: RunView, now: datetime | None = None) -> str | None:
    """A user's recording ended a run: its room learns of it, and its settle time moves
    (beat's clock then looks at it). Returns the room's id when the room collects."""
    if run.recording.source != "gme":
        return None
    room = services.ledger.note_room_member(
        run.recording_id, now=now or utcnow(), settle_seconds=services.settings.settle_seconds
    )
    if room:
        log.info("room.collecting", room_id=room, recording_id=run.recording_id)
    return room
