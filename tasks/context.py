"""What a task needs, built once per process: settings, the ledger and the object stores."""

from __future__ import annotations

import functools

from foundation.config import Settings
from storage.ledger import Ledger
from storage.objectstore import ObjectStore, store_from_url


@functools.cache
def settings() -> Settings:
    return _seeded[-1] if _seeded else Settings.from_env()


@functools.cache
def ledger() -> Ledger:
    return Ledger(settings().database_url)


@functools.cache
def archive_store() -> ObjectStore:
    return store_from_url(settings().archive_url)


@functools.cache
def source_store() -> ObjectStore:
    return store_from_url(settings().gme_source_url)


def reset() -> None:
    """Forget per-process resources (after a fork: connections are not shared)."""
    if ledger.cache_info().currsize:
        ledger().dispose()
    for cached in (settings, ledger, archive_store, source_store):
        cached.cache_clear()


def use(value: Settings) -> None:
    """Adopt settings built elsewhere (an app factory given explicit settings)."""
    reset()
    settings.cache_clear()
    _seeded.clear()
    _seeded.append(value)


_seeded: list[Settings] = []
