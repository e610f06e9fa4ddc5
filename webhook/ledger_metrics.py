"""The ledger's health figures on the webhook's `/metrics`, read at scrape time.

- `recpipe_recording_oldest_age_seconds{state}`: for `collecting`, how long the quietest
  collecting recording has had no event (a recording is finalized at most
  RECPIPE_MAX_WAIT_SECONDS after its last event, so beyond that it is stuck); for
  `processing`, how long ago the run of the longest-processing recording was claimed.
  0 when no recording is in that state.
- `recpipe_runs_finished_total{outcome}`: runs that ended `archived` or `failed`, counted
  in the ledger. A counter from the ledger rather than from the processes, so it counts
  every way a run ends (a media error, a settle that gives up, retries exhausted, the
  sweep failing a stuck run) and no worker restart resets it.
- `recpipe_rooms{state}`: rooms (a task's users mixed as one recording of source `room`)
  in each recording state.
- `recpipe_notifications{state}`: notifications `pending`, `delivered`, `failed` (out of
  attempts: `recpipe redeliver` sends them again) and `disabled` (the receiver answered
  410).

Several webhook processes or hosts report the same figures; the recording rules in
deploy/prometheus take their `max`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from storage.domain import NotificationState, RecordingState, RunState
from storage.ledger import LedgerGauges

RUN_OUTCOMES = (RunState.ARCHIVED, RunState.FAILED)
ROOM_STATES = (
    RecordingState.COLLECTING,
    RecordingState.PROCESSING,
    RecordingState.ARCHIVED,
    RecordingState.FAILED,
)
NOTIFICATION_STATES = (
    NotificationState.PENDING,
    NotificationState.DELIVERED,
    NotificationState.FAILED,
    NotificationState.DISABLED,
)


def _age(since: datetime | None, now: datetime) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


def health(found: LedgerGauges) -> Iterator[Any]:
    """The families above from one reading of the ledger (`webhook.metrics` reads it once
    per scrape, and says `recpipe_ledger_up 0` when the ledger did not answer)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    now = datetime.now(UTC)
    age = GaugeMetricFamily(
        "recpipe_recording_oldest_age_seconds",
        "collecting: seconds since the last event of the quietest collecting recording; "
        "processing: seconds since the longest-processing recording's run was claimed",
        labels=["state"],
    )
    age.add_metric([RecordingState.COLLECTING], _age(found.oldest_collecting_event_at, now))
    age.add_metric([RecordingState.PROCESSING], _age(found.oldest_processing_since, now))
    yield age
    runs = CounterMetricFamily(
        "recpipe_runs_finished",
        "Runs (one per revision of a recording) that ended, by outcome, from the ledger",
        labels=["outcome"],
    )
    for outcome in RUN_OUTCOMES:
        runs.add_metric([outcome], found.runs_by_state.get(outcome, 0))
    yield runs
    notifications = GaugeMetricFamily(
        "recpipe_notifications",
        "Downstream notifications in the ledger, by state",
        labels=["state"],
    )
    for state in sorted({*NOTIFICATION_STATES, *found.notifications_by_state}):
        notifications.add_metric([state], found.notifications_by_state.get(state, 0))
    yield notifications
    rooms = GaugeMetricFamily("recpipe_rooms", "Rooms in the ledger, by state", labels=["state"])
    for state in sorted({*ROOM_STATES, *found.rooms_by_state}):
        rooms.add_metric([state], found.rooms_by_state.get(state, 0))
    yield rooms
