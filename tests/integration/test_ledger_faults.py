"""The ledger's part in riding out faults, on PostgreSQL and SQLite: a retry that takes back
the attempt whose hand-back was lost, queued runs whose message is gone, the beat lease."""

from datetime import timedelta

from foundation.config import Settings
from storage.domain import GmeEvent, GmeRecordingKey, RunHolder, StaleRun, lifecycle
from storage.ledger import Ledger, utcnow
from storage.objectstore import store_from_url
from tasks import sweeping
from tasks.services import Services
from tests.support.ledger import KEY, RID, record


def queued_run(ledger: Ledger) -> str:
    record(ledger, 0)
    run_id = ledger.claim(RID, now=utcnow())
    assert run_id is not None
    return run_id


def test_a_retry_takes_back_the_run_its_own_earlier_attempt_started_and_nothing_else(
    ledger: Ledger,
):
    """Attempt 0 of a task started the run and never heard back (the ledger stopped): the
    task's retry takes the run, heartbeat fresh or not, without counting a takeover.
    Another delivery of that same attempt, or another task, leaves it to its holder."""
    run_id = queued_run(ledger)
    now = utcnow()
    first = RunHolder("host-a:media@a", "task-1", 0)
    started = ledger.start_run(run_id, worker=first, now=now, stale_after=900)
    assert started is not None and started.attempts == 1
    for other in (
        RunHolder("host-b:media@b", "task-1", 0),  # the same message delivered again
        RunHolder("host-b:media@b", "task-2", 1),  # another task's retry
        "host-b:media@b",
    ):
        assert ledger.start_run(run_id, worker=other, now=now, stale_after=900) is None
    retry = RunHolder("host-b:media@b", "task-1", 1)
    again = ledger.start_run(run_id, worker=retry, now=now, stale_after=900)
    assert again is not None and (again.attempts, again.takeovers) == (2, 0)
    # A second delivery of that retry, or a later retry of an attempt it outlived, finds
    # the run held by the retry: only a still later attempt of the task takes it.
    assert ledger.start_run(run_id, worker=retry, now=now, stale_after=900) is None
    assert ledger.start_run(run_id, worker=first, now=now, stale_after=900) is None
    last = ledger.start_run(run_id, worker=RunHolder("c", "task-1", 3), now=now, stale_after=900)
    assert last is not None and last.attempts == 3


def test_the_holder_of_a_run_reads_back_from_what_the_ledger_stores():
    holder = RunHolder("host:media@host", "9a6f-1", 2)
    assert RunHolder.parse(str(holder)) == holder
    assert RunHolder.parse("host:media@host") is None
    assert RunHolder.parse(None) is None
    assert holder.follows(str(RunHolder("elsewhere", "9a6f-1", 1)))
    assert not holder.follows(str(RunHolder("host:media@host", "9a6f-1", 2)))
    assert not holder.follows(str(RunHolder("host:media@host", "other", 0)))


def test_a_released_run_counts_as_dispatched_now_and_idle_queues_requeue_it_soon(
    ledger: Ledger,
):
    run_id = queued_run(ledger)
    dispatched = utcnow() - timedelta(seconds=120)
    ledger.mark_run_dispatched(run_id, dispatched)
    now = utcnow()
    assert ledger.stale_runs(now, 900) == []
    assert ledger.stale_runs(now, 900, queued_after=60) == [StaleRun(run_id, False, 0)]
    ledger.start_run(run_id, worker="a", now=now, stale_after=900)
    ledger.release_run(run_id, now=now)
    assert ledger.run(run_id).state == "queued"
    assert ledger.stale_runs(now + timedelta(seconds=30), 900, queued_after=60) == []
    assert ledger.stale_runs(now + timedelta(seconds=61), 900, queued_after=60) == [
        StaleRun(run_id, False, 0)
    ]


def test_a_run_retried_twice_that_then_lost_its_worker_is_taken_over_not_failed(
    ledger: Ledger, tmp_path
):
    """A task's retries (the object store was away) count as attempts, not takeovers: a run
    retried twice whose worker then dies is handed out again by the sweep and taken over;
    only a run whose worker was lost three times is failed as stuck."""
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    source, archive = store_from_url(settings.gme_source_url), store_from_url(settings.archive_url)
    services = Services(settings, ledger, source, archive)
    stuck = settings.stuck_after_seconds
    run_id = queued_run(ledger)
    dispatched: list[str] = []

    def sweep(at):
        return sweeping.sweep(
            services,
            redispatch_run=dispatched.append,
            notify=lambda rid: None,
            redeliver=lambda nid: None,
            now=at,
        )

    now = utcnow()
    ledger.mark_run_dispatched(run_id, now)
    for _ in range(2):  # attempts 1 and 2 are handed back for their task's retry
        assert ledger.start_run(run_id, worker="a", now=now, stale_after=stuck) is not None
        ledger.release_run(run_id, now=now)
    third = ledger.start_run(run_id, worker="a", now=now, stale_after=stuck)
    assert (third.attempts, third.takeovers) == (3, 0)

    now += timedelta(seconds=stuck + 1)  # worker a dies
    report = sweep(now)
    assert (report.redispatched_runs, report.failed_runs) == ([run_id], [])
    queued = ledger.run(run_id)
    assert (queued.state, queued.takeovers) == ("queued", 1)
    assert ledger.start_run(run_id, worker="b", now=now, stale_after=stuck) is not None
    assert sweep(now + timedelta(seconds=1)).redispatched_runs == []  # b holds it

    now += timedelta(seconds=stuck + 1)  # worker b dies too
    assert sweep(now).redispatched_runs == [run_id]
    ledger.start_run(run_id, worker="c", now=now, stale_after=stuck)
    now += timedelta(seconds=stuck + 1)  # and c: the third lost worker
    report = sweep(now)
    assert (report.redispatched_runs, report.failed_runs) == ([], [run_id])
    failed = ledger.run(run_id)
    assert (failed.state, failed.attempts, failed.takeovers) == ("failed", 5, 2)
    assert failed.error == "stuck: its worker was lost 3 times"
    assert dispatched == [run_id, run_id]


def test_a_queued_run_no_worker_ever_takes_is_sent_again_three_times_then_fails(
    ledger: Ledger, tmp_path
):
    """The media queue is idle, yet the run's message never reaches a worker: the sweep
    sends it again three times, then fails it (and its recording) with the reason, and
    notifies. A worker taking the run starts the count anew."""
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    source, archive = store_from_url(settings.gme_source_url), store_from_url(settings.archive_url)
    services = Services(settings, ledger, source, archive)
    later = timedelta(seconds=settings.requeue_after_seconds + 1)
    run_id = queued_run(ledger)
    dispatched: list[str] = []
    notified: list[str] = []
    now = utcnow()

    def send(rid: str) -> None:  # as tasks.jobs.start_chain, whose message is then lost
        dispatched.append(rid)
        ledger.mark_run_dispatched(rid, now)

    def sweep():
        return sweeping.sweep(
            services,
            redispatch_run=send,
            notify=notified.append,
            redeliver=lambda nid: None,
            media_queue_idle=lambda: True,
            now=now,
        )

    send(run_id)
    # Taken once and handed back for its task's retry, whose message is lost: the run was
    # picked up, so that re-send is the first of a new count.
    now += later
    assert sweep().redispatched_runs == [run_id]
    assert ledger.run(run_id).requeues == 1
    ledger.start_run(run_id, worker="a", now=now, stale_after=settings.stuck_after_seconds)
    ledger.release_run(run_id, now=now)
    assert ledger.run(run_id).requeues == 0

    for requeues in (1, 2, 3):
        now += later
        assert sweep().redispatched_runs == [run_id]
        assert (ledger.run(run_id).state, ledger.run(run_id).requeues) == ("queued", requeues)
    now += later
    report = sweep()
    assert (report.redispatched_runs, report.failed_runs) == ([], [run_id])
    assert notified == [run_id]
    error = (
        "queued 4 times, never picked up by a media worker: "
        "is one running and consuming the media queue?"
    )
    failed = ledger.run(run_id)
    assert (failed.state, failed.error) == ("failed", error)
    assert (failed.recording.state, failed.recording.error) == ("failed", error)
    assert dispatched == [run_id] * 5
    now += later
    # Nothing is sent to the queue any more; the notify above (a list here) made no
    # notifications, so the sweep notifies again, as it does when a notify task was lost.
    assert sweep() == sweeping.SweepReport([], [], [], [run_id])


def test_a_queued_run_waiting_behind_a_busy_media_queue_is_sent_again_but_never_failed(
    ledger: Ledger, tmp_path
):
    """A busy queue may hold the run's message behind others: after the stuck time the
    sweep sends it again, as before, and those re-sends do not count towards the bound."""
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    source, archive = store_from_url(settings.gme_source_url), store_from_url(settings.archive_url)
    services = Services(settings, ledger, source, archive)
    run_id = queued_run(ledger)
    now = utcnow()
    ledger.mark_run_dispatched(run_id, now)
    for _ in range(lifecycle.MAX_REQUEUES + 2):
        now += timedelta(seconds=settings.stuck_after_seconds + 1)
        report = sweeping.sweep(
            services,
            redispatch_run=lambda rid, at=now: ledger.mark_run_dispatched(rid, at),
            notify=lambda rid: None,
            redeliver=lambda nid: None,
            media_queue_idle=lambda: False,
            now=now,
        )
        assert (report.redispatched_runs, report.failed_runs) == ([run_id], [])
    assert (ledger.run(run_id).state, ledger.run(run_id).requeues) == ("queued", 0)


def test_an_empty_media_queue_while_a_worker_is_on_a_run_is_busy_not_idle(ledger: Ledger, tmp_path):
    """Under load a worker holds the messages it prefetched, unacknowledged, out of the
    queue's count: while any run is heart-beating the queue is busy, so a queued run behind
    it is sent again only after the stuck time and never failed as never picked up."""
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    source, archive = store_from_url(settings.gme_source_url), store_from_url(settings.archive_url)
    services = Services(settings, ledger, source, archive)
    run_id = queued_run(ledger)
    other = GmeRecordingKey(KEY.biz_id, KEY.room_id, "1000", KEY.task_id, KEY.record_mode)
    ledger.record_gme_event(
        GmeEvent(other, 3, 0, "p/0_other.mp3", 1675930605), "{}", {}, now=utcnow(),
        settle_seconds=60,
    )  # fmt: skip
    working = ledger.claim(other.recording_id, now=utcnow())
    now = utcnow()
    ledger.start_run(working, worker="a", now=now, stale_after=settings.stuck_after_seconds)
    ledger.mark_run_dispatched(run_id, now)
    sent: list[str] = []
    for _ in range(lifecycle.MAX_REQUEUES + 2):
        now += timedelta(seconds=settings.requeue_after_seconds + 1)
        ledger.heartbeat(working, now)
        report = sweeping.sweep(
            services,
            redispatch_run=sent.append,
            notify=lambda rid: None,
            redeliver=lambda nid: None,
            media_queue_idle=lambda: True,
            now=now,
        )
        assert report.failed_runs == []
    assert sent == [], "a queued run is not sent again before the stuck time while busy"
    assert (ledger.run(run_id).state, ledger.run(run_id).requeues) == ("queued", 0)


def test_the_sweep_leaves_a_queued_run_a_worker_took_meanwhile(ledger: Ledger):
    """The sweep saw the run queued, a worker took it before the sweep acted: neither a
    requeue nor a give-up touches it."""
    run_id = queued_run(ledger)
    ledger.mark_run_dispatched(run_id, utcnow())
    ledger.start_run(run_id, worker="a", now=utcnow(), stale_after=900)
    assert not ledger.requeue_run(run_id)
    assert not ledger.fail_run(run_id, now=utcnow(), error="x", if_state="queued")
    assert (ledger.run(run_id).state, ledger.run(run_id).requeues) == ("running", 0)


def test_a_worker_that_takes_a_run_with_a_stale_heartbeat_counts_a_takeover(ledger: Ledger):
    """A redelivered message can reach a run whose worker died before the sweep does: that
    start is a takeover too; a retry taking back its own attempt is not."""
    run_id = queued_run(ledger)
    now = utcnow()
    ledger.start_run(run_id, worker=RunHolder("a", "task-1", 0), now=now, stale_after=60)
    later = now + timedelta(seconds=61)
    retry = RunHolder("b", "task-1", 1)  # a's task was task-1, attempt 0
    again = ledger.start_run(run_id, worker=retry, now=later, stale_after=60)
    assert (again.attempts, again.takeovers) == (2, 0)
    taken = ledger.start_run(run_id, worker="c", now=later + timedelta(seconds=61), stale_after=60)
    assert (taken.attempts, taken.takeovers) == (3, 1)


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


def test_the_sweep_hands_out_again_in_seconds_an_outcome_or_a_delivery_whose_task_was_lost(
    ledger: Ledger, tmp_path
):
    """A finished run never notified, and a pending notification whose next attempt is
    overdue (at once when never tried, else after its receiver's back-off), were lost with
    their task in an outage: the sweep hands each out again within seconds, not after the
    stuck time (15 minutes here), and once per lapse."""
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    source, archive = store_from_url(settings.gme_source_url), store_from_url(settings.archive_url)
    services = Services(settings, ledger, source, archive)
    run_id = queued_run(ledger)
    ledger.start_run(run_id, worker="a", now=utcnow(), stale_after=900)
    now = utcnow()
    ledger.finish_run(run_id, now=now, result={}, manifest_url="file:///m")
    notified: list[str] = []
    redelivered: list[int] = []

    def sweep(seconds: float) -> None:
        sweeping.sweep(
            services,
            redispatch_run=lambda rid: None,
            notify=notified.append,
            redeliver=redelivered.append,
            now=now + timedelta(seconds=seconds),
        )

    sweep(5)
    assert notified == []
    sweep(21)
    assert notified == [run_id]
    sweep(30)
    assert notified == [run_id]

    # The notify task sent again makes the notifications: one is never tried (its task
    # lost), one was tried three times (the receiver said 503), one was delivered.
    made = now + timedelta(seconds=30)
    urls = ["http://a/h", "http://b/h", "http://c/h"]
    untried, tried, delivered = ledger.create_notifications(
        run_id, "recording.archived", "msg_x", "{}", urls, made
    )
    for _ in range(3):
        ledger.record_attempt(
            tried, now=made, status_code=503, error="HTTP 503", duration_ms=5, final_state=None
        )
    ledger.record_attempt(
        delivered, now=made, status_code=204, error=None, duration_ms=5, final_state="delivered"
    )
    sweep(40)
    assert redelivered == []
    sweep(51)
    assert redelivered == [untried]
    sweep(61)  # the third attempt's back-off is at most 10 s: 20 s later it is overdue
    assert redelivered == [untried, tried]
    sweep(65)
    assert redelivered == [untried, tried]
    sweep(72)  # the untried one was handed out at 51 and is still untried
    assert redelivered == [untried, tried, untried]
    assert notified == [run_id]
