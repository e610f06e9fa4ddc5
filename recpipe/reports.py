"""A recording as `recpipe status ID --json` prints it and the console's API serves it
(`GET /api/v1/recordings/{id}`, and a room's also as `GET /api/v1/rooms/{id}`): one
function, so they cannot drift apart."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def recording_summary(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "source": r.source,
        "state": r.state,
        "revision": r.revision,
        "identity": r.identity or r.details,
        "created_at": _iso(r.created_at),
        "last_event_at": r.last_event_at.isoformat(),
        "settle_due_at": _iso(r.settle_due_at),
        "error": r.error,
    }


def recording_detail(ledger: Any, recording_id: str) -> dict[str, Any]:
    recording = ledger.recording(recording_id)
    detail = recording_summary(recording)
    detail["current_run_id"] = recording.current_run_id
    detail["tombstoned_at"] = _iso(recording.tombstoned_at)
    detail["notification"] = ledger.notification_summary([recording_id]).get(recording_id)
    held = ledger.hold_on(recording_id)
    detail["hold"] = (
        None
        if held is None
        else {"reason": held.reason, "held_by": held.held_by, "held_at": _iso(held.held_at)}
    )
    if recording.source == "room":
        detail["members"] = [
            {"UserID": m.user_id, "recording_id": m.recording_id, "state": m.state,
             "revision": m.revision}
            for m in ledger.room_members(recording_id)
        ]  # fmt: skip
        detail.update(_mixed(ledger.runs_for(recording_id)))
    elif recording.source == "gme":
        room = ledger.room_of(recording_id)
        detail["room"] = room if room and ledger.room(room) else None
    detail["segments"] = [
        {"seq_no": s.seq_no, "state": s.state, "file_name": s.file_name, "recovered": s.recovered}
        for s in recording.segments
    ]
    if recording.source == "css":
        detail["files"] = [
            {"file_id": f.file_id, "file_format": f.file_format, "start_time": f.start_time,
             "end_time": f.end_time, "duration": f.duration, "file_size": f.file_size,
             "video_url": f.video_url, "stream_param": f.stream_param,
             "callback_ext": f.callback_ext}
            for f in recording.files
        ]  # fmt: skip
    detail["runs"] = [
        {
            "id": r.id,
            "revision": r.revision,
            "state": r.state,
            "from_step": r.result.get("from_step"),
            "attempts": r.attempts,
            "started_at": _iso(r.started_at),
            "finished_at": _iso(r.finished_at),
            "steps": r.steps,
            "error": r.error,
            "manifest": r.manifest_url,
            "artifacts": r.result.get("artifacts", []),
            "participants": r.result.get("participants", []),
            "notifications": [
                {
                    "id": n.id,
                    "url": n.url,
                    "type": n.event_type,
                    "webhook_id": n.webhook_id,
                    "state": n.state,
                    "attempts": n.attempts,
                    "last_status": n.last_status,
                    "last_error": n.last_error,
                    "delivery_attempts": [
                        {
                            "at": _iso(a.at),
                            "status": a.status_code,
                            "error": a.error,
                            "ms": a.duration_ms,
                        }
                        for a in ledger.delivery_attempts(n.id)
                    ],
                }
                for n in ledger.notifications_for_run(r.id)
            ],
        }
        for r in ledger.runs_for(recording_id)
    ]
    return detail


def _mixed(runs: list[Any]) -> dict[str, Any]:
    """A room's newest archived revision: who is in it where on the room's clock
    (`participants`: UserID, recording_id, revision, offset_s, duration_s), its outputs
    and its manifest. Empty (and null) before the first mix."""
    archived = [r for r in runs if r.state == "archived"]
    newest = max(archived, key=lambda r: r.revision) if archived else None
    return {
        "mixed_revision": newest.revision if newest else None,
        "participants": list(newest.result.get("participants") or []) if newest else [],
        "artifacts": list(newest.result.get("artifacts") or []) if newest else [],
        "manifest": newest.manifest_url if newest else None,
    }
