"""Players: what the ledger holds of one player (a UserID of one BizID), their recordings
and the rooms they were in, and the erasure of a player (by their keyed hash)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.domain import HoldView, RecordingView
from storage.domain.players import ErasureItemView, ErasureView
from storage.domain.rooms import ROOM_SOURCE, SINGLE_STREAM, room_id
from storage.ledger.engine import LedgerBase, aware
from storage.ledger.holds import hold_view
from storage.ledger.recordings import recording_view
from storage.ledger.tables import Erasure, ErasureItem, Hold, Recording, RoomMember


@dataclass(frozen=True)
class PlayerFootprint:
    biz_id: int
    user_id: str
    # Their own (source gme, that BizID and UserID), newest first.
    recordings: tuple[RecordingView, ...] = ()
    # The rooms (source room) with one of those as a member, newest first.
    rooms: tuple[RecordingView, ...] = ()
    # Holds on any of the above, by id.
    held: Mapping[str, HoldView] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.recordings] + [r.id for r in self.rooms]


def own_recordings(s: Session, biz_id: int, user_id: str) -> list[Recording]:
    return list(
        s.scalars(
            select(Recording)
            .where(
                Recording.source == "gme",
                Recording.biz_id == biz_id,
                Recording.user_id == user_id,
            )
            .order_by(Recording.created_at.desc(), Recording.id)
        )
    )


def rooms_of(s: Session, recordings: list[Recording]) -> list[Recording]:
    """The rooms these recordings are members of (or, not yet noted, would be)."""
    ids = set(
        s.scalars(
            select(RoomMember.room_id).where(
                RoomMember.recording_id.in_([r.id for r in recordings])
            )
        )
    )
    for r in recordings:
        if r.record_mode == SINGLE_STREAM and r.room_id is not None and r.task_id is not None:
            ids.add(room_id(r.biz_id or 0, r.room_id, r.task_id))
    if not ids:
        return []
    return list(
        s.scalars(
            select(Recording)
            .where(Recording.id.in_(ids), Recording.source == ROOM_SOURCE)
            .order_by(Recording.created_at.desc(), Recording.id)
        )
    )


def erasure_view(s: Session, erasure: Erasure) -> ErasureView:
    items = s.scalars(
        select(ErasureItem)
        .where(ErasureItem.erasure_id == erasure.id)
        .order_by(ErasureItem.kind, ErasureItem.recording_id)
    ).all()
    return ErasureView(
        id=erasure.id,
        player=erasure.player,
        biz_id=erasure.biz_id,
        state=erasure.state,
        requested_by=erasure.requested_by,
        requested_at=aware(erasure.requested_at),
        finished_at=aware(erasure.finished_at),
        report=dict(erasure.report or {}),
        items=tuple(
            ErasureItemView(i.recording_id, i.kind, i.state, i.base_revision, i.objects)
            for i in items
        ),
    )


class Players(LedgerBase):
    def player_footprint(self, biz_id: int, user_id: str) -> PlayerFootprint:
        """The player's own recordings and the rooms they were in, with their holds."""
        with self.session() as s:
            own = own_recordings(s, biz_id, user_id)
            rooms = rooms_of(s, own)
            ids = [r.id for r in own] + [r.id for r in rooms]
            held = {}
            if ids:
                rows = s.execute(
                    select(Hold, Recording)
                    .join(Recording, Recording.id == Hold.recording_id)
                    .where(Hold.recording_id.in_(ids))
                ).all()
                held = {h.recording_id: hold_view(h, r) for h, r in rows}
            return PlayerFootprint(
                biz_id=biz_id,
                user_id=user_id,
                recordings=tuple(recording_view(s, r) for r in own),
                rooms=tuple(recording_view(s, r) for r in rooms),
                held=held,
            )

    def erasure_of(self, player: str) -> ErasureView | None:
        """The newest erasure of a player (by their keyed hash)."""
        with self.session() as s:
            found = s.scalars(
                select(Erasure)
                .where(Erasure.player == player)
                .order_by(Erasure.requested_at.desc(), Erasure.id.desc())
                .limit(1)
            ).first()
            return None if found is None else erasure_view(s, found)

    def erasure(self, erasure_id: int) -> ErasureView | None:
        with self.session() as s:
            found = s.get(Erasure, erasure_id)
            return None if found is None else erasure_view(s, found)
