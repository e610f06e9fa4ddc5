"""The webhook's one-statement GME intake on PostgreSQL (`storage.ledger.gme_statement`)
against the step-by-step transaction it replaces (`Ledger.record_gme_event_step_by_step`,
which SQLite uses).

Random event sequences (vendor events in any order, retries, a recording moving through
processing, archived and failed as the workers move it) are applied to two recordings,
one through each path, and every answer and every resulting row must be the same.
"""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from storage.domain import GmeEvent, GmeRecordingKey, RecordingState
from storage.ledger import IntakeResult, Ledger
from storage.ledger.tables import Callback, Recording, Segment

HEADERS = {"Content-Type": "application/json"}
SETTLE_SECONDS = 30
COMPLETE_SECONDS = 10
WORKER_STATES = (
    RecordingState.PROCESSING,
    RecordingState.ARCHIVED,
    RecordingState.FAILED,
    RecordingState.COLLECTING,
    "stopped",  # an operator stops the task (Ledger.stop_gme_task)
    "look",  # a settle look waits until the long wait's end (Ledger.postpone)
)


def key(task_id: str) -> GmeRecordingKey:
    return GmeRecordingKey(
        biz_id=1400000000, room_id="room-1", user_id="user-1", task_id=task_id, record_mode=1
    )


def event(task_id: str, event_type: int, seq_no: int, variant: int) -> GmeEvent:
    return GmeEvent(
        key=key(task_id),
        event_type=event_type,
        seq_no=seq_no,
        file_name=f"1400000000_room-1/{task_id}/seg{seq_no}-{variant}.mp3",
        timestamp=1_700_000_000,
    )


def operations(rng: random.Random, count: int) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    sent: list[tuple[Any, ...]] = []
    for _ in range(count):
        roll = rng.random()
        if sent and roll < 0.2:
            ops.append(rng.choice(sent))  # a vendor retry of an earlier event
        elif roll < 0.3:
            ops.append(("state", rng.choice(WORKER_STATES)))
        else:
            # Mostly forward in time; sometimes a webhook host whose clock is behind.
            step = rng.choice([0.5, 1.0, 2.0, 7.0, -1.5])
            op = ("event", rng.choice([1, 2, 3, 3]), rng.randrange(4), rng.randrange(2), step)
            sent.append(op)
            ops.append(op)
    return ops


def recording_row(ledger: Ledger, rid: str) -> dict[str, Any] | None:
    with ledger.session() as s:
        rec = s.get(Recording, rid)
        if rec is None:
            return None
        return {
            c: getattr(rec, c)
            for c in (
                "state",
                "pending_changes",
                "error",
                "revision",
                "first_event_at",
                "last_event_at",
                "settle_due_at",
                "created_at",
                "updated_at",
                "biz_id",
                "room_id",
                "user_id",
                "record_mode",
                "source",
                "details",
                "stopped_at",
            )
        }


def segment_rows(ledger: Ledger, rid: str, task_id: str) -> list[tuple[Any, ...]]:
    with ledger.session() as s:
        rows = s.execute(
            select(Segment).where(Segment.recording_id == rid).order_by(Segment.seq_no)
        ).scalars()
        return [
            (
                r.seq_no,
                r.file_name.replace(f"/{task_id}/", "/T/"),
                r.state,
                r.recovered,
                r.first_seen_at,
                r.uploaded_at,
                r.events,
            )
            for r in rows
        ]


def callback_rows(ledger: Ledger, rid: str) -> list[tuple[Any, ...]]:
    with ledger.session() as s:
        rows = s.execute(
            select(Callback).where(Callback.recording_id == rid).order_by(Callback.id)
        ).scalars()
        return [
            (
                r.provider,
                r.event_type,
                r.received_at,
                r.body,
                r.headers,
                r.duplicates,
                r.dispatched_at,
            )
            for r in rows
        ]


class Side:
    """One recording and the path that feeds it."""

    def __init__(self, ledger: Ledger, task_id: str, one_statement: bool):
        self.ledger, self.task_id, self.one_statement = ledger, task_id, one_statement
        self.rid = key(task_id).recording_id
        self.ids: dict[str, int] = {}

    def apply(self, gme: GmeEvent, body: str, now: datetime) -> IntakeResult:
        record = (
            self.ledger.record_gme_event_in_one_statement
            if self.one_statement
            else self.ledger.record_gme_event_step_by_step
        )
        result = record(gme, body, dict(HEADERS), now, SETTLE_SECONDS, COMPLETE_SECONDS)
        if result.duplicate:
            assert result.callback_id == self.ids[gme.dedupe_key]
        else:
            self.ids[gme.dedupe_key] = result.callback_id
        return result

    def set_state(self, state: str, now: datetime) -> None:
        # What the workers do: claim (processing), finish (archived/failed), re-collect;
        # or an operator's stop.
        if state == "stopped":
            self.ledger.stop_gme_task(self.task_id, now=now)
            return
        if state == "look":
            view = self.ledger.recording(self.rid)
            seen_due = view.settle_due_at if view else None
            self.ledger.postpone(self.rid, now + timedelta(seconds=40), seen_due=seen_due)
            return
        values: dict[str, Any] = {"state": state, "updated_at": now}
        if state == RecordingState.PROCESSING:
            values["pending_changes"] = False
            values["stopped_at"] = None
        if state == RecordingState.FAILED:
            values["error"] = "segment 2 is not audio"
        if state == RecordingState.ARCHIVED:
            values["revision"] = Recording.revision + 1
        with self.ledger.session() as s:
            s.execute(update(Recording).where(Recording.id == self.rid).values(**values))


@pytest.mark.parametrize("seed", range(24))
def test_one_statement_matches_the_step_by_step_transaction(pg_ledger: Ledger, seed: int):
    rng = random.Random(seed)
    fast, steps = Side(pg_ledger, "1001", True), Side(pg_ledger, "1002", False)
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    for number, op in enumerate(operations(rng, 40)):
        if op[0] == "state":
            for side in (fast, steps):
                side.set_state(op[1], now)
        else:
            _, event_type, seq_no, variant, step = op
            now += timedelta(seconds=step)
            body = json.dumps({"EventType": event_type, "SeqNo": seq_no, "variant": variant})
            answers = [
                side.apply(event(side.task_id, event_type, seq_no, variant), body, now)
                for side in (fast, steps)
            ]
            a, b = answers
            assert a.duplicate == b.duplicate, (number, op)
        assert recording_row(pg_ledger, fast.rid) == recording_row(pg_ledger, steps.rid), (
            number,
            op,
        )
    assert segment_rows(pg_ledger, fast.rid, "1001") == segment_rows(pg_ledger, steps.rid, "1002")
    assert callback_rows(pg_ledger, fast.rid) == callback_rows(pg_ledger, steps.rid)


def test_racing_retries_store_each_event_once(pg_ledger: Ledger):
    """Eight webhook threads receive the same 30 events (the vendor retrying everything) in
    their own orders, at once: one callback row per event, every retry counted, every
    segment uploaded under its uploaded file name, one recording collecting."""
    events = [event("2001", t, seq, 0) for seq in range(10) for t in (1, 2, 3)]
    results: list[IntakeResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def post(order: int) -> None:
        mine = events[:]
        random.Random(order).shuffle(mine)
        start.wait()
        for gme in mine:
            try:
                now = datetime.now(UTC)
                result = pg_ledger.record_gme_event(
                    gme, "{}", dict(HEADERS), now=now, settle_seconds=SETTLE_SECONDS
                )
            except BaseException as exc:  # reported below
                errors.append(exc)
                continue
            with lock:
                results.append(result)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(results) == 8 * len(events)
    assert sum(not r.duplicate for r in results) == len(events)
    rid = key("2001").recording_id
    callbacks = callback_rows(pg_ledger, rid)
    assert len(callbacks) == len(events)
    assert sum(row[5] for row in callbacks) == 7 * len(events)
    segments = segment_rows(pg_ledger, rid, "2001")
    assert [(seq, state) for seq, _, state, *_ in segments] == [
        (seq, "uploaded") for seq in range(10)
    ]
    assert all(row[5] is not None for row in segments)
    assert recording_row(pg_ledger, rid)["state"] == RecordingState.COLLECTING  # type: ignore[index]
