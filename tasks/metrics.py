"""Prometheus metrics of the workers: chain steps, queue wait, notification attempts,
failures of the source and archive stores (heartbeats: `tasks.liveness`).

A worker's main process serves them on `RECPIPE_METRICS_PORT` (see `serve_worker_metrics`,
started from `tasks.celery`); its pool processes write them in multiprocess mode.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime
from typing import Any

import structlog
from celery.signals import task_prerun, worker_process_shutdown

from foundation import metrics as shared
from storage.domain import retention

log = structlog.get_logger("recpipe.tasks")

PUBLISHED_AT_HEADER = "recpipe_published_at"


class _Families:
    """The metric objects, made on first use, not at import: Celery imports this module
    before its worker's main process has chosen multiprocess mode, and prometheus_client
    fixes how values are stored when it is first imported."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.step_seconds = Histogram(
            "recpipe_step_seconds",
            "Duration of each finished step of a recording's chain",
            ["step"],
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
        )
        self.step_failures = Counter(
            "recpipe_step_failures_total",
            "Steps of a recording's chain that raised, by step",
            ["step"],
        )
        self.queue_wait_seconds = Histogram(
            "recpipe_queue_wait_seconds",
            "Time a task waited in its queue: from publication (or its ETA) to its start",
            ["queue", "task"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.store_errors = Counter(
            "recpipe_store_errors_total",
            "Steps whose object store failed (unreachable, 5xx, throttling: retried; or "
            "refused) while reading the source (fetch) or writing the archive (archive)",
            ["store"],
        )
        self.notification_attempts = Counter(
            "recpipe_notification_attempts_total",
            "Downstream notification attempts, by outcome "
            "(delivered, gone: 410, rejected: another HTTP status, unreachable: no answer)",
            ["outcome"],
        )
        self.transcribe_seconds = Histogram(
            "recpipe_transcribe_seconds",
            "Wall time of making one transcript, by engine",
            ["engine"],
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
        )
        self.transcribe_realtime_factor = Histogram(
            "recpipe_transcribe_realtime_factor",
            "Seconds of transcription per second of speech sent to the engine, by engine",
            ["engine"],
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )
        self.transcript_words = Counter(
            "recpipe_transcript_words_total", "Words transcribed, by engine", ["engine"]
        )
        self.transcript_failures = Counter(
            "recpipe_transcript_failures_total",
            "Transcripts that could not be made, by reason (engine, store, ledger, timeout)",
            ["reason"],
        )
        self.transcript_flags = Counter(
            "recpipe_transcript_flags_total",
            "Flag words (RECPIPE_FLAG_WORDS) found in recordings' transcripts",
        )
        self.pruned_rows = Counter(
            "recpipe_pruned_rows_total",
            "Ledger rows deleted by the retention job (RECPIPE_RETENTION_DAYS), by table",
            ["table"],
        )


@functools.cache
def families() -> _Families:
    return _Families()


STEPS = ("fetch", "concat", "transcode", "archive")
STORE_OF_STEP = {"fetch": "source", "archive": "archive"}
NOTIFICATION_OUTCOMES = ("delivered", "gone", "rejected", "unreachable")
PRUNED_TABLES = retention.TABLES
TRANSCRIPT_FAILURES = ("engine", "store", "ledger", "timeout")


def initialize() -> None:
    """Every counter's label values at 0, so that a rate sees the first failure (a series
    that starts at 1 shows no increase). Called by the worker's main process at start."""
    f = families()
    for step in STEPS:
        f.step_failures.labels(step)
    for store in STORE_OF_STEP.values():
        f.store_errors.labels(store)
    for outcome in NOTIFICATION_OUTCOMES:
        f.notification_attempts.labels(outcome)
    for table in PRUNED_TABLES:
        f.pruned_rows.labels(table)
    for reason in TRANSCRIPT_FAILURES:
        f.transcript_failures.labels(reason)


def observe_step(step: str, seconds: float) -> None:
    families().step_seconds.labels(step).observe(seconds)


def count_step_failure(step: str, *, storage: bool = False) -> None:
    """`storage`: the step's object store failed (not the media, the ledger or a bug),
    counted against the step's store as well."""
    families().step_failures.labels(step).inc()
    if storage and step in STORE_OF_STEP:
        families().store_errors.labels(STORE_OF_STEP[step]).inc()


def observe_transcript(
    engine: str, seconds: float, speech_s: float, words: int, flags: int
) -> None:
    f = families()
    if engine:  # a room's transcript merges its users': no engine ran
        f.transcribe_seconds.labels(engine).observe(seconds)
        if speech_s > 0:
            f.transcribe_realtime_factor.labels(engine).observe(seconds / speech_s)
        f.transcript_words.labels(engine).inc(words)
    f.transcript_flags.inc(flags)


def count_transcript_failure(reason: str) -> None:
    families().transcript_failures.labels(reason).inc()


def count_pruned(counts: retention.PruneCounts) -> None:
    for table in PRUNED_TABLES:
        families().pruned_rows.labels(table).inc(getattr(counts, table))


def count_notification_attempt(status_code: int | None) -> None:
    families().notification_attempts.labels(notification_outcome(status_code)).inc()


def notification_outcome(status_code: int | None) -> str:
    if status_code is None:
        return "unreachable"
    if 200 <= status_code < 300:
        return "delivered"
    return "gone" if status_code == 410 else "rejected"


def queue_wait(published_at: float, eta: str | datetime | None, started_at: float) -> float:
    """Seconds between a task becoming due (published, or its ETA if later) and its start;
    never negative (clocks of different hosts disagree a little)."""
    due = published_at
    if eta:
        when = eta if isinstance(eta, datetime) else datetime.fromisoformat(eta)
        due = max(due, when.timestamp())
    return max(0.0, started_at - due)


@task_prerun.connect
def _observe_queue_wait(task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    published_at = getattr(request, PUBLISHED_AT_HEADER, None)
    if request is None or not isinstance(published_at, int | float):
        return
    queue = (request.delivery_info or {}).get("routing_key") or "unknown"
    try:
        wait = queue_wait(float(published_at), request.eta, time.time())
    except (TypeError, ValueError):
        return
    families().queue_wait_seconds.labels(queue, task.name).observe(wait)


@worker_process_shutdown.connect
def _forget_process(pid: int | None = None, **_: Any) -> None:
    if pid:
        shared.mark_process_dead(pid)


def serve_worker_metrics(host: str, port: int) -> bool:
    """Serve this host's worker metrics on host:port from a thread of the main process.
    False (and one log line) when the port is taken: the worker runs on without it."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host, registry=shared.registry())
    except OSError as exc:
        log.error("metrics.unavailable", host=host, port=port, error=str(exc))
        return False
    log.info("metrics.serving", host=host, port=port)
    return True
