"""Transcripts: one per run on the `transcribe` queue, the current one's lines for search
and its flags for review. Rows are keyed by recording id (and run), like the runs."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, column, delete, func, or_, select, table, text, update

from storage.domain.transcripts import (
    FlagView,
    Review,
    SearchHit,
    SearchPage,
    TranscriptLineView,
    TranscriptState,
    TranscriptView,
    carried_reviews,
    fts_phrase,
    like_pattern,
)
from storage.ledger.console import BadCursorError
from storage.ledger.engine import LedgerBase, aware, upsert
from storage.ledger.tables import (
    AuditEntry,
    Recording,
    RoomMember,
    Run,
    Transcript,
    TranscriptFlag,
    TranscriptLine,
)

# SQLite's FTS5 table over transcript_lines (made by the migration, kept by triggers).
_FTS = table("transcript_lines_fts", column("rowid", Integer), column("rank"))
# FTS5's trigram tokenizer indexes three characters; a shorter query is matched by LIKE.
TRIGRAM = 3
# The largest id an INTEGER column holds (the flags are numbered by one).
MAX_ROW_ID = 2**31 - 1


class Transcripts(LedgerBase):
    def queue_transcript(self, run_id: str, now: datetime) -> bool:
        """A transcript to make for a finished run; False when it exists already."""
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                return False
            row = s.execute(
                upsert(s, Transcript)
                .values(
                    run_id=run_id, recording_id=run.recording_id, revision=run.revision,
                    state=TranscriptState.QUEUED, attempts=0, summary={}, document={},
                    created_at=now, dispatched_at=now,
                )
                .on_conflict_do_nothing(index_elements=["run_id"])
                .returning(Transcript.run_id)
            ).first()  # fmt: skip
            return row is not None

    def requeue_transcript(self, run_id: str, now: datetime) -> bool:
        """Make a run's transcript again (`recpipe reprocess --from-step transcribe`)."""
        with self.session() as s:
            done = s.execute(
                update(Transcript)
                .where(Transcript.run_id == run_id, Transcript.state.in_(TranscriptState.DONE))
                .values(state=TranscriptState.QUEUED, attempts=0, error=None, dispatched_at=now)
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def start_transcript(self, run_id: str, now: datetime) -> TranscriptView | None:
        """The transcript, now running, or None when it is not to be made (done already)."""
        with self.session() as s:
            row = s.get(Transcript, run_id, with_for_update=True)
            # Only a queued one: a second message for a running transcript leaves it be.
            if row is None or row.state != TranscriptState.QUEUED:
                return None
            row.state = TranscriptState.RUNNING
            row.attempts += 1
            row.dispatched_at = now
            return _view(row)

    def finish_transcript(
        self,
        run_id: str,
        now: datetime,
        *,
        engine: str,
        language: str | None,
        json_url: str,
        vtt_url: str,
        summary: dict[str, Any],
        document: dict[str, Any],
        lines: Sequence[TranscriptLineView] = (),
        flags: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Ready; the recording's searchable lines and its flags (as in the transcript's
        JSON) become this run's. A flag that was reviewed in the transcript it replaces
        (same speaker and match, about the same time: carried_reviews) stays reviewed, by
        whom and when it was, so nobody reviews it twice."""
        with self.session() as s:
            row = s.get(Transcript, run_id, with_for_update=True)
            if row is None or row.state == TranscriptState.READY:
                return False
            row.state, row.engine, row.language = TranscriptState.READY, engine, language
            row.json_url, row.vtt_url, row.summary = json_url, vtt_url, summary
            row.document, row.error, row.finished_at = document, None, now
            rid = row.recording_id
            reviews = [
                Review(f.speaker, f.match, f.start_s, f.reviewed_at, f.reviewed_by)
                for f in s.scalars(select(TranscriptFlag).where(TranscriptFlag.recording_id == rid))
                if f.reviewed_at is not None
            ]
            kept = carried_reviews(reviews, list(flags))
            s.execute(delete(TranscriptLine).where(TranscriptLine.recording_id == rid))
            s.execute(delete(TranscriptFlag).where(TranscriptFlag.recording_id == rid))
            s.add_all(
                TranscriptLine(recording_id=rid, run_id=run_id, speaker=line.speaker,
                               start_s=line.start_s, end_s=line.end_s, text=line.text)
                for line in lines
            )  # fmt: skip
            s.add_all(
                TranscriptFlag(recording_id=rid, run_id=run_id, speaker=str(flag["speaker"]),
                               start_s=flag["start_s"], end_s=flag["end_s"],
                               match=str(flag["match"]), text=str(flag.get("text") or ""),
                               created_at=now,
                               reviewed_at=review.reviewed_at if review else None,
                               reviewed_by=review.reviewed_by if review else None)
                for flag, review in zip(flags, kept, strict=True)
            )  # fmt: skip
            return True

    def fail_transcript(self, run_id: str, now: datetime, error: str) -> bool:
        with self.session() as s:
            done = s.execute(
                update(Transcript)
                .where(Transcript.run_id == run_id, Transcript.state != TranscriptState.READY)
                .values(state=TranscriptState.FAILED, error=error, finished_at=now)
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def release_transcript(self, run_id: str) -> None:
        """Back to queued for the task's retry."""
        with self.session() as s:
            s.execute(
                update(Transcript)
                .where(Transcript.run_id == run_id, Transcript.state == TranscriptState.RUNNING)
                .values(state=TranscriptState.QUEUED)
            )

    def transcript(self, run_id: str) -> TranscriptView | None:
        with self.session() as s:
            row = s.get(Transcript, run_id)
            return _view(row) if row is not None else None

    def transcript_of(
        self, recording_id: str, revision: int | None = None
    ) -> TranscriptView | None:
        """The transcript of a recording's revision (its current one by default)."""
        with self.session() as s:
            query = select(Transcript).where(Transcript.recording_id == recording_id)
            if revision is None:
                query = query.join(Recording, Recording.current_run_id == Transcript.run_id)
            else:
                query = query.where(Transcript.revision == revision)
            row = s.scalars(query).first()
            return _view(row) if row is not None else None

    def lost_transcripts(
        self,
        now: datetime,
        *,
        queued_before: datetime | None,
        running_before: datetime,
        limit: int = 100,
    ) -> list[str]:
        """Transcripts whose task is gone: queued and handed out before `queued_before`
        (None: none counts as lost, the queue may still hold it), or running since before
        `running_before` (its worker died). They are queued again, handed out `now`."""
        lost = (Transcript.state == TranscriptState.RUNNING) & (
            Transcript.dispatched_at < running_before
        )
        if queued_before is not None:
            lost = lost | (
                (Transcript.state == TranscriptState.QUEUED)
                & (Transcript.dispatched_at < queued_before)
            )
        with self.session() as s:
            ids = list(
                s.scalars(
                    select(Transcript.run_id)
                    .where(lost)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if ids:
                s.execute(
                    update(Transcript)
                    .where(Transcript.run_id.in_(ids))
                    .values(state=TranscriptState.QUEUED, dispatched_at=now)
                )
            return ids

    def transcripts_pending(self) -> int:
        with self.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(Transcript)
                    .where(Transcript.state.in_(TranscriptState.PENDING))
                )
                or 0
            )

    # -- search ------------------------------------------------------------------------

    def search_transcripts(
        self, query: str, limit: int = 50, cursor: str | None = None
    ) -> SearchPage:
        """Lines of the recordings' current transcripts holding `query` (case-insensitive),
        best first, `limit` at a time; `next` is the cursor of the page after this one.
        Found by a trigram index on PostgreSQL, FTS5 (trigram) on SQLite, and ordered alike
        on both: the shortest line holding the words first (the closest match, as trigram
        similarity ranks it), then in the order the lines were stored. A page follows on
        from its cursor, the last line before it (keyset), never by counting rows, so lines
        stored or replaced between two pages neither repeat a hit nor skip one."""
        query = " ".join(query.split())
        if not query:
            return SearchPage([], None)
        line = TranscriptLine
        size = func.length(line.text)
        columns = (line.recording_id, Recording.source, line.speaker, line.start_s, line.end_s,
                   line.text, size, line.id)  # fmt: skip
        statement = select(*columns).join(Recording, Recording.id == line.recording_id)
        if self.engine.dialect.name == "postgresql":
            statement = statement.where(line.text.ilike(like_pattern(query), escape="\\"))
        elif len(query) >= TRIGRAM:
            match = text("transcript_lines_fts MATCH :phrase").bindparams(phrase=fts_phrase(query))
            statement = statement.join(_FTS, _FTS.c.rowid == line.id).where(match)
        else:
            statement = statement.where(line.text.like(like_pattern(query), escape="\\"))
        if cursor:
            after_size, after_id = decode_search_cursor(cursor)
            statement = statement.where(
                or_(size > after_size, (size == after_size) & (line.id > after_id))
            )
        statement = statement.order_by(size, line.id).limit(limit + 1)
        with self.session() as s:
            rows = s.execute(statement).all()
            rooms = _rooms_of(s, {r[0] for r in rows[:limit]})
        hits = []
        for rid, source, speaker, start, end, found, _size, _id in rows[:limit]:
            room_id, offset_s = rooms.get(rid, (None, None))
            hits.append(
                SearchHit(rid, source, speaker, start, end, found, room_id,
                          None if offset_s is None else round(start + offset_s, 3))
            )  # fmt: skip
        last = rows[limit - 1] if len(rows) > limit else None
        return SearchPage(hits, encode_search_cursor(last[6], last[7]) if last else None)

    # -- flags ---------------------------------------------------------------------------

    def transcript_flags(
        self, *, reviewed: bool | None = None, recording_id: str | None = None, limit: int = 200
    ) -> list[FlagView]:
        query = select(TranscriptFlag).order_by(
            TranscriptFlag.created_at.desc(), TranscriptFlag.recording_id, TranscriptFlag.start_s
        )
        if reviewed is not None:
            query = query.where(
                TranscriptFlag.reviewed_at.is_not(None)
                if reviewed
                else TranscriptFlag.reviewed_at.is_(None)
            )
        if recording_id is not None:
            query = query.where(TranscriptFlag.recording_id == recording_id)
        with self.session() as s:
            return [_flag(f) for f in s.scalars(query.limit(limit))]

    def review_flag(self, flag_id: int, actor: str, now: datetime) -> FlagView | None:
        """Mark a flag reviewed, audited like every operator action; None when unknown.
        Reviewing twice keeps the first review."""
        if not 0 < flag_id <= MAX_ROW_ID:  # no such row, and PostgreSQL refuses the value
            return None
        with self.session() as s:
            row = s.get(TranscriptFlag, flag_id, with_for_update=True)
            if row is None:
                return None
            if row.reviewed_at is None:
                row.reviewed_at, row.reviewed_by = now, actor
                s.add(
                    AuditEntry(at=now, actor=actor, action="review_flag",
                               recording_id=row.recording_id, target=str(flag_id),
                               detail={"match": row.match, "speaker": row.speaker,
                                       "start_s": row.start_s})
                )  # fmt: skip
            return _flag(row)


def encode_search_cursor(size: int, line_id: int) -> str:
    """The position of a page's last line in the search's order."""
    raw = json.dumps([int(size), int(line_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_search_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        size, line_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadCursorError("cursor: not one this API handed out") from exc
    if not (isinstance(size, int) and isinstance(line_id, int)) or not (
        0 <= size <= MAX_ROW_ID and 0 <= line_id <= MAX_ROW_ID
    ):
        raise BadCursorError("cursor: not one this API handed out")
    return size, line_id


def _rooms_of(s: Any, recording_ids: set[str]) -> dict[str, tuple[str, float | None]]:
    """For each recording in a room: the room, and the recording's start on its clock
    (from the room's current revision's participants)."""
    if not recording_ids:
        return {}
    found: dict[str, tuple[str, float | None]] = {}
    rows = s.execute(
        select(RoomMember.recording_id, RoomMember.room_id, Run.result)
        .outerjoin(Recording, Recording.id == RoomMember.room_id)
        .outerjoin(Run, Run.id == Recording.current_run_id)
        .where(RoomMember.recording_id.in_(recording_ids))
    ).all()
    for rid, room_id, result in rows:
        offsets = {
            p.get("recording_id"): p.get("offset_s")
            for p in (result or {}).get("participants") or []
        }
        offset = offsets.get(rid)
        found[rid] = (room_id, float(offset) if offset is not None else None)
    return found


def _view(row: Transcript) -> TranscriptView:
    return TranscriptView(
        run_id=row.run_id,
        recording_id=row.recording_id,
        revision=row.revision,
        state=row.state,
        attempts=row.attempts,
        engine=row.engine,
        language=row.language,
        json_url=row.json_url,
        vtt_url=row.vtt_url,
        summary=dict(row.summary or {}),
        document=dict(row.document or {}),
        error=row.error,
        finished_at=aware(row.finished_at),
    )


def _flag(row: TranscriptFlag) -> FlagView:
    return FlagView(
        id=row.id,
        recording_id=row.recording_id,
        speaker=row.speaker,
        start_s=row.start_s,
        end_s=row.end_s,
        match=row.match,
        text=row.text,
        created_at=aware(row.created_at),
        reviewed_at=aware(row.reviewed_at),
        reviewed_by=row.reviewed_by,
    )
