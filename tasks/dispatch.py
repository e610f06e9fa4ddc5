"""The webhook's dispatcher on Celery: the broker's readiness ping. The entry point
(`recpipe.webapp`) hands it to the webhook, which knows it only as the
`webhook.dispatch.Dispatcher` protocol; the webhook sends no task (beat's settle clock
hands recordings out from the ledger)."""

from __future__ import annotations

from foundation.config import Settings
from foundation.queues import BrokerUnavailableError
from tasks.celery import configure


class CeleryDispatcher:
    def __init__(self, settings: Settings):
        self.app = configure(settings)

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
