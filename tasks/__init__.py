"""Celery app and the recording chains. `celery -A tasks worker` finds `tasks.celery:app`."""

from tasks.celery import app

__all__ = ["app"]
