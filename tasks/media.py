"""Running ffmpeg and ffprobe, and the media steps of a chain: fetch, concat, transcode.

Everything streams through files in one scratch directory per run; no step loads a
whole recording into memory, so a 4-hour recording costs no more memory than a
4-minute one.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from storage.objectstore import ObjectStore
from tasks import ffmpeg as cmd
from tasks import mp3, mp4
from tasks.ffmpeg import AudioProbe, ConcatPlan, ProbeError

Heartbeat = Callable[[], None]
HEARTBEAT_SECONDS = 15.0


class MediaError(Exception):
    """A recording's media cannot be made; the message names the segment or step."""


@dataclass(frozen=True)
class SourceFile:
    seq_no: int
    key: str
    path: Path
    bytes: int
    sha256: str
    probe: AudioProbe

    def manifest_entry(self) -> dict[str, object]:
        return {
            "seq_no": self.seq_no,
            "key": self.key,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "duration_s": round(self.probe.duration_s, 3),
            "codec": self.probe.codec,
            "sample_rate": self.probe.sample_rate,
            "channels": self.probe.channels,
        }


@dataclass(frozen=True)
class Output:
    format: str
    path: Path
    bytes: int
    sha256: str
    duration_s: float


@dataclass(frozen=True)
class Tools:
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"


def run_tool(args: Sequence[str], what: str, heartbeat: Heartbeat | None = None) -> str:
    """Run ffmpeg/ffprobe; stdout as text, or MediaError with the tail of stderr."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        process = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        while True:
            try:
                code = process.wait(timeout=HEARTBEAT_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if heartbeat:
                    heartbeat()
            except BaseException:
                process.kill()
                process.wait()
                raise
        if code != 0:
            err.seek(0)
            tail = err.read()[-600:].decode(errors="replace").strip().splitlines()
            detail = tail[-1] if tail else f"exit code {code}"
            raise MediaError(f"{what}: {detail}")
        out.seek(0)
        return out.read().decode(errors="replace")


def probe(tools: Tools, path: Path, what: str) -> AudioProbe:
    """What the file holds. A plain, whole MP3 is read in Python (`tasks.mp3`, no process);
    anything else, including every file that is not quite right, is asked of ffprobe."""
    if path.stat().st_size == 0:
        raise MediaError(f"{what} is empty (0 bytes)")
    if path.suffix.lower() == ".mp3" and (info := mp3.read(path)) is not None:
        return AudioProbe(
            codec="mp3",
            sample_rate=info.sample_rate,
            channels=info.channels,
            duration_s=info.duration_s,
            format_name="mp3",
        )
    try:
        output = run_tool(cmd.probe_command(tools.ffprobe, path), what)
        return cmd.parse_probe(output)
    except MediaError as exc:
        raise MediaError(f"{what} is not readable audio ({exc})") from None
    except ProbeError as exc:
        raise MediaError(f"{what} is not an audio file: {exc}") from None


def fetch_sources(
    store: ObjectStore,
    segments: Sequence[tuple[int, str]],
    scratch: Path,
    tools: Tools,
    *,
    label: str,
    concurrency: int = 4,
    heartbeat: Heartbeat | None = None,
) -> list[SourceFile]:
    """Download every segment (in parallel), hashing as it streams, and check it is audio."""
    folder = scratch / "sources"
    folder.mkdir(parents=True, exist_ok=True)

    def fetch_one(item: tuple[int, str]) -> SourceFile:
        seq_no, key = item
        what = f"segment {seq_no} ({key}) of recording {label}"
        suffix = Path(key).suffix.lower() or ".bin"
        dest = folder / f"{seq_no:06d}{suffix}"
        try:
            fetched = store.fetch(key, dest)
        except FileNotFoundError:
            raise MediaError(f"{what} is not in the source") from None
        return SourceFile(seq_no, key, dest, fetched.size, fetched.sha256, probe(tools, dest, what))

    ordered = sorted(segments)
    results: list[SourceFile] = []
    last_beat = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for source in pool.map(fetch_one, ordered):
            results.append(source)
            if heartbeat and time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                heartbeat()
                last_beat = time.monotonic()
    return results


def concatenate(
    sources: Sequence[SourceFile],
    scratch: Path,
    tools: Tools,
    *,
    label: str,
    heartbeat: Heartbeat | None = None,
) -> tuple[Path, ConcatPlan]:
    """Join in SeqNo order. Segments that agree need no joined file: the answer is a
    concat-demuxer list, which `transcode` reads straight through (one ffmpeg, no
    intermediate copy of the recording). Segments that differ are decoded into one
    lossless FLAC file at the richest layout."""
    ordered = sorted(sources, key=lambda s: s.seq_no)
    plan = cmd.plan_concat([s.probe for s in ordered])
    if plan.copy:
        list_file = scratch / "concat.txt"
        list_file.write_text(cmd.concat_list([s.path for s in ordered]))
        return list_file, plan
    output = scratch / f"joined.{plan.extension}"
    run_tool(
        cmd.concat_command(tools.ffmpeg, [s.path for s in ordered], plan, output),
        f"concatenating recording {label}",
        heartbeat,
    )
    return output, plan


def transcode(
    joined: Path,
    plan: ConcatPlan,
    formats: Sequence[str],
    stem: str,
    scratch: Path,
    tools: Tools,
    *,
    label: str,
    heartbeat: Heartbeat | None = None,
) -> list[Output]:
    out_dir = scratch / "out"
    out_dir.mkdir(exist_ok=True)
    targets = [(fmt, out_dir / cmd.output_name(stem, fmt)) for fmt in formats]
    run_tool(
        cmd.transcode_command(tools.ffmpeg, joined, plan.extension, targets, concat_list=plan.copy),
        f"transcoding recording {label}",
        heartbeat,
    )
    return describe_outputs(targets, partial(output_seconds, tools), label=label)


def output_seconds(tools: Tools, path: Path, what: str) -> float:
    """The length of a file ffmpeg has just written: from an m4a's movie header or an MP3's
    frames where they can be read in Python, else by ffprobe."""
    if path.suffix.lower() == ".m4a" and (seconds := mp4.duration(path)) is not None:
        return seconds
    return probe(tools, path, what).duration_s


def describe_outputs(
    targets: Sequence[tuple[str, Path]],
    seconds: Callable[[Path, str], float],
    *,
    label: str,
) -> list[Output]:
    """Size, checksum and duration (by `seconds`, a probe) of each file ffmpeg wrote."""
    outputs = []
    for fmt, path in targets:
        length = seconds(path, f"{fmt} output of recording {label}")
        outputs.append(Output(fmt, path, path.stat().st_size, sha256_file(path), length))
    return outputs


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def describe(output: Output) -> dict[str, object]:
    entry = asdict(output)
    entry.pop("path")
    entry["duration_s"] = round(output.duration_s, 3)
    return entry
