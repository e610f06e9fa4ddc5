"""The cost of each way to finish a track's loudness, in CPU seconds, on a 5-minute mono
48 kHz mp3 of voice-like audio and on a 6 s one (made once under --out): what
docs/benchmarks.md's choice of `ebur128` + a linear gain, run by ffmpeg's libraries inside
the worker, rests on.

    python bench/finish_tools.py [--minutes 5] [--out bench/out] [--runs 3]

Each row is the median of --runs runs: of one ffmpeg command (user + system CPU of the
child), or of recpipe's in-worker pass (`tasks.media.libav`, user + system CPU of this
process, warm: a worker finishes recording after recording).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from tasks.media import libav

VOICE = (
    "(sin(2*PI*150*t)+0.5*sin(2*PI*300*t)+0.3*sin(2*PI*450*t)+0.2*sin(2*PI*900*t))"
    "*(0.55+0.45*sin(2*PI*4*t))/8"
)
BASE = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y"]
AAC = ["-c:a", "aac", "-b:a", "128k"]


def cpu(args: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def own_cpu(work: Callable[[], object]) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF)
    work()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def in_worker(source: Path, scratch: Path) -> tuple[Callable[[], object], Callable[[], object]]:
    """recpipe's two passes on `source`, in this process: decode + ebur128 + PCM copy, and
    the encode from the copy with a gain (the speech and peaks scan not included)."""
    pcm, out = scratch / f"{source.stem}.f32", scratch / f"{source.stem}.m4a"

    def decode() -> object:
        return libav.decode_measured(
            source, pcm, concat_list=False, pre_filter="", sample_rate=48000, channels=1,
            what="bench",
        )  # fmt: skip

    def encode() -> object:
        libav.encode_pcm(
            pcm, [("m4a", out)], sample_rate=48000, channels=1, gain_db=6.0, scan=None,
            what="bench",
        )  # fmt: skip
        return None

    decode()  # warm, and the copy for the encode
    encode()
    return decode, encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    media = Path(args.out) / "media"
    media.mkdir(parents=True, exist_ok=True)
    source = media / f"voice-{args.minutes:g}min.mp3"
    if not source.exists():
        make_voice(source, args.minutes * 60)
    with tempfile.TemporaryDirectory() as scratch:
        out, pcm = Path(scratch) / "o.m4a", Path(scratch) / "t.f32"
        src = ["-i", str(source)]
        raw = ["-f", "f32le", "-ar", "48000", "-ac", "1", "-i", str(pcm)]
        subprocess.run([*BASE, *src, "-f", "f32le", "-ac", "1", str(pcm)], check=True)
        norm = "loudnorm=I=-16:TP=-1:LRA=11"
        measured = (
            f"{norm}:measured_I=-30:measured_TP=-12:measured_LRA=3:measured_thresh=-40:linear=true"
            ",aresample=48000,aformat=channel_layouts=mono"
        )
        rows = [
            ("decode only", [*BASE, *src, "-f", "null", "-"]),
            ("decode + ebur128 (sample peak)",
             [*BASE, *src, "-af", "ebur128=peak=sample", "-f", "null", "-"]),
            ("decode + ebur128=peak=true (4x oversampling)",
             [*BASE, *src, "-af", "ebur128=peak=true", "-f", "null", "-"]),
            ("decode + loudnorm measuring pass (192 kHz)",
             [*BASE, *src, "-af", f"{norm}:print_format=json", "-f", "null", "-"]),
            ("decode + ebur128 + float PCM copy to disk",
             [*BASE, *src, "-af", "ebur128=peak=sample", "-f", "f32le", str(pcm) + ".2"]),
            ("bare decode + AAC 128k", [*BASE, *src, *AAC, str(out)]),
            ("decode + volume + AAC 128k",
             [*BASE, *src, "-af", "volume=6dB:precision=float", *AAC, str(out)]),
            ("decode + loudnorm linear (192 kHz) + AAC 128k",
             [*BASE, *src, "-af", measured, *AAC, str(out)]),
            ("PCM copy + volume + AAC 128k",
             [*BASE, *raw, "-af", "volume=6dB:precision=float", *AAC, str(out)]),
            ("PCM copy + ebur128=peak=true",
             [*BASE, *raw, "-af", "ebur128=peak=true", "-f", "null", "-"]),
        ]  # fmt: skip
        decode, encode = in_worker(source, Path(scratch))
        print(f"{args.minutes:g} min mono 48 kHz mp3, CPU s (median of {args.runs}):")
        for name, command in rows:
            print(f"  {median(args.runs, lambda c=command: cpu(c)):6.2f}  {name}")
        for name, work in (
            ("in the worker: decode + ebur128 + float PCM copy", decode),
            ("in the worker: PCM copy + gain + AAC 128k", encode),
        ):
            print(f"  {median(args.runs, lambda w=work: own_cpu(w)):6.2f}  {name}")
        short = media / "voice-6s.mp3"
        if not short.exists():
            make_voice(short, 6.0)
        decode, encode = in_worker(short, Path(scratch))
        print(f"6 s mono 48 kHz mp3, CPU s (median of {max(args.runs, 9)}):")
        for name, command in (
            ("ffmpeg start alone (ffmpeg -version)", ["ffmpeg", "-hide_banner", "-version"]),
            ("bare decode + AAC 128k (one ffmpeg)", [*BASE, "-i", str(short), *AAC, str(out)]),
        ):
            runs = max(args.runs, 9)
            print(f"  {median(runs, lambda c=command: cpu(c)):6.3f}  {name}")
        both = lambda: (decode(), encode())  # noqa: E731
        print(f"  {median(max(args.runs, 9), lambda: own_cpu(both)):6.3f}  "
              "in the worker: decode + ebur128 + PCM copy, then gain + AAC 128k")  # fmt: skip


def median(runs: int, measure: Callable[[], float]) -> float:
    values = sorted(measure() for _ in range(runs))
    return values[len(values) // 2]


def make_voice(path: Path, seconds: float) -> None:
    subprocess.run(
        [*BASE, "-f", "lavfi", "-i", f"aevalsrc={VOICE}:s=48000:d={seconds}",
         "-c:a", "libmp3lame", "-b:a", "64k", str(path)],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    main()
