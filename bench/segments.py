"""Benchmark the GME media steps against the number of segments, not the length.

A recording of N tiny mp3 segments whose sample rates alternate (44.1/48 kHz, so no stream
copy applies and every segment is decoded) goes through recpipe's media steps (fetch from
a local source store, concat, transcode to m4a) in a fresh process, as a worker runs
them. Reported per N: wall time, the worker process's peak RSS (VmHWM), the largest
ffmpeg/ffprobe child's peak RSS (sampled from /proc every 20 ms), the most files one
ffmpeg held open, and the output's duration against the segments'.

    python bench/segments.py [--counts 100,1000,3000] [--seconds 0.2] [--out DIR]

Goal (issue 15): peak RSS flat within 10% across the counts and under 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from benchlib import children_of, process_name, vm_hwm_mb

SCRIPT = Path(__file__)


def make_tone(path: Path, frequency: float, seconds: float, sample_rate: int) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency={frequency}:sample_rate={sample_rate}:duration={seconds}",
         "-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k", str(path)],
        check=True,
    )  # fmt: skip
    return path


def child(count: int, source: Path, scratch: Path) -> None:
    """Run the media steps once, in this process, as a worker does; print JSON."""
    from storage.objectstore import LocalStore
    from tasks.gme.steps import concatenate, fetch_sources, transcode
    from tasks.media.tools import Tools

    store = LocalStore(source)
    segments = [(seq, f"r/{seq:05d}.mp3") for seq in range(count)]
    tools = Tools()
    started = time.monotonic()
    sources = fetch_sources(store, segments, scratch, tools, label="bench")
    joined, plan = concatenate(sources, scratch, tools, label="bench")
    [output] = transcode(joined, plan, ("m4a",), "bench", scratch, tools, label="bench").outputs
    print(
        json.dumps(
            {
                "seconds": time.monotonic() - started,
                "worker_vmhwm_mb": vm_hwm_mb(os.getpid()),
                "duration_s": output.duration_s,
            }
        )
    )


def open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def measure(count: int, seconds: float, work: Path) -> dict[str, object]:
    source = work / f"src-{count}"
    tones = [
        make_tone(work / "even.mp3", 440, seconds, 44100),
        make_tone(work / "odd.mp3", 880, seconds, 48000),
    ]
    (source / "r").mkdir(parents=True, exist_ok=True)
    for seq in range(count):
        target = source / "r" / f"{seq:05d}.mp3"
        if not target.exists():
            os.link(tones[seq % 2], target)
    scratch = Path(tempfile.mkdtemp(dir=work, prefix=f"scratch-{count}-"))
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--child", str(count), str(source), str(scratch)],
        stdout=subprocess.PIPE,
        text=True,
    )
    peaks = {"ffmpeg_vmhwm_mb": 0.0, "ffmpeg_open_files": 0}

    def sample() -> None:
        while process.poll() is None:
            for pid in children_of(process.pid):
                if process_name(pid) in ("ffmpeg", "ffprobe"):
                    peaks["ffmpeg_vmhwm_mb"] = max(peaks["ffmpeg_vmhwm_mb"], vm_hwm_mb(pid) or 0)
                    peaks["ffmpeg_open_files"] = max(peaks["ffmpeg_open_files"], open_files(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"media steps failed for {count} segments")
    result = json.loads(out.strip().splitlines()[-1])
    return {
        "segments": count,
        **result,
        **peaks,
        "expected_duration_s": round(count * seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="100,1000,3000")
    parser.add_argument("--seconds", type=float, default=0.2, help="length of each segment")
    parser.add_argument("--out", type=Path, default=SCRIPT.parent / "out")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        count, source, scratch = args.child
        child(int(count), Path(source), Path(scratch))
        return
    counts = [int(c) for c in args.counts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="recpipe-segments-") as tmp:
        for count in counts:
            row = measure(count, args.seconds, Path(tmp))
            rows.append(row)
            print(
                f"{count:>6} segments: {row['seconds']:7.1f} s, worker peak "
                f"{row['worker_vmhwm_mb']:6.1f} MB, ffmpeg peak {row['ffmpeg_vmhwm_mb']:6.1f} MB, "
                f"ffmpeg open files {row['ffmpeg_open_files']:>5}, duration "
                f"{row['duration_s']:.1f} s (segments {row['expected_duration_s']:.1f} s)",
                flush=True,
            )
    peaks = [max(float(r["worker_vmhwm_mb"]), float(r["ffmpeg_vmhwm_mb"])) for r in rows]
    spread = (max(peaks) - min(peaks)) / min(peaks)
    print(f"peak RSS spread across counts: {spread:.1%} (goal: within 10%, under 200 MB)")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"segments-{stamp}.json"
    path.write_text(
        json.dumps(
            {"command": shlex.join([sys.executable, *sys.argv]), "rows": rows, "spread": spread},
            indent=2,
        )
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
