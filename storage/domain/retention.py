"""What the ledger may forget, and when (`recpipe prune`, beat's `recpipe.prune`).

Two kinds of rows grow with traffic rather than with recordings: the stored callbacks
(every vendor request, once, with its raw body) and the delivery attempts (every POST to
every downstream URL). Both are evidence of what happened, needed while the work they
belong to is live and for a while after, for an operator's questions; neither is needed
to serve, settle, reprocess or redeliver a recording that is finished:

- a recording's segment bookkeeping lives in `segments` (and `css_files`), not in its
  callbacks, so a vendor retry arriving after its callback was pruned is applied to the
  segment it names and changes nothing (no new content, no new revision);
- a notification keeps its state, its number of attempts and its last answer; the
  attempts are the history behind those.

The rule is per recording for callbacks, so a recording's callbacks go together:
everything older than the cutoff of a recording that is finished (archived or failed, no
change waiting) and has been quiet since before the cutoff, and that was handed to a
worker. For attempts: those older than the cutoff of a notification that is no longer
pending. Recordings, runs, segments, notifications, CSS files, rooms and the audit trail
are kept: they grow by a bounded number of rows per recording (see the README's
"Scaling"), and they are what `recpipe status`, `reprocess` and the console read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.domain.states import NotificationState, RecordingState

# Rows deleted per statement: short transactions that never hold many locks at once.
BATCH_ROWS = 1000


@dataclass(frozen=True)
class PruneCounts:
    """Rows removed (or, in a dry run, that would be) per table."""

    callbacks: int = 0
    delivery_attempts: int = 0

    @property
    def total(self) -> int:
        return self.callbacks + self.delivery_attempts

    def __add__(self, other: PruneCounts) -> PruneCounts:
        return PruneCounts(
            self.callbacks + other.callbacks, self.delivery_attempts + other.delivery_attempts
        )


TABLES = ("callbacks", "delivery_attempts")


def cutoff(now: datetime, days: float) -> datetime | None:
    """Rows older than this may go; None when retention is off (0 days)."""
    if days <= 0:
        return None
    return now - timedelta(days=days)


def recording_finished(state: str, pending_changes: bool) -> bool:
    """Nothing will happen to the recording unless a new event or an operator reopens it."""
    return state in RecordingState.TERMINAL and not pending_changes


def callback_prunable(
    *,
    received_at: datetime,
    dispatched_at: datetime | None,
    recording_state: str | None,
    pending_changes: bool,
    recording_last_event_at: datetime | None,
    before: datetime,
) -> bool:
    """A stored callback may go: old, handed out, and its recording finished and quiet
    since before the cutoff. A callback without a recording is kept (it is not yet
    placed)."""
    if recording_state is None or recording_last_event_at is None:
        return False
    return (
        received_at < before
        and dispatched_at is not None
        and recording_last_event_at < before
        and recording_finished(recording_state, pending_changes)
    )


def attempt_prunable(*, at: datetime, notification_state: str, before: datetime) -> bool:
    """A delivery attempt may go: old, and its notification no longer pending (a pending
    one is still being delivered; its attempts decide its backoff and are shown)."""
    return at < before and notification_state != NotificationState.PENDING


# Media retention (RECPIPE_MEDIA_RETENTION_DAYS): recordings expired per pass of beat's
# hourly job, so a first pass over a long backlog is bounded and the next ones continue.
MEDIA_BATCH = 100


def media_expirable(
    *, state: str, pending_changes: bool, finished_at: datetime | None, held: bool, before: datetime
) -> bool:
    """A recording's (or room's) media may be deleted by age: it is finished, its newest
    run ended before the cutoff, and it is not on hold. What is collecting or processing
    is never expired: its newest revision is still to come."""
    return (
        recording_finished(state, pending_changes)
        and finished_at is not None
        and finished_at < before
        and not held
    )
