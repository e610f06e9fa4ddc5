"""Observability in-process: /metrics moves with callbacks and chain runs, a chain's log
lines carry the recording, and /readyz reports a really unreachable ledger and broker."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy.event import listen, remove

from foundation import logs
from foundation import metrics as shared
from foundation.config import Settings
from recpipe.webapp import create_app, create_internal_app
from storage.domain import GmeEvent, GmeRecordingKey
from storage.ledger import Ledger, utcnow
from storage.objectstore import LocalStore
from tasks import processing
from tasks.services import Services
from tests.support.metrics import sample
from tests.support.services import closed_port
from tests.support.signing import sign_gme

BIZ, SECRET = 1400000000, "observe-test-key"
STEPS = ("fetch", "concat", "transcode", "archive")


def scrape() -> str:
    return shared.render()[0].decode()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """JSON logs of this test, in a buffer."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    logs.configure("INFO", json=True, stream=stream, secrets=[SECRET])
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def env(tmp_path: Path):
    settings = Settings.from_env(
        {"RECPIPE_DATA_DIR": str(tmp_path / "var"), "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}"}
    )
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    yield settings, ledger
    ledger.dispose()


def gme_body(task_id: str, file_name: str, seq: int = 0) -> bytes:
    return json.dumps(
        {
            "BizID": BIZ, "RoomID": "100", "UserID": "999", "TaskID": int(task_id),
            "RecordMode": 1, "Timestamp": 1675930605, "EventType": 3,
            "Detail": {"SeqNo": seq, "FileName": file_name},
        }
    ).encode()  # fmt: skip


def signature(body: bytes) -> str:
    return sign_gme(SECRET, body)


def test_metrics_count_an_accepted_callback_and_the_recording_it_opened(env):
    """GET /metrics: the accepted-callback counter goes up by one, a refused one is counted
    as unauthorized, and the new recording shows in recpipe_recordings{state=collecting}."""
    settings, ledger = env
    client = create_app(settings, ledger=ledger).test_client()
    internal = create_internal_app(settings, ledger=ledger).test_client()
    before = internal.get("/metrics").get_data(as_text=True)
    assert sample(before, "recpipe_recordings", state="collecting") == 0
    assert sample(before, "recpipe_ledger_up") == 1

    body = gme_body("446946705284000901", "1400000000_100/a_446946705284000901_audio.mp3")
    headers = {"Content-Type": "application/json"}
    ok = client.post("/callbacks/gme", data=body, headers={**headers, "Signature": signature(body)})
    assert ok.status_code == 200
    refused = client.post("/callbacks/gme", data=body, headers={**headers, "Signature": "AAAA"})
    assert refused.status_code == 401

    after = internal.get("/metrics").get_data(as_text=True)
    for outcome in ("accepted", "unauthorized"):
        labels = {"provider": "gme", "outcome": outcome}
        assert sample(after, "recpipe_callbacks_total", **labels) == (
            sample(before, "recpipe_callbacks_total", **labels) + 1
        )
    assert sample(after, "recpipe_recordings", state="collecting") == 1
    route = {"route": "/callbacks/gme", "method": "POST"}
    assert sample(after, "recpipe_request_seconds_count", **route) >= 2


def test_metrics_still_answer_when_the_ledger_is_down(tmp_path: Path):
    """A scrape during a ledger outage succeeds and says recpipe_ledger_up 0."""
    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/none",
        }
    )
    app = create_internal_app(settings)
    response = app.test_client().get("/metrics")
    app.extensions["recpipe"]["ledger"].dispose()
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert sample(text, "recpipe_ledger_up") == 0
    assert "recpipe_recordings{" not in text


def _run_chain(settings: Settings, ledger: Ledger, tmp_path: Path, task_id: str, segment: Path):
    source, archive = LocalStore(tmp_path / "source"), LocalStore(tmp_path / "archive")
    key = GmeRecordingKey(BIZ, "100", "999", task_id, 1)
    file_name = f"{BIZ}_100/2026-01-01_{task_id}_audio.mp3"
    source.put(file_name, segment)
    event = GmeEvent(key, 3, 0, file_name, 1675930605)
    ledger.record_gme_event(event, "{}", {}, now=utcnow(), settle_seconds=0)
    run_id = ledger.claim(key.recording_id, now=utcnow())
    assert run_id is not None
    services = Services(settings, ledger, source, archive)
    return key.recording_id, processing.process(services, run_id, "test-worker")


def test_a_chain_run_moves_step_metrics_and_logs_each_step_with_the_recording(
    env, tone, tmp_path: Path, log_lines
):
    """tasks.processing.process on a real one-segment recording: each step's duration is
    observed once more, no failure is counted, and every step line carries the recording id,
    provider and step."""
    settings, ledger = env
    before = scrape()
    recording_id, run = _run_chain(
        settings, ledger, tmp_path, "446946705284000902", tone("a.mp3", 440, 1.0)
    )
    assert run is not None and run.state == "archived"

    after = scrape()
    for step in STEPS:
        count = "recpipe_step_seconds_count"
        assert sample(after, count, step=step) == sample(before, count, step=step) + 1, step
        failures = "recpipe_step_failures_total"
        assert sample(after, failures, step=step) == sample(before, failures, step=step)

    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    step_lines = [line for line in lines if line["event"].startswith("step.")]
    assert {line["step"] for line in step_lines} == set(STEPS)
    for line in step_lines:
        assert line["recording_id"] == recording_id, line
        assert line["provider"] == "gme", line
    [archived] = [line for line in lines if line["event"] == "recording.archived"]
    assert archived["recording_id"] == recording_id and archived["provider"] == "gme"
    assert "step" not in archived, "the step's context ends with the step"


def test_a_failing_step_is_counted_by_step(env, tmp_path: Path, log_lines):
    """A segment that is not audio fails the fetch step: recpipe_step_failures_total{step=
    fetch} goes up by one and the failure line names the recording and the step."""
    settings, ledger = env
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all\n" * 50)
    failures = "recpipe_step_failures_total"
    before = sample(scrape(), failures, step="fetch")
    recording_id, run = _run_chain(settings, ledger, tmp_path, "446946705284000903", bad)
    assert run is not None and run.state == "failed"
    assert sample(scrape(), failures, step="fetch") == before + 1
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    [failed] = [line for line in lines if line["event"] == "step.failed"]
    assert (failed["recording_id"], failed["step"], failed["provider"]) == (
        recording_id,
        "fetch",
        "gme",
    )


@pytest.fixture
def step_writes(env) -> Iterator[list[str]]:
    """The UPDATEs of a run's step list that the ledger sends while the test runs."""
    _, ledger = env
    seen: list[str] = []

    def note(conn, cursor, statement: str, *args) -> None:
        if statement.lstrip().upper().startswith("UPDATE RUNS") and "steps" in statement:
            seen.append(statement)

    listen(ledger.engine, "before_cursor_execute", note)
    yield seen
    remove(ledger.engine, "before_cursor_execute", note)


def test_a_chain_run_writes_its_step_list_once_per_step(env, tone, tmp_path: Path, step_writes):
    """Each step's start carries the end of the step before it and the run's end carries
    the last one's: one UPDATE of the step list per step and one for the end, and the list
    the run ends with has every step finished."""
    settings, ledger = env
    _, run = _run_chain(settings, ledger, tmp_path, "446946705284000904", tone("a.mp3", 440, 1.0))
    assert run is not None and run.state == "archived"
    assert [(s["step"], s["ok"]) for s in run.steps] == [(step, True) for step in STEPS]
    assert all(s["seconds"] >= 0 and "finished_at" in s for s in run.steps)
    assert len(step_writes) == len(STEPS) + 1, step_writes


def test_a_failing_step_is_in_the_step_list_the_run_ends_with(env, tmp_path: Path, step_writes):
    """A segment that is not audio fails the fetch: the failed run's step list says so,
    with the error, written with the run's end."""
    settings, ledger = env
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all\n" * 50)
    _, run = _run_chain(settings, ledger, tmp_path, "446946705284000905", bad)
    assert run is not None and run.state == "failed"
    [fetch] = run.steps
    assert fetch["step"] == "fetch" and fetch["ok"] is False and "finished_at" in fetch
    assert fetch["error"] == run.error
    assert len(step_writes) == 2, step_writes


# -- readiness ----------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word: a hung
    server, where only client timeouts end the wait."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def readyz(tmp_path: Path, database_url: str, broker_url: str):
    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_DATABASE_URL": database_url,
            "RECPIPE_BROKER_URL": broker_url,
        }
    )
    app = create_internal_app(settings)
    try:
        return app.test_client().get("/readyz")
    finally:
        app.extensions["recpipe"]["ledger"].dispose()


def test_readyz_is_200_with_a_real_ledger_and_broker(tmp_path: Path, pg_url, redis_url):
    response = readyz(tmp_path, pg_url, redis_url)
    assert response.status_code == 200 and response.get_json() == {"status": "ready"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("down", ["refusing", "silent"])
@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_readyz_is_503_naming_an_unreachable_ledger_and_broker(
    tmp_path: Path, down: str, scheme: str, request
):
    """Ledger and broker on a port that refuses connections, or accepts and never answers:
    /readyz answers (bounded timeouts, no hang) 503 with a JSON reason for each."""
    port = closed_port() if down == "refusing" else request.getfixturevalue("silent_port")
    broker = f"redis://127.0.0.1:{port}/0" if scheme == "redis" else f"amqp://127.0.0.1:{port}//"
    response = readyz(tmp_path, f"postgresql+psycopg://nobody@127.0.0.1:{port}/none", broker)
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert set(body["reasons"]) == {"ledger", "broker"}
    assert all(isinstance(r, str) and r for r in body["reasons"].values())


@pytest.mark.timeout(60)
def test_readyz_names_only_the_broker_when_only_the_broker_is_down(tmp_path: Path, pg_url):
    response = readyz(tmp_path, pg_url, f"redis://127.0.0.1:{closed_port()}/0")
    assert response.status_code == 503
    assert set(response.get_json()["reasons"]) == {"broker"}
