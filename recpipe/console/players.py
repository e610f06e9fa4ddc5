"""A player's page and `GET /api/v1/players/{BizID}/{UserID}`: the recordings of one
UserID of a BizID and the rooms they were in, with their holds; and, for an admin, the
player's erasure (`forget`): a dry run that shows what would go, then the real one once the
UserID is typed again. A forgotten player is found by the keyed hash of the UserID (the
ledger keeps no UserID in clear): the page says when, the API answers 410."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, g, jsonify, redirect, render_template, request, url_for
from werkzeug.routing import PathConverter

from foundation.config import ConfigError
from foundation.queues import BrokerUnavailableError
from recpipe.console.api import console
from recpipe.console.auth import needs
from storage.domain.events import has_control_characters
from storage.domain.players import player_hash

BIZ_ID_MAX = 2**63 - 1
# As the webhook takes it (webhook.callbacks.MAX_ID_LENGTH): longer is no one's UserID.
USER_ID_MAX = 256


class UserIdConverter(PathConverter):
    """A UserID in a URL's path: it may hold `/`, but a path ending in `/forget` is the
    forget route's (`POST .../{UserID}/forget`), never a player named so."""

    regex = r"[^/].*?(?<!/forget)"


@dataclass(frozen=True)
class Found:
    """What the ledger knows of a player: their footprint (empty when nothing carries
    the UserID any more), the newest erasure of their hash (None when never asked, or
    when no key says which hash is theirs), and why the erasure could not be looked up."""

    biz_id: int
    user_id: str
    recordings: tuple[Any, ...]
    rooms: tuple[Any, ...]
    held: dict[str, Any]
    erasure: Any | None
    key_problem: str | None
    # Whether anything still carries the UserID (a forgotten player's tombstones, listed
    # from the erasure, do not).
    known: bool


def valid_user_id(user_id: str) -> bool:
    return 0 < len(user_id) <= USER_ID_MAX and not has_control_characters(user_id)


def player_of(biz_id: int, user_id: str) -> Found:
    """The player's recordings and rooms, and their erasure if one was asked for."""
    ledger = console()["ledger"]
    footprint = ledger.player_footprint(biz_id, user_id)
    erasure, problem = None, None
    try:
        erasure = ledger.erasure_of(player_hash_of(biz_id, user_id))
    except ConfigError as exc:  # no RECPIPE_PLAYER_KEY
        problem = str(exc)
    recordings, rooms = list(footprint.recordings), list(footprint.rooms)
    held = dict(footprint.held)
    if erasure is not None:
        # What the erasure took: tombstones now, or rooms remixed without them.
        listed = {r.id for r in recordings} | {r.id for r in rooms}
        for item in erasure.items:
            if item.recording_id in listed:
                continue
            found = ledger.recording(item.recording_id)
            if found is None:
                continue
            (rooms if found.source == "room" else recordings).append(found)
            on_hold = ledger.hold_on(found.id)
            if on_hold is not None:
                held[found.id] = on_hold
    return Found(
        biz_id,
        user_id,
        tuple(sorted(recordings, key=_newest_first)),
        tuple(sorted(rooms, key=_newest_first)),
        held,
        erasure,
        problem,
        known=bool(footprint.recordings or footprint.rooms),
    )


def _newest_first(recording: Any) -> tuple[float, str]:
    created = recording.created_at or recording.first_event_at
    return (-created.timestamp(), recording.id)


def when(value: str | None) -> str:
    """An ISO time as the player's page shows it: to the second, in UTC."""
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def player_hash_of(biz_id: int, user_id: str) -> str:
    """The player's keyed hash: PlayerKeyMissingError (one line naming
    RECPIPE_PLAYER_KEY) outside the embedded default without a key."""
    from tasks.forgetting import player_key

    return player_hash(player_key(console()["settings"]), biz_id, user_id)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _hold(held: Any) -> dict[str, Any] | None:
    if held is None:
        return None
    return {"reason": held.reason, "held_by": held.held_by, "held_at": _iso(held.held_at)}


def row(recording: Any, held: dict[str, Any]) -> dict[str, Any]:
    """One of the player's recordings or rooms, as the page and the API show it."""
    identity = recording.identity or recording.details or {}
    return {
        "id": recording.id,
        "source": recording.source,
        "state": recording.state,
        "revision": recording.revision,
        "RoomID": identity.get("RoomID"),
        "TaskID": identity.get("TaskID"),
        "created_at": _iso(recording.created_at),
        "last_event_at": _iso(recording.last_event_at),
        "tombstoned_at": _iso(recording.tombstoned_at),
        "hold": _hold(held.get(recording.id)),
    }


def erasure_json(erasure: Any) -> dict[str, Any] | None:
    if erasure is None:
        return None
    return {
        "player": erasure.player,
        "state": erasure.state,
        "requested_by": erasure.requested_by,
        "requested_at": _iso(erasure.requested_at),
        "finished_at": _iso(erasure.finished_at),
    }


def player_json(found: Found) -> dict[str, Any]:
    return {
        "BizID": found.biz_id,
        "UserID": found.user_id,
        "recordings": [row(r, found.held) for r in found.recordings],
        "rooms": [row(r, found.held) for r in found.rooms],
        "erasure": erasure_json(found.erasure),
    }


def bad_player(biz_id: int, user_id: str) -> str | None:
    if not 1 <= biz_id <= BIZ_ID_MAX:
        return f"BizID: a whole number from 1 to {BIZ_ID_MAX}"
    if not valid_user_id(user_id):
        return f"UserID: 1 to {USER_ID_MAX} characters, no control characters"
    return None


def add_pages(bp: Blueprint) -> None:
    """The player pages, on the pages' blueprint."""
    bp.add_app_template_filter(when, "when")

    @bp.get("/players")
    @needs("read", api=False)
    def find_player() -> Any:
        """The "find a player" form; with BizID and UserID, their page."""
        raw_biz = (request.args.get("BizID") or "").strip()
        user_id = request.args.get("UserID") or ""
        if not raw_biz and not user_id:
            return render_template("players.html", args=request.args)
        problem = None if raw_biz.isdigit() else "BizID: a whole number"
        problem = problem or bad_player(int(raw_biz), user_id)
        if problem:
            return render_template("players.html", args=request.args, error=problem), 400
        return redirect(url_for("pages.player", biz_id=int(raw_biz), user_id=user_id), 303)

    @bp.get("/players/<int:biz_id>/<user_id:user_id>")
    @needs("read", api=False)
    def player(biz_id: int, user_id: str) -> Any:
        problem = bad_player(biz_id, user_id)
        if problem:
            return render_template("error.html", code=400, message=problem), 400
        found = player_of(biz_id, user_id)
        if not found.known and found.erasure is None:
            message = "No recording of this player: no UserID of that BizID is in the ledger."
            return render_template("error.html", code=404, message=message), 404
        return render_template("player.html", p=found, rows=player_json(found))

    @bp.post("/players/<int:biz_id>/<path:user_id>/forget")
    @needs("admin", api=False)
    def forget_player_page(biz_id: int, user_id: str) -> Any:
        """A dry run (`preview`), or the erasure itself once `confirm` is the UserID, typed
        again exactly; the report either way."""
        problem = bad_player(biz_id, user_id)
        if problem:
            return render_template("error.html", code=400, message=problem), 400
        dry_run = request.form.get("mode") != "forget"
        if not dry_run and request.form.get("confirm", "") != user_id:
            found = player_of(biz_id, user_id)
            message = (
                "The UserID typed does not match this player's exactly: nothing was forgotten."
            )
            return render_template(
                "player.html", p=found, rows=player_json(found), refused=message
            ), 400
        try:
            report = console()["actions"].forget(
                g.principal.actor, biz_id, user_id, dry_run=dry_run
            )
        except ConfigError as exc:  # no RECPIPE_PLAYER_KEY
            return render_template("error.html", code=503, message=str(exc)), 503
        except BrokerUnavailableError as exc:
            message = f"The broker did not answer: {exc}"
            return render_template("error.html", code=503, message=message), 503
        found = player_of(biz_id, user_id)
        return render_template(
            "player.html", p=found, rows=player_json(found), report=report.as_json()
        )


def add_api(bp: Blueprint) -> None:
    """`GET /api/v1/players/{BizID}/{UserID}` on the API's blueprint."""

    @bp.get("/players/<int:biz_id>/<user_id:user_id>")
    @needs("read", api=True)
    def player(biz_id: int, user_id: str) -> Any:
        problem = bad_player(biz_id, user_id)
        if problem:
            return jsonify(error=problem, parameter=problem.split(":")[0]), 400
        found = player_of(biz_id, user_id)
        if not found.known:
            if found.erasure is not None:
                return jsonify(
                    error="this player was forgotten",
                    forgotten_at=_iso(found.erasure.requested_at),
                    erasure=erasure_json(found.erasure),
                ), 410
            return jsonify(error="no recording of this player"), 404
        return jsonify(player_json(found))
