from pathlib import Path

import numpy as np
import pytest

from tasks.media.audio import loud_excerpt
from tasks.media.finish import (
    FinishError,
    Gain,
    Loudness,
    TrackScan,
    analysis_command,
    choose_gain,
    finish_command,
    needs_true_peak,
    parse_ebur128,
    peaks_document,
    speech_spans,
)
from tasks.media.libav import pcm_slices

EBUR128_LOG = """[Parsed_ebur128_1 @ 0x1] Summary:

  Integrated loudness:
    I:         -22.2 LUFS
    Threshold: -32.2 LUFS

  Loudness range:
    LRA:         0.0 LU

  True peak:
    Peak:      -18.5 dBFS
"""

SAMPLE_PEAK_LOG = EBUR128_LOG.replace("True peak:", "Sample peak:").replace("-18.5", "-19.0")
SILENCE_LOG = """[Parsed_ebur128_0 @ 0x1] Summary:
  Integrated loudness:
    I:         -70.0 LUFS
  Loudness range:
    LRA:         0.0 LU
  Sample peak:
    Peak:       -inf dBFS
"""


@pytest.mark.parametrize("log", ["", "no summary here", "Summary: nothing"])
def test_a_log_without_a_loudness_summary_is_an_error(log):
    with pytest.raises(FinishError):
        parse_ebur128(log)


def test_ebur128_summary_is_read_with_the_true_or_the_sample_peak():
    assert parse_ebur128(EBUR128_LOG).as_json() == {
        "integrated_lufs": -22.2, "true_peak_dbtp": -18.5, "sample_peak_dbfs": None,
        "range_lu": 0.0,
    }  # fmt: skip
    assert parse_ebur128(SAMPLE_PEAK_LOG).as_json() == {
        "integrated_lufs": -22.2, "true_peak_dbtp": None, "sample_peak_dbfs": -19.0,
        "range_lu": 0.0,
    }  # fmt: skip


def test_silence_has_no_level_and_says_so():
    silent = parse_ebur128(SILENCE_LOG)
    assert not silent.audible
    assert silent.as_json() == {
        "integrated_lufs": None, "true_peak_dbtp": None, "sample_peak_dbfs": None,
        "range_lu": None, "silent": True,
    }  # fmt: skip
    assert choose_gain(silent, -16.0) == Gain(0.0)
    assert not needs_true_peak(silent, -16.0)


def test_the_gain_reaches_the_target_unless_the_peak_would_pass_the_ceiling():
    quiet = Loudness(-30.0, float("nan"), 3.0, -20.0)  # +14 dB puts the peak at -6 dBFS
    assert not needs_true_peak(quiet, -16.0)
    assert choose_gain(quiet, -16.0) == Gain(14.0)
    near = Loudness(-30.0, float("nan"), 3.0, -14.0)  # +14 dB: -0 dBFS, too close
    assert needs_true_peak(near, -16.0)
    measured = Loudness(-30.0, -13.5, 3.0, -14.0)
    assert choose_gain(measured, -16.0) == Gain(-2.0 + 13.5, "true_peak")
    loud = Loudness(-10.0, float("nan"), 3.0, -1.0)  # -6 dB: far under the ceiling
    assert choose_gain(loud, -16.0) == Gain(-6.0)


def test_after_a_gain_every_level_moves_by_it():
    after = Loudness(-30.0, -12.0, 3.0, -13.0).shifted(10.0)
    assert after == Loudness(-20.0, -2.0, 3.0, -3.0)


def test_the_analysis_decode_measures_and_keeps_a_float_copy():
    args = analysis_command(
        "ffmpeg", ["-f", "concat", "-safe", "0", "-i", "l.txt"], Path("t.pcm"),
        pre_filter="aresample=async=1", sample_rate=44100, channels=1,
    )  # fmt: skip
    graph = args[args.index("-filter_complex") + 1]
    assert graph == (
        "[0:a:0]aresample=async=1,ebur128=framelog=verbose:peak=sample,aresample=44100,"
        "aformat=sample_fmts=flt:channel_layouts=mono[pcm]"
    )
    assert args[-5:] == ["-map", "[pcm]", "-f", "f32le", "t.pcm"]
    assert "loudnorm" not in " ".join(args) and "192000" not in " ".join(args)


def test_speech_spans_are_what_lies_between_silences_and_long_enough():
    silences = [(0.0, 1.0), (3.0, 6.0), (6.2, 8.0)]  # speech 1-3, 0.2 s blip at 6.0, 8-10
    assert speech_spans(silences, 10.0) == [[1.0, 3.0], [8.0, 10.0]]
    assert speech_spans([], 4.2) == [[0.0, 4.2]]
    assert speech_spans([(0.0, 4.2)], 4.2) == []


def test_with_loudness_off_the_own_format_is_copied_and_ebur128_measures():
    args = finish_command(
        "ffmpeg", ["-i", "in.mp3"], [("m4a", Path("o.m4a")), ("mp3", Path("o.mp3"))],
        sample_rate=44100, channels=1, copy_format="mp3",
    )  # fmt: skip
    graph = args[args.index("-filter_complex") + 1]
    assert graph.startswith("[0:a:0]anull,asplit=2[o0][m];")
    assert "[m]ebur128=framelog=verbose:peak=true,aformat=sample_fmts=flt:" in graph
    assert "sample_rates=44100:channel_layouts=mono[w]" in graph
    assert args[-5:] == ["-map", "[w]", "-f", "f32le", "pipe:1"]
    assert args[args.index("o.mp3") - 2 : args.index("o.mp3")] == ["-c:a", "copy"]


def _scanned(audio: np.ndarray, *, rate: int, gain_db: float = 0.0, block: int) -> TrackScan:
    """`audio` (frames x channels) scanned as bytes in blocks of `block` bytes, which split
    frames, pixels and silences."""
    scan = TrackScan(sample_rate=rate, channels=audio.shape[1], gain_db=gain_db, silence_db=-40.0)
    raw = audio.astype("<f4").tobytes()
    for start in range(0, len(raw), block):
        scan.feed(raw[start : start + block])
    return scan


def test_peaks_are_min_and_max_per_pixel_across_block_boundaries():
    # 200 frames a second: 4 frames a pixel; values in 1/32768 steps.
    mono = np.array([0, 5, -3, 2, 100, -100, 7, 1, 9], dtype=np.float32) / 32768
    for block in (3, 4, 7, 1000):
        assert _scanned(mono[:, None], rate=200, block=block).peaks() == [-3, 5, -100, 100, 9, 9]


def test_peaks_are_of_the_gained_mean_of_the_channels_and_clip_at_16_bits():
    stereo = np.array([[0.1, 0.3], [-0.2, 0.0], [0.9, 0.9], [-0.9, -0.9]], dtype=np.float32)
    scan = _scanned(stereo, rate=100, gain_db=20 * np.log10(2), block=8)  # 2 frames a pixel
    assert scan.peaks() == [-6554, 13107, -32768, 32767]


def test_pixels_follow_the_clock_when_the_rate_is_not_a_multiple_of_50():
    rate = 11025  # 220.5 frames a pixel: pixels of 220 and 221 frames
    ramp = (np.arange(rate, dtype=np.float32) / 32768)[:, None]
    peaks = _scanned(ramp, rate=rate, block=4 * 1001).peaks()
    assert len(peaks) == 100
    assert peaks[:4] == [0, 219, 220, 440] and peaks[-2:] == [rate - 221, rate - 1]


def _speech_then_pauses(rate: int) -> np.ndarray:
    """0-1 s speech, 1-1.6 s pause (a silence), 1.6-2 s speech, 2-2.4 s pause (too short:
    bridged), 2.4-3 s speech, 3-4 s pause to the end; at -30 dBFS with pauses at -50 dBFS."""
    t = np.arange(4 * rate) / rate
    level = np.where(((t >= 1) & (t < 1.6)) | ((t >= 2) & (t < 2.4)) | (t >= 3), 0.00316, 0.0316)
    sign = np.where(np.arange(len(t)) % 2, 1.0, -1.0)
    return (level * sign).astype(np.float32)[:, None]


@pytest.mark.parametrize("block", [4 * 7, 4 * 8000, 4 * 100_000])
def test_silences_are_silencedetects_across_block_boundaries(block):
    scan = _scanned(_speech_then_pauses(8000), rate=8000, block=block)
    assert scan.silences() == [(1.0, 1.6), (3.0, 4.0)]
    assert speech_spans(scan.silences(), 4.0) == [[0.0, 1.0], [1.6, 3.0]]


def test_silence_is_judged_after_the_gain():
    audio = _speech_then_pauses(8000)
    # +20 dB lifts the pauses to -30 dBFS: no silence left.
    assert _scanned(audio, rate=8000, gain_db=20.0, block=4096).silences() == []
    # -20 dB drops the speech to -50 dBFS: all silence.
    assert _scanned(audio, rate=8000, gain_db=-20.0, block=4096).silences() == [(0.0, 4.0)]


def test_a_silence_needs_every_channel_quiet_and_a_short_one_at_the_end_is_none():
    stereo = np.zeros((2000, 2), dtype=np.float32)  # 1000 frames a second
    stereo[:1000, 1] = 0.5  # the right channel talks for 1 s
    stereo[1700:1800] = 0.5  # a blip leaves 0.2 s of silence at the end
    scan = _scanned(stereo, rate=1000, block=4 * 2 * 333)
    assert scan.silences() == [(1.0, 1.7)]


def test_the_pcm_copy_is_scanned_in_slices_to_the_same_result(tmp_path: Path):
    audio = np.repeat(_speech_then_pauses(8000), 2, axis=1)
    pcm = tmp_path / "t.pcm"
    pcm.write_bytes(audio.astype("<f4").tobytes())
    whole = _scanned(audio, rate=8000, gain_db=3.0, block=len(pcm.read_bytes()))
    for seconds in (0.013, 0.5, 10):
        sliced = TrackScan(sample_rate=8000, channels=2, gain_db=3.0, silence_db=-40.0)
        for frames in pcm_slices(pcm, 8000, 2, seconds):
            sliced.feed_frames(frames)
        assert sliced.frames == len(audio)
        assert sliced.silences() == whole.silences() == [(1.0, 1.6), (3.0, 4.0)]
        assert sliced.peaks() == whole.peaks() and len(whole.peaks()) == 2 * 200


def test_peaks_document_is_audiowaveform_version_2():
    doc = peaks_document([-3, 5, -100, 100])
    assert doc == {
        "version": 2, "channels": 1, "sample_rate": 16000, "samples_per_pixel": 320,
        "bits": 16, "length": 2, "data": [-3, 5, -100, 100],
    }  # fmt: skip


def test_the_loud_excerpt_holds_only_the_blocks_near_the_peak(tmp_path: Path):
    """A quiet stereo track with one loud burst: the excerpt is that burst's blocks with
    faded context, silence around, not the whole track."""
    frames = 48000 * 4
    audio = np.full((frames, 2), 0.01, dtype="<f4")
    audio[100_000:100_010] = 0.9
    pcm = tmp_path / "t.pcm"
    pcm.write_bytes(audio.tobytes())
    out = tmp_path / "loud.pcm"
    with out.open("wb") as f:
        written = loud_excerpt(pcm, 2, 0.5, f)
    excerpt = np.frombuffer(out.read_bytes(), dtype="<f4").reshape(-1, 2)
    assert len(excerpt) == written < 4000
    assert float(excerpt.max()) == pytest.approx(0.9)
    assert excerpt[0].tolist() == [0.0, 0.0] and excerpt[-1].tolist() == [0.0, 0.0]
    with out.open("wb") as f:
        assert loud_excerpt(pcm, 2, 0.95, f) == 64  # nothing that loud: silence only
