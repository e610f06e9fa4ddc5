"""What the chains' core functions are given (settings, the ledger, the stores, the tools)
and the log context they share. Each core function is safe to run twice: it re-reads
state by id and acts only when the state still calls for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from structlog.contextvars import bind_contextvars

from foundation.config import Settings
from storage.ledger import Ledger, RecordingView
from storage.objectstore import ObjectStore
from tasks.media.tools import Tools


@dataclass(frozen=True)
class Services:
    settings: Settings
    ledger: Ledger
    source: ObjectStore
    archive: ObjectStore
    tools: Tools = field(default_factory=Tools)


def bind_recording(recording: RecordingView, **more: Any) -> None:
    """Put the recording into the context of every later log line of this task (Celery's
    task_prerun clears it for the next task; see tasks.celery)."""
    bind_contextvars(recording_id=recording.id, provider=recording.source, **more)
