from pathlib import Path

import numpy as np
import pytest

from tasks.media.audio import PeakCollector
from tasks.media.finish import (
    FinishError,
    Loudness,
    finish_command,
    measure_command,
    parse_ebur128,
    parse_loudnorm,
    parse_silences,
    peaks_document,
    speech_spans,
)

LOUDNORM_LOG = """size=N/A time=00:00:06.52 bitrate=N/A speed=67.1x
[Parsed_loudnorm_1 @ 0x5567f2555740]
{
\t"input_i" : "-22.49",
\t"input_tp" : "-18.48",
\t"input_lra" : "2.90",
\t"input_thresh" : "-32.63",
\t"output_i" : "-16.10",
\t"output_tp" : "-9.16",
\t"output_lra" : "2.40",
\t"output_thresh" : "-26.2",
\t"normalization_type" : "linear",
\t"target_offset" : "0.1"
}
"""

EBUR128_LOG = """[Parsed_ebur128_1 @ 0x1] Summary:

  Integrated loudness:
    I:         -22.2 LUFS
    Threshold: -32.2 LUFS

  Loudness range:
    LRA:         0.0 LU

  True peak:
    Peak:      -18.5 dBFS
"""


def test_loudnorm_report_gives_input_and_output_measurements():
    assert parse_loudnorm(LOUDNORM_LOG) == Loudness(-22.49, -18.48, 2.90, -32.63)
    assert parse_loudnorm(LOUDNORM_LOG, "output").integrated_lufs == -16.10


def test_silence_measures_minus_infinity_and_is_not_audible():
    log = LOUDNORM_LOG.replace('"-22.49"', '"-inf"')
    assert not parse_loudnorm(log).audible and parse_loudnorm(LOUDNORM_LOG).audible


@pytest.mark.parametrize("log", ["", "no json here", "[Parsed_loudnorm_0 @ 1] {not json}"])
def test_a_log_without_a_loudness_report_is_an_error(log):
    with pytest.raises(FinishError):
        parse_loudnorm(log)
    with pytest.raises(FinishError):
        parse_ebur128(log)


def test_ebur128_summary_is_read():
    assert parse_ebur128(EBUR128_LOG).as_json() == {
        "integrated_lufs": -22.2, "true_peak_dbtp": -18.5, "range_lu": 0.0
    }  # fmt: skip


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


def test_measuring_pass_writes_nothing():
    args = measure_command("ffmpeg", ["-i", "in.flac"], "", -16.0)
    assert args[-3:] == ["-f", "null", "-"]
    assert "loudnorm=I=-16:TP=-1:LRA=11:print_format=json" in args


def test_finishing_pass_normalizes_linearly_and_feeds_the_encoders_and_the_analysis():
    measured = Loudness(-22.49, -18.48, 2.9, -32.63)
    args = finish_command(
        "ffmpeg", ["-f", "concat", "-safe", "0", "-i", "l.txt"],
        [("m4a", Path("o.m4a")), ("mp3", Path("o.mp3"))],
        pre_filter="aresample=async=1", sample_rate=44100, target_lufs=-16.0,
        measured=measured, silence_db=-40.0, copy_format="mp3",
    )  # fmt: skip
    graph = args[args.index("-filter_complex") + 1]
    assert graph.startswith(
        "[0:a:0]aresample=async=1,loudnorm=I=-16:TP=-1:LRA=11:measured_I=-22.49"
    )
    assert "linear=true" in graph
    assert ",aresample=44100,aformat=channel_layouts=stereo,asplit=3[o0][o1][m];" in graph
    assert "[m]silencedetect=n=-40.0dB:d=0.5,aresample=16000" in graph
    assert "ebur128" not in graph  # loudnorm reports the level after
    assert "copy" not in args  # the caller asks for no copy when it normalizes
    assert args[-7:] == ["-map", "[w]", "-f", "s16le", "-ac", "1", "pipe:1"]


def test_with_loudness_off_the_own_format_is_copied_and_ebur128_measures():
    args = finish_command(
        "ffmpeg", ["-i", "in.mp3"], [("m4a", Path("o.m4a")), ("mp3", Path("o.mp3"))],
        sample_rate=44100, target_lufs=None, measured=None, silence_db=-40.0,
        copy_format="mp3",
    )  # fmt: skip
    graph = args[args.index("-filter_complex") + 1]
    assert graph.startswith("[0:a:0]asplit=2[o0][m];") and "ebur128=peak=true" in graph
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
