"""`recpipe console` (the operator console and the HTTP API, a process of its own), and
`recpipe users` / `recpipe tokens`: who may use it."""

from __future__ import annotations

import getpass
import sys
from typing import Any

import click

from foundation.config import ConfigError
from recpipe.cli.common import fail, load_settings, operator_errors
from storage.domain.console import ROLES, SCOPES


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int, help="threads serving requests")
def console(host: str, port: int, threads: int) -> None:
    """Run the operator console and the HTTP API (never part of the public webhook).

    It runs on gunicorn, not on the webhook's buffering front: the console streams media
    (with Range) that is far larger than a callback's answer."""
    from gunicorn.app.base import BaseApplication

    from foundation import logs
    from recpipe import serving
    from recpipe.console import auth
    from recpipe.console.app import create_app
    from storage.ledger import Ledger, LedgerUnavailableError

    settings = load_settings()
    try:
        secret = auth.console_secret(settings)
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    try:  # a port in use is one line, not gunicorn's five seconds of retries
        serving.listen(host, port).close()
    except serving.ListenError as exc:
        fail(str(exc))
    logs.configure(settings.log_level, secrets=[*logs.secrets_of(settings), secret])
    ledger = Ledger(settings.database_url)
    try:
        ledger.migrate()
    except LedgerUnavailableError as exc:
        fail(f"ledger unreachable: {exc}")
    if not ledger.console_users() and not ledger.api_tokens():
        click.echo(
            "recpipe: nobody can sign in yet: `recpipe users add NAME --role operator`",
            err=True,
        )
    click.echo(f"recpipe: console on http://{host}:{port}", err=True)
    ledger.dispose()  # no connection of this process is carried into gunicorn's worker

    class Server(BaseApplication):
        def load_config(self) -> None:
            # One process: sign-in throttling counts in memory unless the broker is Redis.
            options = {
                "bind": f"{host}:{port}",
                "workers": 1,
                "threads": threads,
                "worker_class": "gthread",
                "accesslog": None,
                "timeout": 120,
                "graceful_timeout": 20,
                "keepalive": 5,
                "control_socket_disable": True,
                "limit_request_line": 8190,  # gunicorn's most: a query of the API fits
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings, ledger=ledger, secret=secret)

    Server().run()


def _ledger() -> Any:
    from storage.ledger import Ledger

    ledger = Ledger(load_settings().database_url)
    with operator_errors():
        ledger.migrate()
    return ledger


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _name(name: str) -> str:
    from recpipe.console.auth import BadNameError, check_name

    try:
        return check_name(name)
    except BadNameError as exc:
        fail(str(exc), 2)


@click.group()
def users() -> None:
    """People who sign in to the console: viewers read, operators also act, admins also
    hold and release recordings."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def users_add(name: str, role: str, password_stdin: bool) -> None:
    """Add a user (the password is asked for, or read from standard input)."""
    from recpipe.console.auth import hash_password
    from storage.ledger.console import DuplicateNameError

    _name(name)
    password = _new_password(password_stdin)
    ledger = _ledger()
    with operator_errors():
        try:
            ledger.add_user(name, role, hash_password(password))
        except DuplicateNameError as exc:
            fail(str(exc))
        ledger.record_action(cli_actor(), "user.add", target=name, detail={"role": role})
    click.echo(f"added {role} {name}")


@users.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def users_password(name: str, password_stdin: bool) -> None:
    """Set a user's password; their sessions end at once."""
    from recpipe.console.auth import hash_password

    password = _new_password(password_stdin)
    ledger = _ledger()
    with operator_errors():
        if not ledger.set_password_hash(_name(name), hash_password(password)):
            fail(f"no user named {name!r}")
        ledger.record_action(cli_actor(), "user.password", target=name)
    click.echo(f"password of {name} set")


def _new_password(from_stdin: bool) -> str:
    from recpipe.console.auth import MIN_PASSWORD

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        fail(f"the password needs at least {MIN_PASSWORD} characters", 2)
    return password


@users.command("list")
def users_list() -> None:
    """Every user and their role."""
    ledger = _ledger()
    with operator_errors():
        for user in ledger.console_users():
            click.echo(f"{user.name}\t{user.role}\t{user.created_at:%Y-%m-%d %H:%M}Z")


@users.command("remove")
@click.argument("name")
def users_remove(name: str) -> None:
    """Remove a user; their sessions end at once."""
    ledger = _ledger()
    with operator_errors():
        if not ledger.remove_user(name):
            fail(f"no user named {name!r}")
        ledger.record_action(cli_actor(), "user.remove", target=name)
    click.echo(f"removed {name}")


@users.command("sessions")
@click.argument("name")
@click.option(
    "--revoke",
    "revoke",
    is_flag=False,
    flag_value="all",
    default=None,
    metavar="[ID]",
    help="end the user's sessions (or only the one of that id): refused from the next request",
)
def users_sessions(name: str, revoke: str | None) -> None:
    """List a user's sessions (signed-in browsers), or end them with --revoke."""
    from storage.ledger import utcnow

    _name(name)
    ledger = _ledger()
    with operator_errors():
        if ledger.console_user(name) is None:
            fail(f"no user named {name!r}")
        if revoke is None:
            for s in ledger.console_sessions(name, now=utcnow()):
                click.echo(
                    f"{s.id}\t{s.created_at:%Y-%m-%d %H:%M}Z\t{s.seen_at:%Y-%m-%d %H:%M}Z\t"
                    f"{s.address or '-'}\t{_printable(s.agent or '-')}"
                )
            return
        if revoke != "all" and not revoke.isdigit():
            fail(f"--revoke takes a session id from `recpipe users sessions {name}`", 2)
        ended = ledger.revoke_sessions(name, None if revoke == "all" else int(revoke))
        if revoke != "all" and not ended:
            fail(f"{name} has no session {revoke}")
        ledger.record_action(cli_actor(), "session.revoke", target=name,
                             detail={"sessions": ended})  # fmt: skip
    click.echo(f"ended {ended} session{'' if ended == 1 else 's'} of {name}")


def _printable(text: str) -> str:
    """A browser's User-Agent as one line of plain characters (it is the browser's text)."""
    return "".join(c if c.isprintable() and c != "\t" else "?" for c in text)[:120]


@click.group()
def tokens() -> None:
    """API tokens for programs: `read` reads, `operate` also acts, `admin` also holds."""


@tokens.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES), required=True)
def tokens_create(name: str, scope: str) -> None:
    """Make a token; it is printed once, as the last line, and kept only as a hash."""
    from recpipe.console.auth import hash_token, new_token
    from storage.ledger.console import DuplicateNameError

    _name(name)
    token = new_token()
    ledger = _ledger()
    with operator_errors():
        try:
            ledger.add_token(name, scope, hash_token(token))
        except DuplicateNameError as exc:
            fail(str(exc))
        ledger.record_action(cli_actor(), "token.create", target=name, detail={"scope": scope})
    click.echo(f"token {name} ({scope}); shown once, keep it secret:")
    click.echo(token)


@tokens.command("list")
def tokens_list() -> None:
    """Every token's name, scope and last use (never the token)."""
    ledger = _ledger()
    with operator_errors():
        for t in ledger.api_tokens():
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}Z" if t.last_used_at else "never used"
            click.echo(f"{t.name}\t{t.scope}\t{used}")


@tokens.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke a token: it is refused from the next request on."""
    ledger = _ledger()
    with operator_errors():
        if not ledger.revoke_token(name):
            fail(f"no token named {name!r}")
        ledger.record_action(cli_actor(), "token.revoke", target=name)
    click.echo(f"revoked {name}")
