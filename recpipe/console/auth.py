"""Who is asking: people by a signed session (Flask-Login), programs by a bearer token.

Passwords are hashed with argon2id (argon2-cffi); tokens are 256 random bits, kept in the
ledger only as their SHA-256 (a token is not a password: it cannot be guessed, so a fast
hash is enough and lets the ledger find it by its hash). A session is kept on the server:
the signed cookie carries a random key whose SHA-256 names a row of the ledger, so signing
out, `recpipe users sessions NAME --revoke`, a new password or removing the user ends it at
once, whoever holds a copy of the cookie. A session is also bound to the address the
connection came from (never one a client names in X-Forwarded-For) and the browser's
User-Agent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import g, jsonify, redirect, render_template, request, session, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

from foundation.config import ConfigError, Settings
from foundation.private import kept_secret
from storage.domain import ConsoleUserView
from storage.ledger import utcnow

TOKEN_PREFIX = "rpc_"  # noqa: S105 (a marker, not a secret)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 12

_hasher = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs what a wrong password costs.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class BadNameError(ValueError):
    """A user or token name that is not 1-64 letters, digits or . _ @ -."""

    def __init__(self, name: str):
        super().__init__(
            f"{name!r} is not a name: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise BadNameError(name)
    return name


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


CONSOLE_SECRET_FILE = "console-secret"  # noqa: S105 (a file name)


def console_secret(settings: Settings) -> str:
    """RECPIPE_CONSOLE_SECRET, or on the embedded default (a SQLite ledger) a random one
    kept in the data directory (mode 0600), made on first use."""
    if settings.console_secret:
        return settings.console_secret
    if not settings.database_url.startswith("sqlite"):
        raise ConfigError(
            "RECPIPE_CONSOLE_SECRET: required by `recpipe console` outside the embedded "
            "default (use at least 32 random characters)"
        )
    secret = kept_secret(settings.data_dir, CONSOLE_SECRET_FILE)
    if secret is None:
        raise ConfigError(
            f"{settings.data_dir / CONSOLE_SECRET_FILE}: the console secret kept there is too"
            " short; remove it"
        )
    return secret


class SessionUser(UserMixin):
    """A console user as Flask-Login holds it for one request, with the key of the session
    they are signed in by."""

    def __init__(self, view: ConsoleUserView, key: str):
        self.view = view
        self.key = key

    def get_id(self) -> str:
        return self.key


def client_identifier() -> str:
    """What a session is bound to: the connection's own address (ProxyFix trusts no
    X-Forwarded-For, so this is the peer) and the User-Agent."""
    agent = request.headers.get("User-Agent", "")
    return hashlib.sha256(f"{request.remote_addr}|{agent}".encode()).hexdigest()


def begin_session(ledger: Any, user: ConsoleUserView, lifetime: timedelta) -> None:
    """Sign the user in on a new server-side session (after clearing whatever the cookie
    held: nothing from before signing in carries over)."""
    key = secrets.token_urlsafe(32)
    session.clear()
    started = ledger.start_session(
        user.name,
        hash_token(key),
        now=utcnow(),
        lifetime=lifetime,
        address=request.remote_addr,
        agent=request.headers.get("User-Agent"),
    )
    if started is not None:
        login_user(SessionUser(user, key))
        session.permanent = True


def end_session(ledger: Any) -> None:
    """Sign out: the session's row is deleted, so a copy of the cookie names nothing."""
    if current_user.is_authenticated:
        ledger.end_session(hash_token(current_user.key))
    logout_user()
    session.clear()


@dataclass(frozen=True)
class Principal:
    """Whoever this request acts for."""

    name: str
    kind: str  # "user" or "token"
    can_operate: bool
    can_admin: bool = False

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def role(self) -> str:
        """What the console calls what this principal may do."""
        if self.can_admin:
            return "admin"
        return "operator" if self.can_operate else "viewer"


def setup_login(app: Any, ledger: Any) -> LoginManager:
    manager = LoginManager(app)
    # Checked in `_load` instead: Flask-Login's own check reads X-Forwarded-For, and its
    # "strong" mode lets a permanent session through from anywhere.
    manager.session_protection = None
    manager._session_identifier_generator = client_identifier  # what login_user puts in `_id`
    manager.login_view = "pages.login"

    @manager.user_loader
    def _load(key: str) -> SessionUser | None:
        if not hmac.compare_digest(str(session.get("_id", "")), client_identifier()):
            return None
        user = ledger.session_user(hash_token(key), now=utcnow()) if key else None
        return SessionUser(user, key) if user is not None else None

    return manager


BAD_CREDENTIAL = Principal("", "invalid", False)


def identify(ledger: Any) -> Principal | None:
    """The bearer token's principal if an Authorization header is sent (BAD_CREDENTIAL if
    it is not a valid one: no falling back to the session), else the session's user."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return BAD_CREDENTIAL
        found = ledger.token_by_hash(hash_token(token))
        if found is None:
            return BAD_CREDENTIAL
        return Principal(found.name, "token", found.can_operate, found.can_admin)
    if current_user.is_authenticated:
        view = current_user.view
        return Principal(view.name, "user", view.can_operate, view.can_admin)
    return None


View = TypeVar("View", bound=Callable[..., Any])


def needs(permission: str, *, api: bool) -> Callable[[View], View]:
    """Read (`read`), act (`operate`) or hold (`admin`): 401 without a valid credential (a
    page redirects to /login), 403 when the role or scope does not allow it."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            who: Principal | None = g.principal
            if who is None or who is BAD_CREDENTIAL:
                if api or who is BAD_CREDENTIAL:
                    response = jsonify(error="authentication required")
                    response.headers["WWW-Authenticate"] = 'Bearer realm="recpipe"'
                    return response, 401
                return redirect(url_for("pages.login", next=safe_next(request.full_path)))
            if permission == "operate" and not who.can_operate:
                if api:
                    return jsonify(error="this needs an operator or an operate token"), 403
                return render_template("refused.html", who=who, needed="an operator"), 403
            if permission == "admin" and not who.can_admin:
                if api:
                    return jsonify(error="this needs an admin or an admin token"), 403
                return render_template("refused.html", who=who, needed="an admin"), 403
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def safe_next(target: str | None) -> str:
    """Only a path on this site: no scheme, no host, no `//` or backslash tricks."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return "/"
    return target.removesuffix("?")
