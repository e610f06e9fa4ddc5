"""Prometheus metrics of the webhook."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from storage.ledger import Ledger

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


def render(_ledger: Ledger) -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
