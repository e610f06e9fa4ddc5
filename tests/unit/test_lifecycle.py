"""The lifecycle rules (storage.domain.lifecycle) against the table in
tests/support/lifecycle.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage.domain import RecordingState, lifecycle
from storage.domain.lifecycle import (
    CssPlacement,
    RecordingStatus,
    SegmentStatus,
    TouchedRecording,
)
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


def tally(segments: dict[int, SegmentStatus], seq_no: int) -> lifecycle.Tally:
    others = {seq: s for seq, s in segments.items() if seq != seq_no}
    return lifecycle.Tally(
        len(others),
        sum(s.events == lifecycle.WHOLE for s in others.values()),
        max(others, default=-1),
    )


def replay(case: Case) -> tuple[RecordingStatus, dict[int, SegmentStatus]]:
    """Fold the case's steps through the rules, as the ledger's step-by-step path does."""
    recording: RecordingStatus | None = None
    segments: dict[int, SegmentStatus] = {}
    seen: set[Gme] = set()
    before: RecordingStatus | None = None  # the recording before the last step
    for number, step in enumerate(case.steps):
        now = case.when(number)
        previous = recording
        if isinstance(step, Gme):
            if step in seen:
                continue  # a vendor retry: the callback is stored once
            seen.add(step)
            recording, segments[step.seq_no] = lifecycle.gme_event(
                recording,
                segments.get(step.seq_no),
                step.event_type,
                step.name,
                now=now,
                settle_seconds=SETTLE_SECONDS,
                complete_seconds=COMPLETE_SECONDS,
                seq_no=step.seq_no,
                others=tally(segments, step.seq_no),
            )
        elif isinstance(step, Claim):
            assert recording is not None
            assert lifecycle.may_claim(recording.state)
            recording = lifecycle.claimed()
        elif isinstance(step, Stop):
            assert recording is not None
            recording = lifecycle.stop(recording, now)
        elif isinstance(step, Look):
            assert recording is not None
            read = before if step.stale else recording
            due = read.settle_due_at if read else None
            recording = lifecycle.postpone(recording, at(step.until), seen_due=due)
        else:
            assert recording is not None
            error = ERROR if step.state == "failed" else None
            recording = lifecycle.run_ended(recording, step.state, error=error, now=now)
        before = previous
    assert recording is not None
    return recording, segments


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rules_leave_the_states_the_table_expects(case: Case):
    recording, segments = replay(case)
    assert (
        recording.state,
        recording.settle_due_at,
        recording.pending_changes,
        recording.error,
    ) == (case.state, due_at(case), case.pending, case.error)
    assert {seq: (s.state, s.file_name) for seq, s in segments.items()} == case.segments


def test_a_segment_keeps_the_time_of_its_first_upload():
    first = lifecycle.segment_after(None, 3, "a", at(0))
    again = lifecycle.segment_after(first, 3, "b", at(5))
    assert (again.uploaded_at, again.file_name) == (at(0), "b")
    assert lifecycle.is_first_upload(None, 3)
    assert not lifecycle.is_first_upload(first, 3)
    assert not lifecycle.is_first_upload(None, 1)


@pytest.mark.parametrize(
    ("state", "force", "allowed"),
    [
        (RecordingState.COLLECTING, False, True),
        (RecordingState.PROCESSING, False, False),
        (RecordingState.PROCESSING, True, False),
        (RecordingState.ARCHIVED, False, False),
        (RecordingState.ARCHIVED, True, True),
        (RecordingState.FAILED, True, True),
    ],
)
def test_only_collecting_recordings_are_claimed_unless_forced(
    state: str, force: bool, allowed: bool
):
    assert lifecycle.may_claim(state, force=force) is allowed


DUE = at(9) + timedelta(seconds=SETTLE_SECONDS)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (RecordingStatus("collecting", at(0)), RecordingStatus("collecting", DUE)),
        (RecordingStatus("processing", None), RecordingStatus("processing", None, True)),
        (RecordingStatus("archived", None), RecordingStatus("collecting", DUE)),
        (RecordingStatus("failed", None, error=ERROR), RecordingStatus("collecting", DUE)),
    ],
)
def test_a_css_file_is_always_new_content(before: RecordingStatus, after: RecordingStatus):
    arrived = lifecycle.event_arrives(
        before, new_content=True, now=at(9), settle_seconds=SETTLE_SECONDS
    )
    assert arrived == after


@pytest.mark.parametrize(
    ("recording", "after"),
    [
        (RecordingStatus("collecting", at(5)), RecordingStatus("collecting", at(60))),
        # An event moved it after the look read it: the event's settle time stands.
        (RecordingStatus("collecting", at(40)), RecordingStatus("collecting", at(40))),
        # Claimed meanwhile: nothing to postpone.
        (RecordingStatus("processing", None), RecordingStatus("processing", None)),
    ],
)
def test_a_look_that_waits_writes_its_settle_time_unless_an_event_moved_it(
    recording: RecordingStatus, after: RecordingStatus
):
    """The look read the recording due at 5 and waits until 60."""
    assert lifecycle.postpone(recording, at(60), seen_due=at(5)) == after


def touched(rid: str, state: str = "collecting", revision: int = 0) -> TouchedRecording:
    return TouchedRecording(rid, state, revision)


@pytest.mark.parametrize(
    ("touching", "placement"),
    [
        ([], CssPlacement(None)),
        ([touched("r1")], CssPlacement("r1")),
        ([touched("r1", "archived", 1)], CssPlacement("r1")),
        ([touched("r1"), touched("r2")], CssPlacement("r1", ("r2",))),
        ([touched("r1", "archived", 1), touched("r2")], CssPlacement("r1", ("r2",))),
        ([touched("r1"), touched("r2", "archived", 1)], CssPlacement("r1")),
        ([touched("r1"), touched("r2", "collecting", 2)], CssPlacement("r1")),
        ([touched("r1"), touched("r2", "processing", 1)], CssPlacement("r1")),
        ([touched("r1"), touched("r2"), touched("r3")], CssPlacement("r1", ("r2", "r3"))),
    ],
)
def test_a_css_file_joins_the_first_recording_it_touches_and_folds_unprocessed_ones(
    touching: list[TouchedRecording], placement: CssPlacement
):
    assert lifecycle.place_css_file(touching) == placement


@pytest.mark.parametrize(("takeovers", "gives_up"), [(0, False), (1, False), (2, True), (5, True)])
def test_a_lost_worker_is_taken_over_twice_and_the_third_loss_fails_the_run(
    takeovers: int, gives_up: bool
):
    assert lifecycle.gives_up_on(takeovers) is gives_up


@pytest.mark.parametrize(("requeues", "gives_up"), [(0, False), (2, False), (3, True), (7, True)])
def test_a_queued_run_is_sent_again_three_times_and_then_fails(requeues: int, gives_up: bool):
    assert lifecycle.gives_up_on_queued(requeues) is gives_up


def test_the_error_of_a_run_never_picked_up_counts_every_send_and_names_the_queue():
    assert lifecycle.never_picked_up(3) == (
        "queued 4 times, never picked up by a media worker: "
        "is one running and consuming the media queue?"
    )
