"""Benchmark latency: from a recording's last callback to its notification, on default
settings (the quiet windows are not shortened).

Two scenarios on one stack (`recpipe serve`, one `celery -A tasks worker --concurrency 2
--beat`, a fresh PostgreSQL database, a Redis database of its own, a moto S3 server for
source and archive, a local HTTP receiver as the downstream URL):
  1. one complete 1 h recording (12 segments of 5 minutes, each with its started,
     completed and uploaded callbacks, posted in order);
  2. --short recordings (default 50) of 3 short segments each, their callbacks
     interleaved as concurrent rooms send them and posted as fast as the webhook takes
     them.
For each recording: the time from its last callback (the ledger's `last_event_at`, stamped
by the webhook) to its notification arriving at the receiver; p50 and p90; the settle
share (last callback → run claimed, over the whole); the wait for a worker (claimed →
started); the media task's time (the transcode and the rest of the chain); and the
notification's delivery (finished → arrived).

    python bench/latency.py [--short 50] [--skip-hour] [--out DIR]

Goals (issue 15): the 1 h recording within 20 s + its media time; short ones p90 <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    BENCH_SECRET,
    BIZ_ID,
    TASK_ID_BASE,
    Processes,
    Receiver,
    clean_env,
    closed_loop,
    free_port,
    fresh_database,
    gme_callback,
    http_ok,
    interleaved_callbacks,
    moto_server,
    percentile,
    recording_keys,
    redis_database,
    s3_client,
    wait_until,
)

SOURCE_BUCKET = "latency-source"
ARCHIVE_BUCKET = "latency-archive"
HOUR_TASK = 70_000_000
SHORT_TASK = 71_000_000
HOUR_SEGMENTS, SEGMENT_SECONDS = 12, 300
SHORT_SEGMENTS, SHORT_SECONDS = 3, (1.0, 1.5, 2.0)


def short_index(recording: int, seq_no: int) -> int:
    return (recording + seq_no) % len(SHORT_SECONDS)


def short_seconds(recording: int, seq_no: int) -> float:
    return SHORT_SECONDS[short_index(recording, seq_no)]


def tone(path: Path, frequency: float, seconds: float) -> Path:
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
             "-i", f"sine=frequency={frequency}:sample_rate=48000:duration={seconds}",
             "-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k", str(path)],
            check=True,
        )  # fmt: skip
    return path


def recording_facts(db_url: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT r.id, r.last_event_at, u.created_at, u.started_at, u.finished_at"
                    " FROM recordings r JOIN runs u ON u.id = r.current_run_id"
                    " WHERE r.id = ANY(:ids)"
                ),
                {"ids": ids},
            ).all()
    finally:
        engine.dispose()
    return {
        rid: {"last_event": last, "claimed": claimed, "started": began, "finished": finished}
        for rid, last, claimed, began, finished in rows
    }


def summarize(
    name: str, db_url: str, receiver: Receiver, ids: list[str], timeout: float
) -> dict[str, Any]:
    wait_until(lambda: all(rid in receiver.arrived for rid in ids), timeout, f"{name} notified")
    facts = recording_facts(db_url, ids)
    totals, settles, queued, media, notified = [], [], [], [], []
    for rid in ids:
        f = facts[rid]
        total = (receiver.arrived[rid] - f["last_event"]).total_seconds()
        totals.append(total)
        settles.append((f["claimed"] - f["last_event"]).total_seconds())
        queued.append((f["started"] - f["claimed"]).total_seconds())
        media.append((f["finished"] - f["started"]).total_seconds())
        notified.append((receiver.arrived[rid] - f["finished"]).total_seconds())
    result = {
        "recordings": len(ids),
        "last_callback_to_notification_s": {
            "p50": percentile(totals, 50),
            "p90": percentile(totals, 90),
            "max": round(max(totals), 2),
        },
        "settle_s": {"p50": percentile(settles, 50), "p90": percentile(settles, 90)},
        "settle_share": round(sum(settles) / sum(totals), 3),
        "claimed_to_started_s": {"p50": percentile(queued, 50), "p90": percentile(queued, 90)},
        "media_task_s": {"p50": percentile(media, 50), "p90": percentile(media, 90)},
        "finished_to_notified_s": {
            "p50": percentile(notified, 50),
            "p90": percentile(notified, 90),
        },
    }
    t, s = result["last_callback_to_notification_s"], result["settle_s"]
    print(
        f"{name}: last callback -> notification p50 {t['p50']} s, p90 {t['p90']} s "
        f"(max {t['max']} s); settle p50 {s['p50']} s, share {result['settle_share']}; "
        f"media task p50 {result['media_task_s']['p50']} s"
    )
    q, n = result["claimed_to_started_s"], result["finished_to_notified_s"]
    print(
        f"  claimed -> started p50 {q['p50']} s, p90 {q['p90']} s; "
        f"finished -> notified p50 {n['p50']} s, p90 {n['p90']} s"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", type=int, default=50, help="concurrent short recordings")
    parser.add_argument("--skip-hour", action="store_true", help="only the short recordings")
    parser.add_argument("--redis-db", type=int, default=15, help="Redis database (flushed)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    media = args.out / "media" / "latency"
    media.mkdir(parents=True, exist_ok=True)
    hour_tone = tone(media / "five-minutes.mp3", 330, SEGMENT_SECONDS)
    short_tones = [tone(media / f"short-{i}.mp3", 220 * (i + 1), s) for i, s in
                   enumerate(SHORT_SECONDS)]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="latency-", dir=args.out))
    report: dict[str, Any] = {}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        endpoint = stack.enter_context(moto_server(work / "moto.log"))
        client = s3_client(endpoint)
        for bucket in (SOURCE_BUCKET, ARCHIVE_BUCKET):
            client.create_bucket(Bucket=bucket)
        receiver = Receiver()
        stack.callback(receiver.close)
        db_url = stack.enter_context(fresh_database("recpipe_latency"))
        redis = stack.enter_context(redis_database(args.redis_db))
        env = clean_env(
            {
                "RECPIPE_DATA_DIR": str(work / "data"),
                "RECPIPE_DATABASE_URL": db_url,
                "RECPIPE_BROKER_URL": redis,
                "RECPIPE_GME_SECRET_KEYS": f"{BIZ_ID}={BENCH_SECRET.decode()}",
                "RECPIPE_GME_SOURCE_URL": f"s3://{SOURCE_BUCKET}?endpoint_url={endpoint}",
                "RECPIPE_ARCHIVE_URL": f"s3://{ARCHIVE_BUCKET}/r?endpoint_url={endpoint}",
                "RECPIPE_NOTIFY_URLS": receiver.url,
            }
        )
        from storage.domain import GmeRecordingKey
        from storage.ledger import Ledger

        ledger = Ledger(db_url)
        ledger.migrate()
        ledger.dispose()
        procs = Processes(work, env)
        stack.callback(procs.stop_all)
        port = free_port()
        procs.spawn("webhook", [sys.executable, "-m", "recpipe", "serve", "--port", str(port)])
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the webhook")
        procs.spawn(
            "worker",
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--concurrency", "2",
             "--beat", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
             "-n", "latency@%h"],
        )  # fmt: skip
        log = work / "worker.log"
        wait_until(lambda: " ready" in log.read_text(errors="replace"), 60, "the worker")

        def rid(task_id: int, room: str) -> str:
            return GmeRecordingKey(BIZ_ID, room, "999", str(task_id), 1).recording_id

        if not args.skip_hour:
            task_id, room = TASK_ID_BASE + HOUR_TASK, str(10000 + HOUR_TASK)
            keys = recording_keys(task_id, room, [SEGMENT_SECONDS] * HOUR_SEGMENTS)
            for key in keys:
                client.upload_file(str(hour_tone), SOURCE_BUCKET, key)
            callbacks = [
                gme_callback(task_id, room, "999", seq, ev, key)
                for seq, key in enumerate(keys)
                for ev in (1, 2, 3)
            ]
            closed_loop(port, "/callbacks/gme", callbacks, 1, 120)
            report["hour"] = summarize("1 h recording", db_url, receiver,
                                       [rid(task_id, room)], 900)  # fmt: skip
        ids = []
        for r in range(args.short):
            task_id, room = TASK_ID_BASE + SHORT_TASK + r, str(10000 + SHORT_TASK + r)
            ids.append(rid(task_id, room))
            durations = [short_seconds(r, seq) for seq in range(SHORT_SEGMENTS)]
            for seq, key in enumerate(recording_keys(task_id, room, durations)):
                client.upload_file(str(short_tones[short_index(r, seq)]), SOURCE_BUCKET, key)
        callbacks = interleaved_callbacks(
            args.short, SHORT_SEGMENTS, SHORT_TASK, seconds=short_seconds
        )
        closed_loop(port, "/callbacks/gme", callbacks, 4, 300)
        report["short"] = summarize(f"{args.short} short recordings", db_url, receiver, ids, 900)
    command = shlex.join(["python", "bench/latency.py", *sys.argv[1:]])
    path = args.out / "latency.json"
    path.write_text(
        json.dumps(
            {"command": command, "when": datetime.now(UTC).isoformat(timespec="seconds"),
             **report},
            indent=2,
            default=str,
        )
        + "\n"
    )  # fmt: skip
    print(f"figures written to {path}\nreproduce: {command}")


if __name__ == "__main__":
    main()
