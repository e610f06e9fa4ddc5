"""Segments placed on the room's clock with real ffmpeg: each tone where its FileName's
time puts it, silence of the pause's length between, in both join paths."""

import json
import re
import subprocess
from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from storage.objectstore import LocalStore
from tasks.gme.steps import concatenate, fetch_sources, place_sources, transcode
from tasks.media.audio import KEEP_LEVELS, Finishing
from tasks.media.tools import Tools
from tests.support.media import ANALYSIS_RATE, decode, dominant_frequency, duration

BEIJING = timezone(timedelta(hours=8))
TASK = "446946705284000321"


def rms(samples: np.ndarray, start: float, end: float) -> float:
    chunk = samples[int(start * ANALYSIS_RATE) : int(end * ANALYSIS_RATE)]
    return float(np.sqrt(np.mean(chunk**2)))


def key(clock: str, seq: int) -> str:
    return f"1400000000_100_999/2026-11-21-{clock}_{TASK}_{seq}.mp3"


def build(store, segments, tmp_path: Path, *, pad=True, formats=("m4a",), finishing=KEEP_LEVELS):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sources = fetch_sources(store, segments, scratch, Tools(), label="rec-1")
    timeline = place_sources(sources, zone=BEIJING, gap_seconds=2, pad=pad)
    joined, plan = concatenate(sources, scratch, Tools(), label="rec-1", timeline=timeline)
    finished = transcode(
        joined, plan, formats, "rec-1", scratch, Tools(), label="rec-1", timeline=timeline,
        finishing=finishing,
    )  # fmt: skip
    return sources, timeline, plan, finished


def integrated_loudness(path: Path) -> float:
    """What ffmpeg's ebur128 filter measures, independently of recpipe's own passes."""
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
         "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    summary = log[log.rfind("Summary:") :]
    return float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))


def true_peak(path: Path) -> float:
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
         "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    summary = log[log.rfind("Summary:") :]
    return float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary).group(1))


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
    sources, timeline, plan, finished = build(
        store, segments, tmp_path, formats=("m4a", "mp3", "flac")
    )
    outputs = finished.outputs
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
    sources, timeline, plan, finished = build(
        store, [(0, key("10-00-00", 0)), (1, key("10-00-30", 1))], tmp_path, pad=False
    )
    [output] = finished.outputs
    assert timeline.gaps == () and plan.copy
    assert abs(duration(output.path) - sum(s.probe.duration_s for s in sources)) < 0.15


def test_loudness_speech_spans_and_peaks_come_from_the_transcode(tone, tmp_path: Path):
    """A quiet speaker (-30 dBFS tones) with a pause: normalized to -16 LUFS (true peak
    under -1 dBTP), speech where the tones are, a peaks file covering the whole track."""
    store = LocalStore(tmp_path / "src")
    for seq, (clock, hz, seconds) in enumerate([("10-00-00", 440, 3.0), ("10-00-08", 660, 2.0)]):
        quiet = tmp_path / f"q{seq}.mp3"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
             "-i", f"sine=frequency={hz}:duration={seconds}:sample_rate=44100",
             "-af", "volume=-27dB", "-c:a", "libmp3lame", "-b:a", "64k", str(quiet)],
            check=True,
        )  # fmt: skip
        store.put(key(clock, seq), quiet)
    segments = [(0, key("10-00-00", 0)), (1, key("10-00-08", 1))]
    sources, _timeline, _plan, finished = build(
        store, segments, tmp_path, formats=("m4a", "opus"),
        finishing=Finishing(target_lufs=-16.0, silence_db=-40.0),
    )  # fmt: skip
    assert finished.before.integrated_lufs < -25
    assert abs(finished.after.integrated_lufs - (-16.0)) <= 1.5
    loudness = finished.loudness()
    assert loudness["target_lufs"] == -16.0 and loudness["true_peak_limit_dbtp"] == -1.0
    end = 8.0 + sources[1].probe.duration_s
    for output in finished.outputs:
        assert abs(integrated_loudness(output.path) - (-16.0)) <= 1.5, output.format
        assert true_peak(output.path) <= -0.5, output.format
        assert abs(output.duration_s - end) < 0.15, output.format
        samples = decode(output.path)
        assert abs(dominant_frequency(samples, 1.5) - 440) < 15
        assert abs(dominant_frequency(samples, 9.0) - 660) < 15
        assert rms(samples, 3.5, 7.5) < 0.001
    [first, second] = finished.speech
    assert abs(first[0] - 0.0) <= 0.5 and abs(first[1] - 3.0) <= 0.5, finished.speech
    assert abs(second[0] - 8.0) <= 0.5 and abs(second[1] - end) <= 0.5, finished.speech

    peaks = json.loads(finished.peaks.read_text())
    assert finished.peaks.name == "rec-1.peaks.json"
    assert {k: peaks[k] for k in ("version", "channels", "bits")} == {
        "version": 2, "channels": 1, "bits": 16
    }  # fmt: skip
    assert len(peaks["data"]) == 2 * peaks["length"]
    seconds = peaks["length"] * peaks["samples_per_pixel"] / peaks["sample_rate"]
    assert abs(seconds - end) < 0.2
    per_second = peaks["sample_rate"] / peaks["samples_per_pixel"]
    pairs = list(zip(peaks["data"][::2], peaks["data"][1::2], strict=True))
    assert all(low <= high for low, high in pairs)
    loud = pairs[int(1.5 * per_second)]
    silent = pairs[int(5.5 * per_second)]
    assert loud[1] - loud[0] > 8000 and silent[1] - silent[0] < 100, (loud, silent)


def test_with_loudness_off_levels_stay_and_are_still_measured(tone, tmp_path: Path):
    store = LocalStore(tmp_path / "src")
    store.put(key("10-00-00", 0), tone("a.mp3", 440, 2.0))
    _sources, _timeline, plan, finished = build(
        store, [(0, key("10-00-00", 0))], tmp_path, formats=("mp3", "m4a")
    )
    assert plan.copy and finished.target_lufs is None
    assert finished.before.as_json() == finished.after.as_json()
    for output in finished.outputs:  # kept as recorded: what ebur128 measures of the source
        assert abs(integrated_loudness(output.path) - finished.after.integrated_lufs) <= 1.0
    [span] = finished.speech
    assert span[0] == 0.0 and abs(span[1] - finished.outputs[0].duration_s) <= 0.1


def decoded_seconds(path: Path, rate: int) -> float:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-ac", "1", "-ar", str(rate),
         "-f", "f32le", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return len(raw) / 4 / rate


@pytest.mark.parametrize(
    ("path", "clocks", "finishing"),
    [
        ("copy", ["10-00-00", "10-00-01", "10-00-03", "10-00-04", "10-00-06", "10-00-07"],
         KEEP_LEVELS),
        ("normalized", ["10-00-00", "10-00-01", "10-00-03", "10-00-04", "10-00-06", "10-00-07"],
         Finishing(target_lufs=-16.0, silence_db=-40.0)),
        ("gap-filling", ["10-00-00", "10-00-01", "10-00-09", "10-00-10", "10-00-12", "10-00-19"],
         KEEP_LEVELS),
    ],
)  # fmt: skip
def test_the_archived_length_is_the_timeline_length_in_every_path(
    tone, tmp_path: Path, path: str, clocks: list[str], finishing: Finishing
):
    """Six 1.5 s mp3 segments (each ~35 ms of encoder padding the decoder trims): the holes
    are silence in every path, so each output (container and samples) lasts the timeline's
    length within one AAC frame, and so does the manifest's duration_s."""
    store = LocalStore(tmp_path / "src")
    segments = []
    for seq, clock in enumerate(clocks):
        store.put(key(clock, seq), tone(f"{seq}.mp3", 300 + 100 * seq, 1.5, sample_rate=48000))
        segments.append((seq, key(clock, seq)))
    _sources, timeline, plan, finished = build(
        store, segments, tmp_path, formats=("m4a", "mp3"), finishing=finishing
    )
    assert plan.copy and bool(timeline.gaps) == (path == "gap-filling")
    assert (finished.target_lufs is not None) == (path == "normalized")
    frame = 1024 / 48000
    length = timeline.duration_s
    for output in finished.outputs:
        copied = output.format == "mp3" and path == "copy"
        # A copied mp3 is every frame of each segment; its decoder trims the first one's
        # encoder delay and the last one's padding as it would in the segments themselves.
        if not copied:
            assert abs(decoded_seconds(output.path, 48000) - length) <= frame, output.format
        # An encoded mp3's frames hold its encoder's own delay and padding (its decoder
        # trims them, as above); an m4a's container and a copied mp3's frames are exact.
        if output.format == "m4a" or copied:
            assert abs(output.duration_s - length) <= frame, (output.format, length)
            assert abs(duration(output.path) - length) <= frame, output.format
