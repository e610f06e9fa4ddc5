import json

import pytest

from webhook.callbacks import InvalidCallbackError, check_gme_key_scope, parse_gme

SAMPLE = {
    "BizID": 1400000000,
    "RoomID": "100",
    "UserID": "999",
    "TaskID": 446946705284000000,
    "RecordMode": 1,
    "Timestamp": 1675930605,
    "EventType": 3,
    "Detail": {
        "SeqNo": 0,
        "FileName": "1400000000_100_999/2023-02-09-16-16-45_446946705284000000_audio.mp3",
    },
}


def body(**changes) -> bytes:
    obj = json.loads(json.dumps(SAMPLE))
    for path, value in changes.items():
        target = obj
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[p]
        if value is KeyError:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(obj).encode()


def test_vendor_sample_parses_with_exact_task_id():
    event = parse_gme(json.dumps(SAMPLE).encode())
    assert event.key.task_id == "446946705284000000"  # > 2**53: never through a float
    assert event.key.recording_id.startswith("gme-446946705284000000-")
    assert (event.event_type, event.seq_no) == (3, 0)


def test_recording_identity_separates_users_of_one_task():
    a = parse_gme(body(UserID="1")).key.recording_id
    b = parse_gme(body(UserID="2")).key.recording_id
    assert a != b


def test_retries_share_a_dedupe_key_even_when_restamped():
    assert parse_gme(body()).dedupe_key == parse_gme(body(Timestamp=1675930999)).dedupe_key
    assert parse_gme(body()).dedupe_key != parse_gme(body(EventType=2)).dedupe_key


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "body"),
        (b"[1,2]", "body"),
        (b"\xff\xfe", "body"),
        (b"[" * 100000 + b"]" * 100000, "body"),
        (b'{"BizID": NaN}', "body"),
        (body(BizID=KeyError), "BizID"),
        (body(BizID="1400000000"), "BizID"),
        (body(BizID=True), "BizID"),
        (body(TaskID=446946705284000000.0), "TaskID"),
        (body(TaskID=-1), "TaskID"),
        (body(TaskID=10**30), "TaskID"),
        (body(TaskID=None), "TaskID"),
        (body(RoomID=100), "RoomID"),
        (body(RoomID=""), "RoomID"),
        (body(UserID="a\x00b"), "UserID"),
        (body(RecordMode=2), "RecordMode"),
        (body(EventType=4), "EventType"),
        (body(Timestamp="now"), "Timestamp"),
        (body(Detail=KeyError), "Detail"),
        (body(Detail=[1]), "Detail"),
        (body(Detail__SeqNo=-1), "Detail.SeqNo"),
        (body(Detail__SeqNo=10**9), "Detail.SeqNo"),
        (body(Detail__FileName="/etc/passwd"), "Detail.FileName"),
        (body(Detail__FileName="a/../../etc/passwd"), "Detail.FileName"),
        (body(Detail__FileName="a\\b.mp3"), "Detail.FileName"),
        (body(Detail__FileName="a/%2e%2e/b.mp3"), "Detail.FileName"),
        (body(Detail__FileName="x" * 2000), "Detail.FileName"),
    ],
)
def test_invalid_bodies_name_the_field(raw, field):
    with pytest.raises(InvalidCallbackError) as info:
        parse_gme(raw)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("file_name", "allowed"),
    [
        ("1400000000_100_999/2023-02-09_446946705284000000_audio.mp3", True),
        ("1400000000_100/2023-02-09_446946705284000000_audio.mp3", True),
        ("1400000001_100/x_audio.mp3", False),
        ("140000000_100/x_audio.mp3", False),
        ("backups/db.dump", False),
        ("1400000000_100_audio.mp3", False),
    ],
)
def test_segment_keys_must_lie_under_the_applications_folder(file_name, allowed):
    event = parse_gme(body(Detail__FileName=file_name))
    if allowed:
        check_gme_key_scope(event)
    else:
        with pytest.raises(InvalidCallbackError) as info:
            check_gme_key_scope(event)
        assert info.value.field == "Detail.FileName"
