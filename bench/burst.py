"""Benchmark a burst (figure 4): many short recordings at once, from callbacks to archive.

--recordings recordings of --segments short tone segments each (a few generated files
reused as content) are put into the source (moto's S3 server, or a directory with
--store file); their GME callbacks (started, completed, uploaded per segment, recordings
interleaved as concurrent rooms send them) are posted by --posters keep-alive connections
as fast as `recpipe serve` takes them. Two Celery workers finalize and archive them: two
`celery -A tasks worker --concurrency 1` processes (--pool processes, the default) or one
`celery -A tasks worker --concurrency 2` (--pool concurrency), plus `celery -A tasks beat`.
Ledger on a fresh PostgreSQL database, broker on a Redis database of its own. The ledger
is polled (storage.ledger.Ledger) once a second until every recording is archived; when
each was archived is read from the ledger's own timestamps (its run's end), not the poll.

Reported: time from the first callback to the last archive, recordings per minute, and the
settle window's share of that time; the workers' CPU per recording during the burst
(their start not counted), and the part of it outside ffmpeg (worker CPU minus that of the
ffmpeg/ffprobe runs it waited for); and each
archived m4a's duration against the sum of its segments (the keys name back-to-back
starts, so nothing is padded). Baselines, measured in the same run on a recording's local
segments, times the recordings, spread over two cores after the settle window (what two
perfectly fed workers could not beat):
  - concat + AAC: one bare ffmpeg concat and AAC encode;
  - same work: what recpipe does too (`benchlib.bare_finish`: one decode measuring the
    loudness into a float PCM copy, one encode from it with a linear gain and AAC while
    numpy reads the copy for the silences and the waveform peaks).
Ratios: recpipe wall over each baseline, recpipe CPU per recording over the same work's.

    python bench/burst.py [--quick] [--recordings 200] [--segments 6] [--settle 5]
                          [--store s3|file] [--pool processes|concurrency]
                          [--profile [--profile-mode wall|gil]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    BENCH_SECRET,
    BIZ_ID,
    ROOT,
    TASK_ID_BASE,
    Processes,
    Profiler,
    bare_finish,
    children_of,
    clean_env,
    closed_loop,
    cpu_seconds,
    cpu_so_far,
    free_port,
    fresh_database,
    http_ok,
    interleaved_callbacks,
    moto_server,
    percentile,
    print_top,
    process_name,
    py_spy,
    recording_keys,
    redis_database,
    s3_client,
    vm_hwm_mb,
    wait_until,
)

SOURCE_BUCKET = "burst-source"
ARCHIVE_BUCKET = "burst-archive"
TONE_SECONDS = (1.0, 1.5, 2.0)
FIRST_TASK = 90_000_000


def make_tones(folder: Path) -> list[Path]:
    from recpipe.simulate import tone

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, seconds in enumerate(TONE_SECONDS):
        path = folder / f"tone-{i}.mp3"
        if not path.exists():
            tone(path, 220.0 * (i + 1), seconds)
        paths.append(path)
    return paths


def tone_index(recording: int, seq_no: int) -> int:
    return (recording + seq_no) % len(TONE_SECONDS)


def tone_seconds(recording: int, seq_no: int) -> float:
    return TONE_SECONDS[tone_index(recording, seq_no)]


def source_keys(recordings: int, segments: int) -> list[tuple[str, int]]:
    """(key, tone index) of every segment of every recording, named back to back."""
    keys = []
    for r in range(recordings):
        task_id, room = TASK_ID_BASE + FIRST_TASK + r, str(10000 + FIRST_TASK + r)
        durations = [tone_seconds(r, seq_no) for seq_no in range(segments)]
        names = recording_keys(task_id, room, durations)
        keys.extend((name, tone_index(r, seq_no)) for seq_no, name in enumerate(names))
    return keys


def fill_source(store: str, target: Any, keys: list[tuple[str, int]], tones: list[Path]) -> None:
    def put(item: tuple[str, int]) -> None:
        key, index = item
        if store == "s3":
            target.upload_file(str(tones[index]), SOURCE_BUCKET, key)
        else:
            dest = Path(target) / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tones[index], dest)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, keys))


def worker_commands(pool: str, counts: Path) -> dict[str, list[str]]:
    """Celery workers that count their processes and ledger round trips into `counts`
    (bench/counted_worker.py)."""
    base = [
        sys.executable, str(ROOT / "bench" / "counted_worker.py"), str(counts),
        "-A", "tasks", "worker", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--pool", "prefork",
    ]  # fmt: skip
    if pool == "processes":
        return {f"worker{i}": [*base, "--concurrency", "1", "-n", f"burst{i}@%h"] for i in (1, 2)}
    return {"worker": [*base, "--concurrency", "2", "-n", "burst@%h"]}


def poll_until_archived(
    db_url: str, expected: int, started: float, timeout: float
) -> tuple[dict[str, float], dict[str, int]]:
    """Poll the ledger once a second; returns when each recording was first seen archived
    (seconds after `started`) and the last state counts."""
    from storage.domain import RecordingState
    from storage.ledger import Ledger

    ledger = Ledger(db_url)
    archived: dict[str, float] = {}
    counts: dict[str, int] = {}
    last_print = 0.0
    try:
        while time.perf_counter() - started < timeout:
            recordings = ledger.recent_recordings(limit=expected + 50)
            now = time.perf_counter() - started
            counts = {}
            for rec in recordings:
                counts[rec.state] = counts.get(rec.state, 0) + 1
                if rec.state == RecordingState.ARCHIVED and rec.id not in archived:
                    archived[rec.id] = now
            if now - last_print >= 10:
                print(f"  {now:6.1f} s: {dict(sorted(counts.items()))}")
                last_print = now
            if len(archived) + counts.get(RecordingState.FAILED, 0) >= expected:
                break
            time.sleep(1.0)
    finally:
        ledger.dispose()
    return archived, counts


def expected_durations(recordings: int, segments: int) -> dict[str, float]:
    """Each recording's id and the length of its track: its tones end to end."""
    from storage.domain import GmeRecordingKey

    out = {}
    for r in range(recordings):
        task_id, room = TASK_ID_BASE + FIRST_TASK + r, str(10000 + FIRST_TASK + r)
        rid = GmeRecordingKey(BIZ_ID, room, "999", str(task_id), 1).recording_id
        out[rid] = sum(tone_seconds(r, seq_no) for seq_no in range(segments))
    return out


def run_facts(db_url: str, expected: dict[str, float], started_at: datetime) -> dict[str, Any]:
    """From the ledger, after the burst: when each run was archived (seconds after
    `started_at`, by the ledger's own timestamp: the poll's 1 s steps made the burst's end
    up to a second late), and per recording, last event → run created (settling), created →
    started (queueing), started → finished (the media task), step times, and the archived
    m4a's duration against `expected` (its segments end to end)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT r.id, r.last_event_at, u.created_at, u.started_at, u.finished_at,"
                    " u.steps, u.result"
                    " FROM runs u JOIN recordings r ON r.id = u.recording_id"
                    " WHERE u.state = 'archived'"
                )
            ).all()
    finally:
        engine.dispose()
    settling, queueing, media, durations, off, done = [], [], [], [], [], []
    steps: dict[str, list[float]] = {}
    for rid, last_event, created, began, finished, run_steps, result in rows:
        settling.append((created - last_event).total_seconds())
        queueing.append((began - created).total_seconds())
        media.append((finished - began).total_seconds())
        done.append((finished - started_at).total_seconds())
        for entry in run_steps or []:
            if entry.get("seconds") is not None:
                steps.setdefault(entry["step"], []).append(float(entry["seconds"]))
        m4a = [a for a in (result or {}).get("artifacts", []) if a.get("format") == "m4a"]
        if m4a and rid in expected:
            durations.append(float(m4a[0]["duration_s"]))
            off.append(abs(float(m4a[0]["duration_s"]) - expected[rid]))

    def stats(values: list[float]) -> dict[str, float | None]:
        return {
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "max": round(max(values), 3) if values else None,
        }

    return {
        "archived_at_s": sorted(done),
        "runs": len(rows),
        "last_event_to_claim_s": stats(settling),
        "claim_to_start_s": stats(queueing),
        "media_task_s": stats(media),
        "media_task_total_s": round(sum(media), 1),
        "steps_s": {k: stats(v) for k, v in sorted(steps.items())},
        "steps_total_s": {k: round(sum(v), 1) for k, v in sorted(steps.items())},
        "m4a_duration_s": stats(durations),
        "expected_duration_s": stats(sorted(expected.values())),
        "m4a_duration_off_max_s": round(max(off), 3) if off else None,
    }


def bare_units(tones: list[Path], segments: int, samples: int, work: Path) -> dict[str, float]:
    """The baselines' units, on one recording's local segments with bare ffmpeg, each the
    median of `samples` runs: wall seconds of a concat + AAC encode, and wall and CPU
    seconds of the same work recpipe does (`bare_finish`)."""
    concat, same, same_cpu = [], [], []
    for i in range(samples):
        folder = work / f"bare-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        listing = folder / "list.txt"
        listing.write_text(
            "".join(f"file '{tones[tone_index(i, s)].resolve()}'\n" for s in range(segments))
        )
        inputs = ["-f", "concat", "-safe", "0", "-i", str(listing)]
        started = time.perf_counter()
        subprocess.run(
            [
                "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *inputs,
                "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(folder / "o.m4a"),
            ],
            check=True,
        )  # fmt: skip
        concat.append(time.perf_counter() - started)
        started, cpu_before = time.perf_counter(), cpu_so_far()
        bare_finish(inputs, folder / "same.m4a", folder)
        same.append(time.perf_counter() - started)
        same_cpu.append(cpu_so_far() - cpu_before)

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    return {
        "concat_aac_s": median(concat),
        "same_work_s": median(same),
        "same_work_cpu_s": median(same_cpu),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 recordings")
    parser.add_argument("--recordings", type=int, default=200)
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--settle", type=float, default=5.0, help="RECPIPE_SETTLE_SECONDS")
    parser.add_argument("--posters", type=int, default=4, help="concurrent callback posters")
    parser.add_argument("--store", choices=("s3", "file"), default="s3")
    parser.add_argument("--pool", choices=("processes", "concurrency"), default="processes")
    parser.add_argument("--no-beat", dest="beat", action="store_false")
    parser.add_argument("--redis-db", type=int, default=15, help="Redis database (flushed)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this long")
    parser.add_argument("--profile", action="store_true", help="py-spy the workers")
    parser.add_argument(
        "--profile-mode",
        choices=("wall", "gil"),
        default="wall",
        help="py-spy samples every thread (wall: where a task's time goes) or only the one "
        "holding the GIL (gil: where the workers' own CPU goes)",
    )
    parser.add_argument("--profile-seconds", type=float, default=600.0, help="at most")
    parser.add_argument("--out", dest="out_arg", default="bench/out")
    args = parser.parse_args()
    if args.quick:
        args.recordings = min(args.recordings, 40)
    args.out = Path(args.out_arg)
    return args


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="burst-", dir=args.out))
    tones = make_tones(args.out / "media" / "burst-tones")
    keys = source_keys(args.recordings, args.segments)
    callbacks = interleaved_callbacks(
        args.recordings, args.segments, FIRST_TASK, seconds=tone_seconds
    )
    if args.profile and py_spy() is None:
        print("py-spy not found: running without --profile (pip install py-spy)")
        args.profile = False
    print(
        f"{args.recordings} recordings x {args.segments} segments = {len(keys)} segments, "
        f"{len(callbacks)} signed callbacks; settle {args.settle:g} s; store {args.store}; "
        f"workers: {'2 processes x 1' if args.pool == 'processes' else '1 process x 2'}"
    )
    result: dict[str, Any] = {}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        env_extra: dict[str, str] = {}
        if args.store == "s3":
            endpoint = stack.enter_context(moto_server(args.out / "moto-burst.log"))
            client = s3_client(endpoint)
            for bucket in (SOURCE_BUCKET, ARCHIVE_BUCKET):
                client.create_bucket(Bucket=bucket)
            fill_source("s3", client, keys, tones)
            env_extra["RECPIPE_GME_SOURCE_URL"] = f"s3://{SOURCE_BUCKET}?endpoint_url={endpoint}"
            env_extra["RECPIPE_ARCHIVE_URL"] = (
                f"s3://{ARCHIVE_BUCKET}/recordings?endpoint_url={endpoint}"
            )
        else:
            fill_source("file", work / "source", keys, tones)
            env_extra["RECPIPE_GME_SOURCE_URL"] = (work / "source").resolve().as_uri()
            env_extra["RECPIPE_ARCHIVE_URL"] = (work / "archive").resolve().as_uri()
        with fresh_database("recpipe_burst") as db_url, redis_database(args.redis_db) as redis:
            env = clean_env(
                {
                    **env_extra,
                    "RECPIPE_DATA_DIR": str(work / "data"),
                    "RECPIPE_DATABASE_URL": db_url,
                    "RECPIPE_BROKER_URL": redis,
                    "RECPIPE_GME_SECRET_KEYS": f"{BIZ_ID}={BENCH_SECRET.decode()}",
                    "RECPIPE_SETTLE_SECONDS": f"{args.settle:g}",
                    "RECPIPE_AUDIO_FORMATS": "m4a",
                    "RECPIPE_LOG_LEVEL": "INFO",
                }
            )
            result = burst(args, env, db_url, work, callbacks)

    units = bare_units(tones, args.segments, 15, args.out / "bare-burst")
    shutil.rmtree(args.out / "bare-burst", ignore_errors=True)
    # Two workers, perfectly fed: the settle window, which the design must wait, then the
    # recordings' bare ffmpeg work split over two cores.
    for name, unit in (("baseline", units["concat_aac_s"]), ("same_work", units["same_work_s"])):
        total = args.settle + unit * args.recordings / 2
        result[name] = {
            "bare_ffmpeg_per_recording_s": round(unit, 3),
            "total_s": round(total, 2),
            "recordings_per_minute": round(60 * args.recordings / total, 1),
        }
    result["same_work"]["cpu_per_recording_s"] = round(units["same_work_cpu_s"], 3)
    result["ratios"] = ratios(result)
    print_summary(result, args)
    command = shlex.join(["python", "bench/burst.py", *sys.argv[1:]])
    report = {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        **result,
    }
    result_file = args.out / f"burst-{args.store}.json"
    result_file.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"figures written to {result_file}\nreproduce: {command}")


def burst(
    args: argparse.Namespace, env: dict[str, str], db_url: str, work: Path, callbacks: list
) -> dict[str, Any]:
    from storage.ledger import Ledger

    Ledger(db_url).migrate()
    procs = Processes(work, env)
    port = free_port()
    try:
        procs.spawn("webhook", [sys.executable, "-m", "recpipe", "serve", "--port", str(port)])
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the webhook")
        workers = {
            name: procs.spawn(name, cmd, cwd=ROOT)
            for name, cmd in worker_commands(args.pool, work / "counts").items()
        }
        if args.beat:
            beat = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO"]
            procs.spawn("beat", beat, cwd=ROOT)
        for name in workers:
            log = work / f"{name}.log"
            wait_until(lambda log=log: " ready" in log.read_text(errors="replace"), 60, name)

        profilers = []
        if args.profile:
            for name, pid in workers.items():
                profilers.append(
                    Profiler(
                        pid, args.out, f"burst-{name}", args.profile_seconds, mode=args.profile_mode
                    )
                )
        # The burst's CPU only: the workers' start (imports, pool processes' clients) is not
        # a recording's cost.
        cpu_before, python_before = workers_cpu(workers)
        started, started_at = time.perf_counter(), datetime.now(UTC)
        posted = closed_loop(port, "/callbacks/gme", callbacks, args.posters, args.timeout)
        posting_s = time.perf_counter() - started
        print(
            f"  posted {posted.ok}/{len(callbacks)} callbacks in {posting_s:.1f} s "
            f"({posted.summary()['rps']:.0f}/s, p99 {posted.summary()['p99_ms']} ms)"
        )
        archived, counts = poll_until_archived(
            db_url, args.recordings, started, args.timeout - posting_s
        )
        memory = {
            name: {process_name(p): round(vm_hwm_mb(p) or 0, 1) for p in [pid, *children_of(pid)]}
            for name, pid in workers.items()
        }
        cpu_after, python_after = workers_cpu(workers)
        cpu = {name: round(cpu_after[name] - cpu_before[name], 1) for name in workers}
        python_cpu = python_after - python_before
        profiles = []
        for profiler in profilers:
            for path in profiler.stop():
                profiles.append(str(path))
                if path.suffix == ".txt":
                    print_top(f"worker profile ({path})", path, within="process_recording")
                    print_top(f"worker profile ({path})", path, within="settle (tasks/jobs.py)")
    finally:
        procs.stop_all()
    ledger = run_facts(db_url, expected_durations(args.recordings, args.segments), started_at)
    times = ledger.pop("archived_at_s") or sorted(archived.values())
    total_s = times[-1] if times else None
    counted = [json.loads(p.read_text()) for p in sorted((work / "counts").glob("*.json"))]
    programs = sorted({name for c in counted for name in c["processes"]})
    per = max(1, len(archived))
    return {
        "per_recording": {
            "processes": {
                name: round(sum(c["processes"].get(name, 0) for c in counted) / per, 2)
                for name in programs
            },
            "ledger_round_trips": round(sum(c["ledger_round_trips"] for c in counted) / per, 1),
        },
        "posting": {**posted.summary(), "seconds": round(posting_s, 2)},
        "archived": len(archived),
        "final_states": counts,
        "first_archived_s": round(times[0], 2) if times else None,
        "median_archived_s": percentile(times, 50),
        "total_s": round(total_s, 2) if total_s else None,
        "recordings_per_minute": round(60 * len(archived) / total_s, 1) if total_s else None,
        "settle_share": round(args.settle / total_s, 3) if total_s else None,
        "ledger": ledger,
        "worker_vmhwm_mb": memory,
        "worker_cpu_s": cpu,
        "worker_cpu_per_recording_s": (
            round(sum(cpu.values()) / len(archived), 3) if archived else None
        ),
        "worker_cpu_outside_ffmpeg_per_recording_s": (
            round(python_cpu / len(archived), 3) if archived else None
        ),
        "profiles": profiles,
    }


def workers_cpu(workers: dict[str, int]) -> tuple[dict[str, float], float]:
    """CPU seconds so far of each worker (its processes and the ffmpeg/ffprobe runs they
    waited for), and of all workers' processes alone (outside ffmpeg)."""
    processes = {name: [pid, *children_of(pid)] for name, pid in workers.items()}
    total = {
        name: sum(cpu_seconds(p, reaped=True) for p in pids) for name, pids in processes.items()
    }
    own = sum(cpu_seconds(p, reaped=False) for pids in processes.values() for p in pids)
    return total, own


def ratios(r: dict[str, Any]) -> dict[str, float | None]:
    """recpipe over the bare baselines: wall time of the burst, CPU per recording."""

    def over(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    return {
        "wall_over_concat_aac": over(r.get("total_s"), r["baseline"]["total_s"]),
        "wall_over_same_work": over(r.get("total_s"), r["same_work"]["total_s"]),
        "cpu_over_same_work": over(
            r.get("worker_cpu_per_recording_s"), r["same_work"]["cpu_per_recording_s"]
        ),
    }


def print_summary(r: dict[str, Any], args: argparse.Namespace) -> None:
    ledger, ratio = r["ledger"], r["ratios"]
    print(
        f"\nfigure 4: burst of {args.recordings} x {args.segments} segments "
        f"(settle {args.settle:g} s, 2 workers, {args.store})"
    )
    print("-" * 72)
    print(f"archived                          {r['archived']}/{args.recordings}")
    print(f"posting all callbacks             {r['posting']['seconds']} s")
    print(f"first / median / last archived    {r['first_archived_s']} / "
          f"{r['median_archived_s']} / {r.get('total_s')} s")  # fmt: skip
    print(f"recordings per minute             {r['recordings_per_minute']}")
    print(f"settle window share of total      {r['settle_share']}")
    for name, what in (("baseline", "concat+AAC"), ("same_work", "same work")):
        base = r[name]
        print(
            f"baseline {what:<10}: settle {args.settle:g} s + bare ffmpeg "
            f"{base['bare_ffmpeg_per_recording_s']} s x {args.recordings} / 2 cores"
            f" = {base['total_s']:.1f} s ({base['recordings_per_minute']}/min)"
        )
    print(f"recpipe wall / concat+AAC         {ratio['wall_over_concat_aac']}")
    print(f"recpipe wall / same work          {ratio['wall_over_same_work']}")
    print(
        f"recpipe CPU / same-work CPU       {ratio['cpu_over_same_work']} "
        f"({r['worker_cpu_per_recording_s']} s / "
        f"{r['same_work']['cpu_per_recording_s']} s per recording)"
    )
    print(f"worker CPU outside ffmpeg / rec.  {r['worker_cpu_outside_ffmpeg_per_recording_s']} s")
    print(f"processes / recording (workers)   {r['per_recording']['processes']}")
    print(f"ledger round trips / rec. (work.) {r['per_recording']['ledger_round_trips']}")
    print(f"last event -> claimed (settling)  {ledger['last_event_to_claim_s']}")
    print(f"claimed -> started (queueing)     {ledger['claim_to_start_s']}")
    print(f"media task (started -> finished)  {ledger['media_task_s']}")
    print(f"media task steps (p50)            "
          f"{ {k: v['p50'] for k, v in ledger['steps_s'].items()} }")  # fmt: skip
    print(f"archived m4a duration s           {ledger['m4a_duration_s']} (segments end to end: "
          f"{ledger['expected_duration_s']}; worst difference "
          f"{ledger['m4a_duration_off_max_s']} s)")  # fmt: skip
    print(f"worker CPU s during the burst     {r['worker_cpu_s']}")
    print(f"worker peak RSS MB                {r['worker_vmhwm_mb']}")


if __name__ == "__main__":
    main()
