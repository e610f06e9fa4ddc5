"""Beat's scheduler: only the beat that holds the ledger's `beat` lease sends the periodic
jobs and runs the settle clock. A second beat started by mistake (two `--beat` workers, a
stray `celery beat`) finds the lease held, says so in its log and stays idle; it takes
over when the first one stops renewing the lease (it died, or lost the ledger for longer
than the lease).

The settle clock is the one thing that decides when a recording is looked at: every
CLOCK_SECONDS the leader asks the ledger for the collecting recordings whose settle time
has come and sends each one settle task (`tasks.sweeping.settle_due`). An idle pass is one
indexed read, no broker message and no log line."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from typing import Any

import structlog

from storage.ledger import Ledger, LedgerUnavailableError, utcnow
from tasks import context
from tasks.liveness import HeartbeatScheduler
from tasks.sweeping import CLOCK_SECONDS, SETTLE_TASK, settle_due

log = structlog.get_logger("recpipe.beat")
LEASE = "beat"


def lease_seconds(sweep_seconds: float) -> float:
    """How long a beat's lease lasts without renewal: three sweep intervals, at least 15 s."""
    return max(15.0, 3 * sweep_seconds)


class LeasedScheduler(HeartbeatScheduler):
    """celery.beat's in-memory Scheduler (stamping beat's heartbeat at every pass), ticking
    only while it holds the lease."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ttl = lease_seconds(context.settings().sweep_seconds)
        self._ledger: Ledger | None = None
        self._holding = False
        self._next_check = 0.0
        self._next_look = 0.0
        self._clock_failing = False
        super().__init__(*args, **kwargs)

    def _ledger_now(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(context.settings().database_url)
        return self._ledger

    def _check(self) -> None:
        ledger = self._ledger_now()
        try:
            holding = ledger.acquire_lease(LEASE, self.holder, now=utcnow(), ttl=self.ttl)
        except LedgerUnavailableError as exc:
            # Without the ledger nobody can take the lease over, and the sweeps would fail
            # anyway: keep the current role until it answers again.
            log.warning("beat.lease_unknown", holder=self.holder, error=str(exc))
            return
        if holding and not self._holding:
            log.info("beat.leading", holder=self.holder, lease_seconds=self.ttl)
        elif not holding and (self._holding or self._next_check == 0.0):
            try:
                other = ledger.lease_holder(LEASE, utcnow())
            except LedgerUnavailableError:
                other = None
            log.warning(
                "beat.standby",
                holder=self.holder,
                leader=other,
                reason="another beat holds the lease; this one sends nothing until it lapses",
            )
        self._holding = holding

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.monotonic()
        if now >= self._next_check:
            self._check()
            self._next_check = now + self.ttl / 3
        if not self._holding:
            return max(0.5, self._next_check - time.monotonic())
        if now >= self._next_look:
            self._settle_due()
            self._next_look = now + CLOCK_SECONDS
        wait = min(float(super().tick(*args, **kwargs)), max(0.5, self._next_check - now))
        return max(0.0, min(wait, self._next_look - time.monotonic()))

    def _settle_due(self) -> None:
        """One pass of the settle clock. A ledger or broker that does not answer is said
        once, not every pass; what was not sent is due again when its lease ends."""
        try:
            sent = settle_due(self._ledger_now(), self._send_settle)
        except Exception as exc:
            if not self._clock_failing:
                log.warning("beat.settle_clock_failed", error=repr(exc).splitlines()[0])
            self._clock_failing = True
            return
        if self._clock_failing:
            log.info("beat.settle_clock_back")
        self._clock_failing = False
        if sent:
            log.debug("beat.settle_due", recordings=sent)

    def _send_settle(self, recording_id: str) -> None:
        self.app.send_task(SETTLE_TASK, args=[recording_id], producer=self.producer)

    def close(self) -> None:
        if self._holding and self._ledger is not None:
            with contextlib.suppress(LedgerUnavailableError):  # else it lapses by itself
                self._ledger.release_lease(LEASE, self.holder)
        if self._ledger is not None:
            self._ledger.dispose()
        super().close()
