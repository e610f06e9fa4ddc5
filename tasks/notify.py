"""The downstream notification: its body (pure) and one signed delivery attempt."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from standardwebhooks.webhooks import Webhook

from storage.domain import RunState, RunView

ARCHIVED = "recording.archived"
FAILED = "recording.failed"


def event_type(run: RunView) -> str:
    return ARCHIVED if run.state == RunState.ARCHIVED else FAILED


def webhook_id(run: RunView) -> str:
    """Stable for one recording revision and outcome, so receivers can deduplicate."""
    return f"msg_{run.recording_id}_r{run.revision}_{event_type(run).split('.')[1]}"


def recording_object(run: RunView) -> dict[str, Any]:
    rec = run.recording
    obj: dict[str, Any] = {"id": rec.id, "source": rec.source, "revision": run.revision}
    if rec.source == "gme":
        obj["gme"] = dict(rec.identity)
    else:
        # The run records the identity of the files it archived; files that arrived since
        # belong to the next revision.
        obj[rec.source] = dict(run.result.get(rec.source) or rec.details)
    return obj


def notification_body(run: RunView) -> dict[str, Any]:
    result = run.result
    return {
        "type": event_type(run),
        "recording": recording_object(run),
        "segments": {
            "included": list(result.get("included", [])),
            "missing": list(result.get("missing", [])),
        },
        "artifacts": list(result.get("artifacts", [])) if run.state == RunState.ARCHIVED else [],
        "manifest": run.manifest_url if run.state == RunState.ARCHIVED else None,
        "error": None if run.state == RunState.ARCHIVED else (run.error or "unknown error"),
        "timestamp": (run.finished_at or datetime.now(UTC)).isoformat(),
    }


def encode(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


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
