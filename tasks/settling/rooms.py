"""The room settle rule. Pure, like the GME and CSS ones (`tasks.settling.gme`, `.css`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from storage.domain import RecordingState
from storage.domain.lifecycle import Decision
from storage.domain.rooms import Member, sources_key


def decide_room(
    members: Sequence[Member],
    *,
    last_change_at: datetime,
    now: datetime,
    settle_seconds: float,
    last_mixed: Sequence[Sequence[object]] | None,
) -> Decision:
    """Mix (finalize) once every member is archived or failed and the room has been quiet
    for the settle window; a room whose archived members are what its last revision mixed
    is `unchanged`; one with no archived member fails.

    While a member is busy the room waits a settle window: that member's run end moves
    the room's settle time itself (`Ledger.note_room_member`), so the room is not looked
    at again before then but as a safety net."""
    # A tombstone (a forgotten or expired member) is settled for good, and never mixed.
    settled = RecordingState.TERMINAL + RecordingState.TOMBSTONES
    busy = [m for m in members if m.state not in settled]
    quiet_at = last_change_at + timedelta(seconds=settle_seconds)
    if now < quiet_at:
        return Decision("wait", recheck_at=quiet_at)
    if busy:
        return Decision("wait", recheck_at=now + timedelta(seconds=settle_seconds))
    archived = tuple(
        sorted(
            (m for m in members if m.state == RecordingState.ARCHIVED and m.run_id),
            key=lambda m: m.recording_id,
        )
    )
    if not archived:
        return Decision("fail", reason="no recording of the room was archived")
    ids = tuple(m.recording_id for m in archived)
    if last_mixed is not None and sources_key(archived) == [list(x) for x in last_mixed]:
        return Decision("unchanged", members=ids)
    return Decision("finalize", members=ids)
