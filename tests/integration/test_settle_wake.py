"""A waiting GME settle task sleeps until its settle time and records that as the
recording's wake; a second task finding another look recorded no later ends; beat's sweep
still settles a recording whose settle task was lost (PostgreSQL and SQLite)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from foundation.config import Settings
from storage.domain import GmeEvent, GmeRecordingKey
from storage.ledger import Ledger
from storage.ledger.engine import aware
from storage.ledger.tables import Recording
from storage.objectstore import store_from_url
from tasks import settling, sweeping
from tasks.services import Services

KEY = GmeRecordingKey(1400000000, "100", "999", "446946705284000777", 1)
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def wake(ledger: Ledger) -> datetime | None:
    with ledger.session() as s:
        return aware(s.get_one(Recording, KEY.recording_id).settle_wake_at)


def test_an_incomplete_recording_sleeps_until_the_long_window_and_one_task_looks(
    ledger: Ledger, tmp_path: Path
):
    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_SETTLE_SECONDS": "120",
            "RECPIPE_SETTLE_COMPLETE_SECONDS": "20",
        }
    )
    source, archive = store_from_url(settings.gme_source_url), store_from_url(settings.archive_url)
    services = Services(settings, ledger, source, archive)
    event = GmeEvent(KEY, 1, 0, f"p/0_{KEY.task_id}_audio.mp3", 1675930605)
    first = ledger.record_gme_event(
        event, "{}", {}, now=T0, settle_seconds=120, complete_seconds=20
    )
    assert (first.dispatches_settle, first.settle_wake_at) == (True, at(20))

    # The task looks after the short window: segment 0 is open, so it sleeps until the
    # long window's end (not the next short window) and records that.
    looked = settling.settle(services, KEY.recording_id, now=at(20.2))
    assert (looked.action, looked.recheck_at, looked.looks_again) == ("wait", at(120), True)
    assert wake(ledger) == at(120)

    # Another task (a duplicate, a replay) finds that look recorded: it ends.
    other = settling.settle(services, KEY.recording_id, now=at(30))
    assert (other.action, other.recheck_at, other.looks_again) == ("wait", at(120), False)
    assert wake(ledger) == at(120)

    # The sleeping task's message is lost: beat's sweep settles from the settle time.
    handed: list[str] = []
    sweeping.sweep(
        services,
        settle_later=handed.append,
        redispatch_run=lambda run_id: None,
        notify=lambda run_id: None,
        redeliver=lambda nid: None,
        now=at(121),
    )
    assert handed == [KEY.recording_id]
    assert wake(ledger) == at(121)
