"""Benchmark recpipe's GME chain (fetch → concat → transcode → archive) against a bare pipeline.

For each recording length it
  1. makes a GME-like recording of mp3 segments with ffmpeg (cached under --out),
  2. puts the segments into a source store: a moto S3 server (default) or a directory,
  3. runs recpipe's `tasks.processing.process` for that recording in a fresh process, and
  4. runs the same work without recpipe (download; one decode measuring the loudness
     into a float PCM copy, then one encode from it with a linear gain and AAC while numpy
     reads the copy for the silences and the waveform peaks; one upload), also in a fresh
     process,
then prints wall times and peak memory and writes them as JSON to --out.

    python bench/gme_chain.py [--hours 1,4] [--segment-minutes 5] [--store s3|file] [--out DIR]
                              [--profile]

Peak RSS: Linux keeps `ru_maxrss` across fork+exec, so a child's ru_maxrss is at least what
its parent had resident when it spawned it (an ffmpeg started by a 150 MB worker reports
>= 150 MB). Both figures are reported: `ru_maxrss` as asked, and VmHWM, the high-water mark
of the process's own address space — read from /proc/self/status for the worker and sampled
from /proc every 50 ms for its ffmpeg/ffprobe children. VmHWM is the one to read.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    BIZ_ID,
    TASK_ID_BASE,
    Counted,
    bare_concat_aac,
    bare_finish,
    clean_env,
    cpu_so_far,
    moto_server,
    s3_client,
)

SAMPLE_RATE = 48000
BITRATE = "64k"
SOURCE_BUCKET = "bench-source"
ARCHIVE_BUCKET = "bench-archive"
ARCHIVE_PREFIX = "recordings"
SAMPLE_SECONDS = 0.05
SCRIPT = Path(__file__)


# -- media ------------------------------------------------------------------------------


def make_segment(path: Path, index: int, seconds: float) -> None:
    """A mono mp3: a sine whose pitch differs per segment, over quiet pink noise."""
    frequency = 180 + 37 * index
    tone = f"sine=frequency={frequency}:sample_rate={SAMPLE_RATE}:duration={seconds}"
    noise = (
        f"anoisesrc=color=pink:amplitude=0.08:sample_rate={SAMPLE_RATE}"
        f":duration={seconds}:seed={index + 1}"
    )
    partial = path.with_name(f".{path.name}.part")
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", tone, "-f", "lavfi", "-i", noise,
            "-filter_complex", "[0:a][1:a]amix=inputs=2:normalize=0,volume=0.6[a]",
            "-map", "[a]", "-ac", "1", "-c:a", "libmp3lame", "-b:a", BITRATE,
            "-f", "mp3", str(partial),
        ],
        check=True,
    )  # fmt: skip
    partial.replace(path)


def ensure_segments(out: Path, count: int, segment_minutes: float) -> list[Path]:
    """Segment i is the same file for every recording length, so a 4 h run reuses 1 h's."""
    folder = out / "media" / f"seg-{segment_minutes:g}min-{SAMPLE_RATE}hz-{BITRATE}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:04d}.mp3" for i in range(count)]
    todo = [(i, p) for i, p in enumerate(paths) if not p.exists()]
    if todo:
        print(f"generating {len(todo)} segment(s) of {segment_minutes:g} min in {folder} ...")
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(lambda item: make_segment(item[1], item[0], segment_minutes * 60), todo))
        print(f"  done in {time.perf_counter() - started:.1f} s")
    return paths


def media_duration(path: Path) -> float:
    output = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return round(float(output.strip()), 3)


# -- stores -----------------------------------------------------------------------------


def empty_bucket(client: Any, bucket: str) -> None:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


class Stores:
    """Where the source segments live and where the archive goes, for both sides."""

    def __init__(self, kind: str, work: Path, endpoint: str | None):
        self.kind, self.work, self.endpoint = kind, work, endpoint
        if kind == "s3":
            assert endpoint
            self.client = s3_client(endpoint)
            for bucket in (SOURCE_BUCKET, ARCHIVE_BUCKET):
                self.client.create_bucket(Bucket=bucket)
            query = f"?endpoint_url={endpoint}"
            self.source_url = f"s3://{SOURCE_BUCKET}{query}"
            self.archive_url = f"s3://{ARCHIVE_BUCKET}/{ARCHIVE_PREFIX}{query}"
        else:
            self.source_dir, self.archive_dir = work / "source", work / "archive"
            self.source_url = self.source_dir.resolve().as_uri()
            self.archive_url = self.archive_dir.resolve().as_uri()

    def upload_sources(self, files: list[tuple[str, Path]]) -> None:
        for key, path in files:
            if self.kind == "s3":
                self.client.upload_file(str(path), SOURCE_BUCKET, key)
            else:
                target = self.source_dir / key
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)

    def clear(self) -> None:
        if self.kind == "s3":
            empty_bucket(self.client, SOURCE_BUCKET)
            empty_bucket(self.client, ARCHIVE_BUCKET)
        else:
            shutil.rmtree(self.source_dir, ignore_errors=True)
            shutil.rmtree(self.archive_dir, ignore_errors=True)

    def baseline_spec(self) -> dict[str, Any]:
        if self.kind == "s3":
            return {"endpoint": self.endpoint, "source": SOURCE_BUCKET, "archive": ARCHIVE_BUCKET}
        return {"source": str(self.source_dir), "archive": str(self.archive_dir)}


# -- peak memory ------------------------------------------------------------------------


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """The process's own resident high-water mark (not inherited across exec)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def rusage_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


class ChildPeakSampler(threading.Thread):
    """Samples VmHWM of the direct children (ffmpeg, ffprobe) of process `pid` every 50 ms,
    over its life.

    It runs in the bench's own process, never in the one measured: a sampling thread there
    was counted in its CPU, and took the GIL from work that holds it (libav's encode) every
    50 ms; the 1 h chain's passes measured 7% slower for it."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[str, float] = {}
        self._halt = threading.Event()
        self._pid = pid

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        try:
            threads = os.listdir(f"/proc/{self._pid}/task")
        except OSError:
            return
        for tid in threads:
            try:
                children = Path(f"/proc/{self._pid}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in children:
                try:
                    name = Path(f"/proc/{child}/comm").read_text().strip()
                except OSError:
                    continue
                hwm = vm_hwm_mb(child)
                if hwm is not None and hwm > self.peaks.get(name, 0.0):
                    self.peaks[name] = hwm

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join()
        return {name: round(mb, 1) for name, mb in sorted(self.peaks.items())}


def memory_report() -> dict[str, Any]:
    """The measured process's own peaks (its children's VmHWM comes from the bench's
    `ChildPeakSampler`)."""
    return {
        "self_vmhwm_mb": round(vm_hwm_mb() or 0.0, 1),
        "self_ru_maxrss_mb": round(rusage_mb(resource.RUSAGE_SELF), 1),
        "children_ru_maxrss_mb": round(rusage_mb(resource.RUSAGE_CHILDREN), 1),
    }


# -- the two sides, each run in a fresh process -----------------------------------------


class StepTimes(io.StringIO):
    """The log stream of recpipe's side: collects the `step.finished` events (their
    `seconds`) from the JSON lines, and passes warnings and errors on to stderr.

    The run's own step list in the ledger is not used for this: see `ledger_steps_s`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = {}

    def write(self, text: str) -> int:
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "step.finished":
                self.seconds[str(event.get("step"))] = event["seconds"]
            elif event.get("level") in ("warning", "error", "critical"):
                sys.stderr.write(line + "\n")
        return len(text)


def child_recpipe(spec: dict[str, Any]) -> dict[str, Any]:
    """recpipe's side: Settings from env, ledger events, a forced claim, then process()."""
    from foundation import logs
    from foundation.config import Settings
    from recpipe.simulate import gme_body
    from storage.domain import GME_EVENT_UPLOADED, GmeEvent, GmeRecordingKey
    from storage.ledger import Ledger
    from storage.objectstore import store_from_url
    from tasks.processing import process
    from tasks.services import Services

    step_times = StepTimes()
    logs.configure("INFO", json=True, stream=step_times)  # only warnings reach the terminal
    settings = Settings.from_env()
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    key = GmeRecordingKey(
        biz_id=BIZ_ID,
        room_id=spec["room_id"],
        user_id=spec["user_id"],
        task_id=spec["task_id"],
        record_mode=1,
    )
    now = datetime.now(UTC)
    for seq_no, file_name in enumerate(spec["keys"]):
        event = GmeEvent(key, GME_EVENT_UPLOADED, seq_no, file_name, int(now.timestamp()))
        body = gme_body(key, GME_EVENT_UPLOADED, seq_no, file_name).decode()
        ledger.record_gme_event(
            event,
            body,
            {"Content-Type": "application/json"},
            now=now + timedelta(milliseconds=seq_no),
            settle_seconds=settings.settle_seconds,
        )
    run_id = ledger.claim(key.recording_id, now=datetime.now(UTC), force=True)
    if run_id is None:
        raise RuntimeError(f"could not claim {key.recording_id}")
    services = Services(
        settings=settings,
        ledger=ledger,
        source=store_from_url(settings.gme_source_url),
        archive=store_from_url(settings.archive_url),
    )

    counted = Counted().start()
    started, cpu_before = time.perf_counter(), cpu_so_far()
    run = process(services, run_id, "bench")
    wall, cpu = time.perf_counter() - started, cpu_so_far() - cpu_before
    counts = counted.stop()
    memory = memory_report()

    recording = ledger.recording(key.recording_id)
    artifacts = run.result.get("artifacts", []) if run else []
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 2),
        "run_state": run.state if run else None,
        "recording_state": recording.state if recording else None,
        "error": run.error if run else "process() returned None",
        "steps_s": step_times.seconds,
        "ledger_steps_s": {s["step"]: s.get("seconds") for s in (run.steps if run else [])},
        "output_duration_s": artifacts[0]["duration_s"] if artifacts else None,
        "output_bytes": artifacts[0]["bytes"] if artifacts else None,
        "loudness": run.result.get("loudness") if run else None,
        **counts,
        **memory,
    }


def child_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """The same work with no recpipe: download, measure, gain + encode with silences and
    peaks read from the PCM copy (`bare_finish`), one upload."""
    stores = spec["stores"]
    scratch = Path(tempfile.mkdtemp(prefix="baseline-", dir=spec["scratch"]))
    client = s3_client(stores["endpoint"]) if spec["kind"] == "s3" else None

    local = []
    for seq_no, key in enumerate(spec["keys"]):
        dest = scratch / f"{seq_no:06d}.mp3"
        if client is not None:
            client.download_file(stores["source"], key, str(dest))
        else:
            shutil.copyfile(Path(stores["source"]) / key, dest)
        local.append(dest)
    list_file = scratch / "list.txt"
    list_file.write_text("".join(f"file '{p.resolve()}'\n" for p in local))
    # The physical baseline first, on the local segments: one decode, one AAC encode.
    concat_aac = bare_concat_aac(
        ["-f", "concat", "-safe", "0", "-i", str(list_file)], scratch / "bare.m4a"
    )
    for path in local:
        path.unlink()

    steps: dict[str, float] = {}
    started, cpu_before = time.perf_counter(), cpu_so_far()

    mark = time.perf_counter()
    for seq_no, key in enumerate(spec["keys"]):
        dest = local[seq_no]
        if client is not None:
            client.download_file(stores["source"], key, str(dest))
        else:
            shutil.copyfile(Path(stores["source"]) / key, dest)
    steps["fetch"] = time.perf_counter() - mark

    mark = time.perf_counter()
    output = scratch / "out.m4a"
    finished = bare_finish(
        ["-f", "concat", "-safe", "0", "-i", str(list_file)], output, scratch, SAMPLE_RATE
    )
    steps["measure"], steps["normalize+encode"] = finished["measure"], finished["encode"]
    steps["concat+transcode"] = time.perf_counter() - mark

    mark = time.perf_counter()
    archive_key = f"baseline/{spec['task_id']}/out.m4a"
    if client is not None:
        client.upload_file(str(output), stores["archive"], archive_key)
    else:
        target = Path(stores["archive"]) / archive_key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(output, target)
    steps["archive"] = time.perf_counter() - mark

    wall, cpu = time.perf_counter() - started, cpu_so_far() - cpu_before
    memory = memory_report()
    result = {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 2),
        "steps_s": {k: round(v, 3) for k, v in steps.items()},
        "output_duration_s": media_duration(output),
        "output_bytes": output.stat().st_size,
        "concat_aac": {k: round(v, 3) for k, v in concat_aac.items()},
        **memory,
    }
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def run_child(
    side: str, spec: dict[str, Any], env: dict[str, str], work: Path, profile: Path | None = None
) -> dict[str, Any]:
    """Run one side in a fresh process; with `profile`, py-spy samples it (wall clock) into
    that path's .svg/.txt (a profiled run's times are not the figures)."""
    spec_path, result_path = work / f"{side}-spec.json", work / f"{side}-result.json"
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    child = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--child", side, str(spec_path), str(result_path)],
        env=env,
    )
    sampler = ChildPeakSampler(child.pid)
    sampler.start()
    profiler = None
    if profile is not None:
        from benchlib import Profiler

        profiler = Profiler(child.pid, profile.parent, profile.name, 4 * 3600, mode="wall")
    code = child.wait()
    children = sampler.stop()
    if profiler is not None:
        from benchlib import print_top

        for path in profiler.stop():
            if path.suffix == ".txt":
                print_top(f"recpipe chain profile ({path})", path, within="process (", limit=30)
    if code != 0:
        raise subprocess.CalledProcessError(code, child.args)
    return {**json.loads(result_path.read_text()), "children_vmhwm_mb": children}


def child_main(side: str, spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = child_recpipe(spec) if side == "recpipe" else child_baseline(spec)
    Path(result_path).write_text(json.dumps(result))


# -- driving it -------------------------------------------------------------------------


def bench_length(
    hours: float, index: int, args: argparse.Namespace, stores: Stores, work: Path
) -> dict[str, Any]:
    count = max(1, math.ceil(hours * 60 / args.segment_minutes))
    segments = ensure_segments(args.out, count, args.segment_minutes)
    task_id = str(TASK_ID_BASE + 1000 * index + count)
    room_id, user_id = str(20000 + index), str(30000 + index)
    start = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    keys = []
    for seq_no in range(count):
        stamp = (start + timedelta(minutes=args.segment_minutes * seq_no)).strftime(
            "%Y-%m-%d-%H-%M-%S"
        )
        keys.append(f"{BIZ_ID}_{room_id}/{stamp}_{task_id}_audio_{seq_no}.mp3")
    stores.clear()
    stores.upload_sources(list(zip(keys, segments, strict=True)))
    source_mb = sum(p.stat().st_size for p in segments) / 1e6
    print(f"\n== {hours:g} h: {count} segments, {source_mb:.1f} MB of mp3 in {stores.kind} ==")

    data_dir = Path(tempfile.mkdtemp(prefix=f"recpipe-{hours:g}h-", dir=work))
    env = clean_env(
        {
            "RECPIPE_DATA_DIR": str(data_dir),
            "RECPIPE_GME_SOURCE_URL": stores.source_url,
            "RECPIPE_ARCHIVE_URL": stores.archive_url,
            "RECPIPE_AUDIO_FORMATS": "m4a",
            "RECPIPE_LOG_LEVEL": "INFO",
        }
    )
    spec = {"keys": keys, "task_id": task_id, "room_id": room_id, "user_id": user_id}
    profile = args.out / f"chain-{hours:g}h" if args.profile else None
    recpipe = run_child("recpipe", spec, env, work, profile)
    if recpipe["run_state"] != "archived":
        print(f"  recpipe run ended {recpipe['run_state']}: {recpipe['error']}")
    print(
        f"  recpipe  {recpipe['wall_s']:8.2f} s  CPU {recpipe['cpu_s']:.1f} s "
        f"({recpipe['cpu_s'] / (hours * 60):.2f} s per recorded minute)  steps {recpipe['steps_s']}"
    )

    baseline_spec = {
        **spec,
        "kind": stores.kind,
        "stores": stores.baseline_spec(),
        "scratch": str(work),
    }
    baseline = run_child("baseline", baseline_spec, env, work)
    steps = {k: round(v, 2) for k, v in baseline["steps_s"].items()}
    bare = baseline["concat_aac"]
    print(f"  bare concat+AAC {bare['wall_s']:8.2f} s  CPU {bare['cpu_s']:.1f} s")
    print(f"  bare same work  {baseline['wall_s']:8.2f} s  CPU {baseline['cpu_s']:.1f} s  {steps}")
    print(
        f"  recpipe over concat+AAC: wall {recpipe['wall_s'] / bare['wall_s']:.2f}x  "
        f"CPU {recpipe['cpu_s'] / bare['cpu_s']:.2f}x;  over same work: wall "
        f"{recpipe['wall_s'] / baseline['wall_s']:.2f}x  CPU "
        f"{recpipe['cpu_s'] / baseline['cpu_s']:.2f}x"
    )
    print(
        f"  per recording: processes {recpipe['processes']}, "
        f"ledger round trips {recpipe['ledger_round_trips']}"
    )
    shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "hours": hours,
        "segments": count,
        "source_mb": round(source_mb, 1),
        "expected_duration_s": round(count * args.segment_minutes * 60, 3),
        "recpipe": recpipe,
        "baseline": baseline,
        "ratio": round(recpipe["wall_s"] / baseline["wall_s"], 2),
        "wall_over_concat_aac": round(recpipe["wall_s"] / bare["wall_s"], 2),
        "cpu_over_concat_aac": round(recpipe["cpu_s"] / bare["cpu_s"], 2),
    }


def ffmpeg_peak(side: dict[str, Any]) -> float:
    return max(side["children_vmhwm_mb"].values(), default=0.0)


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'length':>7} {'segs':>5} {'recpipe s':>10} {'baseline s':>11} {'ratio':>6} "
        f"{'worker MB':>10} {'(ru_maxrss)':>11} {'ffmpeg MB':>10} {'(ru_maxrss)':>11} "
        f"{'base MB':>8} {'state':>9}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in results:
        rp, bl = r["recpipe"], r["baseline"]
        print(
            f"{r['hours']:>6g}h {r['segments']:>5} {rp['wall_s']:>10.2f} {bl['wall_s']:>11.2f} "
            f"{r['ratio']:>6.2f} {rp['self_vmhwm_mb']:>10.1f} {rp['self_ru_maxrss_mb']:>11.1f} "
            f"{ffmpeg_peak(rp):>10.1f} {rp['children_ru_maxrss_mb']:>11.1f} "
            f"{bl['self_vmhwm_mb']:>8.1f} {rp['run_state']!s:>9}"
        )
    print(
        "worker MB / ffmpeg MB: VmHWM of the recpipe worker process and of its largest"
        " ffmpeg/ffprobe child;\n(ru_maxrss): getrusage SELF / CHILDREN, which Linux carries"
        " over fork+exec from the parent; base MB: the baseline process's VmHWM."
    )


def rss_growth(results: list[dict[str, Any]]) -> dict[str, float] | None:
    by_hours = {r["hours"]: r for r in results}
    if 1 not in by_hours or 4 not in by_hours:
        return None
    one, four = by_hours[1]["recpipe"], by_hours[4]["recpipe"]
    return {
        "worker_vmhwm": round(four["self_vmhwm_mb"] / one["self_vmhwm_mb"], 2),
        "worker_ru_maxrss": round(four["self_ru_maxrss_mb"] / one["self_ru_maxrss_mb"], 2),
        "ffmpeg_vmhwm": round(ffmpeg_peak(four) / ffmpeg_peak(one), 2),
        "ffmpeg_ru_maxrss": round(four["children_ru_maxrss_mb"] / one["children_ru_maxrss_mb"], 2),
    }


def reproduce_command(args: argparse.Namespace) -> str:
    try:
        script = SCRIPT.resolve().relative_to(Path.cwd())
    except ValueError:
        script = Path("bench") / SCRIPT.name
    return shlex.join(
        [
            "python",
            str(script),
            "--hours",
            ",".join(f"{h:g}" for h in args.hours),
            "--segment-minutes",
            f"{args.segment_minutes:g}",
            "--store",
            args.store,
            "--out",
            str(args.out_arg),
        ]
    )


def tool_version(tool: str) -> str:
    first = subprocess.run([tool, "-version"], capture_output=True, text=True).stdout
    return first.splitlines()[0] if first else "unknown"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hours",
        default="1,4",
        type=lambda text: [float(h) for h in text.split(",") if h.strip()],
        help="recording lengths in hours, comma separated (default 1,4)",
    )
    parser.add_argument("--segment-minutes", type=float, default=5.0)
    parser.add_argument("--store", choices=("s3", "file"), default="s3")
    parser.add_argument("--out", dest="out_arg", default="bench/out")
    parser.add_argument("--quick", action="store_true", help="15 min and 1 h only")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy recpipe's side (times then inflated)"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.hours = [h for h in args.hours if h <= 1] or [1.0]
        args.hours = sorted({0.25, *args.hours})
    args.out = Path(args.out_arg)
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(*args.child)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=args.out))
    try:
        with ExitStack() as services:
            endpoint = None
            if args.store == "s3":
                endpoint = services.enter_context(moto_server(args.out / "moto.log"))
                print(f"moto S3 server at {endpoint}")
            stores = Stores(args.store, work, endpoint)
            results = [
                bench_length(hours, index, args, stores, work)
                for index, hours in enumerate(args.hours)
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print_table(results)
    growth = rss_growth(results)
    if growth:
        print(f"4 h / 1 h peak RSS: {growth}")
    report = {
        "command": reproduce_command(args),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "store": args.store,
        "segment_minutes": args.segment_minutes,
        "media": {"codec": "mp3", "channels": 1, "sample_rate": SAMPLE_RATE, "bitrate": BITRATE},
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "ffmpeg": tool_version("ffmpeg"),
        },
        "results": results,
        "rss_4h_over_1h": growth,
    }
    result_file = args.out / f"gme_chain-{args.store}.json"
    result_file.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {result_file}")
    print(f"reproduce: {report['command']}")


if __name__ == "__main__":
    main()
