"""recpipe's alert rules in a real Prometheus (Debian's package) that scrapes a running
webhook and worker (with embedded beat): a recording fails and the notification endpoint
stays down, and Prometheus's API shows the matching alerts pending or firing while the
liveness alerts stay quiet."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from storage.domain import GmeRecordingKey
from storage.objectstore import LocalStore
from tests.support.services import closed_port, free_port
from tests.support.signing import signed_gme_callback
from tests.support.stack import Stack
from tests.support.waits import wait_for

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
BIZ, SECRET = 1400000000, "metrics-e2e-key"
TASK_ID = "446946705284000931"


@pytest.fixture
def stack(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[Stack]:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env = {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": pg_url,
        "RECPIPE_BROKER_URL": redis_url,
        "RECPIPE_GME_SOURCE_URL": (tmp_path / "source").as_uri(),
        "RECPIPE_ARCHIVE_URL": (tmp_path / "archive").as_uri(),
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        # A receiver that is down for the whole test: every attempt is `unreachable`.
        "RECPIPE_NOTIFY_URLS": f"http://127.0.0.1:{closed_port()}/hooks/recpipe",
        "RECPIPE_SETTLE_SECONDS": "1",
        "RECPIPE_SWEEP_SECONDS": "1",
        "RECPIPE_METRICS_HOST": "127.0.0.1",
        "RECPIPE_METRICS_PORT": str(free_port()),
    }
    s = Stack(env, tmp_path / "logs")
    s.ledger.migrate()
    yield s
    s.stop()


@pytest.fixture
def prometheus(tmp_path: Path, stack: Stack) -> Iterator[str]:
    """Prometheus with recpipe's rule files as shipped, scraping and evaluating every
    second, on a free loopback port with a data directory of its own."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: `make services` installs Debian's prometheus package"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(path) for path in RULES],
        "scrape_configs": [
            {
                "job_name": "recpipe-webhook",
                "static_configs": [{"targets": [stack.internal_url[7:]]}],
            },
            {
                "job_name": "recpipe-workers",
                "static_configs": [{"targets": [f"127.0.0.1:{stack.env['RECPIPE_METRICS_PORT']}"]}],
            },
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "logs" / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, what="prometheus ready")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
        log.close()


def query(url: str, expr: str) -> list[dict]:
    answer = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def active_alerts(url: str) -> dict[str, dict]:
    answer = requests.get(f"{url}/api/v1/alerts", timeout=5).json()
    return {a["labels"]["alertname"]: a for a in answer["data"]["alerts"]}


@pytest.mark.timeout(150)
def test_a_failed_recording_and_a_receiver_that_stays_down_raise_their_alerts(
    stack: Stack, prometheus: str, tmp_path: Path
):
    stack.start_webhook()
    stack.start_worker(concurrency=1, beat=True)

    # Both targets up, and the ledger's run counter and the worker's attempt counter
    # scraped at 0 before anything fails (a rate needs the zero).
    def scraped() -> bool:
        up = query(prometheus, "up == 1")
        heartbeats = query(prometheus, "recpipe_worker_heartbeat_timestamp_seconds")
        failed = query(prometheus, 'recpipe:runs_finished_total:max{outcome="failed"} == 0')
        attempts = query(prometheus, "recpipe_notification_attempts_total == 0")
        queues = {h["metric"]["queue"] for h in heartbeats}  # a plain worker takes every queue
        return len(up) == 2 and {"light", "media"} <= queues and bool(failed) and bool(attempts)

    wait_for(scraped, timeout=40, interval=0.5, what="first scrapes of webhook and worker")

    # A segment that is not audio: the fetch step fails the recording.
    key = f"{BIZ}_100/2026-01-01_{TASK_ID}_audio.mp3"
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all\n" * 50)
    LocalStore(tmp_path / "source").put(key, bad)
    assert stack.post_gme(*signed_gme_callback(BIZ, SECRET, TASK_ID, 0, key)) == 200
    recording_id = GmeRecordingKey(BIZ, "100", "999", TASK_ID, 1).recording_id
    recording = stack.wait_for_state(recording_id, ("archived", "failed"), timeout=40)
    assert recording.state == "failed", stack.log_text()

    expected = {"RecpipeRunsFailing", "RecpipeNotificationsFailing"}

    def raised() -> dict[str, dict] | None:
        found = active_alerts(prometheus)
        return found if expected <= set(found) else None

    found = wait_for(raised, timeout=40, interval=0.5, what=f"alerts {expected}")
    for name in expected:
        alert = found[name]
        assert alert["state"] in ("pending", "firing"), alert
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["runbook"].endswith("#" + name.lower())
        assert "First" in alert["annotations"]["description"]
    summary = found["RecpipeRunsFailing"]["annotations"]["summary"]
    assert summary.endswith("recording runs failed in the last 15 minutes"), summary
    assert found["RecpipeNotificationsFailing"]["annotations"]["summary"].startswith("100%")

    # The processes are alive and reachable: no liveness or availability alert.
    quiet = {
        "RecpipeNoWorker", "RecpipeNoBeat", "RecpipeWebhookDown", "RecpipeLedgerDown",
        "RecpipeBrokerDown", "RecpipeWebhookErrors", "RecpipeWebhookUnavailable",
        "RecpipeArchiveFailing", "RecpipeSourceFailing",
    }  # fmt: skip
    assert quiet & set(active_alerts(prometheus)) == set(), json.dumps(
        active_alerts(prometheus), indent=1
    )
    # What the alerts read, as Prometheus has it.
    [attempts] = query(
        prometheus, 'sum(recpipe_notification_attempts_total{outcome="unreachable"})'
    )
    assert float(attempts["value"][1]) >= 1
    [depth] = query(prometheus, 'recpipe:queue_depth:max{queue="media"}')
    assert float(depth["value"][1]) == 0
