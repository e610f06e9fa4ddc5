"""From request bytes to a stored, verified event and a dispatch.

Order matters: size limit, then signature on the raw bytes, then JSON, then
validation, then one ledger transaction. A 200 is only ever answered after that
transaction commits. Nothing is sent to the broker: the transaction writes the
recording's settle time, and beat's settle clock hands the recording to a settle task
once that time has come.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog
from flask import Request

from foundation import css_hosts
from foundation.config import Settings
from storage.ledger import Ledger, StoredCallback, utcnow
from webhook.callbacks import (
    InvalidCallbackError,
    check_gme_key_scope,
    parse_css,
    parse_gme,
    parse_json_object,
)
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
    def __init__(self, settings: Settings, ledger: Ledger):
        self.settings = settings
        self.ledger = ledger

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
        bound.info("callback.accepted")
        return "accepted"

    def replay(self, callback: StoredCallback) -> str:
        """Apply a stored callback again, as when it arrived, and mark it dispatched: the
        bookkeeping is idempotent, so replaying is harmless, and the settle time it
        writes is what beat's clock acts on. Its signature is not checked again: it was
        verified before it was stored, and the key may have rotated since. Returns
        "dispatched"."""
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
        self.ledger.reapply_gme_event(
            event,
            now=now,
            settle_seconds=self.settings.settle_seconds,
            complete_seconds=self.settings.settle_complete_seconds,
        )
        self.ledger.mark_callbacks_dispatched([callback.id], now)
        log.info(
            "callback.replayed",
            provider="gme",
            callback_id=callback.id,
            recording_id=event.key.recording_id,
        )
        return "dispatched"

    def _replay_css(self, callback: StoredCallback) -> str:
        """A stored CSS callback's file was placed in its recording in the same transaction
        that stored it, and that wrote the recording's settle time: replaying it is only
        marking it dispatched."""
        if not callback.recording_id:
            raise ReplayError(f"callback {callback.id}: no recording (an ignored event type)")
        self.ledger.mark_callbacks_dispatched([callback.id], utcnow())
        log.info(
            "callback.replayed",
            provider="css",
            callback_id=callback.id,
            recording_id=callback.recording_id,
        )
        return "dispatched"

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
        bound.info("callback.accepted")
        return "accepted"
