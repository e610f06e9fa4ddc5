"""The ledger's GME intake against the lifecycle table (tests/support/lifecycle.py): the
one-statement path on PostgreSQL and the step-by-step path on PostgreSQL and SQLite leave
the states the table expects, with the ledger's own claim and run end in between."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from storage.domain import GmeEvent, GmeRecordingKey, IntakeResult, RunState
from storage.ledger import Ledger
from storage.ledger.tables import Recording
from tests.support.lifecycle import (
    CASES,
    COMPLETE_SECONDS,
    ERROR,
    SETTLE_SECONDS,
    Case,
    Claim,
    Gme,
    Look,
    Stop,
    at,
    due_at,
)

Record = Callable[[GmeEvent, str, dict[str, str], datetime, float, float], IntakeResult]
PATHS = [
    ("postgresql", "one statement"),
    ("postgresql", "step by step"),
    ("sqlite", "step by step"),
]


@pytest.fixture(params=PATHS, ids=[f"{db}, {path}" for db, path in PATHS])
def intake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Ledger, Record]]:
    backend, path = request.param
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger(url)
    ledger.migrate()
    if path == "one statement":
        yield ledger, ledger.record_gme_event_in_one_statement
    else:
        yield ledger, ledger.record_gme_event_step_by_step
    ledger.dispose()


def file_name(task_id: str, seq_no: int, name: str) -> str:
    return f"1400000000_room-1/{task_id}/seg{seq_no}-{name}.mp3"


def play(ledger: Ledger, record: Record, case: Case, task_id: str) -> str:
    """Run the case's steps through the ledger; the recording's id."""
    key = GmeRecordingKey(
        biz_id=1400000000, room_id="room-1", user_id="user-1", task_id=task_id, record_mode=1
    )
    run_id: str | None = None
    before: datetime | None = None  # the settle time before the last step
    for number, step in enumerate(case.steps):
        now = case.when(number)
        view = ledger.recording(key.recording_id)
        due = view.settle_due_at if view else None
        if isinstance(step, Gme):
            gme = GmeEvent(
                key, step.event_type, step.seq_no, file_name(task_id, step.seq_no, step.name), 0
            )
            body = json.dumps({"EventType": step.event_type, "SeqNo": step.seq_no})
            headers = {"Content-Type": "application/json"}
            record(gme, body, headers, now, SETTLE_SECONDS, COMPLETE_SECONDS)
        elif isinstance(step, Claim):
            run_id = ledger.claim(key.recording_id, now=now)
            assert run_id is not None, case.name
        elif isinstance(step, Stop):
            ledger.stop_gme_task(task_id, now=now)
        elif isinstance(step, Look):
            seen_due = before if step.stale else due
            ledger.postpone(key.recording_id, at(step.until), seen_due=seen_due)
        elif step.state == RunState.ARCHIVED:
            assert run_id is not None
            ledger.finish_run(run_id, now=now, result={}, manifest_url="archive/manifest.json")
        else:
            assert run_id is not None
            ledger.fail_run(run_id, now=now, error=ERROR)
        before = due
    return key.recording_id


def test_intake_leaves_the_states_the_lifecycle_table_expects(
    intake: tuple[Ledger, Record],
):
    ledger, record = intake
    for number, case in enumerate(CASES):
        task_id = str(9_000_000_000_000_000_000 + number)  # one recording per case
        rid = play(ledger, record, case, task_id)
        view = ledger.recording(rid)
        assert view is not None
        with ledger.session() as s:
            row = s.get_one(Recording, rid)
            pending = row.pending_changes
        assert (view.state, view.settle_due_at, pending, view.error) == (
            case.state,
            due_at(case),
            case.pending,
            case.error,
        ), case.name
        assert {seg.seq_no: (seg.state, seg.file_name) for seg in view.segments} == {
            seq: (state, file_name(task_id, seq, name))
            for seq, (state, name) in case.segments.items()
        }, case.name
