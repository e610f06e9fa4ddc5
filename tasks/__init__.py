"""Celery app and the recording chains. `celery -A tasks worker` finds `tasks.celery:app`.

The Celery plumbing is here at the top (`celery`, `celeryconfig`, `context`, `metrics`,
`dispatch`, and `jobs`, the task shells); each job's core is a module of its own
(`settling`, `processing`, `sweeping`, `reprocessing`, `archive`) over the features:
`gme/`, `css/`, `media/` (ffmpeg and the tools) and `notify/`.
"""

from tasks.celery import app

__all__ = ["app"]
