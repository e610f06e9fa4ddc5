"""The webhook's intake statement runs on a connection of the calling thread's own
(`storage.ledger.engine.ThreadConnections`): kept between requests, one per thread, closed
with its thread or the ledger, and made again after the server dropped it."""

from __future__ import annotations

import gc
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from storage.domain import GmeEvent, GmeRecordingKey
from storage.ledger import Ledger, LedgerUnavailableError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def upload(seq_no: int, task_id: str = "446946705284000000") -> GmeEvent:
    key = GmeRecordingKey(
        biz_id=1400000000, room_id="100", user_id="999", task_id=task_id, record_mode=1
    )
    return GmeEvent(key, 3, seq_no, f"1400000000_100/{task_id}/seg{seq_no}.mp3", 1_700_000_000)


def record(ledger: Ledger, seq_no: int) -> int:
    result = ledger.record_gme_event(upload(seq_no), "{}", {}, now=NOW, settle_seconds=120)
    return result.callback_id


def backend_pids(ledger: Ledger) -> set[int]:
    """The server processes of the intake connections the ledger holds open."""
    return {c.info.backend_pid for c in ledger.thread_connections._open if not c.closed}


def in_thread(ledger: Ledger, seq_no: int) -> int:
    """Record one event on a thread of its own; the backend pid its connection had."""
    pids: list[int] = []

    def run() -> None:
        record(ledger, seq_no)
        pids.append(ledger.thread_connections.get().info.backend_pid)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return pids[0]


def terminate(url: str, pids: set[int]) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        conn.commit()
    engine.dispose()


def test_a_thread_keeps_its_connection_and_each_thread_has_its_own(pg_ledger: Ledger):
    """Consecutive statements of one thread share one autocommit connection; another
    thread's is another one, and is closed once that thread is gone."""
    record(pg_ledger, 0)
    mine = backend_pids(pg_ledger)
    record(pg_ledger, 1)
    assert backend_pids(pg_ledger) == mine and len(mine) == 1
    assert pg_ledger.thread_connections.get().autocommit

    other = in_thread(pg_ledger, 2)
    assert other not in mine
    gc.collect()  # the ended thread's object goes, and its connection with it
    assert backend_pids(pg_ledger) == mine
    assert len(pg_ledger.callbacks()) == 3


def test_a_dropped_connection_fails_once_then_every_thread_connects_anew(
    pg_ledger: Ledger, pg_url: str
):
    """The server ends the intake connections (a restart, an idle timeout): the next
    statement is refused as unavailable (the webhook's 503, which the vendor retries),
    nothing half-stored; the one after it is stored on a new connection, in this thread and
    in one that had never failed."""
    record(pg_ledger, 0)
    blocker = threading.Event()
    done = threading.Event()
    pids: list[int] = []

    def idle_worker() -> None:
        record(pg_ledger, 1)
        pids.append(pg_ledger.thread_connections.get().info.backend_pid)
        blocker.wait(30)
        record(pg_ledger, 2)
        pids.append(pg_ledger.thread_connections.get().info.backend_pid)
        done.set()

    worker = threading.Thread(target=idle_worker)
    worker.start()
    while not pids:
        threading.Event().wait(0.01)
    old = backend_pids(pg_ledger)
    assert len(old) == 2
    terminate(pg_url, old)

    with pytest.raises(LedgerUnavailableError):
        record(pg_ledger, 3)
    assert record(pg_ledger, 3) > 0
    blocker.set()  # the other thread's connection died too: it connects anew, no failure
    worker.join(30)
    assert done.is_set()
    assert pids[1] != pids[0]
    assert not backend_pids(pg_ledger) & old
    assert sorted(c.body for c in pg_ledger.callbacks()) == ["{}"] * 4


def test_dispose_closes_every_threads_connection(pg_ledger: Ledger):
    """The server's parent disposes of the ledger before forking its workers: nothing of
    the intake's stays open, and the ledger still works afterwards."""
    record(pg_ledger, 0)
    pg_ledger.dispose()
    assert backend_pids(pg_ledger) == set()
    assert record(pg_ledger, 1) > 0
