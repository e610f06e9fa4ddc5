"""A recording's lifecycle as a table: event sequences and the states they leave.

The one place these expectations are written. They are checked against the pure rules
(`tests/unit/test_lifecycle.py`) and against the ledger's GME intake, both the
one-statement PostgreSQL path and the step-by-step one on SQLite and PostgreSQL
(`tests/integration/test_ledger_lifecycle.py`).

Step number `i` happens `i` seconds after `T0` (or at `times[i]`); `due` is the expected
settle time in seconds after `T0` (None: no settle time): `SETTLE_SECONDS` after the last
event, or `COMPLETE_SECONDS` once every segment has its three events and no SeqNo is
missing, or at once when stopped, or what a settle look that waits wrote. A GME step
repeated exactly is a vendor retry. Beat's clock hands a recording to a settle look once
its settle time has come; nothing else decides when it is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from storage.domain import RecordingState, RunState

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SETTLE_SECONDS = 30
COMPLETE_SECONDS = 10
ERROR = "segment 2 is not audio"

COLLECTING = RecordingState.COLLECTING
PROCESSING = RecordingState.PROCESSING
ARCHIVED = RecordingState.ARCHIVED
FAILED = RecordingState.FAILED


@dataclass(frozen=True)
class Gme:
    """A GME file event: 1 started, 2 completed, 3 uploaded; `name` varies the file name."""

    event_type: int
    seq_no: int
    name: str = "a"


@dataclass(frozen=True)
class Claim:
    """The settle decision: a run begins."""


@dataclass(frozen=True)
class RunEnds:
    state: str  # RunState.ARCHIVED, or RunState.FAILED with ERROR


@dataclass(frozen=True)
class Stop:
    """An operator stops the recording's GME task (`Ledger.stop_gme_task`)."""


@dataclass(frozen=True)
class Look:
    """A settle look waits: it writes `until` (seconds after `T0`, the recording's settle
    time or the end of its wait for missing segments) as the settle time. `stale`: it
    read the recording before the step just before it (an event that moved the settle
    time meanwhile), so it writes nothing."""

    until: float
    stale: bool = False


Step = Gme | Claim | RunEnds | Stop | Look


def whole(seq_no: int, name: str = "a") -> tuple[Gme, Gme, Gme]:
    """A segment's three events: started, completed, uploaded."""
    return Gme(1, seq_no, name), Gme(2, seq_no, name), Gme(3, seq_no, name)


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]
    state: str
    due: int | None
    segments: dict[int, tuple[str, str]]  # seq_no: (state, name)
    pending: bool = False
    error: str | None = None
    times: tuple[float, ...] = ()  # when each step happens (default: step i at i)

    def when(self, number: int) -> datetime:
        return at(self.times[number] if self.times else number)


def at(step: float) -> datetime:
    return T0 + timedelta(seconds=step)


def due_at(case: Case) -> datetime | None:
    return None if case.due is None else T0 + timedelta(seconds=case.due)


CASES = (
    Case(
        "the first event opens a collecting recording",
        (Gme(1, 0),),
        COLLECTING,
        due=0 + SETTLE_SECONDS,
        segments={0: ("started", "a")},
    ),
    Case(
        "every event moves the settle time while collecting",
        (Gme(1, 0), Gme(2, 0), Gme(3, 0), Gme(1, 1)),
        COLLECTING,
        due=3 + SETTLE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("started", "a")},
    ),
    Case(
        "a vendor retry changes nothing, not even the settle time",
        (Gme(1, 0), Gme(3, 0), Gme(1, 0), Gme(3, 0)),
        COLLECTING,
        due=1 + SETTLE_SECONDS,
        segments={0: ("uploaded", "a")},
    ),
    Case(
        "a segment's state only moves forward, and its uploaded name stays",
        (Gme(3, 0, "up"), Gme(1, 0, "st"), Gme(2, 0, "co")),
        COLLECTING,
        due=2 + COMPLETE_SECONDS,
        segments={0: ("uploaded", "up")},
    ),
    Case(
        "the uploaded file name replaces the one an earlier event gave",
        (Gme(1, 0, "st"), Gme(2, 0, "co"), Gme(3, 0, "up")),
        COLLECTING,
        due=2 + COMPLETE_SECONDS,
        segments={0: ("uploaded", "up")},
    ),
    Case(
        "the short window applies once every segment has its three events",
        (*whole(0), *whole(1)),
        COLLECTING,
        due=5 + COMPLETE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a")},
    ),
    Case(
        "in any order",
        (Gme(1, 1), Gme(3, 0), Gme(3, 1), Gme(1, 0), Gme(2, 1), Gme(2, 0)),
        COLLECTING,
        due=5 + COMPLETE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a")},
    ),
    Case(
        "an open segment (started, not completed) keeps the long window",
        (*whole(0), Gme(1, 1)),
        COLLECTING,
        due=3 + SETTLE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("started", "a")},
    ),
    Case(
        "an upload whose completed event is missing keeps the long window",
        (*whole(0), Gme(1, 1), Gme(3, 1)),
        COLLECTING,
        due=4 + SETTLE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a")},
    ),
    Case(
        "a missing SeqNo keeps the long window",
        (*whole(0), *whole(2)),
        COLLECTING,
        due=5 + SETTLE_SECONDS,
        segments={0: ("uploaded", "a"), 2: ("uploaded", "a")},
    ),
    Case(
        "a missing SeqNo 0 keeps the long window",
        whole(1),
        COLLECTING,
        due=2 + SETTLE_SECONDS,
        segments={1: ("uploaded", "a")},
    ),
    Case(
        "the SeqNo that fills the gap brings the short window",
        (*whole(0), *whole(2), *whole(1)),
        COLLECTING,
        due=8 + COMPLETE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a"), 2: ("uploaded", "a")},
    ),
    Case(
        "a vendor retry of the last event keeps the short window's time",
        (*whole(0), Gme(3, 0)),
        COLLECTING,
        due=2 + COMPLETE_SECONDS,
        segments={0: ("uploaded", "a")},
    ),
    Case(
        "a stopped recording is due at once",
        (Gme(1, 0), Stop()),
        COLLECTING,
        due=1,
        segments={0: ("started", "a")},
    ),
    Case(
        "a stopped recording stays due at once as its last events arrive",
        (Gme(1, 0), Stop(), Gme(2, 0), Gme(3, 0)),
        COLLECTING,
        due=3,
        segments={0: ("uploaded", "a")},
    ),
    Case(
        "a look that waits writes the settle time; the next event's replaces it",
        (Gme(1, 0), Look(until=0 + SETTLE_SECONDS), Gme(2, 0), Gme(1, 1)),
        COLLECTING,
        due=20 + SETTLE_SECONDS,
        segments={0: ("completed", "a"), 1: ("started", "a")},
        times=(0, COMPLETE_SECONDS + 0.2, 15, 20),
    ),
    Case(
        "the completing upload makes it due after the short window, whatever looks wrote",
        (Gme(1, 0), Gme(2, 0), Look(until=31), Look(until=301), Gme(3, 0)),
        COLLECTING,
        due=60 + COMPLETE_SECONDS,
        segments={0: ("uploaded", "a")},
        times=(0, 1, COMPLETE_SECONDS + 0.2, 31.2, 60),
    ),
    Case(
        "a look that read the recording before an event leaves that event's settle time",
        (Gme(1, 0), Look(until=300), Gme(2, 0), Look(until=600, stale=True)),
        COLLECTING,
        due=20 + SETTLE_SECONDS,
        segments={0: ("completed", "a")},
        times=(0, SETTLE_SECONDS, 20, 21),
    ),
    Case(
        "a stop leaves a processing recording alone",
        (Gme(3, 0), Claim(), Stop()),
        PROCESSING,
        due=None,
        segments={0: ("uploaded", "a")},
    ),
    Case(
        "a claim ends the stop: what comes after the run settles as usual",
        (*whole(0), Stop(), Claim(), RunEnds(RunState.ARCHIVED), Gme(1, 1)),
        COLLECTING,
        due=6 + SETTLE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("started", "a")},
    ),
    Case(
        "a claim stops the settle time",
        (Gme(3, 0), Claim()),
        PROCESSING,
        due=None,
        segments={0: ("uploaded", "a")},
    ),
    Case(
        "a first upload during processing is remembered for after the run",
        (Gme(3, 0), Claim(), Gme(3, 1)),
        PROCESSING,
        due=None,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a")},
        pending=True,
    ),
    Case(
        "completions, restarts and re-uploads of known segments during processing bring "
        "nothing new",
        (Gme(3, 0), Gme(1, 1), Claim(), Gme(2, 1), Gme(1, 1, "b"), Gme(3, 0, "b")),
        PROCESSING,
        due=None,
        segments={0: ("uploaded", "b"), 1: ("completed", "a")},
    ),
    Case(
        "a segment's first start during processing is remembered for after the run",
        (Gme(3, 0), Claim(), Gme(1, 1)),
        PROCESSING,
        due=None,
        segments={0: ("uploaded", "a"), 1: ("started", "a")},
        pending=True,
    ),
    Case(
        "the run's end archives the recording",
        (Gme(3, 0), Claim(), RunEnds(RunState.ARCHIVED)),
        ARCHIVED,
        due=None,
        segments={0: ("uploaded", "a")},
    ),
    Case(
        "a failed run fails the recording with its error",
        (Gme(3, 0), Claim(), RunEnds(RunState.FAILED)),
        FAILED,
        due=None,
        segments={0: ("uploaded", "a")},
        error=ERROR,
    ),
    Case(
        "content that came during the run sends it back to collecting, due at once",
        (Gme(3, 0), Claim(), Gme(3, 1), RunEnds(RunState.ARCHIVED)),
        COLLECTING,
        due=3,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a")},
    ),
    Case(
        "a failed run with content pending collects again and keeps its error",
        (Gme(3, 0), Claim(), Gme(3, 1), RunEnds(RunState.FAILED)),
        COLLECTING,
        due=3,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a")},
        error=ERROR,
    ),
    Case(
        "a late upload reopens an archived recording for the next revision",
        (Gme(3, 0), Claim(), RunEnds(RunState.ARCHIVED), Gme(3, 1), Gme(1, 2)),
        COLLECTING,
        due=4 + SETTLE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a"), 2: ("started", "a")},
    ),
    Case(
        "a late upload reopens a failed recording and clears its error",
        (Gme(3, 0), Claim(), RunEnds(RunState.FAILED), Gme(3, 1)),
        COLLECTING,
        due=3 + SETTLE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a")},
    ),
    Case(
        "a late completion, restart or re-upload of a known segment does not reopen",
        (
            Gme(3, 0),
            Gme(1, 1),
            Claim(),
            RunEnds(RunState.ARCHIVED),
            Gme(2, 1),
            Gme(1, 1, "b"),
            Gme(3, 0, "b"),
        ),
        ARCHIVED,
        due=None,
        segments={0: ("uploaded", "b"), 1: ("completed", "a")},
    ),
    Case(
        "a start after an early finalize reopens the recording for its next revision",
        (*whole(0), Claim(), RunEnds(RunState.ARCHIVED), Gme(1, 1)),
        COLLECTING,
        due=5 + SETTLE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("started", "a")},
    ),
    Case(
        "and, its segment whole, settles in the short window again",
        (*whole(0), Claim(), RunEnds(RunState.ARCHIVED), *whole(1)),
        COLLECTING,
        due=7 + COMPLETE_SECONDS,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a")},
    ),
    Case(
        "a second revision: claim, archive, reopen, claim, archive",
        (
            Gme(3, 0),
            Claim(),
            RunEnds(RunState.ARCHIVED),
            Gme(3, 1),
            Claim(),
            RunEnds(RunState.ARCHIVED),
        ),
        ARCHIVED,
        due=None,
        segments={0: ("uploaded", "a"), 1: ("uploaded", "a")},
    ),
)
