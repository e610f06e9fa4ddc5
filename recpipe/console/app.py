"""The console's app factory: sessions, CSRF, sign-in throttling, security headers, and
the pages and API blueprints. Never mounted in the webhook (a process of its own)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from foundation import jsonsafe
from foundation.config import Settings
from recpipe.console import api, auth, pages, players
from recpipe.console.actions import Actions
from recpipe.console.media import Archive
from storage.ledger import Ledger

SESSION_HOURS = 8


class _SessionInterface(SecureCookieSessionInterface):
    """`Secure` on the cookie whenever the request came over https (directly or through a
    proxy that says so in X-Forwarded-Proto)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


class StrictJSON(DefaultJSONProvider):
    """The API's bodies are strict JSON like everything else recpipe writes: a level that
    does not exist (a silent track's loudness, kept in a run's result) is null, never NaN."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return jsonsafe.dumps(obj, **kwargs)


def create_app(
    settings: Settings | None = None,
    *,
    ledger: Ledger | None = None,
    actions: Actions | None = None,
    secret: str | None = None,
) -> Flask:
    settings = settings or Settings.from_env()
    ledger = ledger or Ledger(settings.database_url)
    # No built-in static route: the console's files are served by `pages.static`, which
    # asks for a session.
    app = Flask("recpipe.console", static_folder=None)
    app.json = StrictJSON(app)
    # Only the scheme: X-Forwarded-For is not trusted (it would let anyone pick the
    # address that sign-in throttling counts).
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=0, x_proto=1, x_host=0)  # type: ignore[method-assign]
    app.session_interface = _SessionInterface()
    app.config.update(
        SECRET_KEY=secret or auth.console_secret(settings),
        SESSION_COOKIE_NAME="recpipe_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=False,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        SESSION_REFRESH_EACH_REQUEST=False,
        # CSRF is checked in `_guard` below: on every POST except those that carry a
        # bearer token (a browser never adds one on its own).
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
        WTF_CSRF_SSL_STRICT=True,
        MAX_CONTENT_LENGTH=64 * 1024,
        RATELIMIT_STORAGE_URI=_limiter_storage(settings),
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_STRATEGY="moving-window",
    )
    csrf = CSRFProtect(app)
    limiter = Limiter(get_remote_address, app=app)
    auth.setup_login(app, ledger)
    archive = Archive(settings.archive_url)
    app.extensions["recpipe_console"] = {
        "settings": settings,
        "ledger": ledger,
        "actions": actions or Actions(settings, ledger),
        "archive": archive,
    }
    # Presigned URLs of an S3 archive: the player loads them, the waveform may fetch them.
    media_origin = f" {archive.origin()}" if archive.origin() else ""

    @app.before_request
    def _guard() -> None:
        g.csp_nonce = secrets.token_urlsafe(18)
        g.principal = auth.identify(ledger)
        # Every form POST needs its CSRF token, the sign-in form too. An API call needs one
        # only when it rides on a signed-in session: one without (a bearer token, or no
        # credential, which is refused 401) is nothing a browser sends on its own.
        by_session = g.principal is not None and g.principal.kind == "user"
        api = request.path.startswith("/api/")
        if request.method not in ("GET", "HEAD", "OPTIONS") and (by_session or not api):
            csrf.protect()

    @app.after_request
    def _headers(response: Response) -> Response:
        nonce = g.get("csp_nonce", "")
        response.headers["Content-Security-Policy"] = "; ".join(
            [
                "default-src 'none'",
                f"script-src 'self' 'nonce-{nonce}'",
                "style-src 'self'",
                "img-src 'self' data:",
                f"media-src 'self'{media_origin}",
                f"connect-src 'self'{media_origin}",
                "form-action 'self'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
            ]
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        if not response.headers.get("Cache-Control"):
            response.headers["Cache-Control"] = "no-store"
        response.vary.add("Cookie")
        return response

    app.jinja_env.globals["csp_nonce"] = lambda: g.get("csp_nonce", "")
    app.jinja_env.globals["principal"] = lambda: g.get("principal")
    app.jinja_env.globals["signed_in"] = lambda: (
        g.get("principal")
        not in (
            None,
            auth.BAD_CREDENTIAL,
        )
    )

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> Any:
        if request.path.startswith("/api/"):
            return jsonify(error=f"CSRF: {exc.description}"), 400
        return render_template("error.html", code=400, message=exc.description), 400

    @app.errorhandler(RateLimitExceeded)
    def _throttled(exc: RateLimitExceeded) -> Any:
        message = "Too many failed sign-ins from here: wait a minute and try again."
        return render_template("error.html", code=429, message=message), 429

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        code = exc.code or 500
        if request.path.startswith("/api/"):
            response = jsonify(error=(exc.name or "error").lower())
        else:
            response = Response(render_template("error.html", code=code, message=exc.name))
        for name, value in exc.get_headers():  # e.g. Allow on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, code

    app.url_map.converters["user_id"] = players.UserIdConverter
    app.register_blueprint(pages.blueprint(limiter))
    app.register_blueprint(api.blueprint())
    return app


def _limiter_storage(settings: Settings) -> str:
    """Redis when the broker is Redis (every console process counts together), else memory."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return settings.broker_url
    return "memory://"
