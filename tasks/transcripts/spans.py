"""Which audio an engine is given: only the speech spans of a track, packed into chunks
of at most a few tens of seconds with a short silence between spans, and the way back from
a time in a chunk to the recording's timeline. Pure."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Whisper looks at 30 s windows: a chunk fills one.
CHUNK_MAX_S = 28.0
# Silence put between two spans of one chunk, so the engine hears them apart.
JOIN_GAP_S = 0.4


def merge_spans(
    spans: Iterable[Sequence[float]],
    *,
    pad_s: float = 0.2,
    bridge_s: float = 0.5,
    length_s: float | None = None,
) -> list[tuple[float, float]]:
    """Speech spans as the engine is given them: each widened by `pad_s` (no word is cut
    at its edge), those closer than `bridge_s` joined, none past `length_s`."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted((float(s[0]), float(s[1])) for s in spans):
        start, end = max(0.0, start - pad_s), end + pad_s
        if length_s is not None:
            end = min(end, length_s)
        if end <= start:
            continue
        if merged and start - merged[-1][1] < bridge_s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass(frozen=True)
class Piece:
    start_s: float  # on the recording's timeline
    end_s: float
    at_s: float  # where it starts in the chunk

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Chunk:
    pieces: tuple[Piece, ...]

    @property
    def duration_s(self) -> float:
        last = self.pieces[-1]
        return last.at_s + last.duration_s

    def to_timeline(self, t: float) -> float:
        """A time in the chunk on the recording's timeline; a time in the silence put
        between two pieces belongs to the end of the piece before it."""
        starts = [p.at_s for p in self.pieces]
        piece = self.pieces[max(0, bisect.bisect_right(starts, t) - 1)]
        return round(piece.start_s + min(max(0.0, t - piece.at_s), piece.duration_s), 3)


def pack_spans(
    spans: Sequence[tuple[float, float]], max_s: float = CHUNK_MAX_S, gap_s: float = JOIN_GAP_S
) -> list[Chunk]:
    """Spans in order into chunks of at most `max_s`; a longer span is cut into pieces."""
    pieces: list[tuple[float, float]] = []
    for start, end in spans:
        while end - start > max_s:
            pieces.append((start, start + max_s))
            start += max_s
        pieces.append((start, end))
    chunks: list[Chunk] = []
    current: list[Piece] = []
    at = 0.0
    for start, end in pieces:
        if current and at + gap_s + (end - start) > max_s:
            chunks.append(Chunk(tuple(current)))
            current, at = [], 0.0
        if current:
            at += gap_s
        current.append(Piece(round(start, 3), round(end, 3), round(at, 3)))
        at += end - start
    if current:
        chunks.append(Chunk(tuple(current)))
    return chunks


def chunk_samples(track: np.ndarray, chunk: Chunk, rate: int) -> np.ndarray:
    """The chunk's audio: its pieces of `track` with `JOIN_GAP_S` of silence between."""
    out = np.zeros(round(chunk.duration_s * rate) + 1, dtype=np.float32)
    for piece in chunk.pieces:
        data = track[int(piece.start_s * rate) : int(piece.end_s * rate)]
        at = round(piece.at_s * rate)
        out[at : at + len(data)] = data[: len(out) - at]
    return out


def speech_in(
    samples: np.ndarray,
    rate: int,
    silence_db: float,
    *,
    window_s: float = 0.05,
    min_speech_s: float = 0.3,
    bridge_s: float = 0.5,
) -> list[list[float]]:
    """Speech spans of a track that has none computed (a CSS recording's audio): windows
    above `silence_db` RMS, pauses under `bridge_s` bridged, spans under `min_speech_s`
    dropped (the rule of the pipeline's own spans)."""
    size = max(1, int(rate * window_s))
    count = len(samples) // size
    if count == 0:
        return []
    frames = samples[: count * size].astype(np.float64).reshape(count, size)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = 20 * np.log10(np.maximum(rms, 1e-10)) > silence_db
    spans: list[list[float]] = []
    start: int | None = None
    for index, on in enumerate([*loud.tolist(), False]):
        if on and start is None:
            start = index
        elif not on and start is not None:
            a, b = start * window_s, index * window_s
            if spans and a - spans[-1][1] < bridge_s:
                spans[-1][1] = round(b, 2)
            else:
                spans.append([round(a, 2), round(b, 2)])
            start = None
    return [s for s in spans if s[1] - s[0] >= min_speech_s]
