"""Beat's settle clock (`tasks.sweeping.settle_due`) is the one thing that decides when a
recording is looked at: it hands a recording out when its settle time has come, once; a
look that waits writes when it is due again, and nothing looks before then; a look whose
message was lost is handed out again when its lease ends; two clocks never hand one
recording out twice (PostgreSQL and SQLite, and two concurrent clocks on PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from foundation.config import Settings
from storage.domain import GmeEvent, GmeRecordingKey
from storage.ledger import Ledger
from storage.objectstore import store_from_url
from tasks import settling
from tasks.services import Services
from tasks.sweeping import SETTLE_LEASE, settle_due

KEY = GmeRecordingKey(1400000000, "100", "999", "446946705284000777", 1)
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def services_for(ledger: Ledger, tmp_path: Path) -> Services:
    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_SETTLE_SECONDS": "120",
            "RECPIPE_SETTLE_COMPLETE_SECONDS": "20",
            "RECPIPE_MAX_WAIT_SECONDS": "3600",
        }
    )
    source, archive = store_from_url(settings.gme_source_url), store_from_url(settings.archive_url)
    return Services(settings, ledger, source, archive)


def record(ledger: Ledger, event_type: int, seq_no: int, now: datetime) -> None:
    gme = GmeEvent(KEY, event_type, seq_no, f"p/{seq_no}_{KEY.task_id}_audio.mp3", 1675930605)
    ledger.record_gme_event(gme, "{}", {}, now=now, settle_seconds=120, complete_seconds=20)


def clock(ledger: Ledger, now: datetime) -> list[str]:
    handed: list[str] = []
    settle_due(ledger, handed.append, now=now)
    return handed


def test_a_recording_is_looked_at_when_due_and_not_polled_while_it_waits(
    ledger: Ledger, tmp_path: Path
):
    services = services_for(ledger, tmp_path)
    record(ledger, 1, 0, T0)
    # Segment 0 is open: due after the long window, not before.
    assert clock(ledger, at(119.9)) == []
    assert clock(ledger, at(120)) == [KEY.recording_id]
    assert clock(ledger, at(120.5)) == []  # handed out once
    looked = settling.settle(services, KEY.recording_id, now=at(120.1))
    # It waits for segment 0's upload until the maximum wait, and says so in the ledger.
    assert (looked.action, looked.recheck_at) == ("wait", at(3600))
    assert [clock(ledger, at(s)) for s in (150, 600, 3599)] == [[], [], []]
    # The completing events make it due after the short window of the last one.
    record(ledger, 2, 0, at(900))
    record(ledger, 3, 0, at(901))
    assert clock(ledger, at(920.9)) == []
    assert clock(ledger, at(921)) == [KEY.recording_id]
    done = settling.settle(services, KEY.recording_id, now=at(921.1))
    assert done.action == "finalize" and done.run_id is not None
    assert clock(ledger, at(4000)) == []  # processing: nothing is due


def test_a_look_whose_message_was_lost_is_handed_out_again_after_its_lease(ledger: Ledger):
    record(ledger, 1, 0, T0)
    assert clock(ledger, at(120)) == [KEY.recording_id]
    # The settle task never runs (its message is lost): the recording is due again once
    # the lease is over, not before.
    lease = SETTLE_LEASE.total_seconds()
    assert clock(ledger, at(120 + lease - 0.1)) == []
    assert clock(ledger, at(120 + lease)) == [KEY.recording_id]


def test_an_event_during_a_look_keeps_its_own_settle_time(ledger: Ledger, tmp_path: Path):
    """The look read the recording before the completing upload: it does not write its
    long wait over the upload's short window."""
    services = services_for(ledger, tmp_path)
    record(ledger, 1, 0, T0)
    assert clock(ledger, at(120)) == [KEY.recording_id]
    seen = ledger.recording(KEY.recording_id)
    assert seen is not None
    record(ledger, 2, 0, at(130))
    record(ledger, 3, 0, at(131))
    assert not ledger.postpone(KEY.recording_id, at(3600), seen_due=seen.settle_due_at)
    view = ledger.recording(KEY.recording_id)
    assert view is not None and view.settle_due_at == at(151)
    assert settling.settle(services, KEY.recording_id, now=at(151)).action == "finalize"


def due_recordings(ledger: Ledger, count: int) -> list[str]:
    ids = []
    for n in range(count):
        key = GmeRecordingKey(1400000000, "100", f"user-{n}", str(446946705284000000 + n), 1)
        gme = GmeEvent(key, 3, 0, f"p/0_{key.task_id}_audio.mp3", 1675930605)
        ledger.record_gme_event(gme, "{}", {}, now=T0, settle_seconds=120, complete_seconds=20)
        ids.append(key.recording_id)
    return ids


def test_a_clock_skips_what_another_clock_holds_without_waiting(pg_url: str):
    """A second beat's clock in the middle of its lease holds its rows: this one hands out
    the others, at once, and never the held ones."""
    first, second = Ledger(pg_url), Ledger(pg_url)
    first.migrate()
    try:
        ids = due_recordings(first, 6)
        held = sorted(ids)[:3]
        handed: list[str] = []
        with first.engine.connect() as other:
            other.execute(
                text("SELECT id FROM recordings WHERE id = ANY(:ids) FOR UPDATE"), {"ids": held}
            )
            looking = threading.Thread(target=lambda: handed.extend(clock(second, at(200))))
            looking.start()
            looking.join(timeout=30)  # a guard: a clock that waits for the rows never ends
            waited = looking.is_alive()
            other.rollback()
            looking.join()
        assert not waited
        assert sorted(handed) == sorted(set(ids) - set(held))
        assert sorted(clock(second, at(200))) == held
    finally:
        first.dispose()
        second.dispose()


def test_two_concurrent_clocks_never_hand_one_recording_out_twice(pg_url: str):
    """Two beats' clocks (two processes, two connections) pass over 300 due recordings at
    once, a few at a time: each recording is handed out exactly once."""
    setup = Ledger(pg_url)
    setup.migrate()
    ids = due_recordings(setup, 300)
    setup.dispose()
    clocks = [Ledger(pg_url), Ledger(pg_url)]
    handed: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def run(number: int) -> None:
        ledger = clocks[number]
        start.wait()
        while True:
            batch = ledger.lease_due_recordings(at(200), until=at(200) + SETTLE_LEASE, limit=7)
            if not batch:
                return
            handed[number].extend(batch)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ledger in clocks:
        ledger.dispose()
    together = handed[0] + handed[1]
    assert sorted(together) == sorted(ids)
    assert len(set(together)) == len(together)
