"""What operators ask of the ledger (`recpipe status`, `find`, metrics): read-only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, or_, select

from storage.domain import RecordingView
from storage.domain.rooms import ROOM_SOURCE
from storage.ledger.engine import LedgerBase
from storage.ledger.recordings import recording_view
from storage.ledger.tables import CssFile, Recording

Q = TypeVar("Q", bound=Select[Any])


def filtered(
    query: Q,
    *,
    state: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Q:
    """`query` narrowed to recordings in `state`, from `source`, whose first event (their
    `created_at`) is in [since, until); a filter not given narrows nothing. Shared by the
    CLI's selections and the console's pages."""
    if state:
        query = query.where(Recording.state == state)
    if source:
        query = query.where(Recording.source == source)
    if since:
        query = query.where(Recording.created_at >= since)
    if until:
        query = query.where(Recording.created_at < until)
    return query


class OperatorQueries(LedgerBase):
    def count_recordings_by_state(self) -> dict[str, int]:
        """How many recordings are in each state (for metrics: one indexed GROUP BY)."""
        with self.session() as s:
            rows = s.execute(select(Recording.state, func.count()).group_by(Recording.state))
            return {state: int(count) for state, count in rows}

    def find_recordings(self, term: str) -> list[str]:
        """Recording ids matching an id, a GME TaskID (its users' recordings; a room is
        named by its own id), or a CSS file id or stream id."""
        with self.session() as s:
            found = list(
                s.scalars(
                    select(Recording.id).where(
                        or_(
                            Recording.id == term,
                            (Recording.task_id == term) & (Recording.source != ROOM_SOURCE),
                        )
                    )
                )
            )
            found += [
                rid
                for rid in s.scalars(
                    select(CssFile.recording_id)
                    .where(or_(CssFile.file_id == term, CssFile.stream_id == term))
                    .distinct()
                )
                if rid not in found
            ]
            return found

    def recent_recordings(
        self, limit: int = 20, state: str | None = None, source: str | None = None
    ) -> list[RecordingView]:
        with self.session() as s:
            query = select(Recording).order_by(Recording.created_at.desc()).limit(limit)
            query = filtered(query, state=state, source=source)
            return [recording_view(s, r, with_parts=False) for r in s.scalars(query)]

    def select_recordings(
        self,
        *,
        state: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Recording ids matching every filter given, oldest first; `since`/`until` bound
        the recording's first event (its `created_at`)."""
        with self.session() as s:
            query = select(Recording.id).order_by(Recording.created_at, Recording.id)
            if ids is not None:
                query = query.where(Recording.id.in_(list(ids)))
            query = filtered(query, state=state, source=source, since=since, until=until)
            return list(s.scalars(query))
