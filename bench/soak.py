"""Soak: steady callbacks and recordings for a long while; do memory and open files stay flat?

One stack, as production runs it: `recpipe serve`, a light worker (`celery -A tasks worker
-Q light -c 2`), a media worker (`-Q media -c 1`) and `celery -A tasks beat`, each with its
own metrics port, scraped like Prometheus would; a fresh PostgreSQL database, a Redis
database of its own, a moto S3 server for source and archive, a local receiver as the
downstream URL (answering 503 to every --receiver-fail-every'th POST, so deliveries are
retried and their attempts recorded), and a local HTTP server as the CSS VOD domain.

For --minutes (default 20; --quick: 2) it keeps up a steady load:
  - a GME recording every 60/--gme-per-minute seconds: --segments short tone segments,
    back to back, put into the source, then their started/completed/uploaded callbacks
    and one duplicate, signed, posted in order (with --open-seconds, the completions and
    uploads that much later, so the recording stays open meanwhile, as a live one does);
  - a CSS recording (one mp4 file) every --css-every seconds (0: none);
  - vendor retries: already answered callbacks posted again at --retries-per-second.
Every --sample-seconds it samples the RSS and open file descriptors of the webhook, each
worker and beat, and of each of their long-lived children (ffmpeg/ffprobe runs are
counted, not followed), the ledger's tables (rows, bytes with indexes and TOAST), the
queues (ready in `light` and `media`, held unacknowledged by workers) and the recordings
by state. After the load it waits for the pipeline to drain, then prints per process the
first, last and highest RSS and fds and their least-squares slope over the steady phase
(after --warmup minutes), the tables' growth, the queue depths, and what one recording
cost (ledger rows, broker messages by task, CPU seconds by process). JSON with every
sample goes to --out (soak-<minutes>m.json).

    python bench/soak.py [--minutes 20 | --quick] [--sample-seconds 10] [--gme-per-minute 2]
                         [--segments 3] [--open-seconds 0] [--css-every 120]
                         [--retries-per-second 10] [--settle 5] [--settle-complete 2]

Nothing asserts: the goal is flat memory and fds, read from the slopes. The machine may
be shared; the slopes are per process and do not depend on the others' load, but the
recordings' throughput does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    BENCH_SECRET,
    BIZ_ID,
    ROOT,
    TASK_ID_BASE,
    Client,
    Processes,
    Receiver,
    Signed,
    clean_env,
    cpu_seconds,
    free_port,
    fresh_database,
    gme_callback,
    http_ok,
    moto_server,
    percentile,
    process_name,
    redis_database,
    s3_client,
    wait_until,
)
from burst import TONE_SECONDS, make_tones

SOURCE_BUCKET = "soak-source"
ARCHIVE_BUCKET = "soak-archive"
CSS_KEY = "recpipe-bench-css"  # a key made up for the benchmark's own CSS callbacks
CSS_APPID = 1250000000
FIRST_TASK = 60_000_000
CSS_SECONDS = 4.0
TRANSIENT = ("ffmpeg", "ffprobe")
PERIODIC = ("recpipe.sweep", "recpipe.prune")
TASK_RECEIVED = re.compile(r"Task (recpipe\.[a-z_]+)\[[0-9a-f-]+\] received")


# -- the downstream receiver ------------------------------------------------------------


# -- the load ---------------------------------------------------------------------------


@dataclass
class Load:
    """What the load thread sent, and how it was answered."""

    gme_recordings: int = 0
    css_recordings: int = 0
    source_bytes: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    retries_posted: int = 0

    def note(self, kind: str, status: int) -> None:
        key = f"{kind} {status}"
        self.statuses[key] = self.statuses.get(key, 0) + 1


class Generator:
    """Posts the steady load from one thread until `stop` is set."""

    def __init__(self, args: argparse.Namespace, port: int, s3: Any, tones: list[Path],
                 css_url: str | None) -> None:  # fmt: skip
        self.args, self.s3, self.tones, self.css_url = args, s3, tones, css_url
        self.gme = Client(port, "/callbacks/gme")
        self.css = Client(port, "/callbacks/css")
        self.load = Load()
        self.answered: list[Signed] = []
        self.closing: list[tuple[float, list[Signed]]] = []  # (when, callbacks), in order
        self.stop = threading.Event()
        self.rng = random.Random(16)
        self.tone_bytes = [p.stat().st_size for p in tones]

    def run(self) -> None:
        args = self.args
        began = time.monotonic()
        next_gme, next_css, next_retry = began, began + 5, began
        retry_gap = 1 / args.retries_per_second if args.retries_per_second else None
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if now >= next_gme:
                    self.gme_recording(self.load.gme_recordings)
                    next_gme += 60 / args.gme_per_minute
                if self.css_url and args.css_every and now >= next_css:
                    self.css_recording(self.load.css_recordings)
                    next_css += args.css_every
                if retry_gap and self.answered and now >= next_retry:
                    for _ in range(max(1, int((now - next_retry) / retry_gap))):
                        self.post_gme(self.rng.choice(self.answered), "retry")
                        self.load.retries_posted += 1
                    next_retry = now + retry_gap
                while self.closing and self.closing[0][0] <= now:
                    self.post_all(self.closing.pop(0)[1])
                wake = min(next_gme, next_css, next_retry if retry_gap else next_gme)
                if self.closing:
                    wake = min(wake, self.closing[0][0])
                self.stop.wait(max(0.0, wake - time.monotonic()))
            for _, callbacks in self.closing:  # the load ends: close what is still open
                self.post_all(callbacks)
        finally:
            self.gme.close()
            self.css.close()

    def post_gme(self, item: Signed, kind: str) -> int:
        try:
            status = self.gme.post(item)
        except OSError:
            self.load.errors += 1
            return 0
        self.load.note(f"gme {kind}", status)
        return status

    def gme_recording(self, index: int) -> None:
        task_id = TASK_ID_BASE + FIRST_TASK + index
        room = str(20000 + index)
        callbacks = []
        began = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
        for seq_no in range(self.args.segments):
            # Back to back on the room's clock (names have 1 s resolution): no pause to pad.
            key = f"{BIZ_ID}_{room}/{began:%Y-%m-%d-%H-%M-%S}_{task_id}_audio_{seq_no}.mp3"
            tone = (index + seq_no) % len(self.tones)
            began += timedelta(seconds=math.ceil(TONE_SECONDS[tone]))
            self.s3.upload_file(str(self.tones[tone]), SOURCE_BUCKET, key)
            self.load.source_bytes += self.tone_bytes[tone]
            for event_type in (1, 2, 3):
                callbacks.append(gme_callback(task_id, room, "999", seq_no, event_type, key))
        callbacks.insert(self.rng.randrange(len(callbacks)), self.rng.choice(callbacks))
        if self.args.open_seconds:
            # As GME sends them: the starts now, the completions and uploads when the
            # segments end; meanwhile the recording is open and its settle task waits.
            self.post_all([c for c in callbacks if c.event_type == 1])
            later = [c for c in callbacks if c.event_type != 1]
            self.closing.append((time.monotonic() + self.args.open_seconds, later))
        else:
            self.post_all(callbacks)
        self.load.gme_recordings += 1

    def post_all(self, callbacks: list[Signed]) -> None:
        for item in callbacks:
            if self.post_gme(item, "new") == 200:
                self.answered.append(item)

    def css_recording(self, index: int) -> None:
        from recpipe.simulate import css_body

        start = int(time.time()) - 60
        file_id = f"soak{index:06d}"
        body = css_body(
            CSS_KEY, CSS_APPID, f"soak_stream_{index}", file_id, "mp4",
            str(self.css_url), start, start + int(CSS_SECONDS),
        )  # fmt: skip
        item = Signed(json.dumps(body).encode(), "", 100, index)
        try:
            self.load.note("css new", self.css.post(item))
        except OSError:
            self.load.errors += 1
        self.load.css_recordings += 1


# -- sampling ---------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children of all its threads), depth first."""
    out: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            stack.extend(kids)
    return out


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def sample_processes(roles: dict[str, int]) -> tuple[dict[str, dict[str, Any]], int]:
    """{"role" or "role/pid": {rss_mb, fds, name}} for each main process and its long-lived
    children, and the number of ffmpeg/ffprobe runs seen at this instant."""
    procs: dict[str, dict[str, Any]] = {}
    transient = 0
    for role, pid in roles.items():
        for p in [pid, *descendants(pid)]:
            name = process_name(p)
            if name in TRANSIENT:
                transient += 1
                continue
            rss, fds = rss_mb(p), open_fds(p)
            if rss is None or fds is None:
                continue
            key = role if p == pid else f"{role}/{p}"
            procs[key] = {"rss_mb": round(rss, 2), "fds": fds, "name": name}
    return procs, transient


def ledger_tables(engine: Any) -> dict[str, dict[str, int]]:
    """Per table: rows, bytes (with indexes and TOAST) and rows written so far (inserted,
    updated, deleted: PostgreSQL's statistics, which lag by up to a second)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        stats = conn.execute(
            text(
                "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables"
                " WHERE schemaname = 'public'"
            )
        ).all()
        out = {}
        for name, writes in sorted(stats):
            rows, size = conn.execute(
                # the names are the catalogue's own, not input
                text(f'SELECT count(*), pg_total_relation_size(\'"{name}"\') FROM "{name}"')  # noqa: S608
            ).one()
            out[name] = {"rows": int(rows), "bytes": int(size), "row_writes": int(writes)}
    return out


def row_sizes(engine: Any, tables: list[str]) -> dict[str, float]:
    """Average bytes of one row of each table, as stored (pg_column_size), indexes aside."""
    from sqlalchemy import text

    out = {}
    with engine.connect() as conn:
        for name in tables:
            size = conn.execute(text(f'SELECT avg(pg_column_size(t.*)) FROM "{name}" t')).scalar()  # noqa: S608
            out[name] = round(float(size), 1) if size is not None else 0.0
    return out


def transactions(engine: Any) -> int:
    """Transactions committed in the ledger's database so far (reads included)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            ).scalar()
            or 0
        )


def recording_states(engine: Any) -> dict[str, int]:
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT state, count(*) FROM recordings GROUP BY state")).all()
    return {str(state): int(n) for state, n in rows}


def queue_depths(redis_url: str) -> dict[str, int]:
    import redis

    from foundation.queues import QUEUES, redis_depths

    depths = redis_depths(redis_url, QUEUES)
    client = redis.Redis.from_url(redis_url)
    try:
        depths["unacked"] = int(client.hlen("unacked"))
    finally:
        client.close()
    return depths


def scrape(url: str) -> int:
    """Read a /metrics page as Prometheus would; its size in bytes (0 if it failed)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - 127.0.0.1
            return len(response.read())
    except OSError:
        return 0


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (minute, value) points, per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


# -- the run ----------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the load")
    parser.add_argument("--quick", action="store_true", help="2 minutes")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="minutes left out of the slopes (default: 20%%, <= 3)",
    )
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--gme-per-minute", type=float, default=2.0)
    parser.add_argument("--segments", type=int, default=3, help="segments per GME recording")
    parser.add_argument(
        "--open-seconds", type=float, default=0.0,
        help="a GME recording's segments stay open (started, not yet uploaded) this long",
    )  # fmt: skip
    parser.add_argument("--css-every", type=float, default=120.0, help="seconds; 0: no CSS")
    parser.add_argument("--retries-per-second", type=float, default=10.0,
                        help="vendor retries of answered callbacks")  # fmt: skip
    parser.add_argument("--receiver-fail-every", type=int, default=4)
    parser.add_argument("--settle", type=float, default=5.0, help="RECPIPE_SETTLE_SECONDS")
    parser.add_argument(
        "--settle-complete", type=float, default=None,
        help="RECPIPE_SETTLE_COMPLETE_SECONDS (default: the smaller of --settle and 2)",
    )  # fmt: skip
    parser.add_argument("--drain-seconds", type=float, default=240.0)
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database (flushed)")
    parser.add_argument("--out", dest="out_arg", default="bench/out")
    args = parser.parse_args()
    if args.quick:
        args.minutes = 2.0
    if args.settle_complete is None:
        args.settle_complete = min(args.settle, 2.0)
    if args.warmup is None:
        args.warmup = min(3.0, 0.2 * args.minutes)
    args.out = Path(args.out_arg)
    return args


def make_media(folder: Path) -> tuple[list[Path], Path]:
    """burst.py's tones (GME segments) and a CSS clip."""
    from recpipe.simulate import video

    tones = make_tones(folder)
    clip = folder / "css.mp4"
    if not clip.exists():
        video(clip, 550.0, CSS_SECONDS)
    return tones, clip


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="soak-", dir=args.out))
    tones, clip = make_media(args.out / "media" / "soak")
    print(
        f"soak: {args.minutes:g} min, a GME recording ({args.segments} segments) every "
        f"{60 / args.gme_per_minute:g} s, a CSS recording every {args.css_every:g} s, "
        f"{args.retries_per_second:g} vendor retries/s; sampling every {args.sample_seconds:g} s"
    )
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        endpoint = stack.enter_context(moto_server(args.out / "moto-soak.log"))
        s3 = s3_client(endpoint)
        for bucket in (SOURCE_BUCKET, ARCHIVE_BUCKET):
            s3.create_bucket(Bucket=bucket)
        receiver = Receiver(args.receiver_fail_every)
        stack.callback(receiver.close)
        from recpipe.simulate import MediaServer

        served = work / "vod"
        served.mkdir()
        shutil.copyfile(clip, served / "css.mp4")
        vod = MediaServer(served)
        stack.callback(vod.close)
        db_url = stack.enter_context(fresh_database("recpipe_soak"))
        redis_url = stack.enter_context(redis_database(args.redis_db))
        env = clean_env(
            {
                "RECPIPE_DATA_DIR": str(work / "data"),
                "RECPIPE_DATABASE_URL": db_url,
                "RECPIPE_BROKER_URL": redis_url,
                "RECPIPE_GME_SOURCE_URL": f"s3://{SOURCE_BUCKET}?endpoint_url={endpoint}",
                "RECPIPE_ARCHIVE_URL": f"s3://{ARCHIVE_BUCKET}/recordings?endpoint_url={endpoint}",
                "RECPIPE_GME_SECRET_KEYS": f"{BIZ_ID}={BENCH_SECRET.decode()}",
                "RECPIPE_CSS_CALLBACK_KEY": CSS_KEY,
                "RECPIPE_CSS_ALLOWED_HOSTS": f"127.0.0.1:{vod.port}",
                "RECPIPE_NOTIFY_URLS": receiver.url,
                "RECPIPE_SETTLE_SECONDS": f"{args.settle:g}",
                "RECPIPE_SETTLE_COMPLETE_SECONDS": f"{args.settle_complete:g}",
                "RECPIPE_LOG_LEVEL": "INFO",
            }
        )
        report = soak(args, env, db_url, redis_url, work, s3, tones, vod.url("css.mp4"))
        report["archive"] = archive_size(s3)
    finish(args, report)


def archive_size(s3: Any) -> dict[str, int]:
    objects = total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARCHIVE_BUCKET):
        for item in page.get("Contents", []):
            objects += 1
            total += int(item["Size"])
    return {"objects": objects, "bytes": total}


def soak(
    args: argparse.Namespace, env: dict[str, str], db_url: str, redis_url: str, work: Path,
    s3: Any, tones: list[Path], css_url: str,
) -> dict[str, Any]:  # fmt: skip
    from sqlalchemy import create_engine

    from storage.ledger import Ledger

    Ledger(db_url).migrate()
    engine = create_engine(db_url, pool_size=1)
    procs = Processes(work, env)
    port, internal_port = free_port(), free_port()
    roles: dict[str, int] = {}
    metrics_urls = {"webhook": f"http://127.0.0.1:{internal_port}/metrics"}
    celery = [sys.executable, "-m", "celery", "-A", "tasks"]
    commands = {
        "worker-light": [*celery, "worker", "-Q", "light", "-c", "2", "-n", "soak-light@%h",
                         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        "worker-media": [*celery, "worker", "-Q", "media", "-c", "1", "-n", "soak-media@%h",
                         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        "beat": [*celery, "beat", "--loglevel", "INFO"],
    }  # fmt: skip
    samples: list[dict[str, Any]] = []
    generator = None
    try:
        procs.env = {
            **env,
            "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics-webhook"),
            "RECPIPE_INTERNAL_LISTEN": f"127.0.0.1:{internal_port}",
        }
        roles["webhook"] = procs.spawn(
            "webhook", [sys.executable, "-m", "recpipe", "serve", "--port", str(port)]
        )
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the webhook")
        for role, command in commands.items():
            metrics_port = free_port()
            procs.env = {
                **env,
                "RECPIPE_METRICS_PORT": str(metrics_port),
                "PROMETHEUS_MULTIPROC_DIR": str(work / f"metrics-{role}"),
            }
            roles[role] = procs.spawn(role, command, cwd=ROOT)
            metrics_urls[role] = f"http://127.0.0.1:{metrics_port}/metrics"
        for role in ("worker-light", "worker-media"):
            log = work / f"{role}.log"
            wait_until(lambda log=log: " ready" in log.read_text(errors="replace"), 90, role)

        generator = Generator(args, port, s3, tones, css_url)
        loader = threading.Thread(target=generator.run, daemon=True)
        began = time.monotonic()
        loader.start()
        load_end = began + args.minutes * 60
        next_sample = began
        last_print = began - 60
        while True:
            now = time.monotonic()
            if now >= load_end and not generator.stop.is_set():
                generator.stop.set()
                loader.join(60)
                print(f"  {(now - began) / 60:5.1f} min: load stopped; draining")
            states = recording_states(engine)
            if generator.stop.is_set() and (
                (
                    not (states.get("collecting") or states.get("processing"))
                    and not any(queue_depths(redis_url).values())
                )
                or now - load_end > args.drain_seconds
            ):
                break
            if now >= next_sample:
                samples.append(take_sample(now - began, roles, engine, redis_url, metrics_urls,
                                           states))  # fmt: skip
                next_sample += args.sample_seconds
                if now - last_print >= 60:
                    print_progress(samples[-1], generator.load)
                    last_print = now
            time.sleep(max(0.2, min(1.0, next_sample - time.monotonic())))
        time.sleep(args.sample_seconds)  # the retries and sweeps after the last archive
        final = take_sample(time.monotonic() - began, roles, engine, redis_url, metrics_urls,
                            recording_states(engine))  # fmt: skip
        samples.append(final)
        cpu = {
            role: round(sum(cpu_seconds(p, reaped=True) for p in [pid, *descendants(pid)]), 2)
            for role, pid in roles.items()
        }
        alive = {role: procs.alive(role) for role in roles}
        steps = step_seconds(engine)
        media_seconds = archived_media_seconds(engine)
        sizes = row_sizes(engine, list(final["tables"]))
    finally:
        if generator is not None:
            generator.stop.set()
        procs.stop_all()
        engine.dispose()
    received = received_tasks(work, list(commands))
    errors = error_lines(work, list(roles))
    report = summarize(args, samples, final, generator.load, cpu, alive, received, errors)
    report["media_steps_s"] = steps
    report["archived_media_s"] = media_seconds
    for name, size in sizes.items():
        report["tables"][name]["avg_row_bytes"] = size
    return report


def take_sample(
    at: float, roles: dict[str, int], engine: Any, redis_url: str, metrics_urls: dict[str, str],
    states: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    scraped = {role: scrape(url) for role, url in metrics_urls.items()}
    procs, transient = sample_processes(roles)
    return {
        "t_s": round(at, 1),
        "processes": procs,
        "transient_children": transient,
        "tables": ledger_tables(engine),
        "transactions": transactions(engine),
        "queues": queue_depths(redis_url),
        "recordings": states,
        "metrics_bytes": scraped,
    }


def archived_media_seconds(engine: Any) -> float:
    """The length of everything archived (each run's first output), seconds."""
    from sqlalchemy import text

    with engine.connect() as conn:
        results = conn.execute(text("SELECT result FROM runs WHERE state = 'archived'")).all()
    total = 0.0
    for (result,) in results:
        artifacts = (result or {}).get("artifacts") or []
        if artifacts and artifacts[0].get("duration_s") is not None:
            total += float(artifacts[0]["duration_s"])
    return round(total, 1)


def step_seconds(engine: Any) -> dict[str, dict[str, float | None]]:
    """The archived runs' step times (p50, p90, sum) from the ledger."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT steps FROM runs WHERE state = 'archived'")).all()
    steps: dict[str, list[float]] = {}
    for (run_steps,) in rows:
        for entry in run_steps or []:
            if entry.get("seconds") is not None:
                steps.setdefault(entry["step"], []).append(float(entry["seconds"]))
    return {
        step: {"p50": percentile(v, 50), "p90": percentile(v, 90), "sum": round(sum(v), 1)}
        for step, v in sorted(steps.items())
    }


def print_progress(sample: dict[str, Any], load: Load) -> None:
    rss = " ".join(
        f"{k}={v['rss_mb']:.0f}MB/{v['fds']}fd"
        for k, v in sample["processes"].items()
        if "/" not in k
    )
    print(
        f"  {sample['t_s'] / 60:5.1f} min: {load.gme_recordings} GME + {load.css_recordings} CSS"
        f" sent; recordings {sample['recordings']}; queues {sample['queues']}; {rss}"
    )


def received_tasks(work: Path, roles: list[str]) -> dict[str, int]:
    """Messages the workers took from the broker, by task (Celery logs each as received)."""
    counts: dict[str, int] = {}
    for role in roles:
        log = work / f"{role}.log"
        if not log.exists():
            continue
        for match in TASK_RECEIVED.finditer(log.read_text(errors="replace")):
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return dict(sorted(counts.items()))


def error_lines(work: Path, roles: list[str]) -> dict[str, list[str]]:
    """Each process's log lines at level error or worse (at most 5 kept per process)."""
    out: dict[str, list[str]] = {}
    for role in roles:
        log = work / f"{role}.log"
        if not log.exists():
            continue
        lines = [
            line[:400]
            for line in log.read_text(errors="replace").splitlines()
            if '"level": "error"' in line or '"level": "critical"' in line or "Traceback" in line
        ]
        if lines:
            out[role] = [f"{len(lines)} lines", *lines[:5]]
    return out


def summarize(
    args: argparse.Namespace, samples: list[dict[str, Any]], final: dict[str, Any], load: Load,
    cpu: dict[str, float], alive: dict[str, bool], received: dict[str, int],
    errors: dict[str, list[str]],
) -> dict[str, Any]:  # fmt: skip
    steady_from = args.warmup * 60
    load_end = args.minutes * 60
    steady = [s for s in samples if steady_from <= s["t_s"] <= load_end]
    keys = sorted({k for s in samples for k in s["processes"]})
    processes = {}
    for key in keys:
        series = [(s["t_s"], s["processes"][key]) for s in samples if key in s["processes"]]
        points = [(s["t_s"] / 60, s["processes"][key]) for s in steady if key in s["processes"]]
        rss_slope = slope([(t, p["rss_mb"]) for t, p in points])
        fd_slope = slope([(t, p["fds"]) for t, p in points])
        processes[key] = {
            "name": series[0][1]["name"],
            "samples": len(series),
            "rss_mb": {
                "first": series[0][1]["rss_mb"],
                "steady_first": points[0][1]["rss_mb"] if points else None,
                "last": series[-1][1]["rss_mb"],
                "max": max(p["rss_mb"] for _, p in series),
                "slope_per_min": round(rss_slope, 3) if rss_slope is not None else None,
            },
            "fds": {
                "first": series[0][1]["fds"],
                "last": series[-1][1]["fds"],
                "max": max(p["fds"] for _, p in series),
                "slope_per_min": round(fd_slope, 3) if fd_slope is not None else None,
            },
        }
    tables = final["tables"]
    first_tables = samples[0]["tables"]
    recordings_done = sum(final["recordings"].values())
    archived = final["recordings"].get("archived", 0)
    per_recording_rows = {
        name: round(t["rows"] / recordings_done, 2) if recordings_done else None
        for name, t in tables.items()
    }
    # The periodic jobs are a fixed rate, not a cost per recording.
    total_messages = sum(n for task, n in received.items() if task not in PERIODIC)
    depths = [s["queues"] for s in samples]
    return {
        "load": vars(load),
        "steady_phase_min": [round(args.warmup, 2), args.minutes],
        "samples": samples,
        "processes": processes,
        "alive_at_end": alive,
        "final_recordings": final["recordings"],
        "tables": {
            name: {
                **t,
                "rows_first": first_tables.get(name, {}).get("rows", 0),
                "rows_per_recording": per_recording_rows[name],
                "row_writes_per_recording": round(t["row_writes"] / recordings_done, 2)
                if recordings_done
                else None,
                "bytes_per_recording": round(t["bytes"] / recordings_done)
                if recordings_done
                else None,
            }
            for name, t in tables.items()
        },
        "ledger_bytes": sum(t["bytes"] for t in tables.values()),
        "ledger_transactions_per_recording": round(final["transactions"] / recordings_done, 1)
        if recordings_done
        else None,
        "queues": {
            q: {"max": max(d.get(q, 0) for d in depths), "last": depths[-1].get(q, 0)}
            for q in depths[-1]
        },
        "broker_messages_received": received,
        "broker_messages_per_recording": round(total_messages / recordings_done, 2)
        if recordings_done
        else None,
        "cpu_s": cpu,
        "cpu_s_per_recording": {
            role: round(seconds / recordings_done, 3) for role, seconds in cpu.items()
        }
        if recordings_done
        else {},
        "archived": archived,
        "error_lines": errors,
        "transient_children_max": max(s["transient_children"] for s in samples),
    }


def finish(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print(f"\nsoak: {args.minutes:g} min of load; slopes over minutes "
          f"{args.warmup:g}-{args.minutes:g}")  # fmt: skip
    print("-" * 96)
    print(f"{'process':<26}{'RSS MB first':>13}{'last':>8}{'max':>8}{'MB/min':>9}"
          f"{'fds first':>11}{'last':>6}{'max':>6}{'fds/min':>9}")  # fmt: skip
    for key, p in r["processes"].items():
        label = f"{key} ({p['name']})" if "/" in key else key
        m, f = p["rss_mb"], p["fds"]
        print(
            f"{label:<26}{m['first']:>13.1f}{m['last']:>8.1f}{m['max']:>8.1f}"
            f"{_num(m['slope_per_min'], 3):>9}{f['first']:>11}{f['last']:>6}{f['max']:>6}"
            f"{_num(f['slope_per_min'], 2):>9}"
        )
    load = r["load"]
    print(f"\nsent: {load['gme_recordings']} GME + {load['css_recordings']} CSS recordings, "
          f"{load['retries_posted']} vendor "
          f"retries; answers {load['statuses']}; connection errors {load['errors']}")  # fmt: skip
    print(f"recordings at the end: {r['final_recordings']}; archive {r['archive']}, "
          f"{r['archived_media_s']} s of media")  # fmt: skip
    print(f"processes alive at the end: {r['alive_at_end']}")
    print(f"\n{'ledger table':<22}{'rows first':>11}{'rows last':>11}{'bytes':>12}"
          f"{'rows/rec':>10}{'bytes/rec':>11}{'writes/rec':>11}")  # fmt: skip
    for name, t in r["tables"].items():
        per_row = _num(t["rows_per_recording"], 2)
        per_byte = _num(t["bytes_per_recording"], 0)
        per_write = _num(t["row_writes_per_recording"], 2)
        print(f"{name:<22}{t['rows_first']:>11}{t['rows']:>11}{t['bytes']:>12}"
              f"{per_row:>10}{per_byte:>11}{per_write:>11}")  # fmt: skip
    sizes = {n: t.get("avg_row_bytes") for n, t in r["tables"].items() if t["rows"]}
    print(f"average row bytes (no indexes): {sizes}")
    print(f"ledger total: {r['ledger_bytes']} bytes; "
          f"{r['ledger_transactions_per_recording']} transactions per recording")  # fmt: skip
    print(f"\nqueue depths (max, last): {r['queues']}")
    print(f"broker messages taken by workers: {r['broker_messages_received']} = "
          f"{r['broker_messages_per_recording']} per recording (periodic jobs aside)")  # fmt: skip
    print(f"CPU s: {r['cpu_s']}; per recording {r['cpu_s_per_recording']}")
    print(f"media steps of archived runs, s: {r['media_steps_s']}")
    if r["error_lines"]:
        print(f"error lines: {json.dumps(r['error_lines'], indent=1)}")
    command = shlex.join(["python", "bench/soak.py", *sys.argv[1:]])
    report = {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        **r,
    }
    path = args.out / f"soak-{args.minutes:g}m.json"
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"figures written to {path}\nreproduce: {command}")


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
