from pathlib import Path

import numpy as np
import pytest

from tasks.media.audio import PeakCollector, loud_excerpt
from tasks.media.finish import (
    FinishError,
    Gain,
    Loudness,
    analysis_command,
    choose_gain,
    encode_command,
    finish_command,
    needs_true_peak,
    parse_ebur128,
    parse_silences,
    parse_true_peak,
    peaks_document,
    speech_spans,
)

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
    with pytest.raises(FinishError):
        parse_true_peak(log)


def test_ebur128_summary_is_read_with_the_true_or_the_sample_peak():
    assert parse_ebur128(EBUR128_LOG).as_json() == {
        "integrated_lufs": -22.2, "true_peak_dbtp": -18.5, "sample_peak_dbfs": None,
        "range_lu": 0.0,
    }  # fmt: skip
    assert parse_ebur128(SAMPLE_PEAK_LOG).as_json() == {
        "integrated_lufs": -22.2, "true_peak_dbtp": None, "sample_peak_dbfs": -19.0,
        "range_lu": 0.0,
    }  # fmt: skip
    assert parse_true_peak(EBUR128_LOG) == -18.5


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


def test_the_encode_applies_one_linear_gain_and_feeds_encoders_and_analysis():
    args = encode_command(
        "ffmpeg", Path("t.pcm"), [("m4a", Path("o.m4a")), ("mp3", Path("o.mp3"))],
        sample_rate=44100, channels=2, gain_db=6.5, silence_db=-40.0,
    )  # fmt: skip
    assert args[args.index("-i") - 6 : args.index("-i") + 2] == [
        "-f", "f32le", "-ar", "44100", "-ac", "2", "-i", "t.pcm"
    ]  # fmt: skip
    graph = args[args.index("-filter_complex") + 1]
    assert graph.startswith("[0:a:0]volume=6.5000dB:precision=float,asplit=3[o0][o1][m];")
    assert "[m]silencedetect=n=-40.0dB:d=0.5,aresample=16000" in graph
    assert "ebur128" not in graph and "copy" not in args
    assert args[-7:] == ["-map", "[w]", "-f", "s16le", "-ac", "1", "pipe:1"]


def test_silences_pair_up_and_one_still_open_ends_the_track():
    log = (
        "[silencedetect @ 0x1] silence_start: 2.02503\n"
        "[silencedetect @ 0x1] silence_end: 5.02508 | silence_duration: 3.00005\n"
        "[silencedetect @ 0x1] silence_start: 9.5\n"
    )
    assert parse_silences(log, 12.0) == [(2.02503, 5.02508), (9.5, 12.0)]


def test_a_leading_silence_reported_below_zero_starts_at_zero():
    log = "silence_start: -0.0213\nsilence_end: 1.5 | silence_duration: 1.52\n"
    assert parse_silences(log, 3.0) == [(0.0, 1.5)]


def test_speech_spans_are_what_lies_between_silences_and_long_enough():
    silences = [(0.0, 1.0), (3.0, 6.0), (6.2, 8.0)]  # speech 1-3, 0.2 s blip at 6.0, 8-10
    assert speech_spans(silences, 10.0) == [[1.0, 3.0], [8.0, 10.0]]
    assert speech_spans([], 4.2) == [[0.0, 4.2]]
    assert speech_spans([(0.0, 4.2)], 4.2) == []


def test_with_loudness_off_the_own_format_is_copied_and_ebur128_measures():
    args = finish_command(
        "ffmpeg", ["-i", "in.mp3"], [("m4a", Path("o.m4a")), ("mp3", Path("o.mp3"))],
        silence_db=-40.0, copy_format="mp3",
    )  # fmt: skip
    graph = args[args.index("-filter_complex") + 1]
    assert graph.startswith("[0:a:0]anull,asplit=2[o0][m];")
    assert "ebur128=framelog=verbose:peak=true" in graph
    assert args[args.index("o.mp3") - 2 : args.index("o.mp3")] == ["-c:a", "copy"]


def test_peaks_are_min_and_max_per_pixel_across_block_boundaries():
    samples = np.array([0, 5, -3, 2, 100, -100, 7, 1, 9], dtype="<i2")
    collector = PeakCollector(samples_per_pixel=4)
    raw = samples.tobytes()
    for start in range(0, len(raw), 3):  # blocks that split samples and pixels
        collector.feed(raw[start : start + 3])
    assert collector.data() == [-3, 5, -100, 100, 9, 9]


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
