"""The states a recording, a segment, a run and a notification can be in."""

from __future__ import annotations


class RecordingState:
    COLLECTING = "collecting"
    PROCESSING = "processing"
    ARCHIVED = "archived"
    FAILED = "failed"
    TERMINAL = (ARCHIVED, FAILED)
    # Tombstones: the media is gone (by age, or the player asked to be forgotten); the row
    # stays so a vendor's retry of an old callback finds it and changes nothing.
    EXPIRED = "expired"
    FORGOTTEN = "forgotten"
    TOMBSTONES = (EXPIRED, FORGOTTEN)
    ALL = (COLLECTING, PROCESSING, ARCHIVED, FAILED, EXPIRED, FORGOTTEN)


class SegmentState:
    STARTED = "started"
    COMPLETED = "completed"
    UPLOADED = "uploaded"
    ORDER = {STARTED: 1, COMPLETED: 2, UPLOADED: 3}  # noqa: RUF012

    @classmethod
    def after_event(cls, event_type: int) -> str:
        """The state a GME file event (1 started, 2 completed, 3 uploaded) moves a segment to."""
        return {1: cls.STARTED, 2: cls.COMPLETED}.get(event_type, cls.UPLOADED)


class RunState:
    QUEUED = "queued"
    RUNNING = "running"
    ARCHIVED = "archived"
    FAILED = "failed"
    TERMINAL = (ARCHIVED, FAILED)


class NotificationState:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DISABLED = "disabled"
