import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.domain import CssFileView, RecordingView
from tasks.media.ffmpeg import ProbeError
from tasks.media.video import (
    MediaProbe,
    join_command,
    output_command,
    parse_media_probe,
    plan_formats,
)
from tasks.settling.css import decide_css

H264 = MediaProbe(4.0, "mov,mp4", "h264", 320, 240, "aac", 44100, 1)
FLV1 = MediaProbe(4.0, "flv", "flv1", 320, 240, "mp3", 44100, 1)
AUDIO = MediaProbe(4.0, "aac", audio_codec="aac", sample_rate=44100, channels=2)


def test_probe_reads_video_and_audio_streams():
    output = json.dumps(
        {
            "streams": [
                {"codec_type": "video", "codec_name": "h264", "width": 320, "height": 240},
                {"codec_type": "audio", "codec_name": "aac", "sample_rate": "44100",
                 "channels": 1},
            ],
            "format": {"duration": "4.02", "format_name": "mov,mp4,m4a"},
        }
    )  # fmt: skip
    assert parse_media_probe(output) == MediaProbe(
        4.02, "mov,mp4,m4a", "h264", 320, 240, "aac", 44100, 1
    )


@pytest.mark.parametrize(
    "output",
    ["", "{}", '{"streams":[{"codec_type":"data"}],"format":{"duration":"1"}}',
     '{"streams":[{"codec_type":"audio","codec_name":"aac"}],"format":{}}'],
    ids=["nothing", "empty", "no-media-stream", "no-duration"],
)  # fmt: skip
def test_probe_refuses_what_is_not_media(output):
    with pytest.raises(ProbeError):
        parse_media_probe(output)


def _args_after(args: list[str], path: str) -> list[str]:
    return args[: args.index(path)]


def test_h264_aac_is_copied_into_a_faststart_mp4_and_m4a():
    args = output_command("ffmpeg", Path("in.mkv"), H264, [("mp4", Path("o.mp4")),
                                                           ("m4a", Path("o.m4a"))])  # fmt: skip
    mp4 = _args_after(args, "o.mp4")
    assert mp4[-6:] == ["-c:a", "copy", "-movflags", "+faststart", "-f", "mp4"]
    assert mp4[mp4.index("-c:v") : mp4.index("-c:v") + 2] == ["-c:v", "copy"]
    assert "libx264" not in args and "+faststart" in mp4
    m4a = args[len(mp4) + 1 :]
    assert m4a[:5] == ["-map", "0:a:0", "-vn", "-c:a", "copy"]


def test_other_codecs_are_transcoded_to_h264_and_aac():
    args = output_command("ffmpeg", Path("in.flv"), FLV1, [("mp4", Path("o.mp4"))])
    assert "libx264" in args and args[args.index("-c:a") + 1] == "aac"


def test_an_audio_only_recording_gets_no_mp4():
    assert plan_formats(["mp4", "m4a"], AUDIO) == ["m4a"]
    assert plan_formats(["mp4"], AUDIO) == ["m4a"]
    assert plan_formats(["mp4", "m4a"], H264) == ["mp4", "m4a"]


def test_agreeing_files_join_by_copy_and_others_through_the_concat_filter():
    inputs = [Path("a.mp4"), Path("b.mp4")]
    copy = join_command("ffmpeg", Path("l.txt"), inputs, [H264, H264], Path("j.mkv"))
    assert "concat" in copy and copy[copy.index("-c") + 1] == "copy"
    bigger = MediaProbe(4.0, "mov,mp4", "h264", 640, 480, "aac", 48000, 2)
    mixed = join_command("ffmpeg", Path("l.txt"), inputs, [H264, bigger], Path("j.mkv"))
    graph = mixed[mixed.index("-filter_complex") + 1]
    assert "scale=320:240" in graph and graph.endswith("concat=n=2:v=1:a=1[v][a]")
    with pytest.raises(ProbeError):
        join_command("ffmpeg", Path("l.txt"), inputs, [H264, AUDIO], Path("j.mkv"))


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def css_recording(files: int) -> RecordingView:
    return RecordingView(
        id="css-x", source="css", state="collecting", revision=0, first_event_at=T0,
        last_event_at=T0, settle_due_at=None, details={}, identity={},
        files=tuple(CssFileView(f"f{i}", "mp4", i * 10, i * 10 + 10, 10, None, "u")
                    for i in range(files)),
    )  # fmt: skip


def test_css_recording_finalizes_after_the_quiet_window_with_every_file():
    rec = css_recording(2)
    assert decide_css(rec, T0 + timedelta(seconds=5), settle_seconds=10).action == "wait"
    done = decide_css(rec, T0 + timedelta(seconds=10), settle_seconds=10)
    assert (done.action, done.included) == ("finalize", (0, 1))
    assert decide_css(css_recording(0), T0 + timedelta(hours=1), settle_seconds=10).action == (
        "fail"
    )
