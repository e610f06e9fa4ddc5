import json

import pytest

from storage.domain import CssStreamKey
from webhook.callbacks import InvalidCallbackError, parse_callback_ext, parse_css

SAMPLE = {
    "event_type": 100,
    "appid": 1253000000,
    "app": "push.example.com",
    "appname": "live",
    "stream_id": "room_42",
    "channel_id": "room_42",
    "file_id": "5285890781763144364",
    "record_file_id": "5285890781763144364",
    "file_format": "mp4",
    "task_id": "1",
    "start_time": 1700000000,
    "end_time": 1700001800,
    "start_time_usec": 0,
    "end_time_usec": 0,
    "duration": 1800,
    "file_size": 123456,
    "stream_param": "a=1&b=2",
    "video_url": "https://1253000000.vod2.myqcloud.com/x/f0.mp4",
    "media_start_time": 0,
    "record_bps": 0,
    "callback_ext": '{"video_codec":"h264","resolution":"1280x720"}',
    "t": 1700002400,
    "sign": "0" * 32,
}


def test_vendor_sample_parses_into_a_file_event():
    event = parse_css(dict(SAMPLE))
    assert event.stream == CssStreamKey(1253000000, "push.example.com", "live", "room_42")
    assert (event.file_id, event.file_format) == ("5285890781763144364", "mp4")
    assert (event.start_time, event.end_time, event.duration) == (1700000000, 1700001800, 1800)
    assert event.callback_ext == {"video_codec": "h264", "resolution": "1280x720"}
    assert event.task_id == "1" and event.file_size == 123456


def test_record_file_id_and_channel_id_stand_in_for_missing_file_id_and_stream_id():
    body = {**SAMPLE, "file_id": None, "stream_id": ""}
    event = parse_css(body)
    assert event.file_id == SAMPLE["record_file_id"] and event.stream.stream_id == "room_42"


def test_duplicates_share_a_dedupe_key_whatever_t_says():
    a = parse_css(dict(SAMPLE))
    b = parse_css({**SAMPLE, "t": SAMPLE["t"] + 60})
    c = parse_css({**SAMPLE, "file_id": "other"})
    assert a.dedupe_key == b.dedupe_key != c.dedupe_key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"video_codec":"h264"}', {"video_codec": "h264"}),
        ("{not json", "{not json"),
        ("[1, 2]", "[1, 2]"),
        ("", None),
        (None, None),
        ({"already": "object"}, {"already": "object"}),
        (12, "12"),
    ],
    ids=["object", "broken", "array", "empty", "null", "plain-object", "number"],
)
def test_callback_ext_is_parsed_leniently(text, expected):
    assert parse_callback_ext(text) == expected


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"appid": "1253000000"}, "appid"),
        ({"stream_id": None, "channel_id": None}, "channel_id"),
        ({"file_id": None, "record_file_id": None}, "record_file_id"),
        ({"file_format": "avi"}, "file_format"),
        ({"start_time": 1.5}, "start_time"),
        ({"end_time": 1699999999}, "end_time"),
        ({"video_url": 7}, "video_url"),
        ({"video_url": "https://x/\n"}, "video_url"),
        ({"stream_id": "a" * 300}, "stream_id"),
        ({"duration": -1}, "duration"),
        ({"event_type": 200}, "event_type"),
    ],
    ids=[
        "appid-string", "no-stream", "no-file-id", "unknown-format", "float-time",
        "ends-before-start", "url-not-string", "url-control-char", "stream-too-long",
        "negative-duration", "not-a-file-event",
    ],
)  # fmt: skip
def test_bad_fields_are_named(change, field):
    with pytest.raises(InvalidCallbackError) as info:
        parse_css({**SAMPLE, **change})
    assert info.value.field == field


def test_recording_id_is_readable_and_deterministic():
    key = CssStreamKey(1253000000, "push.example.com", "live", "room 42/../x")
    rid = key.recording_id(1700000000)
    assert rid == key.recording_id(1700000000)
    assert rid.startswith("css-room_42_x-1700000000-") and len(rid) <= 80
    other = CssStreamKey(1253000000, "other.example.com", "live", "room 42/../x")
    assert other.recording_id(1700000000) != rid
    assert json.dumps(rid)  # plain text
