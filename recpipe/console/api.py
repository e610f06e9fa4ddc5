"""The HTTP API (`/api/v1`, JSON in and out), as its OpenAPI document describes it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from foundation.queues import BrokerUnavailableError
from recpipe.console import openapi
from recpipe.console.actions import TASK_ID, Outcome
from recpipe.console.auth import needs
from recpipe.console.media import download_name
from recpipe.reports import recording_detail, recording_summary
from storage.domain import has_control_characters
from storage.domain.console import MAX_HOLD_REASON, hold_reason
from storage.domain.states import RecordingState
from storage.ledger.console import BadCursorError

RECORDING_STATES = RecordingState.ALL
SOURCES = ("gme", "css", "room")
MAX_Q = 256


class BadParameterError(ValueError):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


def console() -> dict[str, Any]:
    found: dict[str, Any] = current_app.extensions["recpipe_console"]
    return found


def bad_request(message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify(error=message, **extra), 400


def _when(args: Any, name: str, now: datetime) -> datetime | None:
    """`since` or `until`: an ISO date/time or an age (see `recpipe.cli.timespec`)."""
    from recpipe.cli.timespec import BadTimeError, parse_when

    raw = args.get(name) or ""
    if len(raw) > 64:
        raise BadParameterError(name, "at most 64 characters")
    if not raw:
        return None
    try:
        return parse_when(raw, now, name)
    except (BadTimeError, OverflowError, ValueError) as exc:
        raise BadParameterError(name, str(exc)) from None


def list_filters(args: Any) -> dict[str, Any]:
    """state, source, since, until, q, cursor and limit from a query string, checked; the pages use
    the same reading. Raises BadParameterError naming the parameter."""
    state = args.get("state") or None
    if state is not None and state not in RECORDING_STATES:
        raise BadParameterError("state", f"one of {', '.join(RECORDING_STATES)}")
    source = args.get("source") or None
    if source is not None and source not in SOURCES:
        raise BadParameterError("source", f"one of {', '.join(SOURCES)}")
    now = datetime.now(UTC)
    since, until = (_when(args, name, now) for name in ("since", "until"))
    q = (args.get("q") or "").strip() or None
    if q is not None and (len(q) > MAX_Q or any(ord(c) < 32 for c in q)):
        raise BadParameterError("q", f"at most {MAX_Q} printable characters")
    raw_limit = args.get("limit") or "50"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
        raise BadParameterError("limit", "a whole number from 1 to 200")
    cursor = args.get("cursor") or None
    if cursor is not None and len(cursor) > 256:
        raise BadParameterError("cursor", "not one this API handed out")
    return {
        "state": state,
        "source": source,
        "since": since,
        "until": until,
        "q": q,
        "cursor": cursor,
        "limit": int(raw_limit),
    }


def answer(outcome: Outcome) -> tuple[Response, int]:
    if outcome.status == "missing":
        return jsonify(error=outcome.detail), 404
    if outcome.status == "conflict":
        return jsonify(error=outcome.detail, **outcome.facts), 409
    if outcome.status == "done":
        return jsonify(status="done", detail=outcome.detail, **outcome.facts), 200
    return jsonify(status="accepted", detail=outcome.detail, **outcome.facts), 202


def blueprint() -> Blueprint:
    bp = Blueprint("api", __name__, url_prefix="/api/v1")

    @bp.get("/openapi.json")
    def openapi_document() -> Response:
        return jsonify(openapi.document())

    @bp.get("/recordings")
    @needs("read", api=True)
    def recordings() -> Any:
        try:
            filters = list_filters(request.args)
            page = console()["ledger"].recording_page(**filters)
        except BadParameterError as exc:
            return bad_request(str(exc), parameter=exc.name)
        except BadCursorError as exc:
            return bad_request(str(exc), parameter="cursor")
        ledger = console()["ledger"]
        notified = ledger.notification_summary([r.id for r in page.recordings])
        return jsonify(
            recordings=[
                {**recording_summary(r), "notification": notified.get(r.id)}
                for r in page.recordings
            ],
            next=page.next,
        )

    @bp.get("/recordings/<recording_id>")
    @needs("read", api=True)
    def recording(recording_id: str) -> Any:
        ledger = console()["ledger"]
        if ledger.recording(recording_id) is None:
            return jsonify(error="no such recording"), 404
        return jsonify(recording_detail(ledger, recording_id))

    @bp.get("/rooms/<room_id>")
    @needs("read", api=True)
    def room(room_id: str) -> Any:
        ledger = console()["ledger"]
        if ledger.room(room_id) is None:
            return jsonify(error="no such room"), 404
        return jsonify(recording_detail(ledger, room_id))

    @bp.post("/recordings/<recording_id>/reprocess")
    @needs("operate", api=True)
    def reprocess(recording_id: str) -> Any:
        from tasks.reprocessing import STEPS

        body = request.get_json(silent=True) if request.content_length else {}
        if not isinstance(body, dict):
            return bad_request("the body must be a JSON object")
        from_step = body.get("from_step", "fetch")
        if from_step not in STEPS:
            return bad_request(f"from_step: one of {', '.join(STEPS)}", field="from_step")
        return _act(lambda a: a.reprocess(g.principal.actor, recording_id, from_step))

    @bp.post("/recordings/<recording_id>/redeliver")
    @needs("operate", api=True)
    def redeliver(recording_id: str) -> Any:
        body = request.get_json(silent=True) if request.content_length else {}
        if not isinstance(body, dict):
            return bad_request("the body must be a JSON object")
        include_disabled = body.get("include_disabled", False)
        if not isinstance(include_disabled, bool):
            return bad_request("include_disabled: true or false", field="include_disabled")
        return _act(lambda a: a.redeliver(g.principal.actor, recording_id, include_disabled))

    @bp.post("/gme/tasks/<task_id>/stop")
    @needs("operate", api=True)
    def stop_gme_task(task_id: str) -> Any:
        if not TASK_ID.match(task_id):
            return bad_request("TaskID: digits only (at most 32)", field="TaskID")
        return _act(lambda a: a.stop_gme_task(g.principal.actor, task_id))

    @bp.get("/search")
    @needs("read", api=True)
    def search() -> Any:
        try:
            q, cursor = search_query(request.args)
            found = console()["ledger"].search_transcripts(q, SEARCH_PAGE, cursor)
        except BadParameterError as exc:
            return bad_request(str(exc), parameter=exc.name)
        except BadCursorError as exc:
            return bad_request(str(exc), parameter="cursor")
        return jsonify(
            hits=[{**h.as_json(), "player": player_link(h)} for h in found.hits], next=found.next
        )

    @bp.get("/flags")
    @needs("read", api=True)
    def flags() -> Any:
        reviewed = {"true": True, "false": False, "": None}.get(request.args.get("reviewed", ""))
        if request.args.get("reviewed", "") not in ("true", "false", ""):
            return bad_request("reviewed: true or false", parameter="reviewed")
        found = console()["ledger"].transcript_flags(reviewed=reviewed)
        return jsonify(flags=[{**f.as_json(), "player": cue_link(f)} for f in found])

    @bp.post("/flags/<int:flag_id>/review")
    @needs("operate", api=True)
    def review_flag(flag_id: int) -> Any:
        from storage.ledger import utcnow

        found = console()["ledger"].review_flag(flag_id, g.principal.actor, utcnow())
        if found is None:
            return jsonify(error="no such flag"), 404
        return jsonify(found.as_json())

    @bp.get("/recordings/<recording_id>/transcript")
    @needs("read", api=True)
    def transcript(recording_id: str) -> Any:
        found = console()["ledger"].transcript_of(recording_id)
        if found is None:
            return jsonify(error="no transcript"), 404
        return jsonify(
            state=found.state, revision=found.revision, error=found.error,
            json=found.json_url, vtt=found.vtt_url, summary=found.summary,
            document=found.document or None,
        )  # fmt: skip

    @bp.post("/recordings/<recording_id>/hold")
    @needs("admin", api=True)
    def hold(recording_id: str) -> Any:
        return _hold(recording_id)

    @bp.post("/rooms/<room_id>/hold")
    @needs("admin", api=True)
    def hold_room(room_id: str) -> Any:
        return _hold(room_id)

    @bp.delete("/recordings/<recording_id>/hold")
    @needs("admin", api=True)
    def release(recording_id: str) -> Any:
        return _act(lambda a: a.release(g.principal.actor, recording_id))

    @bp.delete("/rooms/<room_id>/hold")
    @needs("admin", api=True)
    def release_room(room_id: str) -> Any:
        return _act(lambda a: a.release(g.principal.actor, room_id))

    @bp.post("/players/<biz_id>/<path:user_id>/forget")
    @needs("admin", api=True)
    def forget(biz_id: str, user_id: str) -> Any:
        return _forget(biz_id, user_id)

    @bp.get("/holds")
    @needs("read", api=True)
    def holds() -> Any:
        return jsonify(
            holds=[
                {
                    "id": h.recording_id,
                    "source": h.source,
                    "state": h.state,
                    "reason": h.reason,
                    "held_by": h.held_by,
                    "held_at": h.held_at.isoformat(),
                }
                for h in console()["ledger"].holds()
            ]
        )

    @bp.get("/recordings/<recording_id>/artifacts/<fmt>")
    @needs("read", api=True)
    def artifact(recording_id: str, fmt: str) -> Any:
        found = current_artifact(recording_id, fmt)
        if found is None:
            return jsonify(error="no such artifact"), 404
        archive = console()["archive"]
        attach = request.args.get("download") == "1"
        return archive.serve(found, download_name(recording_id, fmt), as_attachment=attach)

    return bp


SEARCH_PAGE = 50
# The player opens this much before a flagged span, so the words before it are heard too.
CUE_BEFORE_S = 3.0


def search_query(args: Any) -> tuple[str, str | None]:
    """`q` (1 to 256 printable characters) and the page's `cursor` (as handed out in
    `next`; the ledger decodes it)."""
    q = " ".join((args.get("q") or "").split())
    if not q or len(q) > MAX_Q or any(ord(c) < 32 for c in q):
        raise BadParameterError("q", f"1 to {MAX_Q} printable characters")
    cursor = args.get("cursor") or None
    if cursor is not None and len(cursor) > 256:
        raise BadParameterError("cursor", "not one this API handed out")
    return q, cursor


def player_link(hit: Any) -> str:
    """The page whose player opens at the hit's second: the recording's."""
    from flask import url_for

    return url_for("pages.recording", recording_id=hit.recording_id, t=f"{hit.start_s:.1f}")


def cue_link(flag: Any) -> str:
    from flask import url_for

    at = max(0.0, flag.start_s - CUE_BEFORE_S)
    return url_for("pages.recording", recording_id=flag.recording_id, t=f"{at:.1f}")


def current_artifacts(recording_id: str) -> dict[str, Any]:
    """The artifacts of the recording's newest archived run, by format ({} if none, or if
    it is a tombstone: its media was deleted)."""
    ledger, archive = console()["ledger"], console()["archive"]
    recording = ledger.recording(recording_id)
    if recording is None or recording.state in RecordingState.TOMBSTONES:
        return {}
    for run in sorted(ledger.runs_for(recording_id), key=lambda r: r.revision, reverse=True):
        if run.state == "archived":
            return {found.format: found for found in archive.artifacts(run.result)}
    return {}


def current_artifact(recording_id: str, fmt: str) -> Any:
    return current_artifacts(recording_id).get(fmt)


def _hold(recording_id: str) -> Any:
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        return bad_request("the body must be a JSON object")
    reason = hold_reason(body.get("reason"))
    if reason is None:
        return bad_request(
            f"reason: why it is kept, 1-{MAX_HOLD_REASON} characters", field="reason"
        )
    return _act(lambda a: a.hold(g.principal.actor, recording_id, reason))


# A UserID as GME sends it: at most this many characters, no control characters.
MAX_USER_ID = 256


def _forget(biz_text: str, user_id: str) -> Any:
    """202 and the erasure's report; with `{"dry_run": true}` 200 and the plan."""
    from tasks.forgetting import PlayerKeyMissingError

    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        return bad_request("the body must be a JSON object")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        return bad_request("dry_run: true or false", field="dry_run")
    if not biz_text.isascii() or not biz_text.isdigit() or not 0 < int(biz_text) < 2**63:
        return bad_request("BizID: a positive whole number", field="BizID")
    if not user_id.strip() or len(user_id) > MAX_USER_ID or has_control_characters(user_id):
        return bad_request(
            f"UserID: the player's UserID, 1-{MAX_USER_ID} characters, no control characters",
            field="UserID",
        )
    try:
        report = console()["actions"].forget(
            g.principal.actor, int(biz_text), user_id, dry_run=dry_run
        )
    except PlayerKeyMissingError as exc:
        return jsonify(error=str(exc), setting="RECPIPE_PLAYER_KEY"), 503
    except BrokerUnavailableError as exc:
        return jsonify(error=f"broker unreachable: {exc}"), 503
    return jsonify(report.as_json()), 200 if dry_run else 202


def _act(call: Any) -> Any:
    try:
        return answer(call(console()["actions"]))
    except BrokerUnavailableError as exc:
        return jsonify(error=f"broker unreachable: {exc}"), 503
