"""What the ledger hands out: frozen snapshots of its rows, never live database objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class IntakeResult:
    callback_id: int
    recording_id: str
    duplicate: bool


@dataclass(frozen=True)
class SegmentView:
    seq_no: int
    file_name: str
    state: str
    recovered: bool = False
    events: int = 0  # which file events arrived (storage.domain.lifecycle.EVENT_BITS)


@dataclass(frozen=True)
class CssFileView:
    file_id: str
    file_format: str
    start_time: int
    end_time: int
    duration: int
    file_size: int | None
    video_url: str
    # What the file's callback carried for the stream's owner, unchecked: text to show
    # escaped, never to follow (`callback_ext` parsed when it was a JSON object).
    stream_param: str | None = None
    callback_ext: dict[str, Any] | str | None = None


@dataclass(frozen=True)
class RecordingView:
    id: str
    source: str
    state: str
    revision: int
    first_event_at: datetime
    last_event_at: datetime
    settle_due_at: datetime | None
    details: dict[str, Any]
    identity: dict[str, Any]
    segments: tuple[SegmentView, ...] = ()
    error: str | None = None
    current_run_id: str | None = None
    created_at: datetime | None = None
    files: tuple[CssFileView, ...] = ()
    stopped_at: datetime | None = None  # an operator stopped its GME task
    tombstoned_at: datetime | None = None  # it became expired or forgotten


@dataclass(frozen=True)
class RunView:
    id: str
    recording_id: str
    revision: int
    state: str
    attempts: int
    recording: RecordingView
    steps: list[Any] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    manifest_url: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Times the sweep took the run over from a lost worker (`attempts` counts retries too).
    takeovers: int = 0
    # Times the sweep sent the queued run again since a worker last took it.
    requeues: int = 0


@dataclass(frozen=True)
class RunHolder:
    """Who holds a running run: a worker, and which attempt of which task runs there
    (the task's id, its retry count). Stored as the run's `worker`, so that a task's retry
    tells its own earlier attempt (the same task, fewer retries: over, whatever its
    heartbeat says) from a live worker (another task, or another delivery of this same
    attempt)."""

    worker: str
    task_id: str
    retries: int

    def __str__(self) -> str:
        return f"{self.worker} task {self.task_id}#{self.retries}"

    @classmethod
    def parse(cls, text: str | None) -> RunHolder | None:
        worker, task, attempt = (text or "").rpartition(" task ")
        task_id, _, retries = attempt.rpartition("#")
        if not (task and task_id and retries.isdigit()):
            return None
        return cls(worker, task_id, int(retries))

    def follows(self, held_by: str | None) -> bool:
        """The run is held by an earlier attempt of this same task: take it back."""
        earlier = RunHolder.parse(held_by)
        if earlier is None:
            return False
        return earlier.task_id == self.task_id and earlier.retries < self.retries


@dataclass(frozen=True)
class StaleRun:
    """A run the sweep must look at: queued but not (or long ago) dispatched, or running
    with no heartbeat for the stuck time (`worker_lost`)."""

    id: str
    worker_lost: bool
    takeovers: int
    requeues: int = 0


@dataclass(frozen=True)
class StoredCallback:
    id: int
    provider: str
    recording_id: str | None
    event_type: int
    received_at: datetime
    body: str
    headers: dict[str, Any]
    dispatched_at: datetime | None


@dataclass(frozen=True)
class NotificationView:
    """One downstream message to one URL, and how its delivery stands: about a run's
    outcome, or (`run_id` None) about a player's erasure (`erasure_id`)."""

    id: int
    run_id: str | None
    url: str
    event_type: str
    webhook_id: str
    body: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    erasure_id: int | None = None


@dataclass(frozen=True)
class DeliveryAttemptView:
    id: int
    notification_id: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
