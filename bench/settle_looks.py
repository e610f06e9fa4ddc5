"""What one GME recording's settling costs, on a simulated clock: broker messages and
ledger writes.

One recording open `--hours` with `--segments` segments (each segment's completed and
uploaded events at its end, the next one's start half a second later) goes through the
real intake (`Ledger.record_gme_event`), beat's real settle clock
(`tasks.sweeping.settle_due`, every `--clock` seconds) and the real settle look
(`tasks.settling.settle`, as the `recpipe.settle` task runs it, at once), on a SQLite
ledger in a temporary directory, with the default windows (120 s, 20 s, 1 h maximum
wait). No broker, no worker: the clock jumps from one pass to the next.

Counted per recording: the settle messages the clock hands out; the ledger's write
statements (INSERT, UPDATE, DELETE), split into the intake's own (the callbacks and
their bookkeeping, the same whatever decides when to look), the clock's lease of this
recording and the looks'. The clock's reads are shared by every recording: an idle pass
is one indexed SELECT for all of them, reported per hour, not per recording.

    python bench/settle_looks.py [--hours 1] [--segments 4] [--clock 0.5]
"""

from __future__ import annotations

import argparse
import heapq
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--clock", type=float, default=None, help="default: CLOCK_SECONDS")
    args = parser.parse_args()

    from sqlalchemy import event as sa_event

    from foundation.config import Settings
    from storage.domain import GmeEvent, GmeRecordingKey
    from storage.ledger import Ledger
    from storage.objectstore import store_from_url
    from tasks import settling
    from tasks.services import Services
    from tasks.sweeping import CLOCK_SECONDS, settle_due

    tick = timedelta(seconds=args.clock or CLOCK_SECONDS)
    writes: Counter[str] = Counter()
    phase = ["intake"]
    write = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if write.match(statement):
            writes[phase[0]] += 1

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({"RECPIPE_DATA_DIR": tmp})
        ledger = Ledger(settings.database_url)
        ledger.migrate()
        sa_event.listen(ledger.engine, "before_cursor_execute", count)
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
        # (time, order, kind, payload): events, settle looks and clock passes on one clock.
        queue: list[tuple[datetime, int, str, object]] = []
        order = 0

        def push(at: datetime, kind: str, payload: object = None) -> None:
            nonlocal order
            order += 1
            heapq.heappush(queue, (at, order, kind, payload))

        for at, event_type, seq in events:
            push(at, "event", (event_type, seq))
        # The clock's passes, out of phase with the events.
        push(t0 + tick / 2 + timedelta(seconds=0.0123), "clock")
        sent: Counter[str] = Counter()
        done_at, action = None, "never settled"
        while queue and done_at is None:
            now, _, kind, payload = heapq.heappop(queue)
            if kind == "event":
                event_type, seq = payload  # type: ignore[misc]
                gme = GmeEvent(key, event_type, seq, f"p/{seq}_{key.task_id}_audio.mp3", 0)
                phase[0] = "intake"
                ledger.record_gme_event(
                    gme, "{}", {}, now=now, settle_seconds=settings.settle_seconds,
                    complete_seconds=settings.settle_complete_seconds,
                )  # fmt: skip
            elif kind == "look":
                phase[0] = "looks"
                outcome = settling.settle(services, key.recording_id, now=now)
                if outcome.action in ("finalize", "fail"):
                    done_at, action = now, outcome.action
            else:
                phase[0] = "clock lease"
                sent["clock passes"] += 1
                for _ in range(settle_due(ledger, lambda rid: None, now=now)):
                    push(now, "look")
                    sent["settle messages"] += 1
                push(now + tick, "clock")
        ledger.dispose()
    last = events[-1][0]
    after = f" {(done_at - last).total_seconds():.1f} s after the last event" if done_at else ""
    passes = sent.pop("clock passes")
    span = (done_at or last) - t0
    print(
        f"{args.hours} h, {args.segments} segments: {sent['settle messages']} settle messages; "
        f"ledger writes: {writes['clock lease'] + writes['looks']} for settling "
        f"(clock lease {writes['clock lease']}, looks {writes['looks']}), "
        f"{writes['intake']} by the intake; {action}{after}; "
        f"the clock read the ledger {passes} times in {span.total_seconds() / 3600:.2f} h "
        f"(for every recording at once)"
    )


if __name__ == "__main__":
    main()
