"""What an operator can do from the console or the API, each recorded in the audit trail:
reprocess (as `recpipe reprocess`), redeliver (as `recpipe redeliver`), settle now, and
stop a GME task (the `recpipe.stop_gme_task` task, sent by name); and what an admin can
do: hold and release (as `recpipe hold` and `recpipe release`), and forget a player (as
`recpipe forget`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from foundation import queues
from foundation.config import Settings
from foundation.queues import BrokerUnavailableError
from storage.domain.players import ForgetReport
from storage.ledger import Ledger, utcnow

TASK_ID = re.compile(r"^[0-9]{1,32}$")
STOP_GME_TASK = "recpipe.stop_gme_task"


@dataclass(frozen=True)
class Outcome:
    """`accepted` (202: sent to the workers), `done` (200: done already), or refused with
    the reason (`conflict`: 409, `missing`: 404)."""

    status: str  # "accepted", "done", "conflict", "missing"
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)


class Actions:
    def __init__(self, settings: Settings, ledger: Ledger):
        from tasks.celery import configure

        self.settings = settings
        self.ledger = ledger
        self.celery = configure(settings)

    def reprocess(self, actor: str, recording_id: str, from_step: str) -> Outcome:
        from kombu.exceptions import OperationalError

        from tasks import jobs, reprocessing

        if self.ledger.recording(recording_id) is None:
            return Outcome("missing", "no such recording")
        try:
            done = reprocessing.reprocess(
                jobs.services(),
                recording_id,
                from_step,
                start_chain=jobs.start_chain,
                deliver=lambda nid: jobs.deliver_notification.delay(nid),
                transcribe=lambda run_id: jobs.transcribe.delay(run_id),
            )
        except OperationalError as exc:
            raise BrokerUnavailableError(str(exc)) from exc
        facts = {"from_step": from_step, "outcome": done.action, "run_id": done.run_id}
        self.ledger.record_action(
            actor, "reprocess", recording_id=recording_id, detail={**facts, "detail": done.detail}
        )
        status = "conflict" if done.action == "refused" else "accepted"
        return Outcome(status, done.detail, facts)

    def redeliver(self, actor: str, recording_id: str, include_disabled: bool) -> Outcome:
        from kombu.exceptions import OperationalError

        from tasks import jobs

        if self.ledger.recording(recording_id) is None:
            return Outcome("missing", "no such recording")
        try:
            reopened = jobs.redeliver(recording_id, include_disabled)
        except OperationalError as exc:
            raise BrokerUnavailableError(str(exc)) from exc
        facts = {"notifications": reopened, "include_disabled": include_disabled}
        self.ledger.record_action(actor, "redeliver", recording_id=recording_id, detail=facts)
        if not reopened:
            return Outcome("conflict", "no notification of the current run has finally failed")
        return Outcome("accepted", f"{len(reopened)} notification(s) queued", facts)

    def settle_now(self, actor: str, recording_id: str) -> Outcome:
        if self.ledger.recording(recording_id) is None:
            return Outcome("missing", "no such recording")
        self._send("recpipe.settle", [recording_id])
        self.ledger.record_action(actor, "settle", recording_id=recording_id)
        return Outcome("accepted", "settle task sent")

    def sweep_now(self, actor: str) -> Outcome:
        """Beat's sweep, once, now: takes over runs that stopped heart-beating."""
        self._send("recpipe.sweep", [])
        self.ledger.record_action(actor, "sweep")
        return Outcome("accepted", "sweep task sent")

    def stop_gme_task(self, actor: str, task_id: str) -> Outcome:
        """Tell the workers that the backend stopped this GME task: its recordings are
        finalized once every started segment is uploaded (the task does the waiting)."""
        self._send(STOP_GME_TASK, [task_id])
        recordings = self.ledger.find_recordings(task_id)
        now = utcnow()
        self.ledger.record_action(actor, "stop_gme_task", target=task_id, now=now)
        for rid in recordings:
            self.ledger.record_action(
                actor, "stop_gme_task", recording_id=rid, target=task_id, now=now
            )
        return Outcome("accepted", "stop sent", {"TaskID": task_id, "recordings": recordings})

    def hold(self, actor: str, recording_id: str, reason: str) -> Outcome:
        """Keep the recording or room: retention and erasure leave it alone until released
        (audited by the ledger in the same transaction)."""
        held = self.ledger.hold(recording_id, reason, actor)
        if held is None:
            return Outcome("missing", "no such recording or room")
        facts = {"reason": held.reason, "held_by": held.held_by}
        return Outcome("done", "on hold: nothing of it is deleted until it is released", facts)

    def release(self, actor: str, recording_id: str) -> Outcome:
        if self.ledger.recording(recording_id) is None:
            return Outcome("missing", "no such recording or room")
        if not self.ledger.release(recording_id, actor):
            return Outcome("conflict", "it is not on hold")
        self._resume_erasures()
        return Outcome("done", "released: retention and erasure apply to it again")

    def forget(self, actor: str, biz_id: int, user_id: str, *, dry_run: bool) -> ForgetReport:
        """Forget a player (as `recpipe forget`), or say what that would do. Raises
        PlayerKeyMissingError without RECPIPE_PLAYER_KEY outside the embedded default."""
        from kombu.exceptions import OperationalError

        from tasks import forgetting, jobs

        try:
            return forgetting.forget_player(
                jobs.services(), biz_id, user_id, actor=actor, dry_run=dry_run,
                deliver=lambda nid: jobs.deliver_notification.delay(nid),
            )  # fmt: skip
        except OperationalError as exc:
            raise BrokerUnavailableError(str(exc)) from exc

    def _resume_erasures(self) -> None:
        """An erasure that waited on a released hold goes on now (beat's sweep would
        otherwise hand it out at its next pass)."""
        from tasks.forgetting import FORGET_TASK

        try:
            for erasure_id in self.ledger.unfinished_erasures():
                self._send(FORGET_TASK, [erasure_id])
        except BrokerUnavailableError:
            pass  # the sweep hands it out once the broker answers

    def queue_depths(self) -> dict[str, int | None]:
        """Messages waiting in each of Celery's queues; None where the broker did not say
        (a page must render while the broker is away)."""
        return queues.known_depths(self.settings)

    def _send(self, name: str, args: list[Any]) -> None:
        try:
            self.celery.send_task(name, args=args, retry=True, retry_policy={"max_retries": 2})
        except Exception as exc:
            raise BrokerUnavailableError(str(exc).splitlines()[0] if str(exc) else name) from exc
