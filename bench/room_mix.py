"""Benchmark a room mix: N users' archived one-hour tracks mixed on one clock by recpipe's
`tasks.processing.process` (fetch the tracks, amix with adelay, one analysis decode
measuring the loudness into a PCM copy, one encode with a linear gain, speech spans,
peaks, archive), in a fresh process: wall time, CPU, peak memory of the worker (VmHWM of
its own address space) and of its ffmpeg children, the processes it started and its
ledger round trips. Two baselines on the same tracks, in the same run:
  - adelay+amix+AAC: one bare ffmpeg that mixes the tracks and encodes AAC 128k;
  - same work: what recpipe's ffmpeg does too (`benchlib.bare_finish` on the mix).

    python bench/room_mix.py [--users 10] [--minutes 60] [--out DIR] [--quick]

The users' tracks are made once with ffmpeg (a tone per user over quiet pink noise, AAC
like recpipe's own outputs, cached under --out) and put into a local-directory archive
as if their recordings had been archived; the ledger is SQLite in a scratch directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import BIZ_ID, TASK_ID_BASE, Counted, bare_finish, clean_env, cpu_so_far
from gme_chain import ChildPeakSampler, memory_report

SCRIPT = Path(__file__)
DISTINCT_TRACKS = 3  # users share these tracks (the mix's cost does not depend on content)


def make_track(path: Path, index: int, minutes: float) -> None:
    if path.exists():
        return
    seconds = minutes * 60
    tone = f"sine=frequency={220 + 110 * index}:sample_rate=48000:duration={seconds}"
    noise = f"anoisesrc=color=pink:amplitude=0.05:sample_rate=48000:duration={seconds}"
    partial = path.with_name(f".{path.name}.part")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", tone, "-f", "lavfi", "-i", noise,
         "-filter_complex", "[0:a][1:a]amix=inputs=2:normalize=0,volume=0.3[a]",
         "-map", "[a]", "-ac", "1", "-c:a", "aac", "-b:a", "128k", "-f", "mp4", str(partial)],
        check=True,
    )  # fmt: skip
    partial.replace(path)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Users archived in the ledger and the archive, their room claimed, then process()."""
    from foundation.config import Settings
    from recpipe.simulate import gme_body
    from storage.domain import GME_EVENT_UPLOADED, GmeEvent, GmeRecordingKey
    from storage.ledger import Ledger
    from storage.objectstore import store_from_url
    from tasks.archive import archive_prefix
    from tasks.processing import process
    from tasks.services import Services

    settings = Settings.from_env()
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    archive = store_from_url(settings.archive_url)
    start = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    now = datetime.now(UTC)
    seconds = spec["minutes"] * 60
    for n in range(spec["users"]):
        key = GmeRecordingKey(BIZ_ID, "room-bench", f"user{n}", spec["task_id"], 0)
        joined = start + timedelta(seconds=5 * n)  # staggered joins
        name = f"{BIZ_ID}_room_user{n}/{joined:%Y-%m-%d-%H-%M-%S}_{spec['task_id']}_audio.mp3"
        event = GmeEvent(key, GME_EVENT_UPLOADED, 0, name, int(now.timestamp()))
        ledger.record_gme_event(
            event, gme_body(key, GME_EVENT_UPLOADED, 0, name).decode(), {}, now=now,
            settle_seconds=1,
        )  # fmt: skip
        run_id = ledger.claim(key.recording_id, now=now, force=True)
        run = ledger.run(run_id)
        archive.put(
            archive_prefix(run) + f"{key.recording_id}.m4a",
            Path(spec["tracks"][n % len(spec["tracks"])]),
            "audio/mp4",
        )
        result = {
            "artifacts": [{"format": "m4a", "duration_s": seconds, "url": "-"}],
            "starts_at": joined.isoformat(),
            "speech": [{"UserID": f"user{n}", "spans": [[0.0, seconds]]}],
        }
        ledger.finish_run(run_id, now=now, result=result, manifest_url="-")
        room = ledger.note_room_member(key.recording_id, now=now, settle_seconds=1)
    if room is None:
        raise RuntimeError("no room was made")
    room_run = ledger.claim(room, now=datetime.now(UTC), force=True)
    services = Services(settings, ledger, store_from_url(settings.gme_source_url), archive)

    counted = Counted().start()
    started, cpu_before = time.perf_counter(), cpu_so_far()
    done = process(services, room_run, "bench")
    wall, cpu = time.perf_counter() - started, cpu_so_far() - cpu_before
    counts = counted.stop()
    memory = memory_report()
    artifacts = done.result.get("artifacts", []) if done else []
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        **counts,
        "run_state": done.state if done else None,
        "error": done.error if done else None,
        "steps_s": {s["step"]: s.get("seconds") for s in (done.steps if done else [])},
        "output_duration_s": artifacts[0]["duration_s"] if artifacts else None,
        "loudness": done.result.get("loudness") if done else None,
        **memory,
    }


def baselines(spec: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """The bare ffmpeg runs on the same tracks and offsets: the mix encoded to AAC, and the
    same work as recpipe's (`bare_finish` on the mix). Wall and CPU seconds of each."""
    from tasks.rooms.mix import mix_graph

    paths = [spec["tracks"][n % len(spec["tracks"])] for n in range(spec["users"])]
    inputs = [arg for path in paths for arg in ("-i", path)]
    graph = mix_graph([5.0 * n for n in range(spec["users"])])
    started, cpu_before = time.perf_counter(), cpu_so_far()
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *inputs,
         "-filter_complex", graph, "-map", "[mix]",
         "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(scratch / "bare.m4a")],
        check=True,
    )  # fmt: skip
    mix = {"wall_s": time.perf_counter() - started, "cpu_s": cpu_so_far() - cpu_before}
    started, cpu_before = time.perf_counter(), cpu_so_far()
    bare_finish(inputs, scratch / "same.m4a", scratch, 48000, 2, pre_filter=graph)
    same = {"wall_s": time.perf_counter() - started, "cpu_s": cpu_so_far() - cpu_before}
    return {
        "mix_aac": {k: round(v, 2) for k, v in mix.items()},
        "same_work": {k: round(v, 2) for k, v in same.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--quick", action="store_true", help="3 users of 5 minutes")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.users, args.minutes = 3, 5.0
    if args.child:
        spec = json.loads(Path(args.child[0]).read_text())
        Path(args.child[1]).write_text(json.dumps(child(spec)))
        return

    out = Path(args.out)
    media = out / "media" / "room-tracks"
    media.mkdir(parents=True, exist_ok=True)
    print(f"making {DISTINCT_TRACKS} track(s) of {args.minutes:g} min in {media} ...")
    tracks = []
    for i in range(DISTINCT_TRACKS):
        path = media / f"user{i}-{args.minutes:g}min.m4a"
        make_track(path, i, args.minutes)
        tracks.append(str(path))
    work = Path(tempfile.mkdtemp(prefix="room-", dir=out))
    try:
        env = clean_env(
            {
                "RECPIPE_DATA_DIR": str(work / "var"),
                "RECPIPE_AUDIO_FORMATS": "m4a",
                "RECPIPE_LOG_LEVEL": "WARNING",
            }
        )
        spec = {
            "users": args.users, "minutes": args.minutes, "tracks": tracks,
            "task_id": str(TASK_ID_BASE + 777),
        }  # fmt: skip
        spec_path, result_path = work / "spec.json", work / "result.json"
        spec_path.write_text(json.dumps(spec))
        side = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--child", str(spec_path), str(result_path)], env=env
        )
        sampler = ChildPeakSampler(side.pid)
        sampler.start()
        code = side.wait()
        children = sampler.stop()
        if code:
            raise subprocess.CalledProcessError(code, side.args)
        result = {**json.loads(result_path.read_text()), "children_vmhwm_mb": children}
        bare = baselines(spec, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"users": args.users, "minutes": args.minutes, **result, "baselines": bare}
    print(json.dumps(result, indent=2))
    for name, what in (("mix_aac", "adelay+amix+AAC"), ("same_work", "same work")):
        base = bare[name]
        print(
            f"bare {what:<16} wall {base['wall_s']:7.2f} s  CPU {base['cpu_s']:7.2f} s;  "
            f"recpipe over it: wall {result['wall_s'] / base['wall_s']:.2f}x  "
            f"CPU {result['cpu_s'] / base['cpu_s']:.2f}x"
        )
    ffmpeg_mb = max(result["children_vmhwm_mb"].values(), default=0.0)
    print(
        f"recpipe wall {result['wall_s']} s  CPU {result['cpu_s']} s  worker peak "
        f"{result['self_vmhwm_mb']} MB  ffmpeg peak {ffmpeg_mb} MB  processes "
        f"{result['processes']}  ledger round trips {result['ledger_round_trips']}"
    )
    (out / "room_mix.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
