"""Finishing an audio track: measure its loudness, then in one more decode normalize it,
encode every format, find the speech spans and collect the waveform peaks
(`tasks.media.finish` builds the commands). Used for a GME recording and for a room mix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from tasks.media import finish
from tasks.media.finish import Loudness
from tasks.media.tools import (
    Heartbeat,
    MediaError,
    Output,
    Tools,
    describe_outputs,
    output_seconds,
    run_tool_streaming,
)


class PeakCollector:
    """Min and max per pixel of a stream of s16le mono samples, block by block."""

    def __init__(self, samples_per_pixel: int = finish.PEAKS_SAMPLES_PER_PIXEL):
        self.samples_per_pixel = samples_per_pixel
        self._carry = b""
        self._pairs: list[np.ndarray] = []

    def feed(self, block: bytes) -> None:
        data = self._carry + block
        width = 2 * self.samples_per_pixel
        usable = len(data) - len(data) % width
        self._carry = data[usable:]
        if usable:
            self._add(np.frombuffer(data[:usable], dtype="<i2").reshape(-1, self.samples_per_pixel))

    def _add(self, pixels: np.ndarray) -> None:
        pairs = np.empty((len(pixels), 2), dtype=np.int16)
        pairs[:, 0], pairs[:, 1] = pixels.min(axis=1), pixels.max(axis=1)
        self._pairs.append(pairs.reshape(-1))

    def data(self) -> list[int]:
        """The min/max pairs; a last partial pixel counts too."""
        if len(self._carry) >= 2:
            self._add(np.frombuffer(self._carry[: len(self._carry) // 2 * 2], dtype="<i2")[None, :])
            self._carry = b""
        if not self._pairs:
            return []
        return [int(v) for v in np.concatenate(self._pairs)]


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
    extra: dict[str, Any] = field(default_factory=dict)

    def loudness(self) -> dict[str, Any]:
        return {
            "target_lufs": self.target_lufs,
            "true_peak_limit_dbtp": finish.TRUE_PEAK_DBTP if self.target_lufs is not None else None,
            "before": self.before.as_json(),
            "after": self.after.as_json(),
        }


def finish_track(
    inputs: Sequence[str],
    targets: Sequence[tuple[str, Path]],
    peaks_path: Path,
    tools: Tools,
    finishing: Finishing,
    *,
    sample_rate: int,
    channels: int = 2,
    pre_filter: str = "",
    copy_format: str | None = None,
    source_graph: str = "",
    label: str,
    heartbeat: Heartbeat | None = None,
) -> Finished:
    """Two decodes of the input: loudnorm's measuring pass (skipped with loudness off),
    then the finishing pass that writes every target and reports speech and peaks."""
    what = f"recording {label}"
    measured: Loudness | None = None
    target = finishing.target_lufs
    if target is not None:
        log = run_tool_streaming(
            finish.measure_command(tools.ffmpeg, inputs, pre_filter, target, source_graph),
            f"measuring the loudness of {what}",
            _nothing,
            heartbeat,
        )
        measured = _parsed(finish.parse_loudnorm, log, what)
    collector = PeakCollector()
    log = run_tool_streaming(
        finish.finish_command(
            tools.ffmpeg, inputs, targets, pre_filter=pre_filter, sample_rate=sample_rate,
            channels=channels, target_lufs=target, measured=measured,
            silence_db=finishing.silence_db, copy_format=copy_format, source_graph=source_graph,
        ),
        f"transcoding {what}",
        collector.feed,
        heartbeat,
    )  # fmt: skip
    outputs = describe_outputs(targets, partial(output_seconds, tools), label=label)
    normalized = target is not None and measured is not None and measured.audible
    if normalized:
        after = _parsed(partial(finish.parse_loudnorm, which="output"), log, what)
    else:
        after = _parsed(finish.parse_ebur128, log, what)
    length = max((o.duration_s for o in outputs), default=0.0)
    speech = finish.speech_spans(finish.parse_silences(log, length), length)
    peaks_path.write_text(
        json.dumps(finish.peaks_document(collector.data()), separators=(",", ":"))
    )
    return Finished(
        outputs=outputs,
        before=measured or after,
        after=after,
        speech=speech,
        peaks=peaks_path,
        target_lufs=target if normalized else None,
    )


def _nothing(_block: bytes) -> None:
    return None


def _parsed(parse: Any, log: str, what: str) -> Loudness:
    try:
        result: Loudness = parse(log)
    except finish.FinishError as exc:
        raise MediaError(f"{what}: {exc}") from None
    return result
