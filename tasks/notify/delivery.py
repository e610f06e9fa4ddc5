"""One signed delivery attempt of a notification (Standard Webhooks headers), and what
its answer means for the notification."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from standardwebhooks.webhooks import Webhook

from storage.domain import NotificationState
from tasks import retrying

# A receiver that did not take a notification is tried again later and later, up to this
# far apart (the receiver's outage is not ours to hammer).
BACKOFF_CAP_SECONDS = 600.0


def signed_headers(msg_id: str, payload: str, secret: str | None, now: datetime) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "user-agent": "recpipe",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
    }
    if secret:
        headers["webhook-signature"] = Webhook(secret).sign(msg_id, now, payload)
    return headers


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the receiver asks us to stop sending this event to this URL."""
        return self.status_code == 410


def deliver(
    session: requests.Session,
    url: str,
    msg_id: str,
    payload: str,
    *,
    secret: str | None,
    timeout: float,
) -> Attempt:
    headers = signed_headers(msg_id, payload, secret, datetime.now(UTC))
    started = time.monotonic()
    try:
        response = session.post(
            url, data=payload.encode(), headers=headers, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        return Attempt(None, type(exc).__name__, int((time.monotonic() - started) * 1000))
    elapsed = int((time.monotonic() - started) * 1000)
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return Attempt(response.status_code, error, elapsed)


def state_after(attempt: Attempt, attempts: int, max_attempts: int) -> str | None:
    """The notification's final state after its `attempts`-th attempt, or None while it is
    to be tried again: a 2xx delivers, a 410 disables this URL for the event, and the
    attempt budget spent fails it."""
    if attempt.delivered:
        return NotificationState.DELIVERED
    if attempt.gone:
        return NotificationState.DISABLED
    if attempts >= max_attempts:
        return NotificationState.FAILED
    return None


def next_attempt_in(attempts: int) -> float:
    """Seconds until the next attempt of a notification tried `attempts` times."""
    return retrying.countdown(attempts - 1, cap=BACKOFF_CAP_SECONDS)


def next_attempt_by(attempts: int) -> float:
    """The most `next_attempt_in(attempts)` can be; 0 when never tried (that is at once)."""
    return retrying.longest_countdown(attempts - 1, cap=BACKOFF_CAP_SECONDS) if attempts else 0.0
