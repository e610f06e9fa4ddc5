"""ffmpeg's libraries in the worker (`tasks.media.libav`) against the ffmpeg command on the
same audio: the decode places the same samples on the timeline and measures the same
loudness, every format's encode carries exactly the gain, and the true peak is the one
`ebur128=peak=true` prints."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tasks.media import ffmpeg as cmd
from tasks.media import libav
from tasks.media.finish import analysis_command, input_args
from tasks.media.tools import MediaError, Tools, probe
from tests.support.media import decode, dominant_frequency, duration, make_tone

RATE = 44100


def ebur128(path: Path, *raw: str) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) as the ffmpeg command measures a file."""
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", *raw, "-i", str(path),
         "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    summary = log[log.rfind("Summary:") :]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    assert integrated and peak, log[-2000:]
    return float(integrated.group(1)), float(peak.group(1))


def pcm_samples(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<f4")


@pytest.fixture
def joined(tmp_path: Path) -> tuple[Path, float]:
    """A concat list of three mp3 tones (440, 660, 880 Hz), each spanning its frames' length
    on the clock and the first a 1.5 s pause more (as `tasks.gme.steps.concatenate` writes
    it), and the timeline's length."""
    tones = [
        make_tone(tmp_path / f"t{i}.mp3", hz, 1.0, sample_rate=RATE, gain_db=-6.0 * i)
        for i, hz in enumerate((440, 660, 880))
    ]
    spans = [probe(Tools(), tone, "tone").duration_s for tone in tones]
    spans[0] += 1.5
    listing = tmp_path / "list.txt"
    listing.write_text(cmd.concat_list(tones, spans))
    return listing, sum(spans)


def test_the_decode_places_and_measures_what_the_ffmpeg_command_does(joined, tmp_path: Path):
    listing, length = joined
    ours, theirs = tmp_path / "ours.f32", tmp_path / "theirs.f32"
    timeline = cmd.timeline_filter(length)
    measured = libav.decode_measured(
        listing, ours, concat_list=True, pre_filter=timeline, sample_rate=RATE, channels=1,
        what="recording r",
    )  # fmt: skip
    subprocess.run(
        analysis_command("ffmpeg", input_args(listing, concat_list=True), theirs,
                         pre_filter=timeline, sample_rate=RATE, channels=1),
        check=True, capture_output=True,
    )  # fmt: skip
    a, b = pcm_samples(ours), pcm_samples(theirs)
    assert len(a) == len(b) == round(length * RATE)
    assert np.abs(a - b).max() < 1e-4  # sample for sample, on the same timeline
    # The pause is silence where the timeline puts it; the second tone starts after it.
    first = 1.045  # the first tone's frames
    assert np.abs(a[int((first + 0.05) * RATE) : int((first + 1.45) * RATE)]).max() == 0.0
    assert np.abs(a[int((first + 1.6) * RATE) : int((first + 2.4) * RATE)]).max() > 0.05
    integrated, _peak = ebur128(theirs, "-f", "f32le", "-ar", str(RATE), "-ac", "1")
    assert abs(measured.integrated_lufs - integrated) <= 0.1
    assert abs(measured.sample_peak_dbfs - 20 * np.log10(np.abs(b).max())) < 0.01


@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
def test_every_format_carries_exactly_the_gain(tmp_path: Path, channels: int):
    source = make_tone(tmp_path / "t.mp3", 660, 3.0, sample_rate=RATE, channels=channels)
    pcm = tmp_path / "t.f32"
    before = libav.decode_measured(
        source, pcm, concat_list=False, pre_filter="", sample_rate=RATE, channels=channels,
        what="recording r",
    )  # fmt: skip
    outputs = [(fmt, tmp_path / cmd.output_name("o", fmt)) for fmt in cmd.AUDIO_ENCODINGS]
    libav.encode_pcm(
        pcm, outputs, sample_rate=RATE, channels=channels, gain_db=7.5, scan=None,
        what="recording r",
    )  # fmt: skip
    for fmt, path in outputs:
        # The ffmpeg command's encode of the same copy with the same gain, for comparison.
        command = tmp_path / ("cli-" + path.name)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(RATE), "-ac",
             str(channels), "-i", str(pcm), "-af", "volume=7.5dB:precision=float",
             *cmd.AUDIO_ENCODINGS[fmt].codec_args, str(command)],
            check=True,
        )  # fmt: skip
        integrated, _peak = ebur128(path)
        assert abs(integrated - ebur128(command)[0]) <= 0.1, fmt
        assert abs(duration(path) - duration(command)) < 0.03, fmt
        assert abs(dominant_frequency(decode(path), 1.5) - 660) < 5, fmt
    # The level itself moved by the gain (m4a: AAC keeps it within a few tenths of a LU).
    assert abs(ebur128(outputs[0][1])[0] - (before.integrated_lufs + 7.5)) <= 0.3
    found = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels,"
         "bit_rate", "-of", "csv=p=0", str(outputs[0][1])],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    codec, rate, layout, bits = found.split(",")
    assert (codec, int(rate), int(layout)) == ("aac", RATE, channels)
    assert 100_000 < int(bits) <= 140_000  # 128 kbit/s


def test_the_true_peak_is_what_ebur128_prints(tmp_path: Path):
    """A tone at a quarter of the rate sampled 45 degrees off its crests: its samples stay
    3 dB under the peak between them, which 4x oversampling finds."""
    n = np.arange(RATE * 2)
    tone = (0.5 * np.sin(np.pi / 2 * n + np.pi / 4)).astype("<f4")
    pcm = tmp_path / "tp.f32"
    tone.tofile(pcm)
    ours = libav.true_peak_of(pcm, sample_rate=RATE, channels=1, what="recording r")
    _integrated, theirs = ebur128(pcm, "-f", "f32le", "-ar", str(RATE), "-ac", "1")
    sample_peak = 20 * np.log10(np.abs(tone).max())
    assert ours - sample_peak > 2.0
    assert abs(ours - theirs) <= 0.1


def test_a_file_that_is_not_audio_is_an_error_naming_the_work(tmp_path: Path):
    bogus = tmp_path / "bogus.mp3"
    bogus.write_bytes(b"not audio" * 200)
    with pytest.raises(MediaError, match="measuring the loudness of recording r7"):
        libav.decode_measured(
            bogus, tmp_path / "b.f32", concat_list=False, pre_filter="", sample_rate=RATE,
            channels=1, what="measuring the loudness of recording r7",
        )  # fmt: skip


def test_a_damaged_frame_is_skipped_and_the_timeline_keeps_its_length(tmp_path: Path):
    """Bytes overwritten in the middle of an mp3: the frames around them still decode, the
    hole is silence, and the track still lasts the timeline's length."""
    source = make_tone(tmp_path / "t.mp3", 440, 4.0, sample_rate=RATE)
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 600] = bytes(600)
    source.write_bytes(bytes(data))
    pcm = tmp_path / "t.f32"
    libav.decode_measured(
        source, pcm, concat_list=False, pre_filter=cmd.timeline_filter(4.0), sample_rate=RATE,
        channels=1, what="recording r",
    )  # fmt: skip
    samples = pcm_samples(pcm)
    assert len(samples) == 4 * RATE
    assert np.abs(samples[:RATE]).max() > 0.05 and np.abs(samples[-RATE:]).max() > 0.05


def test_a_file_without_audio_is_an_error_naming_the_work(tmp_path: Path):
    video = tmp_path / "v.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64",
         "-an", str(video)],
        check=True,
    )  # fmt: skip
    with pytest.raises(MediaError, match="measuring the loudness of recording r8: no audio"):
        libav.decode_measured(
            video, tmp_path / "v.f32", concat_list=False, pre_filter="", sample_rate=RATE,
            channels=1, what="measuring the loudness of recording r8",
        )  # fmt: skip
