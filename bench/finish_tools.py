"""The cost of each way to finish a track's loudness, in CPU seconds of one ffmpeg run,
on a 5-minute mono 48 kHz mp3 of voice-like audio (made once under --out): what
docs/benchmarks.md's choice of `ebur128` + `volume` rests on.

    python bench/finish_tools.py [--minutes 5] [--out bench/out] [--runs 3]

Each row is the median of --runs runs of one ffmpeg (user + system CPU of the child).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
from pathlib import Path

VOICE = (
    "(sin(2*PI*150*t)+0.5*sin(2*PI*300*t)+0.3*sin(2*PI*450*t)+0.2*sin(2*PI*900*t))"
    "*(0.55+0.45*sin(2*PI*4*t))/8"
)
BASE = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y"]
AAC = ["-c:a", "aac", "-b:a", "128k"]


def cpu(args: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
        subprocess.run(
            [*BASE, "-f", "lavfi", "-i", f"aevalsrc={VOICE}:s=48000:d={args.minutes * 60}",
             "-c:a", "libmp3lame", "-b:a", "64k", str(source)],
            check=True,
        )  # fmt: skip
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
        print(f"{args.minutes:g} min mono 48 kHz mp3, CPU s (median of {args.runs}):")
        for name, command in rows:
            runs = sorted(cpu(command) for _ in range(args.runs))
            print(f"  {runs[len(runs) // 2]:6.2f}  {name}")


if __name__ == "__main__":
    main()
