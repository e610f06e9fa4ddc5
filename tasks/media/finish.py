"""What comes with the audio, in the passes the transcode makes: EBU R128 loudness
(measured, then normalized with ffmpeg's `loudnorm` in linear mode), the speech spans
(`silencedetect`) and the waveform peaks (the audiowaveform JSON format, version 2).

Pure: ffmpeg command building and the parsing of what ffmpeg said. The measuring pass
decodes once and writes nothing; the finishing pass decodes once more, normalizes, and
feeds every encoder plus one analysis branch (silence detection and a 16 kHz mono copy
for the peaks, read from ffmpeg's stdout in blocks: nothing holds the track in memory).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.media.ffmpeg import AUDIO_ENCODINGS

TRUE_PEAK_DBTP = -1.0
LOUDNESS_RANGE_LU = 11.0
# Speech is at least this long; shorter pauses inside it are bridged (CONTRACT.md).
SHORTEST_SPEECH_S = 0.3
LONGEST_BRIDGED_PAUSE_S = 0.5
# The peaks are taken from a 16 kHz mono copy, 50 pixels a second.
PEAKS_SAMPLE_RATE = 16000
PEAKS_SAMPLES_PER_PIXEL = 320
# A measured loudness below this is silence: there is nothing to normalize.
QUIETEST_LUFS = -70.0

_BASE = ("-hide_banner", "-nostdin", "-nostats", "-v", "info", "-y")


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_dbtp: float
    range_lu: float
    threshold_lufs: float

    def as_json(self) -> dict[str, object]:
        """A level that does not exist (the loudness of silence, the peak of digital
        silence) is null, and `silent` says why."""
        levels: dict[str, object] = {
            "integrated_lufs": _level(self.integrated_lufs) if self.audible else None,
            "true_peak_dbtp": _level(self.true_peak_dbtp),
            "range_lu": _level(self.range_lu) if self.audible else None,
        }
        if not self.audible:
            levels["silent"] = True
        return levels

    @property
    def audible(self) -> bool:
        return math.isfinite(self.integrated_lufs) and self.integrated_lufs > QUIETEST_LUFS


def _level(value: float) -> float | None:
    return round(value, 2) if math.isfinite(value) else None


class FinishError(Exception):
    """ffmpeg's answer did not hold the measurement asked for."""


def input_args(source: Path, *, concat_list: bool) -> list[str]:
    return [*(["-f", "concat", "-safe", "0"] if concat_list else []), "-i", str(source)]


def measure_command(
    ffmpeg: str,
    inputs: Sequence[str],
    pre_filter: str,
    target_lufs: float,
    source_graph: str = "",
) -> list[str]:
    """The measuring pass: loudnorm's first pass over the whole track, no output. With a
    `source_graph` (several inputs made into `[mix]`), that graph is the track."""
    chain = ",".join(f for f in (pre_filter, _loudnorm(target_lufs)) if f)
    if source_graph:
        graph = f"{source_graph};[mix]{chain}[measured]"
        return [ffmpeg, *_BASE, *inputs, "-filter_complex", graph, "-map", "[measured]",
                "-f", "null", "-"]  # fmt: skip
    return [ffmpeg, *_BASE, *inputs, "-map", "0:a:0", "-af", chain, "-f", "null", "-"]


def finish_command(
    ffmpeg: str,
    inputs: Sequence[str],
    outputs: Sequence[tuple[str, Path]],
    *,
    pre_filter: str = "",
    sample_rate: int,
    channels: int = 2,
    target_lufs: float | None,
    measured: Loudness | None,
    silence_db: float,
    copy_format: str | None = None,
    source_graph: str = "",
) -> list[str]:
    """The finishing pass: one decode, normalized (when a target and an audible
    measurement are given) and split to every encoder and to the analysis branch, whose
    16 kHz mono s16le samples go to stdout. An output in `copy_format` is copied from
    the input instead when nothing is normalized (the caller knows there is no gap).
    With a `source_graph` (several inputs made into `[mix]`), that graph is the track."""
    steps = [pre_filter] if pre_filter else []
    if target_lufs is not None and measured is not None and measured.audible:
        # loudnorm works at 192 kHz and leaves the layout open: both back as they were.
        layout = "mono" if channels == 1 else "stereo"
        steps += [
            _loudnorm(target_lufs, measured),
            f"aresample={sample_rate}",
            f"aformat=channel_layouts={layout}",
        ]
        copy_format = None  # a normalized output is always encoded
    if source_graph:
        copy_format = None  # a mix is made, never copied
    encoded = [(fmt, path) for fmt, path in outputs if fmt != copy_format]
    branches = len(encoded) + 1
    head = ",".join([*steps, f"asplit={branches}"]) if branches > 1 else ",".join(steps)
    labels = [f"[o{i}]" for i in range(len(encoded))]
    start = f"{source_graph};[mix]" if source_graph else "[0:a:0]"
    graph = f"{start}{head or 'anull'}{''.join(labels)}[m];"
    analysis = [f"silencedetect=n={silence_db}dB:d={LONGEST_BRIDGED_PAUSE_S}"]
    if target_lufs is None or measured is None or not measured.audible:
        analysis.append("ebur128=peak=true")  # the level as it stays, for the manifest
    analysis += [
        f"aresample={PEAKS_SAMPLE_RATE}",
        "aformat=sample_fmts=s16:channel_layouts=mono",
    ]
    graph += f"[m]{','.join(analysis)}[w]"
    args = [ffmpeg, *_BASE, *inputs, "-filter_complex", graph]
    for label, (fmt, path) in zip(labels, encoded, strict=True):
        _ext, codec_args, _mime = AUDIO_ENCODINGS[fmt]
        args += ["-map", label, *codec_args, str(path)]
    for fmt, path in outputs:
        if fmt == copy_format:
            args += ["-map", "0:a:0", "-vn", "-c:a", "copy", str(path)]
    return [*args, "-map", "[w]", "-f", "s16le", "-ac", "1", "pipe:1"]


def _loudnorm(target_lufs: float, measured: Loudness | None = None) -> str:
    base = f"loudnorm=I={target_lufs:g}:TP={TRUE_PEAK_DBTP:g}:LRA={LOUDNESS_RANGE_LU:g}"
    if measured is None:
        return base + ":print_format=json"
    return (
        f"{base}:measured_I={measured.integrated_lufs:.2f}"
        f":measured_TP={measured.true_peak_dbtp:.2f}:measured_LRA={measured.range_lu:.2f}"
        f":measured_thresh={measured.threshold_lufs:.2f}:linear=true:print_format=json"
    )


def parse_loudnorm(log: str, which: str = "input") -> Loudness:
    """loudnorm's JSON report (the last one in the log): its `input_*` or `output_*`."""
    start = log.rfind("[Parsed_loudnorm")
    opening = log.find("{", start) if start >= 0 else -1
    closing = log.find("}", opening)
    if opening < 0 or closing < 0:
        raise FinishError("ffmpeg printed no loudness measurement")
    try:
        data = json.loads(log[opening : closing + 1])
        return Loudness(
            _db(data[f"{which}_i"]),
            _db(data[f"{which}_tp"]),
            _db(data[f"{which}_lra"]),
            _db(data[f"{which}_thresh"]),
        )
    except (ValueError, KeyError):
        raise FinishError("ffmpeg's loudness measurement is not readable") from None


_EBUR128_I = re.compile(r"Integrated loudness:\s+I:\s+(-?[\d.]+|-inf) LUFS")
_EBUR128_LRA = re.compile(r"Loudness range:\s+LRA:\s+(-?[\d.]+|-inf) LU")
_EBUR128_PEAK = re.compile(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS")


def parse_ebur128(log: str) -> Loudness:
    """The summary ebur128 prints when the stream ends."""
    summary = log[log.rfind("Summary:") :] if "Summary:" in log else ""
    found = [p.search(summary) for p in (_EBUR128_I, _EBUR128_PEAK, _EBUR128_LRA)]
    if not all(found):
        raise FinishError("ffmpeg printed no loudness summary")
    i, peak, lra = (_db(m.group(1)) for m in found if m)
    return Loudness(i, peak, lra, float("nan"))


def _db(value: object) -> float:
    text = str(value).strip()
    return float("-inf") if text == "-inf" else float(text)


_SILENCE_START = re.compile(r"silence_start: (-?[\d.]+(?:e-?\d+)?)")
_SILENCE_END = re.compile(r"silence_end: (-?[\d.]+(?:e-?\d+)?)")


def parse_silences(log: str, duration_s: float) -> list[tuple[float, float]]:
    """The silences silencedetect reported, in order; one still open ends the track."""
    events = sorted(
        [(m.start(), "start", float(m.group(1))) for m in _SILENCE_START.finditer(log)]
        + [(m.start(), "end", float(m.group(1))) for m in _SILENCE_END.finditer(log)]
    )
    silences: list[tuple[float, float]] = []
    opened: float | None = None
    for _pos, kind, at in events:
        if kind == "start":
            opened = max(0.0, at)
        elif opened is not None:
            silences.append((opened, min(at, duration_s)))
            opened = None
    if opened is not None:
        silences.append((opened, duration_s))
    return silences


def speech_spans(silences: Sequence[tuple[float, float]], duration_s: float) -> list[list[float]]:
    """Where the track is not silent for at least SHORTEST_SPEECH_S: the stretches between
    the silences (silencedetect reports only pauses of LONGEST_BRIDGED_PAUSE_S or more,
    so shorter ones are bridged already)."""
    spans: list[list[float]] = []
    cursor = 0.0
    for start, end in sorted(silences):
        if start - cursor >= SHORTEST_SPEECH_S:
            spans.append([round(cursor, 2), round(start, 2)])
        cursor = max(cursor, end)
    if duration_s - cursor >= SHORTEST_SPEECH_S:
        spans.append([round(cursor, 2), round(duration_s, 2)])
    return spans


def peaks_document(data: Sequence[int]) -> dict[str, object]:
    """The audiowaveform JSON format, version 2: min/max pairs per pixel."""
    return {
        "version": 2,
        "channels": 1,
        "sample_rate": PEAKS_SAMPLE_RATE,
        "samples_per_pixel": PEAKS_SAMPLES_PER_PIXEL,
        "bits": 16,
        "length": len(data) // 2,
        "data": list(data),
    }


def peaks_name(stem: str) -> str:
    return f"{stem}.peaks.json"
