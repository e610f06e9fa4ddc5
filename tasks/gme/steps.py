"""The media steps of a GME recording: fetch its segments, join them in SeqNo order,
transcode to every RECPIPE_AUDIO_FORMATS output (tools run by `tasks.media.tools`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from storage.objectstore import ObjectStore
from tasks.media import ffmpeg as cmd
from tasks.media.ffmpeg import AudioProbe, ConcatPlan
from tasks.media.tools import (
    HEARTBEAT_SECONDS,
    Heartbeat,
    MediaError,
    Output,
    Tools,
    describe_outputs,
    output_seconds,
    probe,
    run_tool,
)


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
    intermediate copy of the recording). Segments that differ are decoded into lossless
    FLAC at the richest layout, at most `CONCAT_BATCH` segments per ffmpeg (one file then;
    else one part per batch, which agree and are read through a concat list in turn), so
    memory and open files stay bounded whatever the number of segments."""
    ordered = sorted(sources, key=lambda s: s.seq_no)
    plan = cmd.plan_concat([s.probe for s in ordered])
    if plan.copy:
        list_file = scratch / "concat.txt"
        list_file.write_text(cmd.concat_list([s.path for s in ordered]))
        return list_file, plan
    groups = cmd.batches([s.path for s in ordered])
    if len(groups) == 1:
        output = scratch / f"joined.{plan.extension}"
        run_tool(
            cmd.concat_command(tools.ffmpeg, groups[0], plan, output),
            f"concatenating recording {label}",
            heartbeat,
        )
        return output, plan
    parts_dir = scratch / "parts"
    parts_dir.mkdir(exist_ok=True)
    parts = []
    for number, group in enumerate(groups):
        part = parts_dir / f"{number:05d}.{plan.extension}"
        run_tool(
            cmd.concat_command(tools.ffmpeg, group, plan, part),
            f"concatenating recording {label} (segments {number * cmd.CONCAT_BATCH} to "
            f"{number * cmd.CONCAT_BATCH + len(group) - 1})",
            heartbeat,
        )
        parts.append(part)
    list_file = scratch / "concat.txt"
    list_file.write_text(cmd.concat_list(parts))
    return list_file, replace(plan, copy=True)


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
