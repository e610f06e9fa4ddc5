"""What the command groups share: one-line failures, settings, the operator commands' ledger
and broker, and reading their options."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

from foundation.config import ConfigError, Settings
from foundation.queues import BrokerUnavailableError
from storage.domain.states import RecordingState

RECORDING_STATES = RecordingState.ALL
SOURCES = ("gme", "css", "room")
TIME_HELP = "ISO date/time (UTC unless it says) or an age: 30m, 2h, 3d"


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"recpipe: {message}", err=True)
    sys.exit(code)


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn the ledger's and the broker's failures into one line and a non-zero exit."""
    from kombu.exceptions import OperationalError as BrokerOperationalError
    from sqlalchemy.exc import SQLAlchemyError

    from storage.ledger import LedgerUnavailableError

    try:
        yield
    except LedgerUnavailableError as exc:
        if "no such table" in str(exc):  # SQLite's word for an unmigrated ledger
            fail(f"ledger error: {exc} (is the schema current? `recpipe migrate`)")
        fail(f"ledger unreachable: {exc}")
    except SQLAlchemyError as exc:
        fail(f"ledger error: {first_line(exc)} (is the schema current? `recpipe migrate`)")
    except (BrokerUnavailableError, BrokerOperationalError) as exc:
        fail(
            f"broker unreachable: {first_line(exc)} "
            "(a run already recorded is dispatched by beat's sweep once the broker answers)"
        )


def open_ledger(settings: Settings) -> Any:
    from storage.ledger import Ledger

    return Ledger(settings.database_url)


def connect_broker(settings: Settings) -> Any:
    """The Celery app on these settings, after checking that its broker answers, quickly."""
    from tasks.celery import configure

    app = configure(settings)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        scheme = settings.broker_url.split("://")[0]
        raise BrokerUnavailableError(f"{scheme}: {first_line(exc)}") from exc
    return app


def age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def time_option(value: str | None, option: str) -> datetime | None:
    """A --since/--until value as a UTC time; one line and exit 2 if it cannot be read."""
    from recpipe.cli.timespec import BadTimeError, parse_when

    if value is None:
        return None
    try:
        return parse_when(value, datetime.now(UTC), option)
    except BadTimeError as exc:
        fail(str(exc), 2)


def choice_option(value: str | None, option: str, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        fail(f"{option}: {value!r} is not one of {', '.join(choices)}", 2)
    return value


def resolve(ledger: Any, terms: tuple[str, ...]) -> list[str]:
    """Recording ids the terms name (id, GME TaskID, CSS stream or file id), in order;
    one line and exit 1 if any term names nothing."""
    found: list[str] = []
    unknown = []
    for term in terms:
        matches = ledger.find_recordings(term)
        if not matches:
            unknown.append(term)
        found.extend(rid for rid in matches if rid not in found)
    if unknown:
        fail(f"no recording matches {', '.join(map(repr, unknown))}")
    return found
