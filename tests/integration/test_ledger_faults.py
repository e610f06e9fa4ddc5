"""The ledger's part in riding out faults, on PostgreSQL and SQLite: a retry that takes back
the attempt whose hand-back was lost, queued runs whose message is gone, the beat lease."""

from datetime import timedelta

import pytest

from storage.ledger import Ledger, utcnow
from tests.integration.test_ledger_durability import RID, record

pytestmark = pytest.mark.integration


def queued_run(ledger: Ledger) -> str:
    record(ledger, 0)
    run_id = ledger.claim(RID, now=utcnow())
    assert run_id is not None
    return run_id


def test_a_retry_takes_back_only_the_attempt_it_names(ledger: Ledger):
    """The ledger missed the hand-back (the run still shows attempt 1 running): the retry
    naming attempt 1 takes it; one naming an older attempt, or none, does not."""
    run_id = queued_run(ledger)
    first = ledger.start_run(run_id, worker="a", now=utcnow(), stale_after=900)
    assert first is not None and first.attempts == 1
    assert ledger.start_run(run_id, worker="b", now=utcnow(), stale_after=900) is None
    assert (
        ledger.start_run(run_id, worker="b", now=utcnow(), stale_after=900, resume_attempt=0)
        is None
    )
    again = ledger.start_run(run_id, worker="b", now=utcnow(), stale_after=900, resume_attempt=1)
    assert again is not None and again.attempts == 2
    # A second delivery of the same retry finds attempt 2 running: nothing to take.
    assert (
        ledger.start_run(run_id, worker="c", now=utcnow(), stale_after=900, resume_attempt=1)
        is None
    )


def test_a_released_run_counts_as_dispatched_now_and_idle_queues_requeue_it_soon(
    ledger: Ledger,
):
    run_id = queued_run(ledger)
    dispatched = utcnow() - timedelta(seconds=120)
    ledger.mark_run_dispatched(run_id, dispatched)
    now = utcnow()
    assert ledger.stale_runs(now, 900) == []
    assert ledger.stale_runs(now, 900, queued_after=60) == [(run_id, 0)]
    ledger.start_run(run_id, worker="a", now=now, stale_after=900)
    ledger.release_run(run_id, now=now)
    assert ledger.run(run_id).state == "queued"
    assert ledger.stale_runs(now + timedelta(seconds=30), 900, queued_after=60) == []
    assert ledger.stale_runs(now + timedelta(seconds=61), 900, queued_after=60) == [(run_id, 1)]


def test_one_holder_per_lease_until_it_lapses(ledger: Ledger):
    now = utcnow()
    assert ledger.acquire_lease("beat", "a", now=now, ttl=15)
    assert not ledger.acquire_lease("beat", "b", now=now + timedelta(seconds=5), ttl=15)
    assert ledger.lease_holder("beat", now + timedelta(seconds=5)) == "a"
    assert ledger.acquire_lease("beat", "a", now=now + timedelta(seconds=10), ttl=15)  # renewed
    assert not ledger.acquire_lease("beat", "b", now=now + timedelta(seconds=20), ttl=15)
    assert ledger.acquire_lease("beat", "b", now=now + timedelta(seconds=26), ttl=15)
    assert ledger.lease_holder("beat", now + timedelta(seconds=27)) == "b"
    ledger.release_lease("beat", "a")  # not the holder: nothing happens
    assert ledger.lease_holder("beat", now + timedelta(seconds=27)) == "b"
    ledger.release_lease("beat", "b")
    assert ledger.lease_holder("beat", now + timedelta(seconds=27)) is None
    assert ledger.acquire_lease("beat", "c", now=now + timedelta(seconds=28), ttl=15)
