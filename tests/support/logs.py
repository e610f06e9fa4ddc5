"""Capturing recpipe's log lines in a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import structlog
from structlog.testing import capture_logs


@contextmanager
def captured_lines(module: ModuleType, name: str) -> Iterator[list[dict[str, Any]]]:
    """The lines `module.log` writes meanwhile. Once recpipe's logging is configured (by an
    earlier test in the same process, possibly more than once), a module's logger keeps the
    processors of its first use, which `capture_logs` alone does not reach: a fresh logger
    of the same name stands in for it while capturing."""
    kept = module.log
    module.log = structlog.get_logger(name)
    try:
        with capture_logs() as lines:
            yield lines
    finally:
        module.log = kept
