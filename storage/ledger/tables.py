"""The ledger's tables. Schema changes go through Alembic (storage/migrations)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.domain import NotificationState, RecordingState, RunState


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    source: Mapped[str] = mapped_column(String(8))
    biz_id: Mapped[int | None] = mapped_column(BigInteger)
    room_id: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(32), index=True)
    record_mode: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default=RecordingState.COLLECTING)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    pending_changes: Mapped[bool] = mapped_column(Boolean, default=False)
    first_event_at: Mapped[datetime]
    last_event_at: Mapped[datetime]
    settle_due_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    error: Mapped[str | None] = mapped_column(Text)
    current_run_id: Mapped[str | None] = mapped_column(String(36))
    stopped_at: Mapped[datetime | None]
    # When it became a tombstone (state expired or forgotten), and when its archived
    # objects were all deleted (None while that is still to do: a pass resumes it).
    tombstoned_at: Mapped[datetime | None]
    media_purged_at: Mapped[datetime | None]

    __table_args__ = (
        # Beat's clock: the collecting recordings whose settle time has come.
        Index("ix_recordings_state_due", "state", "settle_due_at"),
        Index("ix_recordings_room", "biz_id", "room_id", "task_id"),
    )


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    seq_no: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    recovered: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen_at: Mapped[datetime]
    uploaded_at: Mapped[datetime | None]
    # Bits of the file events seen (storage.domain.lifecycle.EVENT_BITS).
    events: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (UniqueConstraint("recording_id", "seq_no", name="uq_segments_recording_seq"),)


class Callback(Base):
    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(8))
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    recording_id: Mapped[str | None] = mapped_column(String(80), index=True)
    event_type: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime]
    body: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    dispatched_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_callbacks_undispatched", "dispatched_at", "received_at"),
        Index("ix_callbacks_received_at", "received_at"),  # retention's old rows
    )


class Run(Base):
    """One execution of a recording's chain, producing one revision."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recording_id: Mapped[str] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    revision: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=RunState.QUEUED)
    step: Mapped[str | None] = mapped_column(String(16))
    steps: Mapped[list[Any]] = mapped_column(default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Times the sweep took the run from a lost worker; a task's own retries do not count.
    takeovers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Times the sweep sent the queued run again because its message was gone (the media
    # queue was empty), since a worker last took it.
    requeues: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime]
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # When the outcome's notifications were created (one per URL); NULL on a finished
    # run means its notify task was lost and beat's sweep sends it again.
    notified_at: Mapped[datetime | None] = mapped_column(index=True)
    worker: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    manifest_url: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        UniqueConstraint("recording_id", "revision", name="uq_runs_recording_revision"),
        Index("ix_runs_state_heartbeat", "state", "heartbeat_at"),
    )


class Notification(Base):
    """One downstream message to one URL: the outcome of a run, or (`erasure_id`, no run)
    a player's erasure."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), index=True
    )
    erasure_id: Mapped[int | None] = mapped_column(
        ForeignKey("erasures.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(32))
    webhook_id: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=NotificationState.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("run_id", "url", "event_type", name="uq_notifications_run_url_type"),
        # An erasure notifies once per URL and round (its webhook-id says which).
        UniqueConstraint(
            "erasure_id", "url", "webhook_id", name="uq_notifications_erasure_url_webhook"
        ),
    )


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(index=True)  # retention's old rows
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


class CssFile(Base):
    """One CSS recording file; a recording is the files of one stream whose time ranges
    touch, joined in start-time order."""

    __tablename__ = "css_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    stream_key: Mapped[str] = mapped_column(String(16))
    appid: Mapped[int] = mapped_column(BigInteger)
    stream_id: Mapped[str] = mapped_column(Text, index=True)
    file_id: Mapped[str] = mapped_column(String(256), index=True)
    file_format: Mapped[str] = mapped_column(String(8))
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int] = mapped_column(BigInteger)
    duration: Mapped[int] = mapped_column(BigInteger)
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    video_url: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("appid", "file_id", name="uq_css_files_appid_file"),
        Index("ix_css_files_stream_time", "stream_key", "start_time"),
    )


class RoomMember(Base):
    """A user's recording in a room (the room itself is a recording of source `room`),
    with the state and revision the room last saw of it: a change makes the room's next
    revision, the same news twice does nothing."""

    __tablename__ = "room_members"

    room_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    recording_id: Mapped[str] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(Text)
    seen_state: Mapped[str] = mapped_column(String(16))
    seen_revision: Mapped[int] = mapped_column(Integer)
    joined_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_room_members_recording", "recording_id"),)


class ConsoleUser(Base):
    """A person who signs in to `recpipe console`: a viewer reads, an operator also acts."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)  # argon2id, with its parameters
    created_at: Mapped[datetime]


class ConsoleSession(Base):
    """A signed-in browser: its cookie names the session by a random key, of which only the
    SHA-256 is kept. Signing out deletes the row, and the cookie then names nothing."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("console_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime]
    seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    address: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(200))


class ApiToken(Base):
    """A program's credential for the HTTP API; only the token's SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One operator action: who (a user or token name), what, on which recording, when."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(32))
    recording_id: Mapped[str | None] = mapped_column(String(80), index=True)
    target: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Lease(Base):
    """A named lease one process holds until `expires_at` (e.g. the one beat that sends the
    periodic jobs); renewed by its holder, taken by another once it has expired."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]


class Hold(Base):
    """A legal hold on a recording or a room (a room is a recording of source `room`):
    while it stands, neither media retention nor a player's erasure deletes anything of
    it. Releasing deletes the row; the audit trail keeps who held and released it."""

    __tablename__ = "holds"

    recording_id: Mapped[str] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str] = mapped_column(Text)
    held_by: Mapped[str] = mapped_column(Text)
    held_at: Mapped[datetime]


class Transcript(Base):
    """The transcript of one run (a recording's or a room's revision): its state on the
    `transcribe` queue, where its files are, and the document itself (a room's transcript
    merges its users' documents)."""

    __tablename__ = "transcripts"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    recording_id: Mapped[str] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    revision: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    engine: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(8))
    json_url: Mapped[str | None] = mapped_column(Text)
    vtt_url: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    document: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    dispatched_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_transcripts_state_dispatched", "state", "dispatched_at"),)


class TranscriptLine(Base):
    """One segment of a recording's current transcript, for search: on PostgreSQL a
    trigram index (pg_trgm) on `text`, on SQLite the FTS5 table `transcript_lines_fts`
    (trigram tokenizer) kept by triggers; both made by the migration."""

    __tablename__ = "transcript_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[str] = mapped_column(String(36))
    speaker: Mapped[str] = mapped_column(Text)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)


class TranscriptFlag(Base):
    """A flag word found in a recording's current transcript, until an operator reviews it."""

    __tablename__ = "transcript_flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[str] = mapped_column(String(36))
    speaker: Mapped[str] = mapped_column(Text)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    match: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    reviewed_at: Mapped[datetime | None] = mapped_column(index=True)
    reviewed_by: Mapped[str | None] = mapped_column(Text)


class Erasure(Base):
    """A player's erasure (`recpipe forget`): who asked, when, how it stands, and its
    report. Written before anything is deleted, with its items, so that a crash half-way
    is finished by the next forget or by the sweep. Never holds the UserID: the player is
    their keyed hash."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    player: Mapped[str] = mapped_column(String(40), index=True)
    biz_id: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ErasureItem(Base):
    """One recording an erasure deletes (`own`) or one room it remixes without the player
    (`room`), and how far that went (storage.domain.players.ItemState)."""

    __tablename__ = "erasure_items"

    erasure_id: Mapped[int] = mapped_column(
        ForeignKey("erasures.id", ondelete="CASCADE"), primary_key=True
    )
    recording_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    # A room: the revision it had when its remix was asked for (the new one comes after).
    base_revision: Mapped[int] = mapped_column(Integer, default=0)
    objects: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_erasure_items_recording", "recording_id"),)
