"""Metrics of recpipe as processes: a Celery worker's prefork pool exposes its chain,
queue and notification metrics on RECPIPE_METRICS_PORT, and a webhook of several server
processes adds all of them up on /metrics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from storage.domain import GmeRecordingKey
from tests.support.metrics import sample
from tests.support.services import free_port
from tests.support.signing import signed_gme_callback
from tests.support.stack import Stack
from tests.support.waits import wait_for

BIZ, SECRET = 1400000000, "metrics-e2e-key"
TASK_ID = "446946705284000911"


@pytest.fixture
def env(tmp_path: Path, s3_endpoint, bucket, pg_url, redis_url, receiver) -> dict[str, str]:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": pg_url,
        "RECPIPE_BROKER_URL": redis_url,
        "RECPIPE_GME_SOURCE_URL": f"s3://{bucket}/cos?endpoint_url={s3_endpoint}",
        "RECPIPE_ARCHIVE_URL": f"s3://{bucket}/archive?endpoint_url={s3_endpoint}",
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_NOTIFY_URLS": receiver.url,
        "RECPIPE_SETTLE_SECONDS": "1",
        "RECPIPE_SWEEP_SECONDS": "1",
    }


@pytest.fixture
def stack(env, tmp_path: Path):
    s = Stack(env, tmp_path / "logs")
    yield s
    s.stop()


def callback(seq: int, file_name: str, task_id: str = TASK_ID) -> tuple[bytes, str]:
    return signed_gme_callback(BIZ, SECRET, task_id, seq, file_name)


def test_worker_pool_metrics_are_served_on_the_metrics_port(
    stack: Stack, tone, s3_client, bucket, receiver
):
    """A recording through a prefork worker (2 processes) without PROMETHEUS_MULTIPROC_DIR
    set: the worker's port shows one observation per chain step, queue waits of the media
    and light queues, and one delivered notification; the webhook's /metrics shows the
    accepted callback and the archived recording."""
    port = free_port()
    stack.env.update(RECPIPE_METRICS_PORT=str(port), RECPIPE_METRICS_HOST="127.0.0.1")
    stack.start_webhook()
    stack.start_worker(concurrency=2)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: requests.get(metrics_url, timeout=2).ok, what="worker metrics port")

    key = f"{BIZ}_100/2026-01-01_{TASK_ID}_audio.mp3"
    s3_client.upload_file(str(tone("a.mp3", 440, 1.0)), bucket, f"cos/{key}")
    assert stack.post_gme(*callback(0, key)) == 200
    recording_id = GmeRecordingKey(BIZ, "100", "999", TASK_ID, 1).recording_id
    recording = stack.wait_for_state(recording_id, ("archived", "failed"))
    assert recording.state == "archived", stack.log_text()
    wait_for(lambda: receiver.requests, timeout=30, what="notification")

    def worker_metrics() -> str | None:
        text = requests.get(metrics_url, timeout=5).text
        delivered = {"outcome": "delivered"}
        return text if sample(text, "recpipe_notification_attempts_total", **delivered) else None

    text = wait_for(worker_metrics, timeout=30, what="notification attempt metric")
    for step in ("fetch", "concat", "transcode", "archive"):
        assert sample(text, "recpipe_step_seconds_count", step=step) == 1, step
    media = {"queue": "media", "task": "recpipe.process_recording"}
    assert sample(text, "recpipe_queue_wait_seconds_count", **media) == 1
    settle = {"queue": "light", "task": "recpipe.settle"}
    assert sample(text, "recpipe_queue_wait_seconds_count", **settle) >= 1
    assert sample(text, "recpipe_notification_attempts_total", outcome="delivered") == 1

    webhook = requests.get(f"{stack.internal_url}/metrics", timeout=10).text
    accepted = {"provider": "gme", "outcome": "accepted"}
    assert sample(webhook, "recpipe_callbacks_total", **accepted) == 1
    assert sample(webhook, "recpipe_recordings", state="archived") == 1


def test_webhook_metrics_add_up_every_server_process(stack: Stack):
    """`recpipe serve --workers 3`: whichever process answers a scrape, /metrics counts
    every callback any process took."""
    stack.start_webhook(workers=3)
    posts = 12
    for seq in range(posts):
        body, sig = callback(seq, f"{BIZ}_100/2026-01-01_{TASK_ID}_{seq}_audio.mp3")
        assert stack.post_gme(body, sig) == 200
    accepted = {"provider": "gme", "outcome": "accepted"}
    for _ in range(8):
        text = requests.get(f"{stack.internal_url}/metrics", timeout=10).text
        assert sample(text, "recpipe_callbacks_total", **accepted) == posts
        assert sample(text, "recpipe_recordings", state="collecting") == 1
