"""The one module that makes the Celery app. Settings are read from the environment
when Celery first needs its configuration, not at import."""

from __future__ import annotations

from celery import Celery

app = Celery("recpipe", include=["tasks.jobs"])
app.config_from_object("tasks.celeryconfig")
