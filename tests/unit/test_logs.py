"""Structured logs: JSON lines with the context bound, and no secret ever in the output."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from foundation import logs
from foundation.config import Settings

GME_KEY = "gme-app-secret-key-1"
CSS_KEY = "css-callback-key-22"
WHSEC = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWJ5dGVz"


@pytest.fixture
def capture():
    """configure(...) into a buffer; returns the JSON lines written so far."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()

    def start(secrets=()) -> None:
        logs.configure("INFO", json=True, secrets=secrets, stream=stream)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    start.lines = lines  # type: ignore[attr-defined]
    yield start
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.contextvars.clear_contextvars()


def settings() -> Settings:
    return Settings.from_env(
        {
            "RECPIPE_GME_SECRET_KEYS": f"1400000000={GME_KEY}",
            "RECPIPE_CSS_CALLBACK_KEY": CSS_KEY,
            "RECPIPE_NOTIFY_SECRET": WHSEC,
        }
    )


def test_lines_are_json_with_the_bound_context(capture):
    """A line carries the contextvars bound before it (recording, provider, step)."""
    capture()
    structlog.contextvars.bind_contextvars(recording_id="gme-1-abc", provider="gme", step="fetch")
    structlog.get_logger("recpipe.tasks").info("step.started")
    [line] = capture.lines()
    assert line["event"] == "step.started"
    assert (line["recording_id"], line["provider"], line["step"]) == ("gme-1-abc", "gme", "fetch")
    assert line["level"] == "info" and "timestamp" in line


@pytest.mark.parametrize(
    ("fields", "secret"),
    [
        ({"headers": {"Signature": "c2lnbmF0dXJl"}}, "c2lnbmF0dXJl"),
        ({"headers": {"webhook-signature": "v1,abcdef"}}, "v1,abcdef"),
        ({"notify_secret": "anything-at-all"}, "anything-at-all"),
        ({"error": f"bad key {GME_KEY} for BizID"}, GME_KEY),
        ({"detail": [f"sign={CSS_KEY}"]}, CSS_KEY),
        ({"error": f"cannot sign with {WHSEC}"}, WHSEC.removeprefix("whsec_")),
        ({"url": "redis://:broker-password@redis:6379/0"}, "broker-password"),
        ({"url": "postgresql+psycopg://recpipe:db-password@pg/recpipe"}, "db-password"),
        (
            {"url": "https://b.s3.amazonaws.com/k.mp4?X-Amz-Credential=AKIAEXAMPLE%2F1"
             "&X-Amz-Signature=0123456789abcdef&X-Amz-Expires=60"},
            "0123456789abcdef",
        ),
        ({"url": "https://hooks.example/in?token=tok-123456&x=1"}, "tok-123456"),
    ],
    ids=[
        "gme-signature-header", "webhook-signature-header", "secret-named-field", "gme-key",
        "css-key-in-list", "notify-secret", "broker-url-password", "database-url-password",
        "presigned-s3-url", "token-query",
    ],
)  # fmt: skip
def test_secrets_never_reach_the_output(capture, fields, secret):
    """Secret-named fields, configured keys, URL passwords and signed query strings are
    masked, in recpipe's lines as in nested values."""
    capture(logs.secrets_of(settings(), {}))
    structlog.get_logger("recpipe.webhook").warning("something", **fields)
    output = json.dumps(capture.lines())
    assert secret not in output
    assert logs.REDACTED in output


def test_library_lines_and_tracebacks_are_masked_too(capture):
    """Lines of other libraries (stdlib logging) and exception tracebacks pass the same
    redaction."""
    capture(logs.secrets_of(settings(), {"AWS_SECRET_ACCESS_KEY": "aws-secret-value-9"}))
    logging.getLogger("botocore.custom").error("signing with aws-secret-value-9")
    try:
        raise RuntimeError(f"key {GME_KEY} rejected")
    except RuntimeError:
        structlog.get_logger("recpipe.tasks").exception("failed")
    output = json.dumps(capture.lines())
    assert "aws-secret-value-9" not in output and GME_KEY not in output
    assert "RuntimeError" in output, "the traceback itself is kept"


def test_ordinary_values_are_left_alone(capture):
    """Object keys, ids and URLs without credentials are logged as they are."""
    capture(logs.secrets_of(settings(), {}))
    fields = {
        "key": "1400000000_100/2026_446946705284000000_audio.mp3",
        "url": "s3://archive/gme/1400000000/gme-1-abc/manifest.json",
        "endpoint": "https://cos.ap-guangzhou.myqcloud.com/b?prefix=x",
        "notification_id": 12,
    }
    structlog.get_logger("recpipe.tasks").info("archived", **fields)
    [line] = capture.lines()
    assert {k: line[k] for k in fields} == fields


def test_the_level_applies_to_recpipe_and_library_lines_alike():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    try:
        logs.configure("WARNING", json=True, stream=stream)
        recpipe_log = structlog.get_logger("recpipe.webhook")
        recpipe_log.info("callback.accepted")
        logging.getLogger("celery.worker").info("ready")
        recpipe_log.warning("dispatch.failed", recording_id="gme-1-abc")
        logging.getLogger("celery.worker").warning("lost connection")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(line["event"], line["level"]) for line in lines] == [
            ("dispatch.failed", "warning"),
            ("lost connection", "warning"),
        ]
        # Reconfiguring (a new stream, a lower level) reaches loggers already in use.
        again = io.StringIO()
        logs.configure("INFO", json=True, stream=again)
        recpipe_log.info("callback.accepted")
        assert [json.loads(line)["event"] for line in again.getvalue().splitlines()] == [
            "callback.accepted"
        ]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_every_setting_defined_as_secret_is_masked(capture):
    """The secrets masked are the settings defined as secret (one definition), not a list
    kept beside them: the console's secret and a database password in a bare message are
    masked like the keys."""
    console_secret = "console-secret-" + "c" * 32
    found = Settings.from_env(
        {
            "RECPIPE_CONSOLE_SECRET": console_secret,
            "RECPIPE_DATABASE_URL": "postgresql+psycopg://recpipe:db%2Fpass-77@db/recpipe",
        }
    )
    capture(logs.secrets_of(found, {}))
    structlog.get_logger("recpipe.console").warning(f"{console_secret} db/pass-77 recpipe")
    [line] = capture.lines()
    assert console_secret not in line["event"] and "db/pass-77" not in line["event"]
    assert "recpipe" in line["event"], "ordinary words stay"
