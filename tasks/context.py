"""What a task needs, built once per process: settings, the ledger and the object stores."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import structlog

from foundation.config import ConfigError, Settings
from storage.ledger import Ledger
from storage.objectstore import ObjectStore, store_from_url

if TYPE_CHECKING:
    from tasks.transcripts.engines import Engine

log = structlog.get_logger("recpipe.tasks")

T = TypeVar("T")


class _Once(Generic[T]):
    """A value built on first use and kept; a thread asking while another builds it waits
    for that one (a pool process's first task may come while `warm` is at work)."""

    def __init__(self, build: Callable[[], T]):
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None

    def __call__(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    @property
    def built(self) -> bool:
        return self._value is not None

    def clear(self) -> None:
        with self._lock:
            self._value = None


settings: _Once[Settings] = _Once(lambda: _seeded[-1] if _seeded else Settings.from_env())
ledger: _Once[Ledger] = _Once(lambda: Ledger(settings().database_url))
archive_store: _Once[ObjectStore] = _Once(lambda: store_from_url(settings().archive_url))
source_store: _Once[ObjectStore] = _Once(lambda: store_from_url(settings().gme_source_url))


def _make_engine() -> Engine:
    from tasks.transcripts.engines import make_engine

    made = make_engine(settings())
    if made is None:
        raise ConfigError("RECPIPE_TRANSCRIBE is off: no engine to transcribe with")
    return made


# The speech engine: its model is loaded by the first transcription of a pool process.
engine: _Once[Engine] = _Once(_make_engine)


def reset() -> None:
    """Forget per-process resources (after a fork: connections are not shared)."""
    if ledger.built:
        ledger().dispose()
    for cached in (settings, ledger, archive_store, source_store, engine):
        cached.clear()


def warm() -> None:
    """Build what a task needs before the first task asks: the object stores' clients
    (boto3 builds a client from its data files: a good part of a second of CPU) and the
    ledger's engine with one connection. Nothing here is needed: whatever fails is logged
    and left to the first task, which meets it as it would have (a ledger down at start
    is then retried like any other outage)."""
    for what, build in (
        ("source", source_store),
        ("archive", archive_store),
        ("ledger", lambda: ledger().ping()),
    ):
        try:
            build()
        except Exception as exc:  # a warm-up only: the task that needs it will say why
            log.warning("worker.warm_failed", what=what, error=str(exc))


def warm_in_background() -> threading.Thread:
    """`warm` on a thread of its own, so that a pool process reports ready at once (Celery
    kills one that is not up within a few seconds, and a ledger that does not answer can
    take longer than that to refuse)."""
    thread = threading.Thread(target=warm, name="recpipe-warm", daemon=True)
    thread.start()
    return thread


def use(value: Settings) -> None:
    """Adopt settings built elsewhere (an app factory given explicit settings)."""
    reset()
    _seeded.clear()
    _seeded.append(value)


_seeded: list[Settings] = []
