"""Media retention: the archived media of recordings and rooms whose newest run ended more
than RECPIPE_MEDIA_RETENTION_DAYS ago is deleted, a bounded batch at a time, by beat's
hourly `recpipe.expire_media` (and `recpipe prune --media` by hand).

Each recording becomes a tombstone first (`state` expired, on its locked row, so a hold
placed meanwhile keeps it), then its objects are deleted (every version on a versioned
bucket), then `recording.expired` is notified. A pass that stops half-way (a crash, the
store away) leaves tombstones whose objects are not all gone; the next pass finishes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from storage.domain import RecordingState
from tasks.archive import archive_prefix
from tasks.notify import outbox
from tasks.services import Services

log = structlog.get_logger("recpipe.expiry")


@dataclass
class ExpiryReport:
    expired: list[str] = field(default_factory=list)  # made tombstones in this pass
    purged: list[str] = field(default_factory=list)  # their objects all deleted
    objects: int = 0
    notifications: list[int] = field(default_factory=list)


def expire_media(
    svc: Services,
    *,
    before: datetime,
    now: datetime,
    limit: int,
    deliver: Callable[[int], object],
) -> ExpiryReport:
    """Expire at most `limit` recordings whose media may go by `before`, and finish the
    tombstones that still have objects; `deliver` sends each notification made."""
    report = ExpiryReport()
    for recording_id in svc.ledger.expirable_media(before, limit):
        if svc.ledger.expire(recording_id, before, now) is not None:
            report.expired.append(recording_id)
    for recording_id in svc.ledger.tombstones_to_purge(limit):
        report.objects += purge(svc, recording_id, now, report)
    for notification_id in report.notifications:
        deliver(notification_id)
    return report


def purge(svc: Services, recording_id: str, now: datetime, report: ExpiryReport) -> int:
    """Delete every archived object of the tombstone's recording, note it, and make its
    notification; the number of objects deleted."""
    recording = svc.ledger.recording(recording_id)
    if recording is None or recording.current_run_id is None:
        return 0
    run = svc.ledger.run(recording.current_run_id)
    if run is None:
        return 0
    deleted = svc.archive.purge(archive_prefix(run))
    svc.ledger.media_purged(recording_id, now)
    report.purged.append(recording_id)
    if recording.state == RecordingState.EXPIRED:
        report.notifications += outbox.enqueue_expired(
            svc.ledger, run, svc.settings.notify_urls, now, deleted
        )
    log.info("media.expired", recording_id=recording_id, objects=deleted)
    return deleted
