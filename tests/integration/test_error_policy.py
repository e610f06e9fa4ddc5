"""The chains' one error policy, on the media task as a worker runs it (eagerly, on a real
ledger, stores and ffmpeg): a bug in a step fails the run at once, and fires no store
alert; each transient error is retried, and the retry takes the run back."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import structlog
from botocore.exceptions import ClientError, EndpointConnectionError
from kombu.exceptions import OperationalError as BrokerOperationalError
from prometheus_client.parser import text_string_to_metric_families

from foundation import logs
from foundation import metrics as shared
from foundation.config import Settings
from foundation.queues import BrokerUnavailableError
from storage.domain import GmeEvent, GmeRecordingKey
from storage.ledger import Ledger, LedgerUnavailableError, utcnow
from storage.objectstore import StoreUnavailableError, store_from_url
from tasks import context, jobs, processing
from tasks.celery import configure

BIZ = 1400000000


def store_errors() -> dict[str, float]:
    """recpipe_store_errors_total by store, as a scrape reads it."""
    found = {"source": 0.0, "archive": 0.0}
    for family in text_string_to_metric_families(shared.render()[0].decode()):
        for s in family.samples:
            if s.name == "recpipe_store_errors_total":
                found[s.labels["store"]] = s.value
    return found


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    logs.configure("INFO", json=True, stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def queued_run(ledger: Ledger, tone, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A one-segment GME recording in the source, claimed: its run queued for the media
    task, which runs in this process with these settings."""
    settings = Settings.from_env(
        {"RECPIPE_DATA_DIR": str(tmp_path / "var"), "RECPIPE_DATABASE_URL": ledger.url}
    )
    configure(settings)
    segment = tone("a.mp3", 440, 1.0)
    made = iter(range(100))

    def make() -> str:
        task_id = str(446946705284001000 + next(made))
        key = GmeRecordingKey(BIZ, "100", "999", task_id, 1)
        file_name = f"{BIZ}_100/2026-01-01_{task_id}_audio.mp3"
        store_from_url(settings.gme_source_url).put(file_name, segment)
        event = GmeEvent(key, 3, 0, file_name, 1675930605)
        ledger.record_gme_event(event, "{}", {}, now=utcnow(), settle_seconds=0)
        run_id = ledger.claim(key.recording_id, now=utcnow())
        assert run_id is not None
        return run_id

    yield make
    context.reset()


def failing_once(monkeypatch: pytest.MonkeyPatch, name: str, exc: BaseException) -> list[str]:
    """`tasks.processing.<name>` raises `exc` on its first call, then does its work."""
    real = getattr(processing, name)
    calls: list[str] = []

    def step(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        if len(calls) == 1:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(processing, name, step)
    return calls


@pytest.mark.parametrize(
    ("step", "function", "bug"),
    [
        ("fetch", "fetch_sources", KeyError("seq_no")),
        ("archive", "publish", TypeError("unsupported operand type(s) for +: 'int' and 'str'")),
    ],
)
def test_a_bug_in_a_step_fails_the_run_at_once_and_fires_no_store_alert(
    ledger: Ledger, queued_run, monkeypatch, log_lines, step: str, function: str, bug: Exception
):
    """A KeyError or a TypeError is a bug, not an outage: the run fails on its first
    attempt with the error's one line in the ledger (what the console and notification
    show), its traceback in the log, and recpipe_store_errors_total does not move, in
    the fetch and archive steps whose store errors page the operator."""
    run_id = queued_run()
    calls = failing_once(monkeypatch, function, bug)
    before = store_errors()
    result = jobs.process_recording.apply((run_id,))
    assert result.successful(), result.traceback
    run = ledger.run(run_id)
    error = f"{type(bug).__name__}: {str(bug).splitlines()[0]}"
    assert (run.state, run.attempts, run.error) == ("failed", 1, error)
    assert (run.recording.state, run.recording.error) == ("failed", error)
    assert calls == [function], "retried"
    [failed] = [s for s in run.steps if s["step"] == step]
    assert (failed["ok"], failed["error"]) == (False, error)
    assert store_errors() == before
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    [told] = [line for line in lines if line["event"] == "recording.failed"]
    assert told["error"] == error
    assert "Traceback" in told["exception"] and f"{function}" in told["exception"]
    assert not [line for line in lines if line["event"] == "task.retrying"]


def s3_answer(status: int, code: str) -> StoreUnavailableError:
    cause = ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )
    error = StoreUnavailableError(f"s3://bucket/key: {cause}")
    error.__cause__ = cause
    return error


def unreachable_store() -> StoreUnavailableError:
    cause = EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    error = StoreUnavailableError(f"s3://bucket/key: {cause}")
    error.__cause__ = cause
    return error


TRANSIENT = {
    "the network": requests.ConnectionError("Connection reset by peer"),
    "S3 5xx": s3_answer(503, "ServiceUnavailable"),
    "S3 throttling": s3_answer(503, "SlowDown"),
    "S3 unreachable": unreachable_store(),
    "the ledger": LedgerUnavailableError("connection refused"),
    "the broker": BrokerUnavailableError("connection refused"),
    "the broker (kombu)": BrokerOperationalError("[Errno 111] Connection refused"),
}


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_each_transient_error_is_retried_and_the_retry_archives_the_run(
    ledger: Ledger, queued_run, monkeypatch, log_lines, fault: Exception
):
    """The fetch step meets a transient error once: the task retries (the retry, a later
    attempt of the same task, takes the run back) and the run is archived, its steps
    telling of the interrupted attempt."""
    run_id = queued_run()
    calls = failing_once(monkeypatch, "fetch_sources", fault)
    jobs.process_recording.apply((run_id,))
    run = ledger.run(run_id)
    assert (run.state, run.attempts, run.takeovers) == ("archived", 2, 0), run.error
    assert calls == ["fetch_sources", "fetch_sources"]
    fetches = [(s["attempt"], s["ok"]) for s in run.steps if s["step"] == "fetch"]
    assert fetches == [(1, False), (2, True)]
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert [line["subject"] for line in lines if line["event"] == "task.retrying"] == [run_id]
