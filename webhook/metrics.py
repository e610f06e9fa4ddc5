"""Prometheus metrics of the webhook, and what `GET /metrics` answers.

Besides the webhook's own counters, a scrape reports how many recordings are in each
state and the ledger's health figures (`webhook.ledger_metrics`), both read from the
ledger at scrape time in one session, the depth of the broker's queues
(`foundation.queues`), and the samples every process of this host wrote in multiprocess
mode (see `foundation.metrics`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import structlog
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from foundation import metrics as shared
from foundation.config import Settings
from foundation.queues import QueueDepth
from storage.domain import RecordingState
from storage.ledger import Ledger, LedgerUnavailableError
from webhook import ledger_metrics

log = structlog.get_logger("recpipe.webhook")

CALLBACKS = Counter(
    "recpipe_callbacks_total",
    "Callbacks received, by provider and outcome",
    ["provider", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "recpipe_request_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

RESPONSES = Counter(
    "recpipe_http_responses_total",
    "HTTP answers, by route and status code",
    ["route", "code"],
)


# A sample's labelled child, looked up once: `labels()` validates and locks on every call.
@functools.lru_cache(maxsize=256)
def callbacks(provider: str, outcome: str) -> Counter:
    return CALLBACKS.labels(provider, outcome)


@functools.lru_cache(maxsize=256)
def request_seconds(route: str, method: str) -> Histogram:
    return REQUEST_SECONDS.labels(route, method)


@functools.lru_cache(maxsize=256)
def responses(route: str, code: int) -> Counter:
    return RESPONSES.labels(route, str(code))


STATES = (
    RecordingState.COLLECTING,
    RecordingState.PROCESSING,
    RecordingState.ARCHIVED,
    RecordingState.FAILED,
)


class RecordingsByState:
    """`recpipe_recordings{state}` from the ledger, and `recpipe_ledger_up` (0 when the
    ledger did not answer, so a scrape still succeeds while the database is down)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("recpipe_ledger_up", "1 when the ledger answered this scrape")
        try:
            found = self.ledger.read_gauges()
        except LedgerUnavailableError as exc:
            log.warning("metrics.ledger_unavailable", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        gauge = GaugeMetricFamily(
            "recpipe_recordings", "Recordings in the ledger, by state", labels=["state"]
        )
        counts = found.recordings_by_state
        for state in sorted({*STATES, *counts}):
            gauge.add_metric([state], counts.get(state, 0))
        yield gauge
        yield from ledger_metrics.health(found)


def render(ledger: Ledger, settings: Settings | None = None) -> tuple[bytes, str]:
    extra: list[object] = [RecordingsByState(ledger)]
    if settings is not None:
        extra.append(QueueDepth(settings))
    return shared.render(*extra)
