"""Where a GME callback's time goes in the webhook, piece by piece, in one process.

No HTTP server and no concurrency: each piece of the intake path runs --count times on
distinct callbacks, one after another, against the same services as `bench/webhook_load.py`
(ledger on a fresh PostgreSQL database, broker on a Redis database of its own), and its
wall and CPU time per call are printed. The last row is the whole Flask view through
Flask's test client (no HTTP server), for comparison with the sum.

    python bench/intake_cost.py [--count 1000] [--redis-db 15]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

from benchlib import BENCH_SECRET, BIZ_ID, Signed, fresh_database, redis_database
from benchlib import interleaved_callbacks as make_callbacks


def timed(name: str, items: list[Any], call: Callable[[Any], Any]) -> dict[str, float]:
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    for item in items:
        call(item)
    wall = (time.perf_counter() - wall0) * 1000 / len(items)
    cpu = (time.thread_time() - cpu0) * 1000 / len(items)
    print(f"  {name:<52} {wall:7.3f} ms wall {cpu:7.3f} ms CPU")
    return {"wall_ms": round(wall, 3), "cpu_ms": round(cpu, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--redis-db", type=int, default=15)
    args = parser.parse_args()

    from foundation import logs
    from foundation.config import Settings
    from recpipe.webapp import create_app
    from storage.ledger import Ledger, utcnow
    from webhook.callbacks import parse_gme
    from webhook.verify import safe_headers, verify_gme

    headers = {"Content-Type": "application/json", "Host": "127.0.0.1"}

    def batch(offset: int) -> list[Signed]:
        recordings = 100
        segments = max(1, -(-args.count // (3 * recordings)))
        return make_callbacks(recordings, segments, offset)[: args.count]

    with fresh_database("recpipe_intake") as db_url, redis_database(args.redis_db) as redis:
        settings = Settings.from_env(
            {
                "RECPIPE_DATABASE_URL": db_url,
                "RECPIPE_BROKER_URL": redis,
                "RECPIPE_GME_SECRET_KEYS": f"{BIZ_ID}={BENCH_SECRET.decode()}",
                "RECPIPE_DATA_DIR": "/nonexistent-recpipe-bench",
            }
        )
        logs.configure("INFO")
        logging.getLogger().handlers[0].setStream(open("/dev/null", "w"))  # noqa: SIM115
        ledger = Ledger(db_url)
        ledger.migrate()
        keys = settings.gme_secret_keys
        print(f"per callback, mean of {args.count} (distinct callbacks, sequential):")

        items = batch(0)
        timed(
            "verify signature + parse",
            items,
            lambda c: (verify_gme(c.body, c.signature, keys), parse_gme(c.body)),
        )
        events = [
            (parse_gme(c.body), c.body.decode())
            for c in items
            if verify_gme(c.body, c.signature, keys)
        ]
        ids: list[int] = []

        def record(pair: tuple[Any, str]) -> None:
            event, body = pair
            result = ledger.record_gme_event(
                event,
                body,
                safe_headers(headers),
                now=utcnow(),
                settle_seconds=settings.settle_seconds,
                complete_seconds=settings.settle_complete_seconds,
            )
            ids.append(result.callback_id)

        timed("ledger.record_gme_event (1 statement)", events, record)
        timed(
            "ledger.mark_callbacks_dispatched (replay only)",
            ids,
            lambda i: ledger.mark_callbacks_dispatched([i], utcnow()),
        )
        timed("ledger.ping (SELECT 1 transaction)", items, lambda _: ledger.ping())
        log = logging.getLogger("recpipe.bench")
        import structlog

        bound = structlog.get_logger("recpipe.webhook")
        timed(
            "structlog: bind + info (to /dev/null)",
            items,
            lambda c: bound.bind(provider="gme", seq_no=1, event_type=3).info("callback.accepted"),
        )
        del log

        app = create_app(settings, ledger=ledger)
        client = app.test_client()
        timed(
            "whole view via Flask test client (all event types)",
            batch(10_000_000),
            lambda c: client.post(
                "/callbacks/gme", data=c.body, headers={**headers, "Signature": c.signature}
            ),
        )
        uploads = [c for c in batch(20_000_000) if c.event_type == 3]
        timed(
            "whole view, uploads only (EventType 3)",
            uploads,
            lambda c: client.post(
                "/callbacks/gme", data=c.body, headers={**headers, "Signature": c.signature}
            ),
        )
        ledger.dispose()


if __name__ == "__main__":
    main()
