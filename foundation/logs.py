"""Structured logs: JSON lines when not on a terminal, readable lines when on one.

Every line, recpipe's own and those of the libraries (Celery, boto3), passes
through `Redactor` last, so configured secrets, signature headers, passwords in URLs and
signed query strings never reach the output.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

import structlog

from foundation import jsonsafe
from foundation.config import SETTINGS, VENDOR_SECRETS, Settings

REDACTED = "[redacted]"

# Keys whose values are secrets whatever they look like (compared lowercased, '-' as '_').
_SECRET_KEY = re.compile(
    r"(secret|passw|token|authorization|cookie|credential|signature|api_key|access_key"
    r"|private_key|^sign$|^sig$)"
)
# Secrets inside text: a URL's password, signed or keyed query parameters, whsec_ keys.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)", re.I)
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sign"
    r"|sig|awsaccesskeyid|access_token|token|secret|key|api_key|password|q-signature"
    r"|q-ak)=)[^&\s#\"']+",
    re.I,
)
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=]+")


class Redactor:
    """A structlog processor that masks secrets in every value of an event, nested or not.

    `secrets` are literal values (keys from the configuration) masked wherever they occur.
    """

    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first, so a secret containing another is masked whole; very short
        # values would mask ordinary words and are not secrets worth the name.
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
        for key, value in event.items():  # values replaced in place: no key comes or goes
            if type(value) in _PLAIN and not _secret_key(key):
                continue  # a number, a flag or None under an ordinary name: nothing to mask
            event[key] = self._clean(key, value)
        return event

    def _clean(self, key: object, value: Any) -> Any:
        if _secret_key(key):
            return REDACTED if value not in (None, "") else value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._clean(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._clean(None, v) for v in value)
        return value

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        # Each pattern needs its marker; most values have none, and skip the regexes.
        if "://" in value:
            value = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}", value)
        if "=" in value:
            value = _QUERY_SECRET.sub(rf"\g<head>{REDACTED}", value)
        if "whsec_" in value:
            value = _WHSEC.sub(f"whsec_{REDACTED}", value)
        return value


_PLAIN = frozenset({int, float, bool, type(None)})


@functools.lru_cache(maxsize=4096)
def _secret_key(key: object) -> bool:
    """A key whose value is masked whatever it is; a line's keys are few and repeat."""
    return isinstance(key, str) and _SECRET_KEY.search(key.lower().replace("-", "_")) is not None


def secrets_of(settings: Settings, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """The secret values a process holds: to be masked if they ever reach a log line. Every
    setting defined as secret counts (a URL by its password), and boto3's key from the
    environment."""
    env = os.environ if environ is None else environ
    values: list[str] = []
    for item in SETTINGS:
        if item.secret:
            values += _secret_values(getattr(settings, item.attr))
    for name in (*VENDOR_SECRETS, "AWS_SESSION_TOKEN"):
        if env.get(name):
            values.append(env[name])
    return [value for value in values if value]


def _secret_values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, Mapping):  # the GME keys by BizID
        return [key.decode(errors="replace") for key in value.values()]
    if isinstance(value, bytes):
        return [value.decode(errors="replace")]
    text = str(value)
    if "://" in text:
        password = urlsplit(text).password
        return [unquote(password), password] if password else []
    return [text, text.removeprefix("whsec_")] if text.startswith("whsec_") else [text]


# Method name -> stdlib level, for recpipe's own lines (see `configure`).
_LEVELS = {name.lower(): level for name, level in logging.getLevelNamesMapping().items()}
_LEVELS |= {"exception": logging.ERROR, "msg": logging.INFO}
_RECPIPE = logging.getLogger("recpipe")


def _enabled(_logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """Drop a line below the stdlib level of the `recpipe` logger (the root's by default)."""
    if not _RECPIPE.isEnabledFor(_LEVELS.get(method, logging.INFO)):
        raise structlog.DropEvent
    return event


class _HandlerOutput:
    """structlog's output for recpipe's own lines: the root handler that `configure`
    installed, written under that handler's lock, so they interleave whole with the lines
    of the libraries (which come through the stdlib handler)."""

    handler: logging.StreamHandler[TextIO] | None = None

    def msg(self, message: str) -> None:
        handler = self.handler
        if handler is None:
            return
        handler.acquire()
        try:
            handler.stream.write(message + "\n")
            handler.flush()
        finally:
            handler.release()

    debug = info = warning = warn = error = exception = critical = fatal = msg


_OUTPUT = _HandlerOutput()


def configure(
    level: str | int = "INFO",
    *,
    json: bool | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> bool:
    """Every line to `stream` (stderr) as JSON, or as readable lines on a terminal; True
    when JSON.

    recpipe's own lines are rendered by structlog and written straight to the handler: on
    the webhook's hot path, a stdlib LogRecord, its caller lookup and the formatter cost
    twice what the line itself does. Library lines go through the stdlib handler and the
    same processors. Both pass the Redactor last but the renderer."""
    output = stream or sys.stderr
    as_json = not output.isatty() if json is None else json
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(jsonsafe.dumps)
        if as_json
        else structlog.dev.ConsoleRenderer()
    )
    redactor = Redactor(secrets)
    structlog.configure(
        processors=[
            _enabled,
            *shared,
            # Tracebacks become text before redaction (and never show local variables).
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        logger_factory=lambda *_: _OUTPUT,
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    _OUTPUT.handler = handler
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "kombu", "amqp", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return as_json
