"""The CSS settle rule. Pure, like the GME one (`tasks.settling.gme`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.domain import RecordingView
from storage.domain.lifecycle import Decision


def decide_css(recording: RecordingView, now: datetime, *, settle_seconds: float) -> Decision:
    """CSS sends one callback per finished file and nothing else: a recording is complete
    once no file has arrived for the settle window."""
    quiet_at = recording.last_event_at + timedelta(seconds=settle_seconds)
    if now < quiet_at:
        return Decision("wait", recheck_at=quiet_at)
    included = tuple(range(len(recording.files)))
    if not included:
        return Decision("fail", reason="the recording has no file")
    return Decision("finalize", included=included)
