"""The Flask app factories: the public app (callback intake and liveness) and the internal
one (readiness and metrics), which `recpipe serve` puts on a listener of its own
(`RECPIPE_INTERNAL_LISTEN`, loopback by default): what /readyz and /metrics tell (queue
depths, recording counts, the first line of a ledger or broker error) is not for the
internet, and a scrape costs ledger queries and a broker round trip."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from foundation import css_hosts
from foundation.config import Settings
from storage.ledger import Ledger, LedgerUnavailableError
from webhook import metrics
from webhook.callbacks import InvalidCallbackError
from webhook.dispatch import Dispatcher
from webhook.intake import BodyTooLargeError, Intake, read_body
from webhook.verify import InvalidSignatureError

log = structlog.get_logger("recpipe.webhook")

# The answer to every stored callback (docs/reference.md, "Callbacks"), the same bytes as
# `jsonify(code=0)`.
ACCEPTED = b'{"code":0}\n'


def create_app(settings: Settings, *, ledger: Ledger, dispatcher: Dispatcher) -> Flask:
    """The webhook on the caller's settings, ledger and dispatcher (`recpipe.webapp` wires
    the ones the processes use). Refuses (ConfigError) a CSS allow-list broader than the
    operator's own hosts unless RECPIPE_CSS_ALLOW_BROAD_HOSTS accepts it, and warns then."""
    for line in css_hosts.intake_warnings(settings):
        log.warning(
            "css.broad_allowed_hosts", problem=line, accepted_by="RECPIPE_CSS_ALLOW_BROAD_HOSTS"
        )
    intake = Intake(settings, ledger)

    app = _flask_app("recpipe", settings, ledger, dispatcher)

    def answer_callback(provider: str) -> tuple[Response, int]:
        structlog.contextvars.bind_contextvars(provider=provider)
        try:
            body = read_body(request, settings.max_body_bytes)
            outcome = intake.accept(provider, body, dict(request.headers))
        except InvalidSignatureError:
            return _reject(provider, "unauthorized", 401, "invalid signature")
        except BodyTooLargeError:
            return _reject(provider, "too_large", 413, "request body is too large")
        except InvalidCallbackError as exc:
            return _reject(provider, "invalid", 400, str(exc), field=exc.field)
        except LedgerUnavailableError as exc:
            log.error("callback.unstored", provider=provider, error=str(exc))
            return _reject(provider, "unavailable", 503, "cannot store the callback right now")
        metrics.callbacks(provider, outcome).inc()
        return Response(ACCEPTED, content_type="application/json"), 200

    @app.post("/callbacks/gme")
    def gme_callback() -> tuple[Response, int]:
        return answer_callback("gme")

    @app.post("/callbacks/css")
    def css_callback() -> tuple[Response, int]:
        return answer_callback("css")

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify(status="ok"), 200

    return app


def create_internal_app(settings: Settings, *, ledger: Ledger, dispatcher: Dispatcher) -> Flask:
    """Readiness and metrics, for the internal listener only."""
    app = _flask_app("recpipe-internal", settings, ledger, dispatcher)

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        problems: dict[str, str] = {}
        # Both at once: each ping is bounded (ledger connect_timeout, broker socket
        # timeouts), so the answer comes within the slower of the two bounds.
        with ThreadPoolExecutor(max_workers=2) as pool:
            pings = {"ledger": pool.submit(ledger.ping), "broker": pool.submit(dispatcher.ping)}
        for name, ping in pings.items():
            try:
                ping.result()
            except Exception as exc:
                problems[name] = _first_line(exc)
        if problems:
            return jsonify(status="unavailable", reasons=problems), 503
        return jsonify(status="ready"), 200

    @app.get("/metrics")
    def metrics_view() -> Response:
        payload, content_type = metrics.render(ledger, settings)
        return Response(payload, content_type=content_type)

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify(status="ok"), 200

    return app


def _flask_app(name: str, settings: Settings, ledger: Ledger, dispatcher: Dispatcher) -> Flask:
    """A Flask app that times and counts every answer and answers errors in JSON."""
    app = Flask(name)
    # No MAX_CONTENT_LENGTH: on a chunked request Werkzeug would cut the stream at the
    # limit without an error, and an oversized body would look whole. `read_body` enforces it.
    app.extensions["recpipe"] = {"settings": settings, "ledger": ledger, "dispatcher": dispatcher}

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()
        # The server's threads serve many requests: each starts with an empty log context.
        structlog.contextvars.clear_contextvars()

    @app.after_request
    def _observe(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.request_seconds(route, request.method).observe(
            time.perf_counter() - g.get("started", time.perf_counter())
        )
        metrics.responses(route, response.status_code).inc()
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        if code == 413:
            return _reject(
                _provider_of(request.path), "too_large", 413, "request body is too large"
            )
        return jsonify(error=exc.name.lower()), code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("request.failed", path=request.path)
        return jsonify(error="internal error"), 500

    return app


def _provider_of(path: str) -> str:
    return path.rsplit("/", 1)[-1] if path.startswith("/callbacks/") else "unknown"


def _reject(
    provider: str, outcome: str, status: int, message: str, **extra: Any
) -> tuple[Response, int]:
    metrics.callbacks(provider, outcome).inc()
    log.info("callback.rejected", provider=provider, status=status, reason=message)
    return jsonify(error=message, **extra), status


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
