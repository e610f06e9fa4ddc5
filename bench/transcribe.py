"""Benchmark transcription: CPU seconds per second of audio and per second of speech, and
the peak RSS of the process doing it, for each engine available.

    python bench/transcribe.py [--minutes 10] [--speech 0.3] [--whisper-model DIR]

A track of --minutes is made once with espeak-ng (sentences, with silence between them so
that --speech of it is speech) and encoded to m4a like recpipe's outputs. Each engine then
runs in a fresh process through recpipe's own transcription path
(`tasks.transcripts`): the track decoded by ffmpeg, its speech spans found, packed into
chunks and recognized, words placed on the timeline. CPU is the process's and its
children's (ffmpeg) user+system time; peak RSS is the process's high-water mark.
whisper runs when --whisper-model (or RECPIPE_TEST_WHISPER_MODEL) names a local
CTranslate2 model directory (int8 on CPU; --threads sets its threads).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = Path(__file__)
SENTENCES = [
    "meet me at the bridge after the match",
    "they are cheating again in the second round",
    "please stop talking over everyone",
    "we win this game if we hold the middle",
]


def make_track(path: Path, minutes: float, speech: float) -> None:
    if path.exists():
        return
    import numpy as np

    rate, total = 16000, int(minutes * 60 * 16000)
    said = []
    for n, sentence in enumerate(SENTENCES):
        wav = path.parent / f"sentence-{n}.wav"
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), sentence], check=True)
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(wav), "-ac", "1", "-ar", str(rate), "-f",
             "f32le", "-"], check=True, capture_output=True,
        ).stdout  # fmt: skip
        said.append(np.frombuffer(raw, dtype="<f4"))
    track = np.zeros(total, dtype=np.float32)
    at, n = 0, 0
    while at < total:
        piece = said[n % len(said)]
        track[at : at + len(piece)] = piece[: total - at]
        at += int(len(piece) / speech)
        n += 1
    raw_path = path.with_suffix(".f32")
    raw_path.write_bytes(track.tobytes())
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(rate), "-ac", "1",
         "-i", str(raw_path), "-c:a", "aac", "-b:a", "64k", "-ar", "48000", str(path)],
        check=True,
    )  # fmt: skip
    raw_path.unlink()


def child(engine: str, track: Path, model: str | None, threads: int) -> dict:
    """In a fresh process: recpipe's transcription path over the track."""
    sys.path.insert(0, str(SCRIPT.parent.parent))
    import numpy as np

    from foundation.config import Settings
    from tasks.transcripts.engines import SAMPLE_RATE, make_engine
    from tasks.transcripts.spans import chunk_samples, merge_spans, pack_spans, speech_in

    env = {"RECPIPE_DATA_DIR": tempfile.mkdtemp(), "RECPIPE_TRANSCRIBE": engine,
           "RECPIPE_WHISPER_THREADS": str(threads)}  # fmt: skip
    if model:
        env["RECPIPE_WHISPER_MODEL"] = model
    recognizer = make_engine(Settings.from_env(env))
    assert recognizer is not None
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(track), "-ac", "1", "-ar", str(SAMPLE_RATE),
         "-f", "f32le", "-"], check=True, capture_output=True,
    ).stdout  # fmt: skip
    samples = np.frombuffer(raw, dtype="<f4")
    chunks = pack_spans(merge_spans(speech_in(samples, SAMPLE_RATE, -40.0)))
    words = 0
    for chunk in chunks:
        found = recognizer.recognize(chunk_samples(samples, chunk, SAMPLE_RATE), "bench")
        words += sum(len(s.words) for s in found.segments)
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "engine": engine,
        "audio_s": len(samples) / SAMPLE_RATE,
        "speech_s": sum(c.duration_s for c in chunks),
        "cpu_s": own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
        "peak_rss_mib": own.ru_maxrss / 1024,
        "words": words,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--speech", type=float, default=0.3, help="share of the track that is speech"
    )
    parser.add_argument("--whisper-model", default=os.environ.get("RECPIPE_TEST_WHISPER_MODEL"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "recpipe-bench")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, track = args.child
        print(json.dumps(child(engine, Path(track), args.whisper_model, args.threads)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    track = args.out / f"speech-{args.minutes:g}min-{args.speech:g}.m4a"
    make_track(track, args.minutes, args.speech)
    engines = ["pocketsphinx"] + (["whisper"] if args.whisper_model else [])
    print(f"track: {args.minutes:g} min, {args.speech:.0%} speech ({track})")
    print(f"{'engine':<14}{'audio s':>9}{'speech s':>10}{'CPU s':>9}{'CPU/audio':>11}"
          f"{'CPU/speech':>12}{'peak RSS':>11}{'words':>7}{'cores/10k h/day':>17}")  # fmt: skip
    for engine in engines:
        command = [sys.executable, str(SCRIPT), "--child", engine, str(track),
                   "--threads", str(args.threads)]  # fmt: skip
        if args.whisper_model:
            command += ["--whisper-model", args.whisper_model]
        found = json.loads(subprocess.run(command, check=True, capture_output=True, text=True)
                           .stdout.strip().splitlines()[-1])  # fmt: skip
        per_audio = found["cpu_s"] / found["audio_s"]
        per_speech = found["cpu_s"] / max(found["speech_s"], 1e-9)
        # 10,000 hours of recordings a day, on cores busy all day: per_audio * 10,000 / 24.
        cores = per_audio * 10_000 / 24
        print(f"{engine:<14}{found['audio_s']:>9.0f}{found['speech_s']:>10.0f}"
              f"{found['cpu_s']:>9.1f}{per_audio:>11.3f}{per_speech:>12.3f}"
              f"{found['peak_rss_mib']:>8.0f} MiB{found['words']:>7}{cores:>17.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
