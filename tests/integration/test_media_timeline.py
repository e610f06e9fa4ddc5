"""Segments placed on the room's clock with real ffmpeg: each tone where its FileName's
time puts it, silence of the pause's length between, in both join paths."""

from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from storage.objectstore import LocalStore
from tasks.gme.steps import concatenate, fetch_sources, place_sources, transcode
from tasks.media.tools import Tools
from tests.media import ANALYSIS_RATE, decode, dominant_frequency, duration

pytestmark = pytest.mark.integration

BEIJING = timezone(timedelta(hours=8))
TASK = "446946705284000321"


def rms(samples: np.ndarray, start: float, end: float) -> float:
    chunk = samples[int(start * ANALYSIS_RATE) : int(end * ANALYSIS_RATE)]
    return float(np.sqrt(np.mean(chunk**2)))


def key(clock: str, seq: int) -> str:
    return f"1400000000_100_999/2026-11-21-{clock}_{TASK}_{seq}.mp3"


def build(store, segments, tmp_path: Path, *, pad=True, formats=("m4a",)):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sources = fetch_sources(store, segments, scratch, Tools(), label="rec-1")
    timeline = place_sources(sources, zone=BEIJING, gap_seconds=2, pad=pad)
    joined, plan = concatenate(sources, scratch, Tools(), label="rec-1", timeline=timeline)
    outputs = transcode(
        joined, plan, formats, "rec-1", scratch, Tools(), label="rec-1", timeline=timeline
    )
    return sources, timeline, plan, outputs


@pytest.mark.parametrize("mixed", [False, True], ids=["concat-list", "joined-flac"])
def test_a_pause_is_silence_of_its_length_and_the_next_tone_starts_on_the_clock(
    tone, tmp_path: Path, mixed: bool
):
    """2 s of 440 Hz at 10:00:00, muted, 1.5 s of 880 Hz at 10:00:06, lost SeqNo 2,
    1 s of 1320 Hz at 10:00:10: tones at 0, 6 and 10 s, silence between."""
    store = LocalStore(tmp_path / "src")
    layout = {"sample_rate": 48000, "channels": 2} if mixed else {}
    store.put(key("10-00-00", 0), tone("a.mp3", 440, 2.0))
    store.put(key("10-00-06", 1), tone("b.mp3", 880, 1.5, **layout))
    store.put(key("10-00-10", 3), tone("c.mp3", 1320, 1.0))
    segments = [(3, key("10-00-10", 3)), (0, key("10-00-00", 0)), (1, key("10-00-06", 1))]
    sources, timeline, plan, outputs = build(
        store, segments, tmp_path, formats=("m4a", "mp3", "flac")
    )
    assert plan.copy is not mixed
    assert [(g.reason, round(g.start_s)) for g in timeline.gaps] == [("pause", 2), ("missing", 8)]
    assert [round(p.offset_s, 3) for p in timeline.segments] == [0.0, 6.0, 10.0]
    expected = 10.0 + sources[-1].probe.duration_s
    for output in outputs:
        assert abs(duration(output.path) - expected) < 0.15, output.format
        assert abs(output.duration_s - expected) < 0.15, output.format
        samples = decode(output.path)
        for at, hz in ((1.0, 440), (6.75, 880), (10.5, 1320)):
            found = dominant_frequency(samples, at)
            assert abs(found - hz) < 15, f"{output.format}: {hz} Hz at {at}s, found {found}"
        assert rms(samples, 2.3, 5.8) < 0.001, output.format  # the pause
        assert rms(samples, 7.8, 9.8) < 0.001, output.format  # the lost segment
        assert rms(samples, 0.2, 1.8) > 0.05, output.format


def test_join_keeps_segments_end_to_end(tone, tmp_path: Path):
    store = LocalStore(tmp_path / "src")
    store.put(key("10-00-00", 0), tone("a.mp3", 440, 2.0))
    store.put(key("10-00-30", 1), tone("b.mp3", 880, 1.0))
    sources, timeline, plan, [output] = build(
        store, [(0, key("10-00-00", 0)), (1, key("10-00-30", 1))], tmp_path, pad=False
    )
    assert timeline.gaps == () and plan.copy
    assert abs(duration(output.path) - sum(s.probe.duration_s for s in sources)) < 0.15
