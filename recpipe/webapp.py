"""The webhook as recpipe serves it: `webhook.app.create_app` wired to the ledger and the
Celery dispatcher (the webhook itself imports neither the tasks nor the CLI). With no
argument everything comes from the environment, so a WSGI server can call
`recpipe.webapp:create_app()` (the public app: callbacks and /healthz) and
`recpipe.webapp:create_internal_app()` (/readyz and /metrics, never on a public port)."""

from __future__ import annotations

from flask import Flask

from foundation.config import Settings
from storage.ledger import Ledger
from tasks.dispatch import CeleryDispatcher
from webhook import app as webhook_app
from webhook.dispatch import Dispatcher


def create_app(
    settings: Settings | None = None,
    *,
    ledger: Ledger | None = None,
    dispatcher: Dispatcher | None = None,
) -> Flask:
    settings = settings or Settings.from_env()
    return webhook_app.create_app(
        settings,
        ledger=ledger or Ledger(settings.database_url),
        dispatcher=dispatcher or CeleryDispatcher(settings),
    )


def create_internal_app(
    settings: Settings | None = None,
    *,
    ledger: Ledger | None = None,
    dispatcher: Dispatcher | None = None,
) -> Flask:
    settings = settings or Settings.from_env()
    return webhook_app.create_internal_app(
        settings,
        ledger=ledger or Ledger(settings.database_url),
        dispatcher=dispatcher or CeleryDispatcher(settings),
    )


def create_apps(settings: Settings) -> tuple[Flask, Flask]:
    """The public and the internal app of one process, on one ledger and one dispatcher."""
    ledger, dispatcher = Ledger(settings.database_url), CeleryDispatcher(settings)
    return (
        webhook_app.create_app(settings, ledger=ledger, dispatcher=dispatcher),
        webhook_app.create_internal_app(settings, ledger=ledger, dispatcher=dispatcher),
    )
