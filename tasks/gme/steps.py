"""The media steps of a GME recording: fetch its segments, join them in SeqNo order on
the room's clock (`tasks.gme.timeline`), transcode to every RECPIPE_AUDIO_FORMATS output
(tools run by `tasks.media.tools`)."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timezone
from pathlib import Path

from storage.objectstore import ObjectStore
from tasks.gme.timeline import SegmentPiece, Timeline, place
from tasks.media import ffmpeg as cmd
from tasks.media.audio import KEEP_LEVELS, Finished, Finishing, finish_track
from tasks.media.ffmpeg import AudioProbe, ConcatPlan
from tasks.media.finish import peaks_name
from tasks.media.tools import (
    Beats,
    Heartbeat,
    MediaError,
    Tools,
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
    beat = Beats(heartbeat)
    workers = max(1, concurrency)
    # A few fetches in flight, not one future per segment: a recording of thousands of
    # segments must not hold thousands of pending tasks (memory flat in the count).
    window: deque[Future[SourceFile]] = deque()
    items = iter(ordered)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for item in itertools.islice(items, 2 * workers):
                window.append(pool.submit(fetch_one, item))
            while window:
                results.append(window.popleft().result())
                for item in itertools.islice(items, 1):
                    window.append(pool.submit(fetch_one, item))
                beat()
        finally:
            for pending in window:
                pending.cancel()
    return results


def place_sources(
    sources: Sequence[SourceFile], *, zone: timezone, gap_seconds: float, pad: bool
) -> Timeline:
    """The fetched segments on the room's clock, by their FileNames' times and lengths."""
    pieces = [SegmentPiece(s.seq_no, s.key, s.probe.duration_s) for s in sources]
    return place(pieces, zone=zone, gap_seconds=gap_seconds, pad=pad)


def concatenate(
    sources: Sequence[SourceFile],
    scratch: Path,
    tools: Tools,
    *,
    label: str,
    heartbeat: Heartbeat | None = None,
    timeline: Timeline | None = None,
) -> tuple[Path, ConcatPlan]:
    """Join in SeqNo order. Segments that agree need no joined file: the answer is a
    concat-demuxer list, which `transcode` reads straight through (one ffmpeg, no
    intermediate copy of the recording). Segments that differ are decoded into lossless
    FLAC at the richest layout, at most `CONCAT_BATCH` segments per ffmpeg (one file then;
    else one part per batch, which agree and are read through a concat list in turn), so
    memory and open files stay bounded whatever the number of segments. The `timeline`'s
    pauses are declared in the list (and filled by `transcode`) or padded with silence in
    the FLAC files."""
    ordered = sorted(sources, key=lambda s: s.seq_no)
    plan = cmd.plan_concat([s.probe for s in ordered])
    pauses = [timeline.gap_after(s.seq_no) if timeline else 0.0 for s in ordered]
    # What each segment lasts on the clock: its frames' length and its pause after.
    spans = [s.probe.duration_s + pause for s, pause in zip(ordered, pauses, strict=True)]
    if plan.copy:
        list_file = scratch / "concat.txt"
        list_file.write_text(cmd.concat_list([s.path for s in ordered], spans))
        return list_file, plan
    paths = [s.path for s in ordered]
    groups = cmd.batches(paths)
    if len(groups) == 1:
        output = scratch / f"joined.{plan.extension}"
        run_tool(
            cmd.concat_command(tools.ffmpeg, paths, plan, output, spans),
            f"concatenating recording {label}",
            heartbeat,
        )
        return output, plan
    parts_dir = scratch / "parts"
    parts_dir.mkdir(exist_ok=True)
    parts = []
    for number, group in enumerate(groups):
        first = number * cmd.CONCAT_BATCH
        part = parts_dir / f"{number:05d}.{plan.extension}"
        run_tool(
            cmd.concat_command(tools.ffmpeg, group, plan, part, spans[first : first + len(group)]),
            f"concatenating recording {label} (segments {first} to {first + len(group) - 1})",
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
    timeline: Timeline | None = None,
    finishing: Finishing = KEEP_LEVELS,
) -> Finished:
    """Every format of the joined track, normalized per `finishing`, with its speech spans
    and `<stem>.peaks.json` (`tasks.media.audio.finish_track`)."""
    out_dir = scratch / "out"
    out_dir.mkdir(exist_ok=True)
    targets = [(fmt, out_dir / cmd.output_name(stem, fmt)) for fmt in formats]
    # Holes in a concat list's timestamps (pauses, each mp3's trimmed padding) are
    # silence, and the track lasts the timeline's length (`cmd.timeline_filter`); a joined
    # file holds them as silence already. A copy keeps every frame of each segment, so it
    # lasts that length too, unless pauses must be filled.
    pauses = timeline is not None and bool(timeline.gaps)
    copy = plan.extension if plan.extension in cmd.COPY_CODECS and not pauses else None
    return finish_track(
        joined,
        targets,
        out_dir / peaks_name(stem),
        tools,
        finishing,
        sample_rate=plan.sample_rate,
        channels=plan.channels,
        pre_filter=cmd.timeline_filter(timeline.duration_s) if timeline else cmd.FILL_GAPS,
        concat_list=plan.copy,
        copy_format=copy,
        label=label,
        heartbeat=heartbeat,
    )
