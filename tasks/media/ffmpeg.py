"""ffmpeg/ffprobe command building and output parsing. Pure: no process is run here."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Encoding:
    """How an output format is encoded, by the ffmpeg command (`codec_args`) or by its
    libraries in the worker (`tasks.media.libav`): the same codec, rate and muxer options;
    the muxer is chosen by the file's extension either way."""

    extension: str
    codec: str
    mime: str
    bit_rate: int | None = None
    muxer_options: tuple[tuple[str, str], ...] = ()

    @property
    def codec_args(self) -> tuple[str, ...]:
        rate = ("-b:a", f"{self.bit_rate // 1000}k") if self.bit_rate else ()
        muxer = tuple(arg for name, value in self.muxer_options for arg in (f"-{name}", value))
        return ("-c:a", self.codec, *rate, *muxer)


AUDIO_ENCODINGS: dict[str, Encoding] = {
    "m4a": Encoding("m4a", "aac", "audio/mp4", 128_000, (("movflags", "+faststart"),)),
    "mp3": Encoding("mp3", "libmp3lame", "audio/mpeg", 128_000),
    "opus": Encoding("opus", "libopus", "audio/ogg", 64_000),
    "wav": Encoding("wav", "pcm_s16le", "audio/wav"),
    "flac": Encoding("flac", "flac", "audio/flac"),
}

# Codecs whose agreeing segments the concat demuxer reads in turn, and which an output of
# the same format takes by stream copy.
COPY_CODECS = frozenset({"mp3", "aac", "flac"})


class ProbeError(Exception):
    """ffprobe's answer says the file is not usable audio."""


@dataclass(frozen=True)
class AudioProbe:
    codec: str
    sample_rate: int
    channels: int
    duration_s: float
    format_name: str

    @property
    def layout(self) -> tuple[str, int, int]:
        """What must agree between segments for a stream copy to be a valid file."""
        return (self.codec, self.sample_rate, self.channels)


def probe_command(ffprobe: str, path: Path) -> list[str]:
    return [
        ffprobe,
        "-v", "error",
        # Counting packets demuxes the whole file without decoding it: cheap, and it is how
        # a truncated mp3 shows (its header still promises the full length).
        "-count_packets",
        "-show_entries", "stream=codec_type,codec_name,sample_rate,channels,duration,"
        "nb_read_packets:format=duration,format_name",
        "-of", "json",
        str(path),
    ]  # fmt: skip


def parse_probe(output: str | bytes) -> AudioProbe:
    try:
        data = json.loads(output or b"{}")
    except ValueError:
        raise ProbeError("ffprobe gave no readable answer") from None
    streams = [s for s in data.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise ProbeError("has no audio stream")
    stream, fmt = streams[0], data.get("format", {})
    duration = _float(fmt.get("duration")) or _float(stream.get("duration"))
    if not duration or duration <= 0:
        raise ProbeError("has no measurable duration")
    try:
        sample_rate, channels = int(stream.get("sample_rate", 0)), int(stream.get("channels", 0))
    except (TypeError, ValueError):
        sample_rate, channels = 0, 0
    if sample_rate <= 0 or channels <= 0:
        raise ProbeError("has no sample rate or channels")
    codec = str(stream.get("codec_name", ""))
    held = _mp3_duration_held(codec, stream.get("nb_read_packets"), sample_rate)
    if held is not None and duration - held > max(0.5, 0.02 * duration):
        raise ProbeError(f"is truncated: its header says {duration:.2f}s, it holds {held:.2f}s")
    return AudioProbe(
        codec=codec,
        sample_rate=sample_rate,
        channels=channels,
        duration_s=duration,
        format_name=str(fmt.get("format_name", "")),
    )


def _mp3_duration_held(codec: str, packets: object, sample_rate: int) -> float | None:
    """Seconds of audio in an mp3's frames: 1152 samples a frame (576 below 32 kHz)."""
    if codec != "mp3":
        return None
    try:
        count = int(packets)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return count * (1152 if sample_rate >= 32000 else 576) / sample_rate


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def concat_list(paths: Sequence[Path], spans: Sequence[float | None] | None = None) -> str:
    """A concat-demuxer list file; quotes are escaped the way the demuxer expects.

    `spans` gives, per file, how long it lasts on the clock (its length plus the pause
    after it), or None for what the demuxer finds: the demuxer starts the next file's
    timestamps there, and `aresample=async` (FILL_GAPS) fills the hole with silence (an
    mp3's decoder trims its encoder padding, so its samples end ~35 ms before its frames
    do: that hole is silence too, and every segment keeps its place on the timeline)."""
    lines = ["ffconcat version 1.0"]
    for i, path in enumerate(paths):
        escaped = str(path.resolve()).replace("'", "'\\''")
        lines.append(f"file '{escaped}'")
        if spans is not None and spans[i] is not None:
            lines.append(f"duration {spans[i]:.6f}")
    return "\n".join(lines) + "\n"


# Turns holes in the timestamps (a concat list's pauses) into silence, streaming.
FILL_GAPS = "aresample=async=1:min_hard_comp=0.01:first_pts=0"


def timeline_filter(length_s: float) -> str:
    """One meaning for the space between segments in every path: each segment holds its
    place on the timeline and any hole is silence (FILL_GAPS), and the track lasts the
    timeline's length (its last segment's trimmed padding is silence too)."""
    return f"{FILL_GAPS},apad=whole_dur={length_s:.6f}"


@dataclass(frozen=True)
class ConcatPlan:
    """How to join segments: read in turn through the concat demuxer when they agree,
    else decode to lossless FLAC."""

    copy: bool
    extension: str
    sample_rate: int
    channels: int


def plan_concat(probes: Sequence[AudioProbe]) -> ConcatPlan:
    if not probes:
        raise ValueError("no segments to concatenate")
    first = probes[0]
    if all(p.layout == first.layout for p in probes) and first.codec in COPY_CODECS:
        return ConcatPlan(True, first.codec, first.sample_rate, first.channels)
    # Mixed layouts (a reconnect at another rate, a mono/stereo switch): resample all to
    # the richest layout seen, through a lossless intermediate.
    return ConcatPlan(
        False,
        "flac",
        max(p.sample_rate for p in probes),
        max(p.channels for p in probes),
    )


# Segments decoded by one ffmpeg when their layouts differ. The concat filter opens every
# input at start, each with its demuxer and decoder: memory and open files grow with the
# count, so a long recording is decoded in batches of at most this many.
CONCAT_BATCH = 64


def batches(items: Sequence[Path], size: int = CONCAT_BATCH) -> list[Sequence[Path]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def concat_command(
    ffmpeg: str,
    inputs: Sequence[Path],
    plan: ConcatPlan,
    output: Path,
    spans: Sequence[float] | None = None,
) -> list[str]:
    """Segments that differ in layout, decoded and resampled into one lossless file (those
    that agree are read through a concat list by `transcode_command` instead). `spans`
    gives the seconds each input lasts on the clock (its length plus its pause): its
    samples are padded with silence to that length. Every input is open at once: callers
    pass at most `CONCAT_BATCH`."""
    base = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y"]
    # The concat filter reads its inputs one after another, so memory stays flat.
    layout = "mono" if plan.channels == 1 else "stereo"
    filters = "".join(
        f"[{i}:a:0]aresample={plan.sample_rate},aformat=channel_layouts={layout}"
        + (f",apad=whole_dur={spans[i]:.6f}" if spans and spans[i] > 0 else "")
        + f"[a{i}];"
        for i in range(len(inputs))
    )
    filters += "".join(f"[a{i}]" for i in range(len(inputs)))
    filters += f"concat=n={len(inputs)}:v=0:a=1[out]"
    args = [*base]
    for path in inputs:
        args += ["-i", str(path)]
    return [*args, "-filter_complex", filters, "-map", "[out]", "-c:a", "flac", str(output)]


def transcode_command(
    ffmpeg: str,
    source: Path,
    source_codec: str,
    outputs: Sequence[tuple[str, Path]],
    *,
    concat_list: bool = False,
    fill_gaps: bool = False,
) -> list[str]:
    """Decode once, encode every requested format; copy where the format is the source's own.
    With `concat_list`, `source` is a concat-demuxer list whose files are read in turn;
    with `fill_gaps`, the pauses it declares become silence (nothing is copied then)."""
    args = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y"]
    if concat_list:
        args += ["-f", "concat", "-safe", "0"]
    args += ["-i", str(source)]
    for fmt, path in outputs:
        codec_args = AUDIO_ENCODINGS[fmt].codec_args
        if fmt == source_codec and fmt in COPY_CODECS and not fill_gaps:
            codec_args = ("-c:a", "copy")
        filters = ("-af", FILL_GAPS) if fill_gaps else ()
        args += ["-map", "0:a:0", "-vn", *filters, *codec_args, str(path)]
    return args


def output_name(stem: str, fmt: str) -> str:
    return f"{stem}.{AUDIO_ENCODINGS[fmt].extension}"


def content_type(fmt: str) -> str:
    if fmt == "mp4":  # the video output of CSS recordings (tasks/media/video.py)
        return "video/mp4"
    return AUDIO_ENCODINGS[fmt].mime
