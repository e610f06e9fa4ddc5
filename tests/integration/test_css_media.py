"""The CSS media steps with real ffmpeg: joining files that do not agree, and transcoding
codecs an mp4 cannot carry by copy."""

from pathlib import Path

import pytest

from storage.domain import CssFileView
from tasks.css.steps import CssSource, join, make_outputs, probe_media, require_audio
from tasks.media.tools import MediaError, Tools
from tests.support.media import decode, dominant_frequency, duration, make_video, streams


def source(seq: int, path: Path) -> CssSource:
    probe = probe_media(Tools(), path, path.name)
    view = CssFileView(f"f{seq}", path.suffix[1:], seq * 10, seq * 10 + 10, 10, None, "u")
    return CssSource(seq, view, path, path.stat().st_size, "", probe)


def test_flv1_and_mp3_are_transcoded_to_h264_aac_mp4_and_m4a(tmp_path: Path):
    flv = make_video(tmp_path / "old.flv", 440, 2.0, video=("-c:v", "flv1"),
                     audio=("-c:a", "libmp3lame", "-ar", "44100"))  # fmt: skip
    [src] = [source(0, flv)]
    outputs = make_outputs(flv, src.probe, ["mp4", "m4a"], "rec", tmp_path, Tools(), label="rec")
    by_format = {o.format: o for o in outputs}
    assert streams(by_format["mp4"].path) == ["h264", "aac"]
    assert streams(by_format["m4a"].path) == ["aac"]
    assert duration(by_format["mp4"].path) == pytest.approx(2.0, abs=0.2)


def test_files_of_different_sizes_join_in_order_through_the_concat_filter(tmp_path: Path):
    a = make_video(tmp_path / "a.mp4", 440, 1.5)
    b = make_video(
        tmp_path / "b.mp4", 880, 1.5,
        video=("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-s", "320x240"),
    )  # fmt: skip
    sources = [source(1, b), source(0, a)]
    joined, probe = join(sources, tmp_path, Tools(), label="rec")
    assert (probe.width, probe.height, probe.video_codec) == (160, 120, "h264")
    assert probe.duration_s == pytest.approx(3.0, abs=0.2)
    samples = decode(joined)
    assert abs(dominant_frequency(samples, 0.75) - 440) < 15
    assert abs(dominant_frequency(samples, 2.25) - 880) < 15


def test_a_video_without_audio_fails_its_recording_when_the_m4a_output_needs_audio(
    tmp_path: Path,
):
    silent = source(1, make_video(tmp_path / "silent.mp4", 440, 1.0, audio=("-an",)))
    sound = source(0, make_video(tmp_path / "sound.mp4", 440, 1.0))
    require_audio([sound, silent], ["mp4"], label="rec")  # video-only outputs: fine
    with pytest.raises(MediaError, match=r"file f1 \(mp4\) of recording rec has no audio"):
        require_audio([sound, silent], ["mp4", "m4a"], label="rec")
