"""From request bytes to a stored, verified event and a dispatch.

Order matters: size limit, then signature on the raw bytes, then JSON, then
validation, then one ledger transaction. A 200 is only ever answered after that
transaction commits; the dispatch afterwards is best effort (beat's sweep hands
out anything whose dispatch failed).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog
from flask import Request

from foundation import css_hosts
from foundation.config import Settings
from storage.domain import GME_EVENT_UPLOADED
from storage.domain.lifecycle import SETTLE_MARGIN_SECONDS, Windows
from storage.ledger import Ledger, StoredCallback, utcnow
from webhook.callbacks import (
    InvalidCallbackError,
    check_gme_key_scope,
    parse_css,
    parse_gme,
    parse_json_object,
)
from webhook.dispatch import Dispatcher
from webhook.verify import InvalidSignatureError, safe_headers, verify_css, verify_gme

log = structlog.get_logger("recpipe.webhook")

CSS_RECORDING_FILE = 100


class ReplayError(Exception):
    """A stored callback that cannot be replayed; the message names it."""


class BodyTooLargeError(Exception):
    """The request body is over the configured limit."""


def read_body(request: Request, limit: int) -> bytes:
    """Read at most `limit` bytes, refusing early on a declared length over it; a lying or
    absent Content-Length (chunked) is caught by reading one byte past the limit."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise BodyTooLargeError
    return data


class Intake:
    def __init__(self, settings: Settings, ledger: Ledger, dispatcher: Dispatcher):
        self.settings = settings
        self.ledger = ledger
        self.dispatcher = dispatcher

    def accept(self, provider: str, body: bytes, headers: Mapping[str, str]) -> str:
        """Verify, parse and store one callback; returns the outcome for metrics."""
        if provider == "gme":
            return self._accept_gme(body, headers)
        return self._accept_css(body, headers)

    def _accept_gme(self, body: bytes, headers: Mapping[str, str]) -> str:
        signers = verify_gme(body, headers.get("Signature"), self.settings.gme_secret_keys)
        event = parse_gme(body)
        if event.key.biz_id not in signers:
            raise InvalidSignatureError("signed with another application's key")
        if self.settings.gme_key_scope:
            check_gme_key_scope(event)
        window = self.settings.gme_replay_window_seconds
        if window and abs(time.time() - event.timestamp) > window:
            raise InvalidSignatureError("Timestamp is outside the replay window")
        now = utcnow()
        result = self.ledger.record_gme_event(
            event,
            body.decode("utf-8"),
            safe_headers(dict(headers)),
            now=now,
            settle_seconds=self.settings.settle_seconds,
            complete_seconds=self.settings.settle_complete_seconds,
        )
        bound = log.bind(
            provider="gme",
            recording_id=result.recording_id,
            event_type=event.event_type,
            seq_no=event.seq_no,
        )
        if result.duplicate:
            bound.info("callback.duplicate")
            return "duplicate"
        if result.settle_wake_at is not None:
            countdown = (result.settle_wake_at - now).total_seconds() + SETTLE_MARGIN_SECONDS
            self._settle_later(result.callback_id, result.recording_id, countdown)
        bound.info("callback.accepted")
        return "accepted"

    def _settle_later(self, callback_id: int, recording_id: str, countdown: float) -> bool:
        """Hand the recording to a settle task, which looks after `countdown` seconds (the
        wake the intake recorded, and the margin) and finalizes it once quiet, or sleeps
        until its settle time; an event that makes it due sooner hands out another. The
        callback was stored as dispatched; when the broker does not take the task it is
        marked undispatched, and beat's sweep settles the recording from its settle time
        in the ledger."""
        if self.dispatcher.settle_later(recording_id, max(0.0, countdown)):
            return True
        self.ledger.mark_callbacks_undispatched([callback_id])
        return False

    def _gme_settle_countdown(self) -> float:
        """A GME settle task first looks after the short window (and a margin): the
        recording may be complete by then (`lifecycle.first_look`)."""
        windows = Windows(self.settings.settle_seconds, self.settings.settle_complete_seconds)
        return windows.complete + SETTLE_MARGIN_SECONDS

    def replay(self, callback: StoredCallback) -> str:
        """Apply a stored callback again and dispatch it, as when it arrived: the
        bookkeeping is idempotent, so replaying is harmless. Its signature is not checked
        again: it was verified before it was stored, and the key may have rotated since.
        Returns "dispatched", or "undispatched" when the broker did not take it."""
        if callback.provider == "css":
            return self._replay_css(callback)
        if callback.provider != "gme":
            raise ReplayError(
                f"callback {callback.id}: {callback.provider} callbacks cannot be replayed"
            )
        try:
            event = parse_gme(callback.body.encode("utf-8"))
        except InvalidCallbackError as exc:
            raise ReplayError(
                f"callback {callback.id}: stored body no longer parses: {exc}"
            ) from None
        now = utcnow()
        wanted = self.ledger.reapply_gme_event(
            event,
            now=now,
            settle_seconds=self.settings.settle_seconds,
            complete_seconds=self.settings.settle_complete_seconds,
        )
        # An upload is handed to settle again, and so is any event whose re-application
        # recorded a wake (a task must then look); others only re-apply.
        settles = wanted or event.event_type == GME_EVENT_UPLOADED
        dispatched = not settles or self.dispatcher.settle_later(
            event.key.recording_id, self._gme_settle_countdown()
        )
        if dispatched:
            self.ledger.mark_callbacks_dispatched([callback.id], now)
        log.info(
            "callback.replayed",
            provider="gme",
            callback_id=callback.id,
            recording_id=event.key.recording_id,
            dispatched=dispatched,
        )
        return "dispatched" if dispatched else "undispatched"

    def _replay_css(self, callback: StoredCallback) -> str:
        """A stored CSS callback's file was placed in its recording in the same transaction
        that stored it, so replaying it is handing its recording to settle again."""
        if not callback.recording_id:
            raise ReplayError(f"callback {callback.id}: no recording (an ignored event type)")
        dispatched = self.dispatcher.settle_later(
            callback.recording_id, self.settings.settle_seconds + SETTLE_MARGIN_SECONDS
        )
        if dispatched:
            self.ledger.mark_callbacks_dispatched([callback.id], utcnow())
        log.info(
            "callback.replayed",
            provider="css",
            callback_id=callback.id,
            recording_id=callback.recording_id,
            dispatched=dispatched,
        )
        return "dispatched" if dispatched else "undispatched"

    def _accept_css(self, body: bytes, headers: Mapping[str, str]) -> str:
        if self.settings.css_callback_key is None:
            raise InvalidSignatureError("no CSS callback key configured")
        # `t` and `sign` live inside the body, so it is parsed first; nothing else in it is
        # looked at before they check out.
        obj = parse_json_object(body)
        verify_css(obj.get("sign"), obj.get("t"), self.settings.css_callback_key)
        # The sign covers nothing but `t`: the appid and the URL are checked on their own.
        app_ids, appid = self.settings.css_app_ids, obj.get("appid")
        if app_ids and (isinstance(appid, bool) or appid not in app_ids):
            raise InvalidSignatureError("appid is not one of RECPIPE_CSS_APP_IDS")
        event_type = obj.get("event_type")
        if event_type != CSS_RECORDING_FILE:
            return "ignored"
        event = parse_css(obj)
        hosts = css_hosts.expand(self.settings.css_allowed_hosts, event.stream.appid, app_ids)
        try:
            css_hosts.check(event.video_url, hosts)
        except css_hosts.HostNotAllowedError as exc:
            raise InvalidCallbackError("video_url", str(exc)) from None
        now = utcnow()
        result = self.ledger.record_css_file(
            event,
            body.decode("utf-8"),
            safe_headers(dict(headers)),
            now=now,
            settle_seconds=self.settings.settle_seconds,
            join_gap_seconds=self.settings.css_join_gap_seconds,
        )
        bound = log.bind(
            provider="css",
            recording_id=result.recording_id,
            file_id=event.file_id,
            stream_id=event.stream.stream_id,
        )
        if result.duplicate:
            bound.info("callback.duplicate")
            return "duplicate"
        if self.dispatcher.settle_later(
            result.recording_id, self.settings.settle_seconds + SETTLE_MARGIN_SECONDS
        ):
            self.ledger.mark_callbacks_dispatched([result.callback_id], now)
        bound.info("callback.accepted")
        return "accepted"
