"""What comes with the audio, in the passes the transcode makes: EBU R128 loudness
(ITU-R BS.1770 integrated loudness, measured, then applied as one linear gain), the speech
spans (`silencedetect`) and the waveform peaks (the audiowaveform JSON format, version 2).

Pure: ffmpeg command building, the choice of the gain, and the parsing of what ffmpeg
said. With a loudness target the track is decoded once (`analysis_command`: the decoded
samples go to a 32-bit float PCM file on local scratch while `ebur128` measures the
integrated loudness, range and sample peak), then encoded from that file
(`encode_command`: a `volume=` gain split to every encoder and to one analysis branch,
silence detection and a 16 kHz mono copy for the peaks, read from ffmpeg's stdout in
blocks). True peak (4x oversampling, as costly as the rest of the analysis) is measured
only when the sample peak plus the gain comes within `TRUE_PEAK_MARGIN_DB` of the limit,
and then only on the blocks that come that close (`true_peak_command`). Nothing
resamples to 192 kHz (ffmpeg's `loudnorm` does, twice). Without a target one pass does
it all (`finish_command`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.media.ffmpeg import AUDIO_ENCODINGS

TRUE_PEAK_DBTP = -1.0
# A lossy encoder may raise the true peak of what it is given (ringing around a click,
# for one): the gain aims the true peak this far under the limit, so that the limit
# holds measured on the output.
ENCODER_HEADROOM_DB = 1.0
# How far a true peak may lie above the sample peak for audio without strong content near
# the Nyquist frequency (speech, music): 4x oversampling finds at most ~3 dB more (a tone
# at a quarter of the rate, sampled at 45 degrees). Blocks whose sample peak after the
# gain stays this far under the aim cannot reach it; the others are measured.
TRUE_PEAK_MARGIN_DB = 3.0
# Speech is at least this long; shorter pauses inside it are bridged
# (docs/reference.md, "Archive layout").
SHORTEST_SPEECH_S = 0.3
LONGEST_BRIDGED_PAUSE_S = 0.5
# The peaks are taken from a 16 kHz mono copy, 50 pixels a second.
PEAKS_SAMPLE_RATE = 16000
PEAKS_SAMPLES_PER_PIXEL = 320
# BS.1770's absolute gate: a track with no block above it is silence, with no level.
QUIETEST_LUFS = -70.0
# The decoded copy of the track on scratch: 32-bit float, so nothing clips before the gain.
PCM_FORMAT = "f32le"

_BASE = ("-hide_banner", "-nostdin", "-nostats", "-v", "info", "-y")
# ebur128 logs every 100 ms frame at the info level unless told otherwise.
_EBUR128 = "ebur128=framelog=verbose:peak="


@dataclass(frozen=True)
class Loudness:
    """Levels of a track; a level that does not exist (silence) is -inf or NaN here and
    null in JSON. `true_peak_dbtp` is NaN where it was not measured (it could not matter)."""

    integrated_lufs: float
    true_peak_dbtp: float
    range_lu: float
    sample_peak_dbfs: float = float("nan")

    def as_json(self) -> dict[str, object]:
        """A level that does not exist (the loudness of silence, the peak of digital
        silence) is null, and `silent` says why."""
        levels: dict[str, object] = {
            "integrated_lufs": _level(self.integrated_lufs) if self.audible else None,
            "true_peak_dbtp": _level(self.true_peak_dbtp),
            "sample_peak_dbfs": _level(self.sample_peak_dbfs),
            "range_lu": _level(self.range_lu) if self.audible else None,
        }
        if not self.audible:
            levels["silent"] = True
        return levels

    @property
    def audible(self) -> bool:
        return math.isfinite(self.integrated_lufs) and self.integrated_lufs > QUIETEST_LUFS

    def shifted(self, gain_db: float) -> Loudness:
        """The levels after a linear gain: every one moves by exactly the gain."""
        return Loudness(
            self.integrated_lufs + gain_db,
            self.true_peak_dbtp + gain_db,
            self.range_lu,
            self.sample_peak_dbfs + gain_db,
        )


def _level(value: float) -> float | None:
    return round(value, 2) if math.isfinite(value) else None


class FinishError(Exception):
    """ffmpeg's answer did not hold the measurement asked for."""


@dataclass(frozen=True)
class Gain:
    """The linear gain a track gets, and what held it back from the target (None: the
    target was reached, or there was nothing to normalize)."""

    gain_db: float
    limited_by: str | None = None


def ceiling_dbtp() -> float:
    """Where the gain aims the true peak at most (under the limit by the encoders' headroom)."""
    return TRUE_PEAK_DBTP - ENCODER_HEADROOM_DB


def needs_true_peak(measured: Loudness, target_lufs: float) -> bool:
    """Whether the sample peak after the wanted gain comes near enough to the limit for
    the true peak to matter."""
    if not measured.audible or not math.isfinite(measured.sample_peak_dbfs):
        return False
    wanted = target_lufs - measured.integrated_lufs
    return measured.sample_peak_dbfs + wanted > ceiling_dbtp() - TRUE_PEAK_MARGIN_DB


def choose_gain(measured: Loudness, target_lufs: float) -> Gain:
    """The gain that brings the integrated loudness to the target, unless the peak would
    then pass the ceiling: then the gain that puts the peak on it. Silence gets none.
    The peak is the true peak where it was measured, else the sample peak (which lies at
    least TRUE_PEAK_MARGIN_DB under the ceiling after the gain, `needs_true_peak`)."""
    if not measured.audible:
        return Gain(0.0)
    wanted = target_lufs - measured.integrated_lufs
    peak = measured.true_peak_dbtp
    if not math.isfinite(peak):
        peak = measured.sample_peak_dbfs
    if math.isfinite(peak) and peak + wanted > ceiling_dbtp():
        return Gain(ceiling_dbtp() - peak, "true_peak")
    return Gain(wanted)


def input_args(source: Path, *, concat_list: bool) -> list[str]:
    return [*(["-f", "concat", "-safe", "0"] if concat_list else []), "-i", str(source)]


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


def analysis_command(
    ffmpeg: str,
    inputs: Sequence[str],
    pcm: Path,
    *,
    pre_filter: str = "",
    source_graph: str = "",
    sample_rate: int,
    channels: int,
) -> list[str]:
    """The one decode of the track: its samples to `pcm` (PCM_FORMAT at `sample_rate` and
    `channels`), its integrated loudness, range and sample peak to the log. With a
    `source_graph` (several inputs made into `[mix]`), that graph is the track."""
    chain = ",".join(
        f
        for f in (
            pre_filter,
            f"{_EBUR128}sample",
            f"aresample={sample_rate}",
            f"aformat=sample_fmts=flt:channel_layouts={_layout(channels)}",
        )
        if f
    )
    start = f"{source_graph};[mix]" if source_graph else "[0:a:0]"
    return [ffmpeg, *_BASE, *inputs, "-filter_complex", f"{start}{chain}[pcm]",
            "-map", "[pcm]", "-f", PCM_FORMAT, str(pcm)]  # fmt: skip


def pcm_input(pcm: Path, *, sample_rate: int, channels: int) -> list[str]:
    return ["-f", PCM_FORMAT, "-ar", str(sample_rate), "-ac", str(channels), "-i", str(pcm)]


def true_peak_command(ffmpeg: str, excerpt: Path, *, sample_rate: int, channels: int) -> list[str]:
    """ebur128's true peak (4x oversampling) of a PCM file: the loud blocks of a track."""
    return [ffmpeg, *_BASE, *pcm_input(excerpt, sample_rate=sample_rate, channels=channels),
            "-af", f"{_EBUR128}true", "-f", "null", "-"]  # fmt: skip


def encode_command(
    ffmpeg: str,
    pcm: Path,
    outputs: Sequence[tuple[str, Path]],
    *,
    sample_rate: int,
    channels: int,
    gain_db: float,
    silence_db: float,
) -> list[str]:
    """The encode from the decoded copy: one linear gain, split to every encoder and to
    the analysis branch (speech, and 16 kHz mono s16le samples to stdout for the peaks)."""
    head = f"volume={gain_db:.4f}dB:precision=float" if gain_db else "anull"
    return _split_to_encoders(
        ffmpeg, pcm_input(pcm, sample_rate=sample_rate, channels=channels), "[0:a:0]",
        head, outputs, [], silence_db=silence_db, measure=False,
    )  # fmt: skip


def finish_command(
    ffmpeg: str,
    inputs: Sequence[str],
    outputs: Sequence[tuple[str, Path]],
    *,
    pre_filter: str = "",
    silence_db: float,
    copy_format: str | None = None,
    source_graph: str = "",
) -> list[str]:
    """With levels kept as recorded: one decode, split to every encoder and to the
    analysis branch, which measures the level (`ebur128`) for the manifest. An output in
    `copy_format` is copied from the input instead (a mix is made, never copied). With
    a `source_graph` (several inputs made into `[mix]`), that graph is the track."""
    if source_graph:
        copy_format = None
    encoded = [(fmt, path) for fmt, path in outputs if fmt != copy_format]
    copied = [(fmt, path) for fmt, path in outputs if fmt == copy_format]
    start = f"{source_graph};[mix]" if source_graph else "[0:a:0]"
    return _split_to_encoders(
        ffmpeg, list(inputs), start, pre_filter or "anull", encoded, copied,
        silence_db=silence_db, measure=True,
    )  # fmt: skip


def _split_to_encoders(
    ffmpeg: str,
    inputs: Sequence[str],
    start: str,
    head: str,
    encoded: Sequence[tuple[str, Path]],
    copied: Sequence[tuple[str, Path]],
    *,
    silence_db: float,
    measure: bool,
) -> list[str]:
    labels = [f"[o{i}]" for i in range(len(encoded))]
    graph = f"{start}{head},asplit={len(encoded) + 1}{''.join(labels)}[m];"
    analysis = [f"silencedetect=n={silence_db}dB:d={LONGEST_BRIDGED_PAUSE_S}"]
    if measure:
        analysis.append(f"{_EBUR128}true")  # the level as it stays, for the manifest
    analysis += [f"aresample={PEAKS_SAMPLE_RATE}", "aformat=sample_fmts=s16:channel_layouts=mono"]
    graph += f"[m]{','.join(analysis)}[w]"
    args = [ffmpeg, *_BASE, *inputs, "-filter_complex", graph]
    for label, (fmt, path) in zip(labels, encoded, strict=True):
        _ext, codec_args, _mime = AUDIO_ENCODINGS[fmt]
        args += ["-map", label, *codec_args, str(path)]
    for _fmt, path in copied:
        args += ["-map", "0:a:0", "-vn", "-c:a", "copy", str(path)]
    return [*args, "-map", "[w]", "-f", "s16le", "-ac", "1", "pipe:1"]


_EBUR128_I = re.compile(r"Integrated loudness:\s+I:\s+(-?[\d.]+|-inf) LUFS")
_EBUR128_LRA = re.compile(r"Loudness range:\s+LRA:\s+(-?[\d.]+|-inf) LU")
_EBUR128_SAMPLE = re.compile(r"Sample peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS")
_EBUR128_TRUE = re.compile(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS")


def parse_ebur128(log: str) -> Loudness:
    """The summary ebur128 prints when the stream ends: integrated loudness and range,
    and the sample or true peak (whichever it was asked for; the other is NaN)."""
    summary = log[log.rfind("Summary:") :] if "Summary:" in log else ""
    found = [p.search(summary) for p in (_EBUR128_I, _EBUR128_LRA)]
    sample, true = _EBUR128_SAMPLE.search(summary), _EBUR128_TRUE.search(summary)
    if not all(found) or not (sample or true):
        raise FinishError("ffmpeg printed no loudness summary")
    i, lra = (_db(m.group(1)) for m in found if m)
    return Loudness(
        i,
        _db(true.group(1)) if true else float("nan"),
        lra,
        _db(sample.group(1)) if sample else float("nan"),
    )


def parse_true_peak(log: str) -> float:
    found = _EBUR128_TRUE.search(log[log.rfind("Summary:") :] if "Summary:" in log else "")
    if not found:
        raise FinishError("ffmpeg printed no true peak")
    return _db(found.group(1))


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
