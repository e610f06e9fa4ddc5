"""The console's pages: server-rendered (Jinja escapes everything it prints), one small
script file for the player, copying ids and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter
from flask_login import login_user, logout_user

from recpipe.console import auth
from recpipe.console.actions import BrokerUnavailableError, Outcome
from recpipe.console.api import (
    RECORDING_STATES,
    BadParameterError,
    console,
    current_artifacts,
    list_filters,
)
from recpipe.console.auth import needs
from recpipe.reports import recording_detail
from storage.ledger.console import BadCursorError

PLAYABLE = ("m4a", "mp3", "opus", "wav", "flac", "mp4")
IN_PROGRESS = ("collecting", "processing")
REFRESH_SECONDS = 5


def _failed_sign_in(response: Response) -> bool:
    return response.status_code == 401


def _name_key() -> str:
    return "console-login-name:" + (request.form.get("name") or "")[:64]


def blueprint(limiter: Limiter) -> Blueprint:
    bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                   static_url_path="/static/console")  # fmt: skip

    @bp.route("/login", methods=["GET", "POST"])
    @limiter.limit("5 per minute;20 per hour", methods=["POST"], deduct_when=_failed_sign_in)
    @limiter.limit("10 per 15 minutes", methods=["POST"], key_func=_name_key,
                   deduct_when=_failed_sign_in)  # fmt: skip
    def login() -> Any:
        target = auth.safe_next(request.values.get("next"))
        if request.method == "GET":
            return render_template("login.html", next=target)
        name = request.form.get("name", "")
        password = request.form.get("password", "")
        ledger = console()["ledger"]
        user = ledger.console_user(name) if auth.NAME.match(name) else None
        if not auth.verify_password(user.password_hash if user else None, password) or not user:
            return render_template("login.html", next=target, failed=True), 401
        session.clear()  # a fresh session: nothing from before signing in carries over
        login_user(auth.SessionUser(user))
        session.permanent = True
        return redirect(target)

    @bp.post("/logout")
    def logout() -> Any:
        logout_user()
        session.clear()
        return redirect(url_for("pages.login"))

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
        kept = {k: request.args[k] for k in ("state", "source", "since", "q", "limit")
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
        page_data = {
            "id": recording_id,
            "media": url_for("api.artifact", recording_id=recording_id, fmt=player)
            if player
            else None,
            "player": url_for("pages.player_data", recording_id=recording_id),
            "identity": detail["identity"],
        }
        from tasks.reprocessing import STEPS

        return render_template(
            "recording.html",
            r=detail,
            missing=missing,
            player=player,
            page_data=page_data,
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
        # Rooms come with the rooms feature; this ledger has none yet.
        return render_template("error.html", code=404, message="No such room."), 404

    return bp


def _act(recording_id: str, call: Any) -> Any:
    try:
        outcome: Outcome = call(console()["actions"])
    except BrokerUnavailableError as exc:
        flash(f"The broker did not answer: {exc}", "error")
        return redirect(url_for("pages.recording", recording_id=recording_id)), 303
    if outcome.status == "missing":
        return render_template("error.html", code=404, message="No such recording."), 404
    flash(outcome.detail, "ok" if outcome.status == "accepted" else "error")
    return redirect(url_for("pages.recording", recording_id=recording_id), 303)
