"""The downstream notification's body, event type and webhook-id. Pure: a run in, JSON out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from foundation import jsonsafe
from storage.domain import RunState, RunView
from storage.domain.players import ForgetReport
from storage.domain.rooms import ROOM_SOURCE

ARCHIVED = "recording.archived"
FAILED = "recording.failed"
ROOM_ARCHIVED = "room.archived"
ROOM_FAILED = "room.failed"
EXPIRED = "recording.expired"
ROOM_EXPIRED = "room.expired"


def event_type(run: RunView) -> str:
    archived = run.state == RunState.ARCHIVED
    if run.recording.source == ROOM_SOURCE:
        return ROOM_ARCHIVED if archived else ROOM_FAILED
    return ARCHIVED if archived else FAILED


def webhook_id(run: RunView) -> str:
    """Stable for one recording revision and outcome, so receivers can deduplicate."""
    return f"msg_{run.recording_id}_r{run.revision}_{event_type(run).split('.')[1]}"


def recording_object(run: RunView) -> dict[str, Any]:
    rec = run.recording
    obj: dict[str, Any] = {"id": rec.id, "source": rec.source, "revision": run.revision}
    if rec.source == "gme":
        obj["gme"] = dict(rec.identity)
    else:
        # The run records the identity of the files it archived; files that arrived since
        # belong to the next revision.
        obj[rec.source] = dict(run.result.get(rec.source) or rec.details)
    return obj


def room_object(run: RunView) -> dict[str, Any]:
    rec = run.recording
    return {
        "id": rec.id,
        "revision": run.revision,
        "BizID": rec.identity.get("BizID"),
        "RoomID": rec.identity.get("RoomID"),
        "TaskID": str(rec.identity.get("TaskID")),
        "participants": list(run.result.get("participants") or []),
    }


def notification_body(run: RunView) -> dict[str, Any]:
    result = run.result
    if run.recording.source == ROOM_SOURCE:
        archived = run.state == RunState.ARCHIVED
        return {
            "type": event_type(run),
            "room": room_object(run),
            "artifacts": list(result.get("artifacts", [])) if archived else [],
            "manifest": run.manifest_url if archived else None,
            "error": None if archived else (run.error or "unknown error"),
            "speech": list(result.get("speech") or []),
            "timestamp": (run.finished_at or datetime.now(UTC)).isoformat(),
        }
    body = {
        "type": event_type(run),
        "recording": recording_object(run),
        "segments": {
            "included": list(result.get("included", [])),
            "missing": list(result.get("missing", [])),
        },
        "artifacts": list(result.get("artifacts", [])) if run.state == RunState.ARCHIVED else [],
        "manifest": run.manifest_url if run.state == RunState.ARCHIVED else None,
        "error": None if run.state == RunState.ARCHIVED else (run.error or "unknown error"),
        "timestamp": (run.finished_at or datetime.now(UTC)).isoformat(),
    }
    if run.recording.source == "gme":
        # Where each segment sits on the room's clock (docs/reference.md, "Notifications").
        for key in ("timeline", "gaps", "speech"):
            body[key] = list(result.get(key) or [])
    return body


def expired_type(run: RunView) -> str:
    return ROOM_EXPIRED if run.recording.source == ROOM_SOURCE else EXPIRED


def expired_webhook_id(run: RunView) -> str:
    """One per recording: a tombstone is made once."""
    return f"msg_{run.recording_id}_expired"


def expired_body(run: RunView, expired_at: datetime, deleted_objects: int) -> dict[str, Any]:
    """The recording (or room) whose archived media media retention deleted: who it was,
    its last revision, when, and how many objects went. Its ledger row stays, as a
    tombstone (`state` expired)."""
    room = run.recording.source == ROOM_SOURCE
    return {
        "type": expired_type(run),
        ("room" if room else "recording"): room_object(run) if room else recording_object(run),
        "expired_at": expired_at.isoformat(),
        "deleted_objects": deleted_objects,
        "artifacts": [],
        "manifest": None,
        "error": None,
        "timestamp": expired_at.isoformat(),
    }


PLAYER_FORGOTTEN = "player.forgotten"


def forgotten_webhook_id(player: str, erasure_id: int, round_: int, state: str) -> str:
    """One per erasure, round (the player asked again after recording again) and state it
    reached (waiting on a hold, done): the same message sent twice has the same id."""
    return f"msg_{player}_e{erasure_id}_{round_}_{state}"


def forgotten_body(report: ForgetReport, at: datetime) -> dict[str, Any]:
    """`player.forgotten`: the player's keyed hash and what went, never the UserID."""
    return {
        "type": PLAYER_FORGOTTEN,
        "timestamp": at.isoformat(),
        "data": {
            "BizID": report.biz_id,
            "player": report.player,
            "state": report.state,
            "recordings": list(report.recordings),
            "rooms_remixed": list(report.rooms_remixed),
            "rooms_deleted": list(report.rooms_deleted),
            "kept": [{"id": k.id, "reason": k.reason} for k in report.kept],
            "objects": report.objects,
        },
    }


def encode(body: dict[str, Any]) -> str:
    return jsonsafe.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


TRANSCRIPT_READY = "transcript.ready"
TRANSCRIPT_FAILED = "transcript.failed"


def transcript_webhook_id(run: RunView, event: str) -> str:
    """Stable per recording revision and outcome, like the archived notification's."""
    return f"msg_{run.recording_id}_r{run.revision}_{event.replace('.', '_')}"


def transcript_body(
    run: RunView,
    event: str,
    *,
    transcript: dict[str, Any] | None = None,
    flags: list[dict[str, Any]] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """`transcript.ready` (the files, language and a summary, the flags) or
    `transcript.failed` (the error), about the recording or room as its archived
    notification names it."""
    about: dict[str, Any] = (
        {"room": room_object(run)}
        if run.recording.source == ROOM_SOURCE
        else {"recording": recording_object(run)}
    )
    return {
        "type": event,
        **about,
        "manifest": run.manifest_url,
        "transcript": transcript,
        "flags": list(flags or []),
        "error": error,
        "timestamp": datetime.now(UTC).isoformat(),
    }
