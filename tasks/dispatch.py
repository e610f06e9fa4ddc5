"""The webhook's dispatcher on Celery: settle tasks sent by name, never blocking long on a
broker. The entry points (`recpipe.webapp`, `recpipe replay`) hand it to the webhook, which
knows it only as the `webhook.dispatch.Dispatcher` protocol.

A callback is already committed when it is dispatched, so a dispatch that fails costs
nothing but latency: beat's sweep hands the recording out later. The webhook therefore
publishes on connections of its own that try once with a short connect timeout, and
after a failure stops trying for a few seconds, so that during a broker outage the
vendor's requests are answered at the ledger's speed, not the broker's timeouts'.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from kombu.pools import ProducerPool

from foundation.config import Settings
from foundation.queues import BrokerUnavailableError
from tasks.celery import configure

log = structlog.get_logger("recpipe.webhook")  # it runs in the webhook's processes

CONNECT_TIMEOUT_SECONDS = 1.5
COOLOFF_SECONDS = 5.0
POOL_LIMIT = 32


class CeleryDispatcher:
    def __init__(self, settings: Settings, *, cooloff: float = COOLOFF_SECONDS):
        self.app = configure(settings)
        self.cooloff = cooloff
        fail_fast: dict[str, Any] = {"max_retries": 0}
        if settings.broker_url.startswith(("redis://", "rediss://")):
            fail_fast["socket_connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        self._connection = self.app.connection_for_write(
            connect_timeout=CONNECT_TIMEOUT_SECONDS, transport_options=fail_fast
        )
        self._producers = ProducerPool(self._connection.Pool(limit=POOL_LIMIT), limit=POOL_LIMIT)
        self._lock = threading.Lock()
        self._paused_until = 0.0

    def settle_later(self, recording_id: str, countdown: float) -> bool:
        """Ask a worker to settle the recording after `countdown` seconds. False when the
        broker did not take it (or failed moments ago); the recording's settle time is in
        the ledger, so the sweep settles it."""
        if time.monotonic() < self._paused_until:
            return False
        try:
            with self._producers.acquire(block=True, timeout=CONNECT_TIMEOUT_SECONDS) as producer:
                self.app.send_task(
                    "recpipe.settle",
                    args=[recording_id],
                    countdown=countdown,
                    retry=False,
                    producer=producer,
                )
        except Exception as exc:
            with self._lock:
                self._paused_until = time.monotonic() + self.cooloff
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
        try:
            with self.app.connection_for_write(
                connect_timeout=timeout, transport_options=options
            ) as conn:
                conn.ensure_connection(max_retries=0)
        except Exception as exc:  # whatever the transport raises: the broker is not there
            raise BrokerUnavailableError(str(exc) or type(exc).__name__) from exc
