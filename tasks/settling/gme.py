"""The GME settle rule: is the recording complete? GME never says so: decide from quiet
time and segment bookkeeping, and find in the source the segments whose upload callback
was lost.

Pure: a snapshot of the recording and the clock in, a `Decision` out.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from storage.domain import RecordingView, SegmentState, SegmentView, lifecycle
from storage.domain.lifecycle import Decision


def missing_seq_nos(segments: Sequence[SegmentView]) -> tuple[int, ...]:
    """SeqNos that should exist but are not uploaded: started ones, and gaps below the highest."""
    uploaded = {s.seq_no for s in segments if s.state == SegmentState.UPLOADED}
    seen = {s.seq_no for s in segments}
    highest = max(seen, default=-1)
    gaps = set(range(highest + 1)) - seen
    return tuple(sorted((seen - uploaded) | gaps))


def is_complete(recording: RecordingView) -> bool:
    """Every segment seen has its started, completed and uploaded events, none is missing."""
    return lifecycle.is_complete((s.seq_no, s.events) for s in recording.segments)


def decide_gme(
    recording: RecordingView,
    now: datetime,
    *,
    settle_seconds: float,
    max_wait_seconds: float,
    complete_seconds: float | None = None,
) -> Decision:
    """Quiet for the short window once complete (`complete_seconds`), for `settle_seconds`
    otherwise, not at all once stopped; then finalize when nothing is missing, or once
    `max_wait_seconds` have passed.

    A wait is until `recheck_at`, complete or not: an event that makes the recording due
    sooner (its last upload: the short window; any event once stopped: at once) writes
    its own settle time, which beat's clock reads, so a recording is finalized on time
    whenever its last event comes, without looking again in between.
    """
    complete = is_complete(recording)
    stopped = recording.stopped_at is not None
    windows = lifecycle.Windows(settle_seconds, complete_seconds)
    quiet_at = lifecycle.settle_due(
        recording.last_event_at, windows, complete=complete, stopped=stopped
    )
    if now < quiet_at:
        return Decision("wait", recheck_at=quiet_at)
    included = tuple(
        sorted(s.seq_no for s in recording.segments if s.state == SegmentState.UPLOADED)
    )
    missing = missing_seq_nos(recording.segments)
    give_up_at = recording.last_event_at + timedelta(seconds=max(max_wait_seconds, settle_seconds))
    if missing and now < give_up_at:
        return Decision(
            "wait",
            recheck_at=give_up_at,
            included=included,
            missing=missing,
            look_in_source=now < quiet_at + timedelta(seconds=windows.complete),
        )
    if not included:
        return Decision(
            "fail", missing=missing, reason="no segment was uploaded before the maximum wait"
        )
    return Decision("finalize", included=included, missing=missing)


_TASK_DIGITS = re.compile(r"\d+")


def recovered_segments(
    segments: Sequence[SegmentView], task_id: str, listing: Iterable[str]
) -> list[tuple[int, str]]:
    """Match source keys nobody told us about to the SeqNos we are missing.

    Keys of one recording sort in time order (they start with a timestamp), so an
    unknown key that carries the TaskID takes the first free SeqNo that keeps the
    known keys' order. Returns (seq_no, key) pairs; a key that cannot be placed is
    left out rather than guessed.
    """
    known = {s.file_name: s.seq_no for s in segments}
    uploaded_keys = {s.file_name for s in segments if s.state == SegmentState.UPLOADED}
    candidates = sorted(
        key
        for key in listing
        if key not in uploaded_keys
        and task_id in _TASK_DIGITS.findall(posixpath.basename(key))
        and key.lower().endswith((".mp3", ".m4a", ".aac", ".wav", ".flac", ".opus"))
    )
    if not candidates:
        return []
    missing = list(missing_seq_nos(segments))
    found: list[tuple[int, str]] = []
    for key in candidates:
        if key in known:  # started or completed before, upload callback lost
            found.append((known[key], key))
            if known[key] in missing:
                missing.remove(known[key])
    # Remaining unknown keys: slot them between the known keys by sort order.
    by_key = sorted((name, seq) for name, seq in known.items())
    for key in candidates:
        if key in known:
            continue
        lower = max((seq for name, seq in by_key if name < key), default=-1)
        upper = min((seq for name, seq in by_key if name > key), default=None)
        slot = next(
            (seq for seq in missing if seq > lower and (upper is None or seq < upper)), None
        )
        if slot is None and upper is None:
            slot = max([s.seq_no for s in segments] + [seq for seq, _ in found] + [-1]) + 1
        if slot is None:
            continue
        found.append((slot, key))
        by_key.append((key, slot))
        by_key.sort()
        if slot in missing:
            missing.remove(slot)
    return sorted(found)
