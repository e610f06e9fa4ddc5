"""The console's pages: server-rendered (Jinja escapes everything it prints), one small
script file for the player, a room's lanes, copying ids and nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_limiter import Limiter
from limits import parse_many

from foundation.queues import BrokerUnavailableError
from recpipe.console import auth, players
from recpipe.console.actions import Outcome
from recpipe.console.api import (
    RECORDING_STATES,
    BadParameterError,
    console,
    current_artifacts,
    list_filters,
)
from recpipe.console.auth import needs
from recpipe.reports import recording_detail
from storage.domain.console import MAX_HOLD_REASON, hold_reason
from storage.ledger.console import BadCursorError

PLAYABLE = ("m4a", "mp3", "opus", "wav", "flac", "mp4")
IN_PROGRESS = ("collecting", "processing")
REFRESH_SECONDS = 5
STATIC = Path(__file__).parent / "static"
# What the sign-in page loads before anyone is signed in; every other file needs a session.
PUBLIC_STATIC = frozenset({"console.css"})
# The most of a callback's free text (CSS stream_param, callback_ext) a page shows; the
# API serves it whole.
CALLBACK_TEXT_LIMIT = 300


@dataclass(frozen=True)
class CallbackText:
    shown: str
    length: int
    cut: bool


def callback_text(value: Any, limit: int = CALLBACK_TEXT_LIMIT) -> CallbackText:
    """Free text a callback carried (a string, or an object as compact JSON), cut to `limit`
    characters so the page keeps its shape; the template escapes it like all text."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return CallbackText(text[:limit], len(text), len(text) > limit)


# Sign-in attempts are counted before the password is checked, so parallel guesses cannot
# slip under the limit. One name from one address: a few a minute, cleared by signing in.
# Any names from one address: enough for an office behind one address, not for spraying.
# Nothing is counted by name alone: that would let anyone lock a chosen user out.
NAME_AT_ADDRESS_LIMITS = "5 per minute;20 per hour"
ADDRESS_LIMITS = "30 per minute;300 per hour"


class SignInThrottle:
    """Counts sign-in attempts of a name from an address in the limiter's storage (Redis
    when the broker is, so every console process counts together)."""

    def __init__(self, limiter: Limiter):
        self._limiter = limiter
        self._limits = parse_many(NAME_AT_ADDRESS_LIMITS)

    def _keys(self, name: str) -> tuple[str, str, str]:
        return ("console-sign-in", name.lower()[:64], request.remote_addr or "")

    def attempt(self, name: str) -> bool:
        """Count one attempt; False when it is over the limit (and not to be checked)."""
        strategy = self._limiter.limiter
        # One window after the other: an attempt refused by the minute's does not take a
        # place in the hour's.
        return all(strategy.hit(limit, *self._keys(name)) for limit in self._limits)

    def signed_in(self, name: str) -> None:
        for limit in self._limits:
            self._limiter.limiter.clear(limit, *self._keys(name))


def _throttled() -> Any:
    message = "Too many failed sign-ins from here: wait a minute and try again."
    return render_template("error.html", code=429, message=message), 429


def blueprint(limiter: Limiter) -> Blueprint:
    bp = Blueprint("pages", __name__, template_folder="templates")
    bp.add_app_template_filter(callback_text, "callback_text")
    players.add_pages(bp)

    @bp.get("/static/console/<path:filename>", endpoint="static")
    def static(filename: str) -> Any:
        """The console's script and stylesheet: only to those signed in, but for what the
        sign-in page itself needs."""
        if filename not in PUBLIC_STATIC:
            who = g.principal
            if who is None or who is auth.BAD_CREDENTIAL:
                return Response("sign in first\n", 401, mimetype="text/plain")
        return send_from_directory(STATIC, filename)

    throttle = SignInThrottle(limiter)

    @bp.route("/login", methods=["GET", "POST"])
    @limiter.limit(ADDRESS_LIMITS, methods=["POST"])  # counted before the view runs
    def login() -> Any:
        target = auth.safe_next(request.values.get("next"))
        if request.method == "GET":
            return render_template("login.html", next=target)
        name = request.form.get("name", "")
        password = request.form.get("password", "")
        if not throttle.attempt(name):
            return _throttled()
        ledger = console()["ledger"]
        user = ledger.console_user(name) if auth.NAME.match(name) else None
        if not auth.verify_password(user.password_hash if user else None, password) or not user:
            return render_template("login.html", next=target, failed=True), 401
        throttle.signed_in(name)
        auth.begin_session(ledger, user, current_app.permanent_session_lifetime)
        return redirect(target)

    @bp.post("/logout")
    def logout() -> Any:
        auth.end_session(console()["ledger"])
        return redirect(url_for("pages.login"))

    @bp.route("/account/password", methods=["GET", "POST"])
    @needs("read", api=False)
    @limiter.limit("5 per minute;20 per hour", methods=["POST"])  # counted before the check
    def password() -> Any:
        """A signed-in user changes their own password: the current one, then the new one
        twice. Every other session of theirs ends."""
        if request.method == "GET":
            return render_template("password.html")
        who = g.principal
        ledger = console()["ledger"]
        user = ledger.console_user(who.name)
        current = request.form.get("current", "")
        new, again = request.form.get("new", ""), request.form.get("again", "")
        if user is None or not auth.verify_password(user.password_hash, current):
            return render_template("password.html", error="The current password is wrong."), 401
        if new != again:
            return render_template("password.html", error="The new passwords differ."), 400
        if len(new) < auth.MIN_PASSWORD:
            error = f"The new password needs at least {auth.MIN_PASSWORD} characters."
            return render_template("password.html", error=error), 400
        ledger.set_password_hash(user.name, auth.hash_password(new))
        ledger.record_action(who.actor, "user.password", target=user.name)
        changed = ledger.console_user(user.name)
        if changed is not None:  # every session ended with the old password; this one goes on
            auth.begin_session(ledger, changed, current_app.permanent_session_lifetime)
        flash("Your password is changed; your other sessions have ended.", "ok")
        return redirect(url_for("pages.home"))

    @bp.get("/")
    @needs("read", api=False)
    def home() -> Any:
        ledger, settings = console()["ledger"], console()["settings"]
        now = datetime.now(UTC)
        counts = ledger.count_recordings_by_state()
        busy = counts.get("collecting") or counts.get("processing")
        attention = ledger.needing_attention(
            now=now, stuck_after=settings.stuck_after_seconds, max_wait=settings.max_wait_seconds
        )
        return render_template(
            "home.html",
            counts={s: counts.get(s, 0) for s in RECORDING_STATES},
            throughput=ledger.throughput(now=now),
            queues=console()["actions"].queue_depths(),
            attention=attention.total,
            audit=ledger.audit_trail(limit=20),
            refresh=REFRESH_SECONDS if busy else None,
        )

    @bp.get("/recordings")
    @needs("read", api=False)
    def recordings() -> Any:
        ledger = console()["ledger"]
        try:
            filters = list_filters(request.args)
            page = ledger.recording_page(**filters)
        except (BadParameterError, BadCursorError) as exc:
            return render_template("error.html", code=400, message=str(exc)), 400
        notified = ledger.notification_summary([r.id for r in page.recordings])
        busy = any(r.state in IN_PROGRESS for r in page.recordings)
        kept = {k: request.args[k] for k in ("state", "source", "since", "until", "q", "limit")
                if request.args.get(k)}  # fmt: skip
        return render_template(
            "recordings.html",
            page=page,
            older={**kept, "cursor": page.next},
            notified=notified,
            args=request.args,
            refresh=REFRESH_SECONDS if busy else None,
        )

    @bp.get("/recordings/<recording_id>")
    @needs("read", api=False)
    def recording(recording_id: str) -> Any:
        ledger = console()["ledger"]
        if ledger.recording(recording_id) is None:
            return render_template("error.html", code=404, message="No such recording."), 404
        detail = recording_detail(ledger, recording_id)
        seen = [s["seq_no"] for s in detail["segments"]] if detail["source"] == "gme" else []
        missing = sorted(set(range(max(seen) + 1)) - set(seen)) if seen else []
        artifacts = current_artifacts(recording_id)
        player = next((fmt for fmt in PLAYABLE if fmt in artifacts), None)
        page_data = _player_page_data(recording_id, player, detail["identity"])
        from tasks.reprocessing import STEPS

        return render_template(
            "recording.html",
            r=detail,
            missing=missing,
            player=player,
            page_data={**page_data, "cue": _cue(request.args)},
            transcript=transcript_lines(ledger, recording_id, [detail["identity"].get("UserID")]),
            audit=ledger.audit_trail(recording_id),
            steps=STEPS,
            refresh=REFRESH_SECONDS if detail["state"] in IN_PROGRESS else None,
        )

    @bp.get("/recordings/<recording_id>/player.json")
    @needs("read", api=False)
    def player_data(recording_id: str) -> Any:
        """The waveform's peaks and the timeline (speech spans, gaps) beside the media,
        when the pipeline wrote them; null when not."""
        archive = console()["archive"]
        artifacts = current_artifacts(recording_id)
        for fmt in PLAYABLE:
            found = artifacts.get(fmt)
            if found is not None:
                return jsonify(
                    format=fmt,
                    peaks=archive.side_file(found, "peaks"),
                    timeline=archive.side_file(found, "timeline"),
                )
        return jsonify(error="nothing archived to play"), 404

    @bp.post("/recordings/<recording_id>/reprocess")
    @needs("operate", api=False)
    def reprocess(recording_id: str) -> Any:
        from tasks.reprocessing import STEPS

        step = request.form.get("from_step", "fetch")
        if step not in STEPS:
            return render_template("error.html", code=400, message="Unknown step."), 400
        return _act(recording_id, lambda a: a.reprocess(g.principal.actor, recording_id, step))

    @bp.post("/recordings/<recording_id>/redeliver")
    @needs("operate", api=False)
    def redeliver(recording_id: str) -> Any:
        include = request.form.get("include_disabled") == "1"
        return _act(recording_id, lambda a: a.redeliver(g.principal.actor, recording_id, include))

    @bp.post("/recordings/<recording_id>/settle")
    @needs("operate", api=False)
    def settle(recording_id: str) -> Any:
        return _act(recording_id, lambda a: a.settle_now(g.principal.actor, recording_id))

    @bp.post("/sweep")
    @needs("operate", api=False)
    def sweep() -> Any:
        try:
            outcome = console()["actions"].sweep_now(g.principal.actor)
            flash(outcome.detail, "ok")
        except BrokerUnavailableError as exc:
            flash(f"The broker did not answer: {exc}", "error")
        return redirect(url_for("pages.attention"), 303)

    @bp.post("/recordings/<recording_id>/hold")
    @needs("admin", api=False)
    def hold(recording_id: str) -> Any:
        reason = hold_reason(request.form.get("reason", ""))
        if reason is None:
            flash(f"Say why it is kept, in at most {MAX_HOLD_REASON} characters.", "error")
            return redirect(url_for("pages.recording", recording_id=recording_id), 303)
        return _act(recording_id, lambda a: a.hold(g.principal.actor, recording_id, reason))

    @bp.post("/recordings/<recording_id>/release")
    @needs("admin", api=False)
    def release(recording_id: str) -> Any:
        return _act(recording_id, lambda a: a.release(g.principal.actor, recording_id))

    @bp.get("/holds")
    @needs("read", api=False)
    def holds() -> Any:
        return render_template("holds.html", holds=console()["ledger"].holds())

    @bp.get("/attention")
    @needs("read", api=False)
    def attention() -> Any:
        ledger, settings = console()["ledger"], console()["settings"]
        found = ledger.needing_attention(
            now=datetime.now(UTC),
            stuck_after=settings.stuck_after_seconds,
            max_wait=settings.max_wait_seconds,
        )
        return render_template("attention.html", a=found, settings=settings)

    @bp.get("/rooms/<room_id>")
    @needs("read", api=False)
    def room(room_id: str) -> Any:
        ledger, archive = console()["ledger"], console()["archive"]
        if ledger.room(room_id) is None:
            return render_template("error.html", code=404, message="No such room."), 404
        detail = recording_detail(ledger, room_id)
        artifacts = current_artifacts(room_id)
        player = next((fmt for fmt in PLAYABLE if fmt in artifacts), None)
        timeline = archive.side_file(artifacts[player], "timeline") if player else None
        mix_seconds = artifacts[player].duration_s if player else None
        clock = room_clock(detail["participants"], timeline, mix_seconds)
        return render_template(
            "room.html",
            r=detail,
            player=player,
            page_data={
                **_player_page_data(room_id, player, detail["identity"]),
                "cue": _cue(request.args),
            },
            clock=clock,
            transcript=transcript_lines(ledger, room_id, [lane.user_id for lane in clock.lanes]),
            refresh=REFRESH_SECONDS if detail["state"] in IN_PROGRESS else None,
        )

    @bp.get("/search")
    @needs("read", api=False)
    def search() -> Any:
        from recpipe.console.api import SEARCH_PAGE, player_link, search_query

        if not request.args.get("q"):
            return render_template("search.html", q="", hits=[], older=None)
        try:
            q, cursor = search_query(request.args)
            found = console()["ledger"].search_transcripts(q, SEARCH_PAGE, cursor)
        except (BadParameterError, BadCursorError) as exc:
            return render_template("error.html", code=400, message=str(exc)), 400
        return render_template(
            "search.html", q=q, hits=[(h, player_link(h)) for h in found.hits], older=found.next
        )

    @bp.get("/flags")
    @needs("read", api=False)
    def flags() -> Any:
        from recpipe.console.api import cue_link

        reviewed = request.args.get("reviewed") == "true"
        found = console()["ledger"].transcript_flags(reviewed=reviewed)
        return render_template(
            "flags.html", flags=[(f, cue_link(f)) for f in found], reviewed=reviewed
        )

    @bp.post("/flags/<int:flag_id>/review")
    @needs("operate", api=False)
    def review_flag(flag_id: int) -> Any:
        from storage.ledger import utcnow

        found = console()["ledger"].review_flag(flag_id, g.principal.actor, utcnow())
        if found is None:
            return render_template("error.html", code=404, message="No such flag."), 404
        flash(f"Flag {flag_id} marked reviewed.", "ok")
        return redirect(url_for("pages.flags"), 303)

    return bp


# Speakers take the colours of the room's lanes, in the lanes' order (console.css).
SPEAKER_COLOURS = 6


@dataclass(frozen=True)
class TranscriptLine:
    speaker: str
    start_s: float
    end_s: float
    text: str
    colour: int


@dataclass(frozen=True)
class TranscriptShown:
    state: str
    error: str | None
    language: str | None
    lines: list[TranscriptLine]


def transcript_lines(ledger: Any, recording_id: str, speakers: list[Any]) -> TranscriptShown | None:
    """The current revision's transcript as the page lists it; each speaker coloured as
    their lane (a recording's one speaker as the first lane)."""
    found = ledger.transcript_of(recording_id)
    if found is None:
        return None
    order = [str(s) for s in speakers if s is not None]
    lines = []
    for segment in (found.document or {}).get("segments") or []:
        speaker = str(segment.get("speaker", ""))
        if speaker not in order:
            order.append(speaker)
        lines.append(
            TranscriptLine(speaker, _seconds(segment.get("start_s")),
                           _seconds(segment.get("end_s")), str(segment.get("text", "")),
                           order.index(speaker) % SPEAKER_COLOURS)
        )  # fmt: skip
    return TranscriptShown(found.state, found.error, found.language, lines)


def _cue(args: Any) -> float | None:
    """`?t=SECONDS`: where the player opens (a search hit, a flag)."""
    try:
        at = float(args.get("t", ""))
    except ValueError:
        return None
    return at if 0 <= at < 10**7 else None


def _player_page_data(recording_id: str, player: str | None, identity: Any) -> dict[str, Any]:
    """What console.js's player reads from the page (embedded as JSON, escaped)."""
    return {
        "id": recording_id,
        "media": url_for("api.artifact", recording_id=recording_id, fmt=player) if player else None,
        "player": url_for("pages.player_data", recording_id=recording_id),
        "identity": identity,
    }


LANE_WIDTH = 1000  # the SVG lanes' viewBox width


@dataclass(frozen=True)
class Lane:
    """One participant on the room's clock, in the lanes' viewBox units."""

    user_id: str
    recording_id: str
    revision: int | None
    offset_s: float
    duration_s: float
    x: float
    width: float
    speech: list[tuple[float, float]]


@dataclass(frozen=True)
class RoomClock:
    seconds: float
    lanes: list[Lane]
    ticks: list[tuple[float, float]]  # (second, x)


def _seconds(value: Any) -> float:
    try:
        found = float(value)
    except (TypeError, ValueError):
        return 0.0
    return found if found == found and 0 <= found < 1e7 else 0.0  # not NaN, not absurd


def room_clock(
    participants: list[dict[str, Any]], timeline: Any, mix_seconds: float | None
) -> RoomClock:
    """Each participant's bar at its offset for its duration, and its speech spans (from the
    room's timeline.json, already on the room's clock), scaled to the room's length; the
    first to join on top."""
    speech: dict[str, list[Any]] = {}
    entries = timeline.get("speech") if isinstance(timeline, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("spans"), list):
            speech[str(entry.get("UserID"))] = entry["spans"]
    ends = [_seconds(p.get("offset_s")) + _seconds(p.get("duration_s")) for p in participants]
    seconds = max([*ends, _seconds(mix_seconds), 0.001])
    scale = LANE_WIDTH / seconds

    def x(at: float) -> float:
        return round(min(max(at, 0.0), seconds) * scale, 2)

    lanes = []
    for p in participants:
        offset, duration = _seconds(p.get("offset_s")), _seconds(p.get("duration_s"))
        spans = [
            (x(_seconds(span[0])), max(0.5, x(_seconds(span[1])) - x(_seconds(span[0]))))
            for span in speech.get(str(p.get("UserID")), [])
            if isinstance(span, list | tuple) and len(span) == 2
        ]
        lanes.append(
            Lane(
                user_id=str(p.get("UserID", "")),
                recording_id=str(p.get("recording_id", "")),
                revision=p.get("revision") if isinstance(p.get("revision"), int) else None,
                offset_s=offset,
                duration_s=duration,
                x=x(offset),
                width=max(1.0, x(offset + duration) - x(offset)),
                speech=spans,
            )
        )
    lanes.sort(key=lambda lane: (lane.offset_s, lane.user_id))  # in the order they joined
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if seconds / s <= 12), 1800)
    ticks = [(float(t), x(t)) for t in range(0, int(seconds) + 1, step)]
    return RoomClock(round(seconds, 3), lanes, ticks)


def _act(recording_id: str, call: Any) -> Any:
    try:
        outcome: Outcome = call(console()["actions"])
    except BrokerUnavailableError as exc:
        flash(f"The broker did not answer: {exc}", "error")
        return redirect(url_for("pages.recording", recording_id=recording_id)), 303
    if outcome.status == "missing":
        return render_template("error.html", code=404, message="No such recording."), 404
    flash(outcome.detail, "ok" if outcome.status in ("accepted", "done") else "error")
    return redirect(url_for("pages.recording", recording_id=recording_id), 303)
