"""What the webhook needs of whoever hands out work: a best-effort "settle this recording
later" and a readiness ping. The entry point gives `create_app` one (Celery's is
`tasks.dispatch.CeleryDispatcher`); the webhook never imports the task side."""

from __future__ import annotations

from typing import Protocol


class Dispatcher(Protocol):
    def settle_later(self, recording_id: str, countdown: float) -> bool:
        """Ask for the recording to be settled after `countdown` seconds; False when that
        could not be handed out now (the callback is stored: beat's sweep settles it)."""
        ...

    def ping(self, timeout: float = 3.0) -> None:
        """Raise `foundation.queues.BrokerUnavailableError` when the broker does not
        answer within `timeout` seconds."""
        ...
