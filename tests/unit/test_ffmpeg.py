import json
from pathlib import Path

import pytest

from tasks.media.ffmpeg import (
    AudioProbe,
    ProbeError,
    concat_command,
    concat_list,
    parse_probe,
    plan_concat,
    transcode_command,
)

MP3 = AudioProbe("mp3", 44100, 1, 10.0, "mp3")


def test_concat_list_escapes_quotes():
    text = concat_list([Path("/tmp/it's.mp3")])
    assert "file '/tmp/it'\\''s.mp3'" in text


def test_matching_segments_are_read_through_a_concat_list_by_the_transcode():
    plan = plan_concat([MP3, MP3])
    assert plan.copy and plan.extension == "mp3"
    args = transcode_command(
        "ffmpeg", Path("l.txt"), "mp3", [("m4a", Path("o.m4a"))], concat_list=True
    )
    assert args[args.index("-i") - 4 : args.index("-i") + 2] == [
        "-f", "concat", "-safe", "0", "-i", "l.txt",
    ]  # fmt: skip


def test_mixed_segments_are_resampled_to_the_richest_layout():
    plan = plan_concat([MP3, AudioProbe("mp3", 48000, 2, 3.0, "mp3")])
    assert not plan.copy and (plan.sample_rate, plan.channels, plan.extension) == (48000, 2, "flac")
    args = concat_command("ffmpeg", [Path("a"), Path("b")], plan, Path("o.flac"))
    graph = args[args.index("-filter_complex") + 1]
    assert "aresample=48000" in graph and graph.endswith("concat=n=2:v=0:a=1[out]")


def test_transcode_decodes_once_for_every_format_and_copies_its_own():
    args = transcode_command(
        "ffmpeg", Path("j.mp3"), "mp3", [("m4a", Path("o.m4a")), ("mp3", Path("o.mp3"))]
    )
    assert args.count("-i") == 1
    assert args[args.index("o.m4a") - 5 : args.index("o.m4a")][-4:] == [
        "-b:a",
        "128k",
        "-movflags",
        "+faststart",
    ]
    assert args[args.index("o.mp3") - 2 : args.index("o.mp3")] == ["-c:a", "copy"]


def test_parse_probe_reads_audio_stream():
    out = json.dumps(
        {
            "streams": [
                {"codec_type": "audio", "codec_name": "mp3", "sample_rate": "44100", "channels": 1}
            ],
            "format": {"duration": "2.037551", "format_name": "mp3"},
        }
    )
    assert parse_probe(out) == AudioProbe("mp3", 44100, 1, 2.037551, "mp3")


@pytest.mark.parametrize(
    "out",
    [
        "",
        "{}",
        json.dumps({"streams": [{"codec_type": "video"}], "format": {"duration": "1"}}),
        json.dumps(
            {
                "streams": [{"codec_type": "audio", "sample_rate": "8000", "channels": 1}],
                "format": {},
            }
        ),
    ],
    ids=["empty", "nothing", "video-only", "no-duration"],
)
def test_parse_probe_rejects_non_audio(out):
    with pytest.raises(ProbeError):
        parse_probe(out)


def test_parse_probe_refuses_an_mp3_holding_less_than_its_header_promises():
    def probe(packets: int) -> str:
        stream = {"codec_type": "audio", "codec_name": "mp3", "sample_rate": "44100",
                  "channels": 1, "nb_read_packets": str(packets)}  # fmt: skip
        return json.dumps({"streams": [stream], "format": {"duration": "10.03102"}})

    assert parse_probe(probe(384)).duration_s == 10.03102
    with pytest.raises(ProbeError, match=r"truncated: its header says 10\.03s, it holds 5\.02s"):
        parse_probe(probe(192))
