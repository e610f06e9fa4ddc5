"""Property-based fuzzing of the verifiers and parsers: whatever the bytes, the answer is a
typed value or the module's own error, never another exception.

Runs briefly by default; `RECPIPE_FUZZ_EXAMPLES=20000 pytest tests/unit/test_fuzz.py` runs
it longer on demand.
"""

import json
import os
import posixpath

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.domain import CssFileEvent, GmeEvent, UnsafeKeyError, safe_key
from webhook.callbacks import InvalidCallbackError, parse_callback_ext, parse_css, parse_gme
from webhook.verify import InvalidSignatureError, verify_css, verify_gme

EXAMPLES = int(os.environ.get("RECPIPE_FUZZ_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)

GME_FIELDS = ["BizID", "RoomID", "UserID", "TaskID", "RecordMode", "Timestamp", "EventType"]
gme_like = st.fixed_dictionaries(
    {},
    optional={
        **{name: json_values for name in GME_FIELDS},
        "Detail": st.fixed_dictionaries(
            {}, optional={"SeqNo": json_values, "FileName": st.text(max_size=80) | json_values}
        )
        | json_values,
    },
)


def _parse_gme_or_error(raw: bytes) -> None:
    try:
        event = parse_gme(raw)
    except InvalidCallbackError as exc:
        assert exc.field
        return
    assert isinstance(event, GmeEvent)
    assert event.key.task_id.isdigit() and int(event.key.task_id) > 0
    safe_key(event.file_name)


@fuzz
@given(st.binary(max_size=512))
def test_parse_gme_on_arbitrary_bytes(raw):
    _parse_gme_or_error(raw)


@fuzz
@given(gme_like)
def test_parse_gme_on_callback_shaped_json(obj):
    _parse_gme_or_error(json.dumps(obj).encode())


@fuzz
@given(st.binary(max_size=256), st.one_of(st.none(), st.text(max_size=60)))
def test_verify_gme_on_arbitrary_signatures(body, signature):
    try:
        matched = verify_gme(body, signature, {1400000000: b"k"})
    except InvalidSignatureError:
        return
    assert matched == {1400000000}


@fuzz
@given(json_values, json_values)
def test_verify_css_on_arbitrary_fields(sign, t):
    try:
        verify_css(sign, t, "key", now=1_700_000_000)
    except InvalidSignatureError:
        return
    raise AssertionError("a random sign/t pair verified")


@fuzz
@given(st.text(max_size=200))
def test_safe_keys_never_escape_their_root(key):
    try:
        checked = safe_key(key)
    except UnsafeKeyError:
        return
    joined = posixpath.normpath(posixpath.join("/store", checked))
    assert joined.startswith("/store/") and "\\" not in checked and "\x00" not in checked


CSS_FIELDS = [
    "event_type", "appid", "app", "appname", "stream_id", "channel_id", "file_id",
    "record_file_id", "file_format", "task_id", "start_time", "end_time", "duration",
    "file_size", "stream_param", "video_url", "callback_ext", "t", "sign",
]  # fmt: skip
css_like = st.fixed_dictionaries({}, optional={name: json_values for name in CSS_FIELDS})


@fuzz
@given(css_like)
def test_parse_css_on_callback_shaped_objects(obj):
    try:
        event = parse_css(obj)
    except InvalidCallbackError as exc:
        assert exc.field
        return
    assert isinstance(event, CssFileEvent)
    assert event.video_url.startswith(("http://", "https://"))


@fuzz
@given(st.text(max_size=200) | json_values)
def test_callback_ext_is_kept_whatever_it_holds(value):
    parsed = parse_callback_ext(value)
    assert parsed is None or isinstance(parsed, dict | str)
