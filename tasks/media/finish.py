"""What comes with the audio, in the passes the transcode makes: EBU R128 loudness
(ITU-R BS.1770 integrated loudness, measured, then applied as one linear gain), the speech
spans (ffmpeg's `silencedetect` rule) and the waveform peaks (the audiowaveform JSON
format, version 2).

Pure: the choice of the gain, the commands the ffmpeg process runs where it runs, the
parsing of what ffmpeg said, and the scan of decoded samples for speech and peaks
(`TrackScan`). With a loudness target a track is decoded once, its samples kept as a
32-bit float PCM file on local scratch while `ebur128` measures the integrated loudness,
range and sample peak (in the worker, `tasks.media.libav`; a room's mix by
`analysis_command`), then encoded from that file with one linear gain while the same
samples are scanned, with the gain, for the speech spans and the peaks. True peak (4x
oversampling, as costly as the rest of the analysis) is measured only when the sample peak
plus the gain comes within `TRUE_PEAK_MARGIN_DB` of the limit, and then only on the blocks
that come that close. Nothing resamples to 192 kHz (ffmpeg's `loudnorm` does, twice).
Without a target one ffmpeg pass does it all (`finish_command`), its samples scanned from
its stdout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
# The peaks: 50 pixels a second (written as audiowaveform's 16 kHz at 320 samples a pixel,
# whatever the track's rate: min and max are taken over the track's own samples).
PEAKS_SAMPLE_RATE = 16000
PEAKS_SAMPLES_PER_PIXEL = 320
PEAKS_PER_SECOND = PEAKS_SAMPLE_RATE // PEAKS_SAMPLES_PER_PIXEL
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


def layout(channels: int) -> str:
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
            f"aformat=sample_fmts=flt:channel_layouts={layout(channels)}",
        )
        if f
    )
    start = f"{source_graph};[mix]" if source_graph else "[0:a:0]"
    return [ffmpeg, *_BASE, *inputs, "-filter_complex", f"{start}{chain}[pcm]",
            "-map", "[pcm]", "-f", PCM_FORMAT, str(pcm)]  # fmt: skip


def _codec_args(fmt: str) -> list[str]:
    return list(AUDIO_ENCODINGS[fmt].codec_args)


def finish_command(
    ffmpeg: str,
    inputs: Sequence[str],
    outputs: Sequence[tuple[str, Path]],
    *,
    pre_filter: str = "",
    sample_rate: int,
    channels: int,
    copy_format: str | None = None,
    source_graph: str = "",
) -> list[str]:
    """With levels kept as recorded: one decode, split to every encoder and to the
    analysis branch, which measures the level (`ebur128`) for the manifest and gives the
    samples (PCM_FORMAT at `sample_rate` and `channels`) on stdout for `TrackScan`. An
    output in `copy_format` is copied from the input instead (a mix is made, never
    copied). With a `source_graph` (several inputs made into `[mix]`), that graph is the
    track."""
    if source_graph:
        copy_format = None
    encoded = [(fmt, path) for fmt, path in outputs if fmt != copy_format]
    copied = [(fmt, path) for fmt, path in outputs if fmt == copy_format]
    start = f"{source_graph};[mix]" if source_graph else "[0:a:0]"
    labels = [f"[o{i}]" for i in range(len(encoded))]
    graph = f"{start}{pre_filter or 'anull'},asplit={len(encoded) + 1}{''.join(labels)}[m];"
    graph += (
        f"[m]{_EBUR128}true,"  # the level as it stays, for the manifest
        f"aformat=sample_fmts=flt:sample_rates={sample_rate}:"
        f"channel_layouts={layout(channels)}[w]"
    )
    args = [ffmpeg, *_BASE, *inputs, "-filter_complex", graph]
    for label, (fmt, path) in zip(labels, encoded, strict=True):
        args += ["-map", label, *_codec_args(fmt), str(path)]
    for _fmt, path in copied:
        args += ["-map", "0:a:0", "-vn", "-c:a", "copy", str(path)]
    return [*args, "-map", "[w]", "-f", PCM_FORMAT, "pipe:1"]


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


def _db(value: object) -> float:
    text = str(value).strip()
    return float("-inf") if text == "-inf" else float(text)


class TrackScan:
    """The speech's silences and the waveform peaks of a float PCM track (PCM_FORMAT,
    interleaved), as it sounds after a linear gain of `gain_db`, fed in blocks of any size
    (`feed` takes bytes, `feed_frames` an array of frames x channels); only a partial frame
    and the samples of one pixel are carried between blocks.

    Silences are ffmpeg's `silencedetect` rule at `silence_db` on the gained samples: a run
    of at least LONGEST_BRIDGED_PAUSE_S where every channel stays under the threshold.
    Peaks are the min and max of the channels' mean per pixel, PEAKS_PER_SECOND pixels a
    second, as 16-bit values (`peaks_document`)."""

    def __init__(self, *, sample_rate: int, channels: int, gain_db: float, silence_db: float):
        self.sample_rate, self.channels = sample_rate, channels
        self.gain = 10 ** (gain_db / 20)
        # |sample * gain| < threshold, without multiplying every sample.
        self.quiet = np.float32(10 ** (silence_db / 20) / self.gain)
        self.shortest_silence = round(LONGEST_BRIDGED_PAUSE_S * sample_rate)
        self.frames = 0
        self._carry = b""
        self._open: int | None = None  # first frame of a quiet run still going on
        self._silences: list[tuple[int, int]] = []
        self._pending = np.empty(0, dtype=np.float32)  # samples of the pixel being filled
        self._pixel = 0  # that pixel's number
        # The pairs so far, packed float32 in one growing buffer: a small array kept per
        # block would stay between the blocks' large temporaries and hold their memory.
        self._peaks = bytearray()

    def feed(self, block: bytes) -> None:
        data = self._carry + block if self._carry else block
        usable = len(data) - len(data) % (4 * self.channels)
        self._carry = data[usable:]
        if usable:
            samples = np.frombuffer(data, dtype="<f4", count=usable // 4)
            self.feed_frames(samples.reshape(-1, self.channels))

    def feed_frames(self, frames: np.ndarray) -> None:
        if not len(frames):
            return
        if self.channels == 1:
            mono = frames[:, 0]
            level = np.abs(mono)
        else:
            mono = frames.mean(axis=1, dtype=np.float32)
            level = np.abs(frames).max(axis=1)
        self._quiet_runs(level < self.quiet)
        self._pixels(mono)
        self.frames += len(frames)

    def _quiet_runs(self, quiet: np.ndarray) -> None:
        first = self.frames
        edges = np.diff(quiet.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        begins = np.flatnonzero(edges == 1) + first
        ends = np.flatnonzero(edges == -1) + first
        if self._open is not None:
            if len(begins) and begins[0] == first:
                begins[0] = self._open
            elif first - self._open >= self.shortest_silence:
                self._silences.append((self._open, first))
            self._open = None
        if len(ends) and ends[-1] == first + len(quiet):
            self._open = int(begins[-1])
            begins, ends = begins[:-1], ends[:-1]
        long = ends - begins >= self.shortest_silence
        self._silences += zip(begins[long].tolist(), ends[long].tolist(), strict=True)

    def _pixels(self, mono: np.ndarray) -> None:
        samples = np.concatenate((self._pending, mono)) if len(self._pending) else mono
        first = self.frames - len(self._pending)  # the frame samples[0] is
        # Pixel k holds frames [k * rate // PPS, (k + 1) * rate // PPS): the pixels that
        # end by the last frame here are complete.
        done = ((first + len(samples) + 1) * PEAKS_PER_SECOND - 1) // self.sample_rate
        if done > self._pixel:
            bounds = np.arange(self._pixel, done + 1) * self.sample_rate // PEAKS_PER_SECOND
            bounds -= first
            whole, starts = samples[: bounds[-1]], bounds[:-1]
            self._add(np.minimum.reduceat(whole, starts), np.maximum.reduceat(whole, starts))
            samples = samples[bounds[-1] :]
            self._pixel = done
        self._pending = np.array(samples, dtype=np.float32)

    def _add(self, low: np.ndarray, high: np.ndarray) -> None:
        pairs = np.empty((len(low), 2), dtype=np.float32)
        pairs[:, 0], pairs[:, 1] = low, high
        self._peaks += pairs.tobytes()

    def silences(self) -> list[tuple[float, float]]:
        """The silences so far in seconds, in order; one still going on ends the track."""
        found = list(self._silences)
        if self._open is not None and self.frames - self._open >= self.shortest_silence:
            found.append((self._open, self.frames))
        return [(a / self.sample_rate, b / self.sample_rate) for a, b in found]

    def peaks(self) -> list[int]:
        """The min/max pairs of the gained samples as 16-bit values (ffmpeg's float to s16:
        x * 32768, rounded, clipped); a last partial pixel counts too."""
        parts = [np.frombuffer(self._peaks, dtype=np.float32)]
        if len(self._pending):
            parts.append(np.array([self._pending.min(), self._pending.max()], dtype=np.float32))
        scaled = np.rint(np.concatenate(parts).astype(np.float64) * self.gain * 32768)
        return [int(v) for v in np.clip(scaled, -32768, 32767)]


def speech_spans(silences: Sequence[tuple[float, float]], duration_s: float) -> list[list[float]]:
    """Where the track is not silent for at least SHORTEST_SPEECH_S: the stretches between
    the silences (`TrackScan` reports only pauses of LONGEST_BRIDGED_PAUSE_S or more,
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
