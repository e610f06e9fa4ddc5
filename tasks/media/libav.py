"""ffmpeg's libraries inside the worker's own process (PyAV): a recording's track is
decoded, measured, kept as a float PCM copy and encoded without starting a process.

A process costs ffmpeg about 0.06 s of CPU to start (its libraries are linked and
initialized every time), about half of a bare concat+AAC encode of a 6 s recording, and the
normalized finish needs two passes. Here both passes run in the worker for the price of
their filters and codecs alone, with the same filters the ffmpeg command would run
(`aresample`, `apad`, `ebur128`), so the timeline and the measurements mean the same
(docs/benchmarks.md has the figures).

What the ffmpeg command line prints at the end (ebur128's summary), a filter graph gives
on every frame as metadata: the integrated loudness and range are the last frame's, the
true peak the largest of the frames'. The sample peak is taken from the samples here.
"""

from __future__ import annotations

import errno
import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import av.filter
import numpy as np

from tasks.media.ffmpeg import AUDIO_ENCODINGS
from tasks.media.finish import Loudness, TrackScan, layout
from tasks.media.tools import Beats, Heartbeat, MediaError

# How much audio goes to the encoders at a time (memory stays flat).
ENCODE_SECONDS = 10
# The PCM copy is written through a buffer this large: 100 ms frames go to the disk in few
# system calls.
PCM_BUFFER = 1 << 20
_META = "lavfi.r128."


@contextmanager
def libav_errors(what: str) -> Iterator[None]:
    """An error of ffmpeg's libraries as the tools' errors are: OSError(ENOSPC) for a full
    disk (the run is retried), MediaError naming the work for anything else."""
    try:
        yield
    except av.error.FFmpegError as exc:
        if getattr(exc, "errno", None) == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"{what}: {exc}") from None
        raise MediaError(f"{what}: {exc}") from None


class _Chain:
    """A linear filter graph: frames pushed in at one end (an abuffer made of `buffer`'s
    parameters) or read by its source filter (`movie`: amovie's options), pulled out of the
    other."""

    def __init__(
        self,
        filters: Sequence[str],
        *,
        buffer: dict[str, Any] | None = None,
        movie: dict[str, str] | None = None,
    ):
        self.graph = av.filter.Graph()
        self.ended = False
        if movie is not None:
            node = self.graph.add("amovie", **movie)
        else:
            node = self.graph.add_abuffer(**(buffer or {}))
        for spec in filters:
            name, _, args = spec.partition("=")
            following = self.graph.add(name, args or None)
            node.link_to(following)
            node = following
        sink = self.graph.add("abuffersink")
        node.link_to(sink)
        self.graph.configure()

    def push(self, frame: av.AudioFrame | None) -> None:
        """Push `frame` (None: the end of the stream)."""
        self.graph.push(frame)

    def pulled(self) -> Iterator[av.AudioFrame]:
        """Every frame ready at the other end (`ended` once the last has been)."""
        while True:
            try:
                out = self.graph.pull()
            except av.error.BlockingIOError:
                return
            except av.error.EOFError:
                self.ended = True
                return
            if isinstance(out, av.AudioFrame):
                yield out


class _Levels:
    """ebur128's measurements, as the frames it passed carry them: loudness so far in LUFS,
    the peaks so far as linear amplitudes."""

    def __init__(self) -> None:
        self.frames: tuple[av.AudioFrame | None, av.AudioFrame | None] = (None, None)

    def see(self, frame: av.AudioFrame) -> None:
        """Keep the last two frames: ebur128 measures every whole 100 ms it passes, and only
        a stream's last frame may be a partial one, without measurements."""
        self.frames = (self.frames[1], frame)

    @property
    def last(self) -> dict[str, str]:
        for frame in reversed(self.frames):
            if frame is not None and _META + "I" in (meta := frame.metadata):
                return dict(meta)
        return {}

    @property
    def true_peak(self) -> float:
        """In dBTP: -inf for silence, NaN where ebur128 did not measure it."""
        peak = float(self.last.get(_META + "true_peak", "nan"))
        return 20 * math.log10(peak) if peak > 0 else float("-inf") if peak == 0 else peak

    def loudness(self, sample_peak: float, what: str) -> Loudness:
        last = self.last
        if _META + "I" not in last:
            raise MediaError(f"{what}: ebur128 measured nothing (no audio was decoded)")
        return Loudness(
            float(last[_META + "I"]),
            float("nan"),
            float(last.get(_META + "LRA", "0")),
            20 * math.log10(sample_peak) if sample_peak > 0 else float("-inf"),
        )


def decode_measured(
    source: Path,
    pcm: Path,
    *,
    concat_list: bool,
    pre_filter: str,
    sample_rate: int,
    channels: int,
    what: str,
    heartbeat: Heartbeat | None = None,
) -> Loudness:
    """The one decode of a track (a file, or a concat-demuxer list read in turn): through
    `pre_filter` (the timeline) and ebur128, to `pcm` as PCM_FORMAT at `sample_rate` and
    `channels`. Returns its integrated loudness, range and sample peak.

    The pass is one filter graph whose `amovie` source reads and decodes the input, so
    Python sees only ebur128's 100 ms frames (1.6 s of CPU less per hour of mp3 than
    decoding packet by packet here). amovie stops at a packet that does not decode; the
    ffmpeg command skips it, so such a track is decoded again packet by packet, skipping
    what does not decode."""
    beat = Beats(heartbeat)
    movie = {"filename": str(source)}
    if concat_list:
        movie |= {"f": "concat", "format_opts": "safe=0"}
    with libav_errors(what):
        with _opened(source, concat_list) as container:
            if not container.streams.audio:
                raise MediaError(f"{what}: no audio stream")
            shift = _start_at_zero(container.start_time, container.streams.audio[0].time_base)
        filters = [
            *(f for f in pre_filter.split(",") if f),
            "ebur128=metadata=1",
            f"aresample={sample_rate}",
            f"aformat=sample_fmts=flt:channel_layouts={layout(channels)}",
        ]
        try:
            with pcm.open("wb", buffering=PCM_BUFFER) as out:
                kept = _Kept(out, channels)
                chain = _Chain([*([f"asetpts=PTS+{shift}"] if shift else []), *filters],
                               movie=movie)  # fmt: skip
                while not chain.ended:
                    kept.take(chain.pulled())
                    beat()
        except av.error.InvalidDataError:
            with pcm.open("wb", buffering=PCM_BUFFER) as out:
                kept = _Kept(out, channels)
                _decode_packets(source, concat_list, shift, filters, kept, beat)
    return kept.levels.loudness(kept.peak, what)


def _opened(source: Path, concat_list: bool) -> av.container.InputContainer:
    """The input as ffmpeg's libraries open it: a file, or a concat-demuxer list."""
    options = {"safe": "0"} if concat_list else None
    return av.open(str(source), format="concat" if concat_list else None, options=options)


def _decode_packets(
    source: Path,
    concat_list: bool,
    shift: int,
    filters: list[str],
    kept: _Kept,
    beat: Beats,
) -> None:
    """`decode_measured`'s pass with the packets demuxed and decoded here, one by one: a
    packet that does not decode is skipped."""
    with _opened(source, concat_list) as container:
        stream = container.streams.audio[0]
        chain = _Chain(filters, buffer={"template": stream})
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError:
                continue
            for frame in decoded:
                if frame.pts is not None:
                    frame.pts += shift
                chain.push(frame)
            kept.take(chain.pulled())
            beat()
        chain.push(None)
        kept.take(chain.pulled())


def _start_at_zero(start_time: int | None, time_base: Fraction | None) -> int:
    """What the ffmpeg command adds to an input's timestamps (without -copyts), in its
    stream's time base: minus the input's start time, so its earliest timestamp is 0 (amovie
    keeps the demuxer's own). The same timestamps give the same timeline: an mp3's encoder
    delay, before its first sample, is where the command puts it (silence at the start of a
    concat list's first file)."""
    if not start_time or not time_base:
        return 0
    return round(-start_time / (1_000_000 * time_base))


class _Kept:
    """Frames out of the analysis graph: their samples written to the PCM copy as they
    are (packed float), their sample peak taken, ebur128's last measurements kept."""

    def __init__(self, out: BinaryIO, channels: int):
        self.out, self.channels = out, channels
        self.peak = 0.0
        self.levels = _Levels()

    def take(self, frames: Iterator[av.AudioFrame]) -> None:
        for frame in frames:
            self.levels.see(frame)
            size = frame.samples * self.channels
            if not size:
                continue
            samples = np.frombuffer(memoryview(frame.planes[0]), dtype=np.float32, count=size)
            self.peak = max(self.peak, float(samples.max()), -float(samples.min()))
            self.out.write(samples.data)


def pcm_slices(pcm: Path, sample_rate: int, channels: int, seconds: float) -> Iterator[np.ndarray]:
    """The float PCM file (PCM_FORMAT) as arrays of frames x channels, `seconds` at a time."""
    count = max(1, round(seconds * sample_rate)) * channels
    with pcm.open("rb") as f:
        while len(samples := np.fromfile(f, dtype="<f4", count=count)):
            usable = len(samples) - len(samples) % channels
            yield samples[:usable].reshape(-1, channels)


def _frame(frames: np.ndarray, sample_rate: int, channels: int, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(frames).reshape(1, -1), format="flt", layout=layout(channels)
    )
    frame.sample_rate, frame.pts, frame.time_base = sample_rate, pts, Fraction(1, sample_rate)
    return frame


class _Output:
    """One encoded file: its container and its audio stream."""

    def __init__(self, fmt: str, path: Path, sample_rate: int, channels: int):
        encoding = AUDIO_ENCODINGS[fmt]
        self.container = av.open(str(path), "w", options=dict(encoding.muxer_options))
        rates = av.codec.Codec(encoding.codec, "w").audio_rates
        rate = sample_rate
        if rates and rate not in rates:  # opus: 48, 24, 16, 12 or 8 kHz
            rate = min((r for r in rates if r >= rate), default=max(rates))
        stream = self.container.add_stream(encoding.codec, rate=rate, layout=layout(channels))
        if not isinstance(stream, av.AudioStream):  # pragma: no cover - an audio codec
            raise MediaError(f"{encoding.codec} is not an audio encoder")
        if encoding.bit_rate:
            stream.bit_rate = encoding.bit_rate
        self.stream = stream

    def encode(self, frame: av.AudioFrame | None) -> None:
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        self.container.close()


def encode_pcm(
    pcm: Path,
    outputs: Sequence[tuple[str, Path]],
    *,
    sample_rate: int,
    channels: int,
    gain_db: float,
    scan: TrackScan | None,
    what: str,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Every output encoded from the float PCM copy with one linear gain (what
    `volume=…:precision=float` does), the copy fed to `scan` on the way."""
    beat = Beats(heartbeat)
    factor = np.float32(10 ** (gain_db / 20))
    with libav_errors(what):
        files = [_Output(fmt, path, sample_rate, channels) for fmt, path in outputs]
        try:
            pts = 0
            for frames in pcm_slices(pcm, sample_rate, channels, ENCODE_SECONDS):
                if scan is not None:
                    scan.feed_frames(frames)
                if gain_db:
                    frames *= factor
                frame = _frame(frames, sample_rate, channels, pts)
                for file in files:
                    file.encode(frame)
                pts += len(frames)
                beat()
            for file in files:
                file.encode(None)
        finally:
            for file in files:
                file.close()


def true_peak_of(pcm: Path, *, sample_rate: int, channels: int, what: str) -> float:
    """ebur128's true peak (4x oversampling) of a float PCM file, in dBTP (the summary
    the ffmpeg command prints)."""
    levels = _Levels()
    with libav_errors(what):
        chain = _Chain(
            ["ebur128=metadata=1:peak=true"],
            buffer={"format": "flt", "sample_rate": sample_rate, "layout": layout(channels),
                    "time_base": Fraction(1, sample_rate)},
        )  # fmt: skip
        pts = 0
        # ebur128 reports on each whole 100 ms it passes: silence after the end makes the
        # last samples' 100 ms whole, and changes no peak.
        ending = np.zeros((sample_rate // 10, channels), dtype=np.float32)
        for frames in itertools.chain(
            pcm_slices(pcm, sample_rate, channels, ENCODE_SECONDS), [ending]
        ):
            chain.push(_frame(frames, sample_rate, channels, pts))
            for frame in chain.pulled():
                levels.see(frame)
            pts += len(frames)
        chain.push(None)
        for frame in chain.pulled():
            levels.see(frame)
    return levels.true_peak
