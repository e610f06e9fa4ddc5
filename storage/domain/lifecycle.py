"""How a recording moves: the rules, as plain functions of plain values.

A recording collects while events arrive; once quiet it is claimed (processing) for a new
revision. How long "quiet" is depends on what its segments tell: once every segment seen
has its started, completed and uploaded events and no SeqNo is missing, the short window
(`RECPIPE_SETTLE_COMPLETE_SECONDS`) is enough; while a segment is open or a SeqNo is
missing, the long one (`RECPIPE_SETTLE_SECONDS`). A stopped recording (an operator's
explicit stop of its GME task) is due at once. Once claimed, its run's end archives it,
fails it, or sends it back to collecting when new content came in meanwhile. New content
after the end (a GME segment not seen before, a late GME upload, another CSS file) reopens
it for the next revision.

One clock decides when a recording is looked at: every event writes the recording's settle
time (`settle_due_at`), and the leased beat, twice a second, hands out a settle task
for each collecting recording whose settle time has come (`tasks.sweeping.settle_due`). A
look that finds it must wait writes the time it waits for, and ends.

The ledger's step-by-step paths (storage/ledger) read the rows, call these functions and
write back what they return. The webhook's one-statement GME intake on PostgreSQL
(storage/ledger/gme_statement.py) says the same in SQL; tests/support/lifecycle.py holds the
event sequences and expected states that both are checked against.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from storage.domain.events import GME_EVENT_COMPLETED, GME_EVENT_STARTED, GME_EVENT_UPLOADED
from storage.domain.states import RecordingState, RunState, SegmentState


@dataclass(frozen=True)
class RecordingStatus:
    """The part of a recording its lifecycle reads and writes."""

    state: str
    settle_due_at: datetime | None
    pending_changes: bool = False
    error: str | None = None
    # An operator stopped the recording's GME task: it is due as soon as every started
    # segment is uploaded. A claim clears it (what comes later is the next revision's).
    stopped: bool = False


# Which of a segment's file events have arrived, as bits of `SegmentStatus.events`.
EVENT_BITS = {GME_EVENT_STARTED: 1, GME_EVENT_COMPLETED: 2, GME_EVENT_UPLOADED: 4}
WHOLE = 7  # started, completed and uploaded


@dataclass(frozen=True)
class SegmentStatus:
    """One GME segment (one SeqNo) as its file events have left it."""

    state: str
    file_name: str
    uploaded_at: datetime | None
    recovered: bool = False
    events: int = 0  # EVENT_BITS of the events seen


@dataclass(frozen=True)
class Windows:
    """The quiet times: `settle_seconds` in general, `complete_seconds` (the shorter of
    the two applies) once the segments say the recording is complete."""

    settle_seconds: float
    complete_seconds: float | None = None

    @property
    def complete(self) -> float:
        if self.complete_seconds is None:
            return self.settle_seconds
        return min(self.complete_seconds, self.settle_seconds)


@dataclass(frozen=True)
class Tally:
    """A recording's other segments (all but the one an event is about), as completeness
    needs them: how many were seen, how many are whole, the highest SeqNo."""

    seen: int = 0
    whole: int = 0
    highest: int = -1


def is_complete(segments: Iterable[tuple[int, int]]) -> bool:
    """Every segment seen, given as (seq_no, events), has all three events and no SeqNo
    below the highest is missing."""
    seq_nos = []
    for seq_no, events in segments:
        if events & WHOLE != WHOLE:
            return False
        seq_nos.append(seq_no)
    return bool(seq_nos) and len(set(seq_nos)) == max(seq_nos) + 1


def complete_with(others: Tally, seq_no: int, events: int) -> bool:
    """`is_complete` for the other segments' tally and one segment's new events."""
    return (
        events & WHOLE == WHOLE
        and others.whole == others.seen
        and others.seen + 1 == max(others.highest, seq_no) + 1
    )


@dataclass(frozen=True)
class Decision:
    """What a settle rule (`tasks.settling.gme.decide_gme`, `.css.decide_css`,
    `.rooms.decide_room`) says of a collecting recording, now."""

    action: str  # "wait", "finalize", "fail", or a room's "unchanged"
    recheck_at: datetime | None = None  # wait: when it is due again
    included: tuple[int, ...] = ()  # finalize: the segments (or files) it is made of
    missing: tuple[int, ...] = ()  # GME: the segments it waits for, or goes without
    reason: str = ""  # fail: why
    # Waiting for missing segments: look in the source for them on the first look after
    # the quiet time (and again when the wait is over), not on every look.
    look_in_source: bool = False
    # A room's members whose archived runs it mixes (their recording ids).
    members: tuple[str, ...] = ()


def settle_due(now: datetime, windows: Windows, *, complete: bool, stopped: bool) -> datetime:
    """When a collecting recording becomes due after an event at `now`."""
    if stopped:
        return now
    return now + timedelta(seconds=windows.complete if complete else windows.settle_seconds)


def postpone(
    recording: RecordingStatus, until: datetime, *, seen_due: datetime | None
) -> RecordingStatus:
    """A settle look that must wait moves the settle time to `until`, unless an event
    moved it since the look read the recording (`seen_due`): that event's stands."""
    if recording.state != RecordingState.COLLECTING or recording.settle_due_at != seen_due:
        return recording
    return replace(recording, settle_due_at=until)


def new_recording(now: datetime, settle_seconds: float) -> RecordingStatus:
    """A recording's first event opens its collecting period (one event never makes a
    recording complete: it is due after the long window)."""
    return RecordingStatus(RecordingState.COLLECTING, now + timedelta(seconds=settle_seconds))


def event_arrives(
    recording: RecordingStatus,
    *,
    new_content: bool,
    now: datetime,
    settle_seconds: float,
    due: datetime | None = None,
) -> RecordingStatus:
    """What an event does to an existing recording.

    While it collects, its quiet time restarts with every event (`due`, when given, is
    the settle time `settle_due` chose; else `settle_seconds` from now). New content (a
    GME segment's first event or first upload, a CSS file) during processing is
    remembered for after the run; after the run's end (archived or failed) it collects
    again, for the next revision.
    """
    if due is None:
        due = now + timedelta(seconds=settle_seconds)
    if recording.state == RecordingState.COLLECTING:
        return replace(recording, settle_due_at=due)
    if not new_content or recording.state in RecordingState.TOMBSTONES:
        # A tombstone's media is gone for good: nothing that arrives later reopens it.
        return recording
    if recording.state == RecordingState.PROCESSING:
        return replace(recording, pending_changes=True)
    return RecordingStatus(
        RecordingState.COLLECTING, due, pending_changes=recording.pending_changes, error=None
    )


def segment_after(
    segment: SegmentStatus | None, event_type: int, file_name: str, now: datetime
) -> SegmentStatus:
    """A segment's state only moves forward (started, completed, uploaded); the uploaded
    file name is the one to fetch, whatever an earlier event said."""
    state = SegmentState.after_event(event_type)
    events = (0 if segment is None else segment.events) | EVENT_BITS.get(event_type, 0)
    if event_type == GME_EVENT_UPLOADED:
        uploaded_at = now if segment is None else (segment.uploaded_at or now)
        return SegmentStatus(state, file_name, uploaded_at, recovered=False, events=events)
    if segment is None:
        return SegmentStatus(state, file_name, None, events=events)
    if SegmentState.ORDER.get(segment.state, 0) > SegmentState.ORDER[state]:
        state = segment.state
    return replace(segment, state=state, events=events)


def is_first_upload(segment: SegmentStatus | None, event_type: int) -> bool:
    """This event uploads a segment that was not uploaded before."""
    return event_type == GME_EVENT_UPLOADED and (segment is None or segment.uploaded_at is None)


def is_new_content(segment: SegmentStatus | None, event_type: int) -> bool:
    """This event tells of a segment not seen before (a start after an early finalize,
    say), or uploads one for the first time."""
    return segment is None or is_first_upload(segment, event_type)


def gme_event(
    recording: RecordingStatus | None,
    segment: SegmentStatus | None,
    event_type: int,
    file_name: str,
    *,
    now: datetime,
    settle_seconds: float,
    complete_seconds: float | None = None,
    seq_no: int = 0,
    others: Tally = Tally(),
) -> tuple[RecordingStatus, SegmentStatus]:
    """What a GME file event does to its recording (None: not seen before) and segment
    (`seq_no`; `others` tallies the recording's other segments)."""
    segment_now = segment_after(segment, event_type, file_name, now)
    if recording is None:
        return new_recording(now, settle_seconds), segment_now
    due = settle_due(
        now,
        Windows(settle_seconds, complete_seconds),
        complete=complete_with(others, seq_no, segment_now.events),
        stopped=recording.stopped,
    )
    after = event_arrives(
        recording,
        new_content=is_new_content(segment, event_type),
        now=now,
        settle_seconds=settle_seconds,
        due=due,
    )
    return after, segment_now


def stop(recording: RecordingStatus, now: datetime) -> RecordingStatus:
    """An operator stops the recording's GME task: a collecting recording is due at once
    (settling still waits for every started segment's upload); others are left alone."""
    if recording.state != RecordingState.COLLECTING:
        return recording
    return replace(recording, settle_due_at=now, stopped=True)


def may_claim(state: str, *, force: bool = False) -> bool:
    """A collecting recording may start a run; `force` (reprocess) takes a finished one too,
    but never one whose run is under way, nor a tombstone (its media was deleted on
    purpose: a reprocess must not bring it back)."""
    if state == RecordingState.PROCESSING or state in RecordingState.TOMBSTONES:
        return False
    return force or state == RecordingState.COLLECTING


def claimed() -> RecordingStatus:
    """A run begins: what arrives from now on is the next revision's."""
    return RecordingStatus(RecordingState.PROCESSING, None, pending_changes=False, error=None)


def run_ended(
    recording: RecordingStatus, run_state: str, *, error: str | None, now: datetime
) -> RecordingStatus:
    """The recording's current run ended (archived or failed). Content that came in while it
    worked sends the recording back to collecting, due at once, for the next revision. A
    tombstone (forgotten while its run worked) stays one."""
    if recording.state in RecordingState.TOMBSTONES:
        return recording
    if recording.pending_changes:
        return RecordingStatus(RecordingState.COLLECTING, now, pending_changes=False, error=error)
    state = RecordingState.ARCHIVED if run_state == RunState.ARCHIVED else RecordingState.FAILED
    return replace(recording, state=state, error=error)


# How often a run is taken over from a lost worker before it is failed: a recording that
# takes down every worker it reaches must end, with a reason, not loop.
MAX_TAKEOVERS = 2


def gives_up_on(takeovers: int, max_takeovers: int = MAX_TAKEOVERS) -> bool:
    """The sweep found a run's worker lost (running, no heartbeat for the stuck time): fail
    the run instead of taking it over once more? Only takeovers count. A task's own retries
    (the object store or the ledger was away) add to the run's attempts, not to its
    takeovers, so a run that was retried and then lost its worker is still taken over."""
    return takeovers >= max_takeovers


# How often a queued run is sent again after its message went missing (the media queue is
# empty, yet no worker started the run) before it is failed: when nothing that reads the
# queue is a media worker, re-sending it would go on forever.
MAX_REQUEUES = 3

# A run is created queued by the settle look that claims its recording, which then sends
# its message and writes when it did. A run queued this long without that write lost its
# message before it was sent (the look died between the two); younger ones are left to
# the look still sending them (a loaded worker takes a second or two between the two).
UNSENT_AFTER_SECONDS = 5.0


def gives_up_on_queued(requeues: int, max_requeues: int = MAX_REQUEUES) -> bool:
    """The sweep found a queued run whose message is gone (dispatched long ago, the media
    queue empty): fail the run instead of sending it once more? `requeues` counts those
    re-sends since a worker last took the run; a re-send while the queue is busy (its
    message may wait behind others) does not count."""
    return requeues >= max_requeues


def never_picked_up(requeues: int) -> str:
    """The error of a run `gives_up_on_queued` fails: its first send and every re-send."""
    return (
        f"queued {requeues + 1} times, never picked up by a media worker: "
        "is one running and consuming the media queue?"
    )


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
