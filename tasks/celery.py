"""The one module that makes the Celery app. Settings are read from the environment
when Celery first needs its configuration, not at import."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import structlog
from celery import Celery
from celery.signals import before_task_publish, celeryd_init, setup_logging, task_prerun
from kombu import pools

from foundation.config import Settings
from foundation.private import private_process
from tasks.liveness import WorkerHeartbeat

app = Celery("recpipe", include=["tasks.jobs"])
app.config_from_object("tasks.celeryconfig")
app.steps["consumer"].add(WorkerHeartbeat)


def configure(settings: Settings) -> Celery:
    """Point the app at explicit settings (an app factory's, a CLI's), dropping any
    broker connections made for earlier ones."""
    from tasks import context
    from tasks.celeryconfig import celery_settings

    context.use(settings)
    app.conf.update(celery_settings(settings))
    app.close()
    # close() keeps the producer pool, and kombu keeps pools per broker URL, not per
    # transport options: a second configuration with the embedded broker in another data
    # directory would still publish into the first one's.
    app.amqp._producer_pool = None
    pools.reset()
    return app


@setup_logging.connect
def _structured_logs(loglevel: Any = None, **_: Any) -> None:
    """Workers log like the webhook: structured, JSON when not on a terminal. On a
    terminal, Celery's own lines about recpipe's tasks are debug lines (`QuietTaskLines`)."""
    from foundation import logs
    from tasks.context import settings

    as_json = logs.configure(loglevel or settings().log_level, secrets=logs.secrets_of(settings()))
    if not as_json:
        quiet = QuietTaskLines()
        for name in ("celery.worker.strategy", "celery.app.trace", "celery.beat"):
            logging.getLogger(name).addFilter(quiet)


class QuietTaskLines(logging.Filter):
    """Celery's line for each task received, each task succeeded (with its whole return
    value) and each periodic task beat sends, for recpipe's tasks, demoted to debug: on a
    terminal a recording's life reads as recpipe's own few lines (stored, settled,
    archived or failed, notified), and an idle sweep says nothing. Retries and failures
    keep their level."""

    MESSAGES = (
        "Task %(name)s[%(id)s] received",
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
        "Scheduler: Sending due task %s (%s)",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.msg not in self.MESSAGES:
            return True
        args = record.args
        if isinstance(args, tuple):
            task = args[-1] if args else ""
        else:
            task = (args or {}).get("name", "")
        if not str(task).startswith("recpipe."):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


@before_task_publish.connect
def _stamp_publication(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Workers measure queue wait from this header (see `tasks.metrics`)."""
    if headers is not None:
        headers["recpipe_published_at"] = time.time()


@task_prerun.connect
def _task_log_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Each task's log lines carry its own context only: a pool process runs many tasks."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task=getattr(task, "name", None), task_id=task_id)


@celeryd_init.connect
def _private_files(**_: Any) -> None:
    """A worker started as `celery -A tasks worker` (not by `recpipe run`) writes the
    embedded broker's message files for its user alone, too."""
    private_process()


@celeryd_init.connect
def _transcribe_engine(options: dict[str, Any] | None = None, **_: Any) -> None:
    """A worker that takes the transcribe queue refuses to start, in one line, when its
    engine cannot work (a missing or incomplete model directory, a missing package), rather
    than fail every transcript. Celery logs and swallows a handler's Exception, so this
    leaves with SystemExit."""
    from foundation.config import ConfigError
    from tasks.context import settings
    from tasks.transcripts.engines import check_engine

    queues = (options or {}).get("queues") or ()
    if isinstance(queues, str):
        queues = queues.split(",")
    if queues and "transcribe" not in queues:
        return
    try:
        check_engine(settings())
    except ConfigError as exc:
        sys.stderr.write(f"recpipe: {exc}\n")
        raise SystemExit(2) from None


@celeryd_init.connect
def _worker_metrics(**_: Any) -> None:
    """In the worker's main process, before the pool forks and before any metric exists:
    multiprocess mode for the pool's processes and an HTTP server for scrapes."""
    from foundation import metrics
    from tasks.context import settings

    cfg = settings()
    if cfg.metrics_port or metrics.multiprocess():
        if not metrics.multiprocess() and "prometheus_client" in sys.modules:
            structlog.get_logger("recpipe.tasks").warning(
                "metrics.not_aggregated",
                reason="prometheus_client was imported before the worker started: set "
                "PROMETHEUS_MULTIPROC_DIR to count the pool processes' metrics",
            )
        metrics.use_multiprocess_dir(cfg.data_dir / "metrics" / f"worker-{os.getpid()}")
    if cfg.metrics_port:
        from tasks.metrics import serve_worker_metrics

        serve_worker_metrics(cfg.metrics_host, cfg.metrics_port)
