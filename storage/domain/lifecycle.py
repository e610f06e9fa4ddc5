"""How a recording moves: the rules, as plain functions of plain values.

A recording collects while events arrive; once quiet it is claimed (processing) for a new
revision, and its run's end archives it, fails it, or sends it back to collecting when new
content came in meanwhile. New content after the end (a late GME upload, another CSS file)
reopens it for the next revision.

The ledger's step-by-step paths (storage/ledger) read the rows, call these functions and
write back what they return. The webhook's one-statement GME intake on PostgreSQL
(storage/ledger/gme_statement.py) says the same in SQL; tests/lifecycle_cases.py holds the
event sequences and expected states that both are checked against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from storage.domain.events import GME_EVENT_UPLOADED
from storage.domain.states import RecordingState, RunState, SegmentState


@dataclass(frozen=True)
class RecordingStatus:
    """The part of a recording its lifecycle reads and writes."""

    state: str
    settle_due_at: datetime | None
    pending_changes: bool = False
    error: str | None = None


@dataclass(frozen=True)
class SegmentStatus:
    """One GME segment (one SeqNo) as its file events have left it."""

    state: str
    file_name: str
    uploaded_at: datetime | None
    recovered: bool = False


@dataclass(frozen=True)
class Change:
    recording: RecordingStatus
    # This event began a collecting period (a new recording, or one reopened after its
    # run's end): the moment a settle task must be handed out.
    opens_settle: bool


def new_recording(now: datetime, settle_seconds: float) -> RecordingStatus:
    """A recording's first event opens its collecting period."""
    return RecordingStatus(RecordingState.COLLECTING, now + timedelta(seconds=settle_seconds))


def event_arrives(
    recording: RecordingStatus, *, new_content: bool, now: datetime, settle_seconds: float
) -> Change:
    """What an event does to an existing recording.

    While it collects, its quiet time restarts with every event. New content (a segment's
    first upload, a CSS file) during processing is remembered for after the run; after the
    run's end (archived or failed) it collects again, for the next revision.
    """
    due = now + timedelta(seconds=settle_seconds)
    if recording.state == RecordingState.COLLECTING:
        return Change(replace(recording, settle_due_at=due), opens_settle=False)
    if not new_content:
        return Change(recording, opens_settle=False)
    if recording.state == RecordingState.PROCESSING:
        return Change(replace(recording, pending_changes=True), opens_settle=False)
    reopened = RecordingStatus(
        RecordingState.COLLECTING, due, pending_changes=recording.pending_changes, error=None
    )
    return Change(reopened, opens_settle=True)


def segment_after(
    segment: SegmentStatus | None, event_type: int, file_name: str, now: datetime
) -> SegmentStatus:
    """A segment's state only moves forward (started, completed, uploaded); the uploaded
    file name is the one to fetch, whatever an earlier event said."""
    state = SegmentState.after_event(event_type)
    if event_type == GME_EVENT_UPLOADED:
        uploaded_at = now if segment is None else (segment.uploaded_at or now)
        return SegmentStatus(state, file_name, uploaded_at, recovered=False)
    if segment is None:
        return SegmentStatus(state, file_name, None)
    if SegmentState.ORDER.get(segment.state, 0) > SegmentState.ORDER[state]:
        state = segment.state
    return replace(segment, state=state)


def is_first_upload(segment: SegmentStatus | None, event_type: int) -> bool:
    """This event uploads a segment that was not uploaded before."""
    return event_type == GME_EVENT_UPLOADED and (segment is None or segment.uploaded_at is None)


def gme_event(
    recording: RecordingStatus | None,
    segment: SegmentStatus | None,
    event_type: int,
    file_name: str,
    *,
    now: datetime,
    settle_seconds: float,
) -> tuple[Change, SegmentStatus]:
    """What a GME file event does to its recording (None: not seen before) and segment."""
    if recording is None:
        change = Change(new_recording(now, settle_seconds), opens_settle=True)
    else:
        change = event_arrives(
            recording,
            new_content=is_first_upload(segment, event_type),
            now=now,
            settle_seconds=settle_seconds,
        )
    return change, segment_after(segment, event_type, file_name, now)


def may_claim(state: str, *, force: bool = False) -> bool:
    """A collecting recording may start a run; `force` (reprocess) takes a finished one too,
    but never one whose run is under way."""
    if state == RecordingState.PROCESSING:
        return False
    return force or state == RecordingState.COLLECTING


def claimed() -> RecordingStatus:
    """A run begins: what arrives from now on is the next revision's."""
    return RecordingStatus(RecordingState.PROCESSING, None, pending_changes=False, error=None)


def run_ended(
    recording: RecordingStatus, run_state: str, *, error: str | None, now: datetime
) -> RecordingStatus:
    """The recording's current run ended (archived or failed). Content that came in while it
    worked sends the recording back to collecting, due at once, for the next revision."""
    if recording.pending_changes:
        return RecordingStatus(RecordingState.COLLECTING, now, pending_changes=False, error=error)
    state = RecordingState.ARCHIVED if run_state == RunState.ARCHIVED else RecordingState.FAILED
    return replace(recording, state=state, error=error)


@dataclass(frozen=True)
class TouchedRecording:
    """A recording with a file whose time range touches a new CSS file's."""

    id: str
    state: str
    revision: int


@dataclass(frozen=True)
class CssPlacement:
    join: str | None  # None: the file opens a new recording
    merge: tuple[str, ...] = ()  # recordings folded into `join`


def place_css_file(touched: Sequence[TouchedRecording]) -> CssPlacement:
    """Where a CSS file goes, given the recordings it touches in their files' start order:
    into the first one; a file that bridges two runs folds any later one that was never
    processed into it (one already processed keeps its own identity and revisions)."""
    if not touched:
        return CssPlacement(None)
    target, *others = touched
    merge = tuple(
        r.id
        for r in others
        if r.id != target.id and r.state == RecordingState.COLLECTING and not r.revision
    )
    return CssPlacement(target.id, tuple(dict.fromkeys(merge)))
