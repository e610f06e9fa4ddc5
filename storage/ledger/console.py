"""The console's aggregate: its users and their sessions, API tokens and the audit trail of
operator actions, and what its pages ask of the ledger (pages of recordings, what needs
attention, counts).

Passwords arrive here already hashed (argon2, by the console), tokens and session keys as
their SHA-256: the ledger never holds a secret it could give away.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from storage.domain import (
    ApiTokenView,
    AuditEntryView,
    ConsoleSessionView,
    ConsoleUserView,
    NotificationState,
    NotificationView,
    RecordingState,
    RecordingView,
    RunState,
)
from storage.ledger.engine import LedgerBase, aware, utcnow
from storage.ledger.notifications import notification_view
from storage.ledger.queries import filtered
from storage.ledger.recordings import recording_view
from storage.ledger.tables import (
    ApiToken,
    AuditEntry,
    ConsoleSession,
    ConsoleUser,
    CssFile,
    Notification,
    Recording,
    Run,
)


class DuplicateNameError(ValueError):
    """A user or token of that name exists already."""


class BadCursorError(ValueError):
    """A pagination cursor that this ledger did not hand out."""


@dataclass(frozen=True)
class RecordingPage:
    recordings: list[RecordingView]
    next: str | None


@dataclass(frozen=True)
class StuckRun:
    run_id: str
    recording_id: str
    revision: int
    state: str
    heartbeat_at: datetime | None
    attempts: int


@dataclass(frozen=True)
class Attention:
    failed: list[RecordingView]
    notifications: list[tuple[str, NotificationView]]  # (recording id, notification)
    stuck_runs: list[StuckRun]
    overdue: list[RecordingView]

    @property
    def total(self) -> int:
        return len(self.failed) + len(self.notifications) + len(self.stuck_runs) + len(self.overdue)


def _user_view(u: ConsoleUser) -> ConsoleUserView:
    return ConsoleUserView(u.id, u.name, u.role, u.password_hash, aware(u.created_at))


def _session_view(row: ConsoleSession, user: str) -> ConsoleSessionView:
    return ConsoleSessionView(
        row.id,
        user,
        aware(row.created_at),
        aware(row.seen_at),
        aware(row.expires_at),
        row.address,
        row.agent,
    )


def _user_id(name: str) -> Any:
    return select(ConsoleUser.id).where(ConsoleUser.name == name).scalar_subquery()


def _token_view(t: ApiToken) -> ApiTokenView:
    return ApiTokenView(t.id, t.name, t.scope, aware(t.created_at), aware(t.last_used_at))


def encode_cursor(created_at: datetime, recording_id: str) -> str:
    raw = json.dumps([aware(created_at).isoformat(), recording_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, rid = json.loads(raw)
        return datetime.fromisoformat(when), str(rid)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadCursorError("cursor: not one this API handed out") from exc


class Console(LedgerBase):
    # -- users ------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str) -> ConsoleUserView:
        try:
            with self.session() as s:
                user = ConsoleUser(
                    name=name, role=role, password_hash=password_hash, created_at=utcnow()
                )
                s.add(user)
                s.flush()
                return _user_view(user)
        except IntegrityError:
            raise DuplicateNameError(f"a user named {name!r} exists already") from None

    def console_user(self, name: str) -> ConsoleUserView | None:
        with self.session() as s:
            user = s.scalar(select(ConsoleUser).where(ConsoleUser.name == name))
            return _user_view(user) if user else None

    def console_users(self) -> list[ConsoleUserView]:
        with self.session() as s:
            return [
                _user_view(u) for u in s.scalars(select(ConsoleUser).order_by(ConsoleUser.name))
            ]

    def set_password_hash(self, name: str, password_hash: str) -> bool:
        """A new password; every session of the user ends with the old one."""
        with self.session() as s:
            done = s.execute(
                update(ConsoleUser)
                .where(ConsoleUser.name == name)
                .values(password_hash=password_hash)
            )
            s.execute(delete(ConsoleSession).where(ConsoleSession.user_id == _user_id(name)))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def remove_user(self, name: str) -> bool:
        with self.session() as s:
            done = s.execute(delete(ConsoleUser).where(ConsoleUser.name == name))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    # -- sessions (a signed-in browser) ------------------------------------------------

    def start_session(
        self,
        name: str,
        key_hash: str,
        *,
        now: datetime,
        lifetime: timedelta,
        address: str | None,
        agent: str | None,
    ) -> ConsoleSessionView | None:
        """A new session of the user (None if there is no such user); sessions that
        expired are deleted on the way."""
        with self.session() as s:
            s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
            user = s.scalar(select(ConsoleUser).where(ConsoleUser.name == name))
            if user is None:
                return None
            row = ConsoleSession(
                key_hash=key_hash,
                user_id=user.id,
                created_at=now,
                seen_at=now,
                expires_at=now + lifetime,
                address=(address or "")[:64] or None,
                agent=(agent or "")[:200] or None,
            )
            s.add(row)
            s.flush()
            return _session_view(row, user.name)

    def session_user(self, key_hash: str, *, now: datetime) -> ConsoleUserView | None:
        """The user of a live session (its last use stamped at most once a minute); None
        once it ended, expired or its user is gone."""
        with self.session() as s:
            found = s.execute(
                select(ConsoleSession, ConsoleUser)
                .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
                .where(ConsoleSession.key_hash == key_hash)
            ).one_or_none()
            if found is None:
                return None
            row, user = found
            if aware(row.expires_at) <= now:
                s.delete(row)
                return None
            if now - aware(row.seen_at) > timedelta(minutes=1):
                row.seen_at = now
            return _user_view(user)

    def end_session(self, key_hash: str) -> bool:
        with self.session() as s:
            done = s.execute(delete(ConsoleSession).where(ConsoleSession.key_hash == key_hash))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def console_sessions(self, name: str, *, now: datetime) -> list[ConsoleSessionView]:
        """The user's live sessions, oldest first."""
        with self.session() as s:
            rows = s.scalars(
                select(ConsoleSession)
                .where(ConsoleSession.user_id == _user_id(name), ConsoleSession.expires_at > now)
                .order_by(ConsoleSession.created_at, ConsoleSession.id)
            )
            return [_session_view(row, name) for row in rows]

    def revoke_sessions(self, name: str, session_id: int | None = None) -> int:
        """End the user's sessions (or the one of that id); how many ended."""
        with self.session() as s:
            query = delete(ConsoleSession).where(ConsoleSession.user_id == _user_id(name))
            if session_id is not None:
                query = query.where(ConsoleSession.id == session_id)
            return int(s.execute(query).rowcount)  # type: ignore[attr-defined]

    # -- API tokens -------------------------------------------------------------------

    def add_token(self, name: str, scope: str, token_hash: str) -> ApiTokenView:
        try:
            with self.session() as s:
                token = ApiToken(name=name, scope=scope, token_hash=token_hash, created_at=utcnow())
                s.add(token)
                s.flush()
                return _token_view(token)
        except IntegrityError:
            raise DuplicateNameError(f"a token named {name!r} exists already") from None

    def token_by_hash(self, token_hash: str, *, now: datetime | None = None) -> ApiTokenView | None:
        """The token with this hash, its last use stamped (at most once a minute)."""
        now = now or utcnow()
        with self.session() as s:
            token = s.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
            if token is None:
                return None
            last = aware(token.last_used_at)
            if last is None or now - last > timedelta(minutes=1):
                token.last_used_at = now
            return _token_view(token)

    def api_tokens(self) -> list[ApiTokenView]:
        with self.session() as s:
            return [_token_view(t) for t in s.scalars(select(ApiToken).order_by(ApiToken.name))]

    def revoke_token(self, name: str) -> bool:
        with self.session() as s:
            done = s.execute(delete(ApiToken).where(ApiToken.name == name))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    # -- the audit trail --------------------------------------------------------------

    def record_action(
        self,
        actor: str,
        action: str,
        *,
        recording_id: str | None = None,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        with self.session() as s:
            s.add(
                AuditEntry(
                    at=now or utcnow(),
                    actor=actor,
                    action=action,
                    recording_id=recording_id,
                    target=target,
                    detail=detail or {},
                )
            )

    def audit_trail(
        self, recording_id: str | None = None, limit: int = 200
    ) -> list[AuditEntryView]:
        """Newest first; one recording's actions, or everyone's."""
        with self.session() as s:
            query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            if recording_id is not None:
                query = query.where(AuditEntry.recording_id == recording_id)
            return [
                AuditEntryView(
                    e.id, aware(e.at), e.actor, e.action, e.recording_id, e.target, e.detail or {}
                )
                for e in s.scalars(query.limit(limit))
            ]

    # -- what the pages and the API read ----------------------------------------------

    def recording_page(
        self,
        *,
        state: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        q: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> RecordingPage:
        """Recordings newest first (by first event, then id), `limit` at a time; `next` is
        the cursor of the page after this one. `q` is a recording id, a GME TaskID, RoomID
        or UserID, or a CSS stream or file id, matched whole."""
        with self.session() as s:
            query = select(Recording).order_by(Recording.created_at.desc(), Recording.id.desc())
            query = filtered(query, state=state, source=source, since=since, until=until)
            if q:
                css = select(CssFile.recording_id).where(
                    or_(CssFile.file_id == q, CssFile.stream_id == q)
                )
                query = query.where(
                    or_(
                        Recording.id == q,
                        Recording.task_id == q,
                        Recording.room_id == q,
                        Recording.user_id == q,
                        Recording.id.in_(css),
                    )
                )
            if cursor:
                when, rid = decode_cursor(cursor)
                query = query.where(
                    or_(
                        Recording.created_at < when,
                        (Recording.created_at == when) & (Recording.id < rid),
                    )
                )
            rows = list(s.scalars(query.limit(limit + 1)))
            page = [recording_view(s, r, with_parts=False) for r in rows[:limit]]
            more = len(rows) > limit and page
            last = rows[limit - 1] if more else None
            return RecordingPage(page, encode_cursor(last.created_at, last.id) if last else None)

    def needing_attention(
        self, *, now: datetime, stuck_after: float, max_wait: float, limit: int = 100
    ) -> Attention:
        """Failed recordings, current runs' failed or disabled notifications, runs that
        stopped heart-beating (or were never handed out), and recordings still collecting
        past their maximum wait."""
        stuck_cutoff = now - timedelta(seconds=stuck_after)
        with self.session() as s:
            failed = [
                recording_view(s, r, with_parts=False)
                for r in s.scalars(
                    select(Recording)
                    .where(Recording.state == RecordingState.FAILED)
                    .order_by(Recording.updated_at.desc())
                    .limit(limit)
                )
            ]
            notes = [
                (rid, notification_view(n))
                for n, rid in s.execute(
                    select(Notification, Recording.id)
                    .join(Recording, Recording.current_run_id == Notification.run_id)
                    .where(
                        Notification.state.in_(
                            [NotificationState.FAILED, NotificationState.DISABLED]
                        )
                    )
                    .order_by(Notification.updated_at.desc())
                    .limit(limit)
                )
            ]
            stuck = [
                StuckRun(
                    r.id, r.recording_id, r.revision, r.state, aware(r.heartbeat_at), r.attempts
                )
                for r in s.scalars(
                    select(Run)
                    .where(
                        or_(
                            (Run.state == RunState.RUNNING)
                            & or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < stuck_cutoff),
                            (Run.state == RunState.QUEUED)
                            & or_(Run.dispatched_at.is_(None), Run.dispatched_at < stuck_cutoff)
                            & (Run.created_at < stuck_cutoff),
                        )
                    )
                    .order_by(Run.created_at)
                    .limit(limit)
                )
            ]
            overdue = [
                recording_view(s, r, with_parts=False)
                for r in s.scalars(
                    select(Recording)
                    .where(
                        Recording.state == RecordingState.COLLECTING,
                        Recording.last_event_at < now - timedelta(seconds=max_wait),
                    )
                    .order_by(Recording.last_event_at)
                    .limit(limit)
                )
            ]
        return Attention(failed, notes, stuck, overdue)

    def throughput(
        self, *, now: datetime, window: timedelta = timedelta(hours=1)
    ) -> dict[str, int]:
        """Runs queued and running now, and runs that ended within `window` by outcome."""
        with self.session() as s:
            open_runs = dict(
                s.execute(
                    select(Run.state, func.count())
                    .where(Run.state.in_([RunState.QUEUED, RunState.RUNNING]))
                    .group_by(Run.state)
                ).all()
            )
            ended = dict(
                s.execute(
                    select(Run.state, func.count())
                    .where(Run.finished_at >= now - window)
                    .group_by(Run.state)
                ).all()
            )
        return {
            "queued": int(open_runs.get(RunState.QUEUED, 0)),
            "running": int(open_runs.get(RunState.RUNNING, 0)),
            "archived_last_hour": int(ended.get(RunState.ARCHIVED, 0)),
            "failed_last_hour": int(ended.get(RunState.FAILED, 0)),
        }
