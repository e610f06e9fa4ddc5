"""Prometheus plumbing shared by the webhook and the workers.

Both run several processes (the webhook's server processes, Celery's prefork pool), so metrics
use prometheus_client's multiprocess mode: every process writes its samples to files in
`PROMETHEUS_MULTIPROC_DIR` and whoever answers a scrape adds them up. The directory must
be chosen before prometheus_client is first imported (it decides then how values are
stored), so the process that starts the others calls `use_multiprocess_dir` first thing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess_dir(default: Path) -> Path:
    """Adopt `PROMETHEUS_MULTIPROC_DIR` (or `default` when it is unset) and empty it.

    Call it in the parent before any metric is recorded or any child is forked: files left
    by an earlier run would otherwise be added to this one's figures.
    """
    chosen = os.environ.get(ENV)
    path = Path(chosen or default)
    path.mkdir(parents=True, exist_ok=True)
    if not chosen:
        _remove_dead_siblings(path)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[ENV] = str(path)
    return path


def _remove_dead_siblings(path: Path) -> None:
    """Default directories are named `<role>-<pid>`: drop those of processes gone."""
    role, _, _pid = path.name.rpartition("-")
    for other in path.parent.glob(f"{role}-*"):
        pid = other.name.rpartition("-")[2]
        if other != path and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(other, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def multiprocess() -> bool:
    return bool(os.environ.get(ENV))


def mark_process_dead(pid: int) -> None:
    """Forget a finished child's live gauges (counters and histograms are kept)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)


class _Union:
    """Several collectors exposed as one, for a registry made per scrape."""

    def __init__(self, collectors: Iterable[Any]):
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Any]:
        for collector in self.collectors:
            yield from collector.collect()


def registry(*extra: Any) -> Any:
    """A registry for one scrape: every process's samples (or this process's when not in
    multiprocess mode) plus `extra` collectors computed at scrape time."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    scrape = CollectorRegistry(auto_describe=False)
    if multiprocess():
        MultiProcessCollector(scrape)
    else:
        scrape.register(_Union([REGISTRY]))
    if extra:
        scrape.register(_Union(extra))
    return scrape


def render(*extra: Any) -> tuple[bytes, str]:
    """The Prometheus text exposition of `registry(*extra)` and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry(*extra)), CONTENT_TYPE_LATEST
