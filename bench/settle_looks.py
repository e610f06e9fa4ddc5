"""How many settle messages one GME recording costs, on a simulated clock.

One recording open `--hours` with `--segments` segments (each segment's completed and
uploaded events at its end, the next one's start half a second later) goes through the
real intake (`Ledger.record_gme_event`), the real settle task (`tasks.settling.settle`, as
`tasks.jobs.settle` schedules it) and beat's sweep every `--sweep` seconds, on a SQLite
ledger in a temporary directory, with the default windows (120 s, 20 s, 1 h maximum wait).
Counts the settle messages: handed out by the webhook, by a waiting task rescheduling
itself, by the sweep. No broker, no worker: the clock jumps from one due message to the
next.

    python bench/settle_looks.py [--hours 1] [--segments 4] [--sweep 10]
"""

from __future__ import annotations

import argparse
import heapq
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--sweep", type=float, default=10.0)
    args = parser.parse_args()

    from foundation.config import Settings
    from storage.domain import GmeEvent, GmeRecordingKey
    from storage.domain.lifecycle import SETTLE_MARGIN_SECONDS
    from storage.ledger import Ledger
    from storage.objectstore import store_from_url
    from tasks import settling
    from tasks.services import Services

    margin = timedelta(seconds=SETTLE_MARGIN_SECONDS)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({"RECPIPE_DATA_DIR": tmp})
        ledger = Ledger(settings.database_url)
        ledger.migrate()
        services = Services(
            settings, ledger, store_from_url(settings.gme_source_url),
            store_from_url(settings.archive_url),
        )  # fmt: skip
        key = GmeRecordingKey(1400000000, "100", "999", "446946705284000999", 1)
        t0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
        length = timedelta(hours=args.hours) / args.segments
        events = [(t0, 1, 0)]
        for seq in range(args.segments):
            end = t0 + length * (seq + 1)
            events += [(end, 2, seq), (end + timedelta(seconds=1), 3, seq)]
            if seq + 1 < args.segments:
                events.append((end + timedelta(seconds=0.5), 1, seq + 1))
        # (time, order, kind, payload): events, settle messages and sweeps on one clock.
        queue: list[tuple[datetime, int, str, object]] = []
        order = 0

        def push(at: datetime, kind: str, payload: object = None) -> None:
            nonlocal order
            order += 1
            heapq.heappush(queue, (at, order, kind, payload))

        for at, event_type, seq in events:
            push(at, "event", (event_type, seq))
        # Beat's sweeps, out of phase with the events (a sweep that runs in the margin between
        # a settle time and its task's look hands out one more).
        push(t0 + timedelta(seconds=args.sweep / 2 + 0.123), "sweep")
        sent: Counter[str] = Counter()
        done_at, action = None, "never settled"
        while queue and done_at is None:
            now, _, kind, payload = heapq.heappop(queue)
            if kind == "event":
                event_type, seq = payload  # type: ignore[misc]
                gme = GmeEvent(key, event_type, seq, f"p/{seq}_{key.task_id}_audio.mp3", 0)
                result = ledger.record_gme_event(
                    gme, "{}", {}, now=now, settle_seconds=settings.settle_seconds,
                    complete_seconds=settings.settle_complete_seconds,
                )  # fmt: skip
                if getattr(result, "dispatches_settle", getattr(result, "opens_settle", False)):
                    wake = getattr(result, "settle_wake_at", None)
                    short = timedelta(seconds=settings.settle_complete_seconds)
                    push((wake or now + short) + margin, "settle")
                    sent["webhook"] += 1
            elif kind == "settle":
                outcome = settling.settle(services, key.recording_id, now=now)
                if outcome.action in ("finalize", "fail"):
                    done_at, action = now, outcome.action
                elif outcome.action == "wait" and outcome.recheck_at and looks_again(outcome):
                    wake = getattr(outcome, "wake_at", None) or outcome.recheck_at
                    push(max(wake + margin, now + timedelta(seconds=0.5)), "settle")
                    sent["rescheduled"] += 1
            else:
                lease = timedelta(seconds=max(args.sweep * 3, 30))
                for _ in ledger.lease_due_recordings(now, until=now + lease):
                    push(now, "settle")
                    sent["sweep"] += 1
                push(now + timedelta(seconds=args.sweep), "sweep")
        ledger.dispose()
    last = events[-1][0]
    after = f" {(done_at - last).total_seconds():.1f} s after the last event" if done_at else ""
    print(
        f"{args.hours} h, {args.segments} segments: {sum(sent.values())} settle messages "
        f"({dict(sent)}); {action}{after}"
    )


def looks_again(outcome: object) -> bool:
    """The task reschedules itself (before settle_wake_at, every waiting task did)."""
    return bool(getattr(outcome, "looks_again", True))


if __name__ == "__main__":
    main()
