"""The webhook's GME hot path on PostgreSQL: one statement, one round trip.

`Ledger.record_gme_event` must store the raw callback and apply it to the recording and
segment bookkeeping atomically, for every request the vendor sends. Step by step
(`storage.ledger.gme_intake`) that is a transaction of BEGIN, up to five statements and
COMMIT: up to seven round trips, and most of the webhook's CPU. Here it is one statement
with data-modifying CTEs, sent on the calling thread's own psycopg connection
(`storage.ledger.engine.ThreadConnections`) in autocommit mode (a single statement is its
own transaction) and prepared by psycopg after its first few runs.

It applies the lifecycle rules (`storage.domain.lifecycle.gme_event`) that the step-by-step
path (`storage.ledger.gme_intake.apply_gme_event`) calls, with one difference forced by
the single statement: whether this event brings new content (a segment not seen before,
or its first upload) and whether the recording is complete (every segment whole, no SeqNo
missing: the short settle window) are read from the statement's snapshot, so the
recording's row is written once. Under concurrency new content can only err towards
"new" (two racing uploads of one segment under different file names may both reopen the
recording), which costs at most one extra settle. Completeness can err either way when
two events of one recording race; the settle task decides again from committed rows
(`tasks.settling.gme.decide_gme`), so a recording is never finalized on a stale "complete" (it
finds the recording not yet due and waits), and the next event corrects a stale
"incomplete". The statement hands nothing out: the settle time it writes is what beat's
clock reads.

`tests/integration/test_ledger_pg_intake.py` replays random event sequences through this
statement and through the step-by-step path and compares the resulting rows;
`tests/integration/test_ledger_lifecycle.py` checks both against the event sequences and
expected states of `tests/support/lifecycle.py`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storage.domain import GME_EVENT_UPLOADED, GmeEvent, RecordingState, SegmentState, lifecycle

_RANK = " ".join(f"WHEN '{state}' THEN {rank}" for state, rank in SegmentState.ORDER.items())
_TERMINAL = ", ".join(f"'{state}'" for state in RecordingState.TERMINAL)
WHOLE = lifecycle.WHOLE

# Parameters: key, rid, event_type, now, due, due_complete, body, headers (JSON text),
# biz_id, room_id, user_id, task_id, record_mode, seq_no, file_name, state, rank, bit (the
# event's EVENT_BITS), uploaded (bool), uploaded_at. `new_content` is true when this event
# tells of a segment the snapshot does not show, or uploads one it does not show as
# uploaded. Only this module's constants are formatted in.
RECORD_GME_EVENT_SOURCE = f"""
WITH cb AS (
    INSERT INTO callbacks (provider, dedupe_key, recording_id, event_type, received_at,
                           body, headers, duplicates, dispatched_at)
    VALUES ('gme', %(key)s, %(rid)s, %(event_type)s, %(now)s,
            %(body)s, %(headers)s::json, 0, %(now)s)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
), dup AS (
    UPDATE callbacks SET duplicates = duplicates + 1
    WHERE dedupe_key = %(key)s AND NOT EXISTS (SELECT FROM cb)
    RETURNING id
), prior AS (
    SELECT
        (SELECT stopped_at IS NOT NULL FROM recordings WHERE id = %(rid)s) AS stopped,
        (SELECT events FROM segments WHERE recording_id = %(rid)s AND seq_no = %(seq_no)s)
            AS events,
        %(uploaded)s::boolean AND NOT EXISTS (
            SELECT FROM segments
            WHERE recording_id = %(rid)s AND seq_no = %(seq_no)s AND uploaded_at IS NOT NULL
        ) AS first_upload,
        -- The other segments are all whole, and with this one no SeqNo is missing.
        (SELECT count(*) = count(*) FILTER (WHERE events = {WHOLE})
                AND count(*) = GREATEST(max(seq_no), %(seq_no)s)
         FROM segments WHERE recording_id = %(rid)s AND seq_no <> %(seq_no)s) AS others_whole
), fresh AS (
    -- New content: a segment not seen before, or its first upload.
    SELECT first_upload OR events IS NULL AS new_content,
           CASE WHEN stopped THEN %(now)s::timestamptz
                WHEN others_whole AND (COALESCE(events, 0) | %(bit)s) & {WHOLE} = {WHOLE}
                    THEN %(due_complete)s::timestamptz
                ELSE %(due)s::timestamptz END AS due
    FROM prior
), rec AS (
    INSERT INTO recordings AS r (id, source, biz_id, room_id, user_id, task_id, record_mode,
                                 details, state, revision, pending_changes, first_event_at,
                                 last_event_at, settle_due_at, created_at, updated_at)
    SELECT %(rid)s::text, 'gme', %(biz_id)s::bigint, %(room_id)s::text, %(user_id)s::text,
           %(task_id)s::text, %(record_mode)s::integer, '{{}}'::json,
           '{RecordingState.COLLECTING}', 0, false, %(now)s::timestamptz, %(now)s::timestamptz,
           %(due)s::timestamptz, %(now)s::timestamptz, %(now)s::timestamptz
    FROM cb
    ON CONFLICT (id) DO UPDATE SET
        last_event_at = GREATEST(r.last_event_at, excluded.last_event_at),
        updated_at = excluded.updated_at,
        -- Quiet time restarts while collecting (short once complete, none once stopped);
        -- new content after the archive (or the failure) collects again, for the next
        -- revision; during processing it is remembered for after it.
        settle_due_at = CASE
            WHEN r.state = '{RecordingState.COLLECTING}' THEN (SELECT due FROM fresh)
            WHEN r.state IN ({_TERMINAL}) AND (SELECT new_content FROM fresh)
                THEN (SELECT due FROM fresh)
            ELSE r.settle_due_at END,
        state = CASE
            WHEN r.state IN ({_TERMINAL}) AND (SELECT new_content FROM fresh)
                THEN '{RecordingState.COLLECTING}'
            ELSE r.state END,
        error = CASE
            WHEN r.state IN ({_TERMINAL}) AND (SELECT new_content FROM fresh) THEN NULL
            ELSE r.error END,
        pending_changes = r.pending_changes OR (
            r.state = '{RecordingState.PROCESSING}' AND (SELECT new_content FROM fresh))
    RETURNING 1
), seg AS (
    INSERT INTO segments AS s (recording_id, seq_no, file_name, state, recovered,
                               first_seen_at, uploaded_at, events)
    SELECT %(rid)s::text, %(seq_no)s::integer, %(file_name)s::text, %(state)s::text, false,
           %(now)s::timestamptz, %(uploaded_at)s::timestamptz, %(bit)s::integer
    FROM cb
    ON CONFLICT (recording_id, seq_no) DO UPDATE SET
        events = s.events | excluded.events,
        -- A segment's state only moves forward.
        state = CASE WHEN (CASE s.state {_RANK} ELSE 0 END) <= %(rank)s
            THEN excluded.state ELSE s.state END,
        uploaded_at = COALESCE(s.uploaded_at, excluded.uploaded_at),
        -- The uploaded key is the one to fetch, whatever an earlier event said.
        file_name = CASE WHEN %(uploaded)s THEN excluded.file_name ELSE s.file_name END,
        recovered = CASE WHEN %(uploaded)s THEN false ELSE s.recovered END
    RETURNING 1
)
-- Every CTE runs to completion whether or not this reads it.
SELECT (SELECT id FROM cb), (SELECT id FROM dup)
"""  # noqa: S608


def compact(statement: str) -> str:
    """The statement without its comments and runs of whitespace (none of its literals
    holds either). psycopg caches the parsing of a query's placeholders only for queries
    of at most 4,096 characters (`MAX_CACHED_STATEMENT_LENGTH`); the commented source is
    longer, and parsing it again on every request cost a quarter of the webhook's CPU."""
    return re.sub(r"\s+", " ", re.sub(r"--[^\n]*", "", statement)).strip()


RECORD_GME_EVENT = compact(RECORD_GME_EVENT_SOURCE)
# Sent as bytes: psycopg would encode the text again on every call.
_RECORD_GME_EVENT_BYTES = RECORD_GME_EVENT.encode()


# A retry that raced the first delivery: its row was committed after this statement's
# snapshot, so `dup` above did not see it; a statement of its own does.
COUNT_DUPLICATE = """
UPDATE callbacks SET duplicates = duplicates + 1 WHERE dedupe_key = %(key)s RETURNING id
"""


@dataclass(frozen=True)
class Outcome:
    callback_id: int | None  # None: a duplicate
    duplicate_of: int | None


def parameters(
    gme: GmeEvent,
    body: str,
    headers: dict[str, str],
    now: datetime,
    settle_seconds: float,
    complete_seconds: float | None = None,
) -> dict[str, Any]:
    uploaded = gme.event_type == GME_EVENT_UPLOADED
    windows = lifecycle.Windows(settle_seconds, complete_seconds)
    state = SegmentState.after_event(gme.event_type)
    key = gme.key
    return {
        "key": gme.dedupe_key,
        "rid": key.recording_id,
        "event_type": gme.event_type,
        "now": now,
        "due": now + timedelta(seconds=settle_seconds),
        "due_complete": now + timedelta(seconds=windows.complete),
        "body": body,
        "headers": json.dumps(headers),
        "biz_id": key.biz_id,
        "room_id": key.room_id,
        "user_id": key.user_id,
        "task_id": key.task_id,
        "record_mode": key.record_mode,
        "seq_no": gme.seq_no,
        "file_name": gme.file_name,
        "state": state,
        "rank": SegmentState.ORDER[state],
        "bit": lifecycle.EVENT_BITS.get(gme.event_type, 0),
        "uploaded": uploaded,
        "uploaded_at": now if uploaded else None,
    }


def record(cursor: Any, params: dict[str, Any]) -> Outcome:
    """Run the statement on a psycopg cursor whose connection is in autocommit mode."""
    cursor.execute(_RECORD_GME_EVENT_BYTES, params)
    callback_id, duplicate_of = cursor.fetchone()
    if callback_id is None and duplicate_of is None:
        cursor.execute(COUNT_DUPLICATE, {"key": params["key"]})
        row = cursor.fetchone()
        duplicate_of = row[0] if row else None
    return Outcome(callback_id, duplicate_of)
