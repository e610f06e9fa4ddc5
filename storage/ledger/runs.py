"""Runs: one execution of a recording's chain (one revision), its steps and its end."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select, update

from storage.domain import RecordingState, RunHolder, RunState, RunView, StaleRun, lifecycle
from storage.ledger.engine import LedgerBase, aware
from storage.ledger.recordings import recording_view, set_status, status_of
from storage.ledger.tables import Recording, Run

# The end of a run whose recording became a tombstone while it worked.
FORGOTTEN_RUN = "the recording was forgotten (or expired) while this run worked"


class Runs(LedgerBase):
    def mark_run_dispatched(self, run_id: str, now: datetime) -> None:
        with self.bookkeeping() as s:
            s.execute(update(Run).where(Run.id == run_id).values(dispatched_at=now))

    def start_run(
        self, run_id: str, *, worker: str | RunHolder, now: datetime, stale_after: float
    ) -> RunView | None:
        """Take the run for `worker`: queued, running with a stale heartbeat (its worker
        is gone: a takeover), or running for an earlier attempt of this same task (`worker`
        a RunHolder whose task's retry this is: that attempt is over even when the ledger
        never heard, e.g. its start committed but the answer was lost with the ledger).

        None when the run is finished or another worker is actively on it.
        """
        stale = now - timedelta(seconds=stale_after)
        with self.session() as s:
            seen = s.execute(
                select(Run.state, Run.heartbeat_at, Run.worker).where(Run.id == run_id)
            ).first()
            if seen is None:
                return None
            state, heartbeat_at, held_by = seen
            running = state == RunState.RUNNING
            resumed = running and isinstance(worker, RunHolder) and worker.follows(held_by)
            beat = aware(heartbeat_at)
            lost = running and not resumed and beat is not None and beat < stale
            if state != RunState.QUEUED and not (resumed or lost):
                return None
            result = s.execute(
                update(Run)
                .where(
                    Run.id == run_id,  # as seen: a worker that took it meanwhile keeps it
                    Run.state == state,
                    Run.worker.is_not_distinct_from(held_by),
                    Run.heartbeat_at.is_not_distinct_from(heartbeat_at),
                )
                .values(
                    state=RunState.RUNNING,
                    attempts=Run.attempts + 1,
                    takeovers=Run.takeovers + int(lost),
                    requeues=0,
                    started_at=func.coalesce(Run.started_at, now),
                    heartbeat_at=now,
                    worker=str(worker),
                    error=None,
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None
        return self.run(run_id)

    def run(self, run_id: str) -> RunView | None:
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                return None
            recording = s.get_one(Recording, run.recording_id)
            return RunView(
                id=run.id,
                recording_id=run.recording_id,
                revision=run.revision,
                state=run.state,
                attempts=run.attempts,
                recording=recording_view(s, recording),
                steps=list(run.steps or []),
                result=dict(run.result or {}),
                error=run.error,
                manifest_url=run.manifest_url,
                started_at=aware(run.started_at),
                finished_at=aware(run.finished_at),
                takeovers=run.takeovers,
                requeues=run.requeues,
            )

    def runs_for(self, recording_id: str) -> list[RunView]:
        with self.session() as s:
            ids = list(
                s.scalars(
                    select(Run.id).where(Run.recording_id == recording_id).order_by(Run.revision)
                )
            )
        return [view for rid in ids if (view := self.run(rid)) is not None]

    def step(self, run_id: str, step: str, *, now: datetime, **facts: Any) -> None:
        """Record that `step` began (facts empty) or ended (facts say how)."""
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                return
            # Fresh dicts: mutating the loaded ones in place would leave SQLAlchemy seeing
            # an unchanged JSON value, and the step's outcome would never be written.
            steps = [dict(entry) for entry in run.steps or []]
            if not facts:
                steps.append({"step": step, "started_at": now.isoformat(), "attempt": run.attempts})
                run.step = step
            else:
                for entry in reversed(steps):
                    if entry["step"] == step and "finished_at" not in entry:
                        entry.update({"finished_at": now.isoformat(), **facts})
                        break
            run.steps = steps
            run.heartbeat_at = now

    def write_steps(
        self, run_id: str, steps: list[dict[str, Any]], *, step: str | None, now: datetime
    ) -> None:
        """Store a run's whole step list, as `step` keeps it, in one UPDATE: for the task
        that holds the run, which keeps the list itself."""
        with self.bookkeeping() as s:
            s.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(steps=[dict(entry) for entry in steps], step=step, heartbeat_at=now)
            )

    def release_run(
        self,
        run_id: str,
        now: datetime | None = None,
        *,
        steps: list[dict[str, Any]] | None = None,
    ) -> None:
        """Hand a running run back to the queue (its task will retry); `now` counts as its
        dispatch, so the sweep leaves it to that retry. `steps`: the step list as the task
        that held the run kept it (with the step that stopped it), stored in the same UPDATE."""
        values: dict[str, Any] = {"state": RunState.QUEUED, "step": None}
        if now is not None:
            values["dispatched_at"] = now
        if steps is not None:
            values["steps"] = [dict(entry) for entry in steps]
        with self.session() as s:
            s.execute(
                update(Run).where(Run.id == run_id, Run.state == RunState.RUNNING).values(**values)
            )

    def heartbeat(self, run_id: str, now: datetime) -> None:
        with self.bookkeeping() as s:
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=now))

    def finish_run(
        self,
        run_id: str,
        *,
        now: datetime,
        result: dict[str, Any],
        manifest_url: str,
        steps: list[dict[str, Any]] | None = None,
    ) -> None:
        """The run archived. `steps`: its whole step list as the task that held it kept it
        (the last step's end included), stored with the end in one UPDATE."""
        self._end_run(
            run_id,
            RunState.ARCHIVED,
            now=now,
            result=result,
            manifest_url=manifest_url,
            steps=steps,
        )

    def fail_run(
        self,
        run_id: str,
        *,
        now: datetime,
        error: str,
        steps: list[dict[str, Any]] | None = None,
        if_state: str | tuple[str, ...] | None = None,
    ) -> bool:
        """The run failed for `error`. `steps`: as for `finish_run` (the failing step's
        outcome included). With `if_state`, only while it is in that state (or one of
        them): the sweep's verdict on what it saw must not end a run a worker took
        meanwhile, nor a task's giving up a run that ended meanwhile."""
        return self._end_run(
            run_id, RunState.FAILED, now=now, error=error, steps=steps, if_state=if_state
        )

    def _end_run(
        self,
        run_id: str,
        state: str,
        *,
        now: datetime,
        result: dict[str, Any] | None = None,
        manifest_url: str | None = None,
        error: str | None = None,
        steps: list[dict[str, Any]] | None = None,
        if_state: str | tuple[str, ...] | None = None,
    ) -> bool:
        with self.session() as s:
            run = s.execute(select(Run).where(Run.id == run_id).with_for_update()).scalar_one()
            states = (if_state,) if isinstance(if_state, str) else if_state
            if states is not None and run.state not in states:
                return False
            recording = s.execute(
                select(Recording).where(Recording.id == run.recording_id).with_for_update()
            ).scalar_one()
            if recording.state in RecordingState.TOMBSTONES:
                # Forgotten (or expired) while it ran: what it made is not kept, nor said.
                state, error, result, manifest_url, steps = (
                    RunState.FAILED, FORGOTTEN_RUN, None, None, None
                )  # fmt: skip
                run.notified_at = run.notified_at or now
                # Its steps were written while it worked, after its rows were hashed: an
                # error may name the player's files. Nothing of it is kept.
                run.steps = []
            run.state = state
            run.finished_at = now
            run.heartbeat_at = now
            run.step = None
            run.error = error
            if result is not None:
                run.result = {**(run.result or {}), **result}
            if manifest_url is not None:
                run.manifest_url = manifest_url
            if steps is not None:
                run.steps = [dict(entry) for entry in steps]
            if recording.current_run_id != run_id:
                return True  # a newer run owns the recording now
            recording.updated_at = now
            set_status(
                recording, lifecycle.run_ended(status_of(recording), state, error=error, now=now)
            )
        return True

    def stale_runs(
        self,
        now: datetime,
        stuck_after: float,
        limit: int = 100,
        *,
        queued_after: float | None = None,
        unsent_after: float = lifecycle.UNSENT_AFTER_SECONDS,
    ) -> list[StaleRun]:
        """Runs queued `unsent_after` ago and never dispatched, or running without a
        heartbeat for `stuck_after` (their worker was lost); queued runs dispatched more
        than `queued_after` ago too, when given (the caller knows their queue is idle, so
        their task is gone)."""
        cutoff = now - timedelta(seconds=stuck_after)
        queued_cutoff = now - timedelta(seconds=min(stuck_after, queued_after or stuck_after))
        unsent_cutoff = now - timedelta(seconds=unsent_after)
        with self.session() as s:
            rows = s.execute(
                select(Run.id, Run.state, Run.takeovers, Run.requeues)
                .where(
                    or_(
                        (Run.state == RunState.QUEUED)
                        & or_(
                            Run.dispatched_at.is_(None) & (Run.created_at < unsent_cutoff),
                            Run.dispatched_at < queued_cutoff,
                        ),
                        (Run.state == RunState.RUNNING) & (Run.heartbeat_at < cutoff),
                    )
                )
                .limit(limit)
            ).all()
        return [StaleRun(str(r[0]), r[1] == RunState.RUNNING, int(r[2]), int(r[3])) for r in rows]

    def runs_working(self, now: datetime, stuck_after: float) -> int:
        """Runs a worker is on (running, heart-beating). While one is, that worker may hold
        messages it prefetched and has not started: an empty media queue is then no sign
        that a queued run's message is lost."""
        cutoff = now - timedelta(seconds=stuck_after)
        with self.session() as s:
            found = s.scalar(
                select(func.count())
                .select_from(Run)
                .where(Run.state == RunState.RUNNING, Run.heartbeat_at >= cutoff)
            )
        return int(found or 0)

    def requeue_run(self, run_id: str) -> bool:
        """A queued run is about to be sent again to an idle queue: one requeue more when it
        was sent before (its message is gone), none when it never was. False when it is no
        longer queued (a worker took it meanwhile)."""
        with self.session() as s:
            result = s.execute(
                update(Run)
                .where(Run.id == run_id, Run.state == RunState.QUEUED)
                .values(requeues=Run.requeues + case((Run.dispatched_at.is_(None), 0), else_=1))
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def take_over_run(self, run_id: str, *, now: datetime, stuck_after: float) -> bool:
        """A run whose worker was lost goes back to the queue, not yet dispatched, with one
        takeover more. False when it moved meanwhile (its worker was only slow)."""
        cutoff = now - timedelta(seconds=stuck_after)
        with self.session() as s:
            result = s.execute(
                update(Run)
                .where(Run.id == run_id, Run.state == RunState.RUNNING, Run.heartbeat_at < cutoff)
                .values(
                    state=RunState.QUEUED,
                    step=None,
                    dispatched_at=None,
                    takeovers=Run.takeovers + 1,
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]
