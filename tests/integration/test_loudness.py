"""Loudness by measurement and one linear gain, checked as a broadcast engineer would:
integrated loudness of each output within 1 LU of the target when the true-peak headroom
allows it, true peak never above -1 dBTP (ebur128=peak=true on the output), and the
manifest's loudness saying when the peak held the gain back."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from storage.objectstore import LocalStore
from tasks.gme.steps import concatenate, fetch_sources, place_sources, transcode
from tasks.media.audio import Finished, Finishing
from tasks.media.finish import TrackScan, speech_spans
from tasks.media.libav import pcm_slices
from tasks.media.tools import Tools
from tests.support.media import decode

BEIJING = timezone(timedelta(hours=8))
TASK = "446946705284000432"
TARGET = -16.0
# A voice-like signal: a 150 Hz harmonic series at a syllable rhythm (4 Hz).
VOICE = (
    "(sin(2*PI*150*t)+0.5*sin(2*PI*300*t)+0.3*sin(2*PI*450*t)+0.2*sin(2*PI*900*t))"
    "*(0.55+0.45*sin(2*PI*4*t))/2"
)


def make_mp3(path: Path, expression: str, seconds: float, *, channels: int = 1) -> Path:
    layout = "mono" if channels == 1 else "stereo"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"aevalsrc={expression}:s=48000:d={seconds}:c={layout}",
         "-c:a", "libmp3lame", "-b:a", "128k", str(path)],
        check=True,
    )  # fmt: skip
    return path


def measure(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) as ffmpeg's ebur128=peak=true measures the file."""
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
         "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    summary = log[log.rfind("Summary:") :]
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1)
    return integrated, float(peak)


def finished_track(tmp_path: Path, segment: Path, formats=("m4a",)) -> Finished:
    store = LocalStore(tmp_path / "src")
    key = f"1400000000_100_999/2026-11-21-10-00-00_{TASK}_0.mp3"
    store.put(key, segment)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sources = fetch_sources(store, [(0, key)], scratch, Tools(), label="rec-1")
    timeline = place_sources(sources, zone=BEIJING, gap_seconds=2, pad=True)
    joined, plan = concatenate(sources, scratch, Tools(), label="rec-1", timeline=timeline)
    return transcode(
        joined, plan, formats, "rec-1", scratch, Tools(), label="rec-1", timeline=timeline,
        finishing=Finishing(target_lufs=TARGET, silence_db=-40.0),
    )  # fmt: skip


def check_outputs(finished: Finished, *, reach_target: bool) -> None:
    for output in finished.outputs:
        integrated, peak = measure(output.path)
        assert peak <= -1.0, (output.format, peak)
        if reach_target:
            assert abs(integrated - TARGET) <= 1.0, (output.format, integrated)


@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize(
    ("name", "amplitude"), [("quiet", 0.02), ("loud", 0.98)], ids=["quiet", "loud"]
)
def test_speech_is_brought_to_the_target_under_the_true_peak_limit(
    tmp_path: Path, name: str, amplitude: float, channels: int
):
    """Quiet speech gains, loud speech loses, both end within 1 LU of the target with the
    true peak at most -1 dBTP, in every format; the manifest tells the gain."""
    segment = make_mp3(tmp_path / f"{name}.mp3", f"{amplitude}*{VOICE}", 8.0, channels=channels)
    finished = finished_track(tmp_path, segment, formats=("m4a", "mp3", "opus"))
    check_outputs(finished, reach_target=True)
    loudness = json.loads(json.dumps(finished.loudness()))
    assert loudness["limited_by"] is None and loudness["target_lufs"] == TARGET
    assert (loudness["gain_db"] > 10) if name == "quiet" else (loudness["gain_db"] < 0)
    assert abs(loudness["after"]["integrated_lufs"] - TARGET) <= 0.1
    assert abs(loudness["before"]["integrated_lufs"] + loudness["gain_db"] - TARGET) <= 0.1


def test_a_click_on_quiet_speech_limits_the_gain_by_the_true_peak(tmp_path: Path):
    """Quiet speech with one full-scale click: the gain stops where the click's true peak
    meets the limit; the manifest says so with the level reached."""
    click = f"0.02*{VOICE}+if(eq(n\\,96000)\\,0.9\\,0)"
    finished = finished_track(tmp_path, make_mp3(tmp_path / "click.mp3", click, 8.0))
    check_outputs(finished, reach_target=False)
    loudness = finished.loudness()
    assert loudness["limited_by"] == "true_peak"
    assert loudness["before"]["true_peak_dbtp"] is not None  # measured, it mattered
    reached = loudness["reached_lufs"]
    assert reached == loudness["after"]["integrated_lufs"] and reached < TARGET - 1.0
    [output] = finished.outputs
    assert abs(measure(output.path)[0] - reached) <= 1.0


def test_speech_far_under_the_limit_has_no_true_peak_measured(tmp_path: Path):
    """True peak costs as much as the rest of the analysis: it is measured only where the
    sample peak after the gain comes near the limit."""
    quiet_peaks = f"0.05*{VOICE}"  # peak-to-loudness about 10 dB: far under -1 dBTP at -16
    finished = finished_track(tmp_path, make_mp3(tmp_path / "q.mp3", quiet_peaks, 6.0))
    check_outputs(finished, reach_target=True)
    assert finished.loudness()["before"]["true_peak_dbtp"] is None
    assert finished.processes == 0  # decoded, measured and encoded in the worker


def test_a_track_under_three_seconds_is_normalized(tmp_path: Path):
    """BS.1770's gating has few 400 ms blocks to work with; the level still lands."""
    segment = make_mp3(tmp_path / "short.mp3", f"0.05*{VOICE}", 2.0)
    finished = finished_track(tmp_path, segment)
    check_outputs(finished, reach_target=True)
    [output] = finished.outputs
    assert abs(output.duration_s - 2.0) < 0.05


def test_silence_gets_no_gain(tmp_path: Path):
    finished = finished_track(tmp_path, make_mp3(tmp_path / "s.mp3", "0", 4.0))
    loudness = finished.loudness()
    assert loudness["gain_db"] == 0.0 and loudness["limited_by"] is None
    assert loudness["before"]["silent"] and loudness["after"]["silent"]
    [output] = finished.outputs
    assert float(np.abs(decode(output.path)).max()) == 0.0


def test_peaks_and_speech_describe_the_normalized_audio(tmp_path: Path):
    """Quiet speech brought up 20 dB or more: the peaks show it at its archived level, and a
    stretch at -50 dBFS before the gain (above -40 dB after it) counts as speech."""
    voice = f"if(lt(t\\,3)\\,0.0045*{VOICE}\\,0.05*{VOICE})"  # 3 s near -50 dBFS, then louder
    finished = finished_track(tmp_path, make_mp3(tmp_path / "v.mp3", voice, 6.0))
    gain = finished.loudness()["gain_db"]
    assert gain > 15
    peaks = json.loads(finished.peaks.read_text())["data"]
    highest = max(abs(v) for v in peaks) / 32768
    [output] = finished.outputs
    archived = decode(output.path)
    assert abs(highest - float(np.abs(archived).max())) < 0.05
    assert finished.speech and finished.speech[0][0] <= 0.5, finished.speech


@pytest.mark.parametrize("gain_db", [0.0, 6.0, -10.0])
def test_the_scan_finds_the_silences_silencedetect_finds_after_the_gain(
    tmp_path: Path, gain_db: float
):
    """The speech spans' pauses, found by numpy on the PCM copy, are ffmpeg's own
    `silencedetect` on the gained audio: pauses just under the threshold at 0 dB, lifted
    over it by +6 dB; speech that -10 dB does not bring under it."""
    rate, channels = 16000, 2
    t = np.arange(20 * rate) / rate
    level = np.full(len(t), 0.05)
    for start, end in [(2.0, 2.4), (5.0, 6.3), (9.1, 9.55), (12.0, 15.0), (18.5, 20.0)]:
        level[(t >= start) & (t < end)] = 0.007  # -43 dBFS peaks: under -40 dB until +3 dB
    noise = np.random.default_rng(7).uniform(-1, 1, (len(t), channels))
    audio = (noise * level[:, None]).astype("<f4")
    pcm = tmp_path / "t.pcm"
    pcm.write_bytes(audio.tobytes())
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "info", "-f", "f32le", "-ar", str(rate),
         "-ac", str(channels), "-i", str(pcm),
         "-af", f"volume={gain_db}dB:precision=float,silencedetect=n=-40dB:d=0.5",
         "-f", "null", "-"],
        check=True, capture_output=True, text=True,
    ).stderr  # fmt: skip
    starts = [float(v) for v in re.findall(r"silence_start: (-?[\d.]+)", log)]
    ends = [float(v) for v in re.findall(r"silence_end: (-?[\d.]+)", log)] + [20.0]
    scan = TrackScan(sample_rate=rate, channels=channels, gain_db=gain_db, silence_db=-40.0)
    for frames in pcm_slices(pcm, rate, channels, 3.3):  # slices that cut through pauses
        scan.feed_frames(frames)
    found = scan.silences()
    reported = list(zip(starts, ends, strict=False))
    assert len(found) == len(starts)
    assert list(np.ravel(found)) == pytest.approx(list(np.ravel(reported)), abs=0.001)
    assert speech_spans(found, 20.0) == speech_spans(reported, 20.0)
    if gain_db == 6.0:
        assert found == []
    else:
        expected = [5.0, 6.3, 12.0, 15.0, 18.5, 20.0]
        assert list(np.ravel(found)) == pytest.approx(expected, abs=0.01)
