"""Heartbeats of the workers and of beat, as Prometheus timestamps.

- `recpipe_worker_heartbeat_timestamp_seconds{queue}`: a worker's consumer sets it every
  HEARTBEAT_SECONDS from its own event loop's timer, once per queue it consumes; a worker
  whose loop hangs stops moving it even while its metrics port still answers.
- `recpipe_beat_heartbeat_timestamp_seconds`: beat's scheduler sets it at every pass
  (`HeartbeatScheduler`, at most HEARTBEAT_SECONDS apart).

The worker's port serves both when beat is embedded (`celery worker --beat`: its process
writes into the worker's multiprocess directory). A beat of its own (`celery -A tasks
beat`) serves its metrics on RECPIPE_METRICS_PORT itself.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

from celery import bootsteps
from celery.beat import Scheduler
from celery.signals import beat_embedded_init

HEARTBEAT_SECONDS = 10.0


class _Gauges:
    """Made on first use, like `tasks.metrics`' families (multiprocess mode is chosen
    after this module is imported)."""

    def __init__(self) -> None:
        from prometheus_client import Gauge

        self.worker = Gauge(
            "recpipe_worker_heartbeat_timestamp_seconds",
            "Unix time of a worker's last heartbeat, by queue it consumes",
            ["queue"],
            multiprocess_mode="max",
        )
        self.beat = Gauge(
            "recpipe_beat_heartbeat_timestamp_seconds",
            "Unix time of beat's last scheduler pass",
            multiprocess_mode="max",
        )


@functools.cache
def gauges() -> _Gauges:
    return _Gauges()


class WorkerHeartbeat(bootsteps.StartStopStep):
    """A consumer bootstep (added in `tasks.celery`)."""

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.timer_ref: Any = None

    def start(self, c: Any) -> None:
        from tasks import metrics

        metrics.initialize()
        queues = sorted(c.app.amqp.queues.consume_from)
        self.beat(queues)
        self.timer_ref = c.timer.call_repeatedly(HEARTBEAT_SECONDS, self.beat, (queues,))

    def beat(self, queues: list[str]) -> None:
        now = time.time()
        for queue in queues:
            gauges().worker.labels(queue).set(now)

    def stop(self, c: Any) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    shutdown = stop


_embedded: list[bool] = []


@beat_embedded_init.connect
def _embedded_beat(**_: Any) -> None:
    """`celery worker --beat`: the worker's port serves this process's metrics."""
    _embedded.append(True)


class HeartbeatScheduler(Scheduler):
    """Celery's in-memory scheduler, passing at least every HEARTBEAT_SECONDS and stamping
    each pass. Its first pass starts the metrics port of a beat of its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_interval: float = min(float(self.max_interval), HEARTBEAT_SECONDS)
        self._started = False

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._started:
            self._started = True
            if not _embedded:
                _serve_beat_metrics()
        interval = super().tick(*args, **kwargs)
        gauges().beat.set(time.time())
        return interval


def _serve_beat_metrics() -> None:
    from foundation import metrics
    from tasks.context import settings
    from tasks.metrics import serve_worker_metrics

    cfg = settings()
    if not cfg.metrics_port:
        return
    if metrics.multiprocess():
        # A directory set in the environment: adopt it, emptied of an earlier run's files.
        metrics.use_multiprocess_dir(Path(os.environ[metrics.ENV]))
    serve_worker_metrics(cfg.metrics_host, cfg.metrics_port)
