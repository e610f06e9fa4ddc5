"""Where notifications come to be: the only code that makes a notification pending.

A notification is one outcome of one run for one downstream URL, stored before it is
sent, so a lost task only delays it (beat's sweep redelivers). Each function returns the
ids it made pending and no others: exactly one caller dispatches each delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from storage.ledger import Ledger, RunView
from tasks.notify.body import (
    encode,
    event_type,
    expired_body,
    expired_type,
    expired_webhook_id,
    notification_body,
    webhook_id,
)
from tasks.notify.delivery import next_attempt_by

# A finished run's task makes its notifications right after the run's end, and each
# notification's task sends it at once (or after its receiver's back-off). One still
# waiting this much later was lost with its task (an outage of the ledger or the broker
# it met) and beat's sweep hands it out again: soon after every dependency is back, every
# outcome is on its way. Handing out one that was only slow costs a duplicate delivery,
# which the receiver drops (the same webhook-id).
LOST_AFTER_SECONDS = 20.0


def enqueue(
    ledger: Ledger, run: RunView, urls: Sequence[str], now: datetime, *, resend: bool = False
) -> list[int]:
    """One pending notification per URL for the run's outcome (a notification that exists
    already is not made twice); the run counts as notified. With `resend`, those already
    finished (delivered, failed, disabled) are made pending again too, with the same
    webhook-id and body, so receivers deduplicate the second delivery."""
    body = encode(notification_body(run))
    ids = ledger.create_notifications(run.id, event_type(run), webhook_id(run), body, urls, now)
    if resend:
        ids += ledger.rearm_notifications(run.id, urls, now)
    return ids


def enqueue_expired(
    ledger: Ledger, run: RunView, urls: Sequence[str], now: datetime, deleted_objects: int
) -> list[int]:
    """`recording.expired` (or `room.expired`) for the recording of `run`, its newest run,
    whose media retention deleted; made once per URL."""
    body = encode(expired_body(run, now, deleted_objects))
    return ledger.create_notifications(
        run.id, expired_type(run), expired_webhook_id(run), body, urls, now
    )


def reopen_failed(
    ledger: Ledger, recording_id: str, now: datetime, *, include_disabled: bool = False
) -> list[int]:
    """The recording's current notifications that finally failed (and, with
    `include_disabled`, those a 410 stopped), pending again with a fresh attempt budget."""
    return ledger.reopen_notifications(recording_id, now, include_disabled=include_disabled)


def lost_outcomes(ledger: Ledger, now: datetime) -> list[str]:
    """Finished runs whose notifications were never made, leased to the caller (for
    LOST_AFTER_SECONDS): it notifies them."""
    return ledger.lease_unnotified_runs(now, now - timedelta(seconds=LOST_AFTER_SECONDS))


def lost_deliveries(ledger: Ledger, now: datetime) -> list[int]:
    """Pending notifications whose next attempt is overdue by LOST_AFTER_SECONDS, leased
    to the caller (touched now): it sends each again."""
    grace = timedelta(seconds=LOST_AFTER_SECONDS)
    overdue = [
        notification_id
        for notification_id, attempts, touched in ledger.waiting_notifications(now - grace)
        if touched + timedelta(seconds=next_attempt_by(attempts)) + grace < now
    ]
    for notification_id in overdue:
        ledger.touch_notification(notification_id, now)
    return overdue
