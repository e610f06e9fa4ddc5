"""The retention rule (what old ledger rows may go), its setting and its beat entry."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from foundation.config import ConfigError, Settings
from storage.domain import NotificationState, RecordingState
from storage.domain.retention import (
    PruneCounts,
    attempt_prunable,
    callback_prunable,
    cutoff,
)
from tasks.celeryconfig import periodic_jobs

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BEFORE = NOW - timedelta(days=30)
OLD = NOW - timedelta(days=31)
NEW = NOW - timedelta(days=29)


def test_cutoff_is_days_before_now_and_none_when_off():
    assert cutoff(NOW, 30) == BEFORE
    assert cutoff(NOW, 0.5) == NOW - timedelta(hours=12)
    assert cutoff(NOW, 0) is None


def callback(**changes):
    facts = {
        "received_at": OLD,
        "dispatched_at": OLD,
        "recording_state": RecordingState.ARCHIVED,
        "pending_changes": False,
        "recording_last_event_at": OLD,
    }
    return callback_prunable(**{**facts, **changes}, before=BEFORE)


def test_a_finished_quiet_recordings_old_callback_may_go():
    assert callback()
    assert callback(recording_state=RecordingState.FAILED)


@pytest.mark.parametrize(
    ("why", "changes"),
    [
        ("received after the cutoff", {"received_at": NEW}),
        ("never handed to a worker", {"dispatched_at": None}),
        ("its recording had an event since", {"recording_last_event_at": NEW}),
        ("its recording is collecting", {"recording_state": RecordingState.COLLECTING}),
        ("its recording is processing", {"recording_state": RecordingState.PROCESSING}),
        ("a change waits for its recording", {"pending_changes": True}),
        ("no recording", {"recording_state": None, "recording_last_event_at": None}),
        ("exactly at the cutoff", {"received_at": BEFORE, "recording_last_event_at": BEFORE}),
    ],
)
def test_a_callback_is_kept(why, changes):
    assert not callback(**changes), why


@pytest.mark.parametrize(
    ("at", "state", "prunable"),
    [
        (OLD, NotificationState.DELIVERED, True),
        (OLD, NotificationState.FAILED, True),
        (OLD, NotificationState.DISABLED, True),
        (OLD, NotificationState.PENDING, False),
        (NEW, NotificationState.DELIVERED, False),
    ],
)
def test_delivery_attempts_go_once_old_and_their_notification_is_settled(at, state, prunable):
    assert attempt_prunable(at=at, notification_state=state, before=BEFORE) is prunable


def test_counts_add_up_per_table():
    total = PruneCounts(3, 1) + PruneCounts(2, 5)
    assert (total.callbacks, total.delivery_attempts, total.total) == (5, 6, 11)


def test_retention_defaults_to_30_days_and_0_turns_it_off(tmp_path: Path):
    env = {"RECPIPE_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).retention_days == 30.0
    assert Settings.from_env({**env, "RECPIPE_RETENTION_DAYS": "7.5"}).retention_days == 7.5
    with pytest.raises(ConfigError, match="RECPIPE_RETENTION_DAYS"):
        Settings.from_env({**env, "RECPIPE_RETENTION_DAYS": "-1"})
    with pytest.raises(ConfigError, match="RECPIPE_RETENTION_DAYS"):
        Settings.from_env({**env, "RECPIPE_RETENTION_DAYS": "forever"})


def test_beat_prunes_hourly_unless_retention_is_off(tmp_path: Path):
    env = {"RECPIPE_DATA_DIR": str(tmp_path)}
    on = periodic_jobs(Settings.from_env(env))
    assert on["prune"] == {"task": "recpipe.prune", "schedule": timedelta(hours=1)}
    assert on["sweep"]["task"] == "recpipe.sweep"
    off = periodic_jobs(Settings.from_env({**env, "RECPIPE_RETENTION_DAYS": "0"}))
    assert set(off) == {"sweep"}
