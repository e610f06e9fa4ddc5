"""Finishing an audio track: its loudness measured in the one decode that keeps a PCM
copy on scratch, then every format encoded from that copy with one linear gain while the
same copy is scanned for the speech spans and the waveform peaks (`tasks.media.finish`
builds the commands and scans).
Used for a GME recording and for a room mix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from tasks.media import finish, libav
from tasks.media.finish import Gain, Loudness, input_args
from tasks.media.tools import (
    Heartbeat,
    MediaError,
    Output,
    Tools,
    describe_outputs,
    output_seconds,
    run_tool_streaming,
)


@dataclass(frozen=True)
class Finishing:
    """How a track is finished (from the settings)."""

    target_lufs: float | None
    silence_db: float


KEEP_LEVELS = Finishing(target_lufs=None, silence_db=-40.0)


@dataclass(frozen=True)
class Finished:
    outputs: list[Output]
    before: Loudness
    after: Loudness
    speech: list[list[float]]
    peaks: Path
    target_lufs: float | None = None
    gain: Gain = field(default_factory=lambda: Gain(0.0))
    # Processes started (ffmpeg passes, ffprobe calls), for the benches.
    processes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def loudness(self) -> dict[str, Any]:
        normalized = self.target_lufs is not None
        levels: dict[str, Any] = {
            "target_lufs": self.target_lufs,
            "true_peak_limit_dbtp": finish.TRUE_PEAK_DBTP if normalized else None,
            "gain_db": round(self.gain.gain_db, 2) if normalized else None,
            "limited_by": self.gain.limited_by,
            "before": self.before.as_json(),
            "after": self.after.as_json(),
        }
        if self.gain.limited_by:
            levels["reached_lufs"] = self.after.as_json()["integrated_lufs"]
        return levels


def finish_track(
    source: Path | Sequence[Path],
    targets: Sequence[tuple[str, Path]],
    peaks_path: Path,
    tools: Tools,
    finishing: Finishing,
    *,
    sample_rate: int,
    channels: int = 2,
    pre_filter: str = "",
    concat_list: bool = False,
    copy_format: str | None = None,
    source_graph: str = "",
    label: str,
    heartbeat: Heartbeat | None = None,
) -> Finished:
    """The track is `source`: one file or a concat-demuxer list (`concat_list`), or several
    files made into one by `source_graph` (an ffmpeg filter graph whose output is `[mix]`).

    With a loudness target: one decode that measures and keeps a PCM copy, the true peak
    of its loudest blocks when it can matter, then one encode from the copy with a linear
    gain. A single source is finished in the worker's process by ffmpeg's libraries
    (`tasks.media.libav`: no process started), a mix by the ffmpeg command. With levels
    kept: one ffmpeg pass that copies or encodes and measures."""
    what = f"recording {label}"
    target = finishing.target_lufs
    if isinstance(source, Path):
        inputs = input_args(source, concat_list=concat_list)
    else:
        inputs = [arg for path in source for arg in ("-i", str(path))]
    gain = Gain(0.0)
    if target is None:
        scan = finish.TrackScan(
            sample_rate=sample_rate, channels=channels, gain_db=0.0,
            silence_db=finishing.silence_db,
        )  # fmt: skip
        log = run_tool_streaming(
            finish.finish_command(
                tools.ffmpeg, inputs, targets, pre_filter=pre_filter, sample_rate=sample_rate,
                channels=channels, copy_format=copy_format, source_graph=source_graph,
            ),
            f"transcoding {what}", scan.feed, heartbeat,
        )  # fmt: skip
        before = after = _parsed(finish.parse_ebur128, log, what)
        processes = 1
    else:
        pcm = peaks_path.with_name(peaks_path.name + ".pcm")
        try:
            if isinstance(source, Path) and not source_graph:
                before = libav.decode_measured(
                    source, pcm, concat_list=concat_list, pre_filter=pre_filter,
                    sample_rate=sample_rate, channels=channels,
                    what=f"measuring the loudness of {what}", heartbeat=heartbeat,
                )  # fmt: skip
                processes = 0
            else:  # a mix of several inputs: a filter graph the ffmpeg command builds
                log = run_tool_streaming(
                    finish.analysis_command(
                        tools.ffmpeg, inputs, pcm, pre_filter=pre_filter,
                        source_graph=source_graph, sample_rate=sample_rate, channels=channels,
                    ),
                    f"measuring the loudness of {what}", _nothing, heartbeat,
                )  # fmt: skip
                before = _parsed(finish.parse_ebur128, log, what)
                processes = 1
            if finish.needs_true_peak(before, target):
                peak = _true_peak(pcm, before, target, sample_rate, channels, what)
                before = replace(before, true_peak_dbtp=peak)
            gain = finish.choose_gain(before, target)
            scan = finish.TrackScan(
                sample_rate=sample_rate, channels=channels, gain_db=gain.gain_db,
                silence_db=finishing.silence_db,
            )  # fmt: skip
            libav.encode_pcm(
                pcm, targets, sample_rate=sample_rate, channels=channels,
                gain_db=gain.gain_db, scan=scan, what=f"transcoding {what}",
                heartbeat=heartbeat,
            )  # fmt: skip
        finally:
            pcm.unlink(missing_ok=True)
        after = before.shifted(gain.gain_db)
    outputs = describe_outputs(targets, partial(output_seconds, tools), label=label)
    length = max((o.duration_s for o in outputs), default=0.0)
    speech = finish.speech_spans(scan.silences(), length)
    peaks_path.write_text(json.dumps(finish.peaks_document(scan.peaks()), separators=(",", ":")))
    return Finished(
        outputs=outputs,
        before=before,
        after=after,
        speech=speech,
        peaks=peaks_path,
        target_lufs=target,
        gain=gain,
        processes=processes,
    )


# Blocks of the PCM copy whose sample peak is looked at, and the samples of context kept
# around a loud block for the true peak's interpolation (faded in and out).
BLOCK_FRAMES = 1024
CONTEXT_FRAMES = 64


def _true_peak(
    pcm: Path, measured: Loudness, target: float, sample_rate: int, channels: int, what: str
) -> float:
    """The true peak of the blocks whose sample peak, after the wanted gain, comes within
    TRUE_PEAK_MARGIN_DB of the ceiling (the others cannot reach it), by ebur128."""
    wanted = target - measured.integrated_lufs
    floor_db = finish.ceiling_dbtp() - finish.TRUE_PEAK_MARGIN_DB - wanted
    excerpt = pcm.with_name(pcm.name + ".loud")
    try:
        with excerpt.open("wb") as out:
            loud_excerpt(pcm, channels, 10 ** (floor_db / 20), out)
        return libav.true_peak_of(
            excerpt, sample_rate=sample_rate, channels=channels,
            what=f"measuring the true peak of {what}",
        )  # fmt: skip
    finally:
        excerpt.unlink(missing_ok=True)


def loud_excerpt(pcm: Path, channels: int, threshold: float, out: Any) -> int:
    """Write to `out` every run of BLOCK_FRAMES blocks of the float PCM file whose sample
    peak reaches `threshold`, each with CONTEXT_FRAMES of the audio around it faded in and
    out and silence between runs, so their true peak is the loud part's own. Reads the
    file in slices (memory stays flat). Returns the frames written."""
    data = np.memmap(pcm, dtype="<f4", mode="r")
    frames = len(data) // channels
    if frames == 0:
        return 0
    audio = data[: frames * channels].reshape(frames, channels)
    step = BLOCK_FRAMES * 1024
    loud: list[np.ndarray] = []
    for first in range(0, frames, step):
        part = np.abs(audio[first : first + step]).max(axis=1)
        blocks = math.ceil(len(part) / BLOCK_FRAMES)
        padded = np.zeros(blocks * BLOCK_FRAMES, dtype=part.dtype)
        padded[: len(part)] = part
        peaks = padded.reshape(blocks, BLOCK_FRAMES).max(axis=1)
        loud.append(np.flatnonzero(peaks >= threshold) + first // BLOCK_FRAMES)
    chosen = np.concatenate(loud) if loud else np.empty(0, dtype=np.int64)
    written = 0
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, CONTEXT_FRAMES, dtype=np.float32)))[:, None]
    gap = np.zeros((CONTEXT_FRAMES, channels), dtype="<f4")
    for start, end in _runs(chosen):
        a, b = start * BLOCK_FRAMES, min(frames, end * BLOCK_FRAMES)
        lead = np.array(audio[max(0, a - CONTEXT_FRAMES) : a])
        tail = np.array(audio[b : b + CONTEXT_FRAMES])
        lead *= ramp[CONTEXT_FRAMES - len(lead) :]
        tail *= ramp[::-1][: len(tail)]
        for piece in (gap, lead, np.asarray(audio[a:b]), tail):
            out.write(np.ascontiguousarray(piece, dtype="<f4").tobytes())
            written += len(piece)
    out.write(gap.tobytes())
    return written + len(gap)


def _runs(blocks: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive block numbers as [start, end) runs."""
    if len(blocks) == 0:
        return []
    breaks = np.flatnonzero(np.diff(blocks) != 1)
    starts = np.concatenate(([blocks[0]], blocks[breaks + 1]))
    ends = np.concatenate((blocks[breaks], [blocks[-1]])) + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _nothing(_block: bytes) -> None:
    return None


def _parsed(parse: Any, log: str, what: str) -> Loudness:
    try:
        result: Loudness = parse(log)
    except finish.FinishError as exc:
        raise MediaError(f"{what}: {exc}") from None
    return result
