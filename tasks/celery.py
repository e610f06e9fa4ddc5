"""The one module that makes the Celery app. Settings are read from the environment
when Celery first needs its configuration, not at import."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging

from recpipe.config import Settings

app = Celery("recpipe", include=["tasks.jobs"])
app.config_from_object("tasks.celeryconfig")


def configure(settings: Settings) -> Celery:
    """Point the app at explicit settings (an app factory's, a CLI's), dropping any
    broker connections made for earlier ones."""
    from tasks import context
    from tasks.celeryconfig import celery_settings

    context.use(settings)
    app.conf.update(celery_settings(settings))
    app.close()
    # The producer pool outlives close(); left alone it keeps publishing through the
    # first settings' broker connection (another embedded broker folder, say).
    app.amqp._producer_pool = None
    return app


@setup_logging.connect
def _structured_logs(loglevel: Any = None, **_: Any) -> None:
    """Workers log like the webhook: structured, JSON when not on a terminal."""
    from recpipe import logs
    from tasks.context import settings

    logs.configure(loglevel or settings().log_level)
