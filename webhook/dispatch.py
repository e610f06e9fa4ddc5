"""Handing work to Celery from the webhook, by task name, never blocking long on a broker."""

from __future__ import annotations

import structlog

from recpipe.config import Settings
from tasks.celery import configure

log = structlog.get_logger("recpipe.webhook")


class Dispatcher:
    def __init__(self, settings: Settings):
        self.app = configure(settings)

    def settle_later(self, recording_id: str, countdown: float) -> bool:
        """Ask a worker to settle the recording after `countdown` seconds. False when the
        broker did not take it; the callback then stays undispatched for the sweep."""
        try:
            self.app.send_task(
                "recpipe.settle", args=[recording_id], countdown=countdown, retry=False
            )
        except Exception as exc:
            log.warning("dispatch.failed", recording_id=recording_id, error=str(exc))
            return False
        return True

    def ping(self, timeout: float = 3.0) -> None:
        """One connection attempt to the broker, each wait (connect, then the broker's
        answer) bounded by `timeout` seconds: readiness must answer even when a broker
        accepts connections but never replies."""
        options = {
            **self.app.conf.broker_transport_options,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
        }
        with self.app.connection_for_write(
            connect_timeout=timeout, transport_options=options
        ) as conn:
            conn.ensure_connection(max_retries=0)
