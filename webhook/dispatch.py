"""What the webhook needs of the task side: a readiness ping of its broker. The webhook
sends nothing (what a callback asks for is the settle time it writes to the ledger, which
beat's clock reads); the entry point gives `create_app` one (Celery's is
`tasks.dispatch.CeleryDispatcher`); the webhook never imports the task side."""

from __future__ import annotations

from typing import Protocol


class Dispatcher(Protocol):
    def ping(self, timeout: float = 3.0) -> None:
        """Raise `foundation.queues.BrokerUnavailableError` when the broker does not
        answer within `timeout` seconds."""
        ...
