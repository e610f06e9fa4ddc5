"""Parse and validate callback bodies into typed events. Pure: bytes in, event or error out."""

from __future__ import annotations

import json
from typing import Any

from storage.domain import (
    CSS_EVENT_RECORDING_FILE,
    CSS_FILE_FORMATS,
    CssFileEvent,
    CssStreamKey,
    GmeEvent,
    GmeRecordingKey,
    UnsafeKeyError,
    has_control_characters,
    safe_key,
)

MAX_SEQ_NO = 100_000
MAX_ID_LENGTH = 256
MAX_TASK_ID = 2**64 - 1
GME_EVENT_TYPES = (1, 2, 3)


class InvalidCallbackError(Exception):
    """The body is not a callback we understand; `field` names the culprit."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidCallbackError("body", "is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidCallbackError("body", "is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidCallbackError("body", "must be a JSON object")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _int(obj: dict[str, Any], field: str, *, lo: int, hi: int, path: str = "") -> int:
    name = path + field
    if field not in obj or obj[field] is None:
        raise InvalidCallbackError(name, "is required")
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidCallbackError(name, "must be an integer")
    if not lo <= value <= hi:
        raise InvalidCallbackError(name, f"must be between {lo} and {hi}")
    return value


def _str(
    obj: dict[str, Any], field: str, *, max_length: int = MAX_ID_LENGTH, path: str = ""
) -> str:
    name = path + field
    if field not in obj or obj[field] is None:
        raise InvalidCallbackError(name, "is required")
    value = obj[field]
    if not isinstance(value, str):
        raise InvalidCallbackError(name, "must be a string")
    if not value or len(value) > max_length:
        raise InvalidCallbackError(name, f"must be 1 to {max_length} characters")
    if has_control_characters(value):
        raise InvalidCallbackError(name, "must not contain control characters")
    return value


def parse_gme(body: bytes) -> GmeEvent:
    obj = parse_json_object(body)
    detail = obj.get("Detail")
    if detail is None:
        raise InvalidCallbackError("Detail", "is required")
    if not isinstance(detail, dict):
        raise InvalidCallbackError("Detail", "must be an object")
    event_type = _int(obj, "EventType", lo=0, hi=2**31)
    if event_type not in GME_EVENT_TYPES:
        raise InvalidCallbackError("EventType", "must be 1, 2 or 3")
    file_name = _str(detail, "FileName", max_length=1024, path="Detail.")
    try:
        safe_key(file_name)
    except UnsafeKeyError as exc:
        raise InvalidCallbackError("Detail.FileName", str(exc)) from None
    key = GmeRecordingKey(
        biz_id=_int(obj, "BizID", lo=1, hi=2**63 - 1),
        room_id=_str(obj, "RoomID"),
        user_id=_str(obj, "UserID"),
        task_id=str(_int(obj, "TaskID", lo=1, hi=MAX_TASK_ID)),
        record_mode=_int(obj, "RecordMode", lo=0, hi=1),
    )
    return GmeEvent(
        key=key,
        event_type=event_type,
        seq_no=_int(detail, "SeqNo", lo=0, hi=MAX_SEQ_NO, path="Detail."),
        file_name=file_name,
        timestamp=_int(obj, "Timestamp", lo=0, hi=2**40),
    )


MAX_URL_LENGTH = 4096
MAX_UNIX_SECONDS = 2**40


def _optional_str(
    obj: dict[str, Any], field: str, *, max_length: int = MAX_ID_LENGTH
) -> str | None:
    if obj.get(field) in (None, ""):
        return None
    return _str(obj, field, max_length=max_length)


def parse_callback_ext(value: object) -> dict[str, Any] | str | None:
    """`callback_ext` is a JSON object encoded as a string; a bad one is kept as text, since
    it only describes the file and is not worth a vendor retry storm."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        return json.dumps(value)[:MAX_URL_LENGTH]
    try:
        decoded = json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return value[:MAX_URL_LENGTH]
    return decoded if isinstance(decoded, dict) else value[:MAX_URL_LENGTH]


def parse_css(obj: dict[str, Any]) -> CssFileEvent:
    """An already verified CSS body (its `t`/`sign` are checked on the parsed object, since
    they live inside it) into a recording-file event."""
    event_type = _int(obj, "event_type", lo=0, hi=2**31)
    if event_type != CSS_EVENT_RECORDING_FILE:
        raise InvalidCallbackError("event_type", f"must be {CSS_EVENT_RECORDING_FILE}")
    stream_field = "stream_id" if obj.get("stream_id") not in (None, "") else "channel_id"
    file_field = "file_id" if obj.get("file_id") not in (None, "") else "record_file_id"
    file_format = _str(obj, "file_format", max_length=8).lower()
    if file_format not in CSS_FILE_FORMATS:
        raise InvalidCallbackError("file_format", f"must be one of {', '.join(CSS_FILE_FORMATS)}")
    start_time = _int(obj, "start_time", lo=0, hi=MAX_UNIX_SECONDS)
    end_time = _int(obj, "end_time", lo=0, hi=MAX_UNIX_SECONDS)
    if end_time < start_time:
        raise InvalidCallbackError("end_time", "must not be before start_time")
    file_size = None
    if obj.get("file_size") is not None:
        file_size = _int(obj, "file_size", lo=0, hi=2**63 - 1)
    task_id = obj.get("task_id")
    if isinstance(task_id, bool) or not isinstance(task_id, str | int):
        task_id = None
    return CssFileEvent(
        stream=CssStreamKey(
            appid=_int(obj, "appid", lo=0, hi=2**63 - 1),
            app=_optional_str(obj, "app") or "",
            appname=_optional_str(obj, "appname") or "",
            stream_id=_str(obj, stream_field),
        ),
        file_id=_str(obj, file_field),
        file_format=file_format,
        start_time=start_time,
        end_time=end_time,
        duration=_int(obj, "duration", lo=0, hi=MAX_UNIX_SECONDS)
        if obj.get("duration") is not None
        else end_time - start_time,
        file_size=file_size,
        video_url=_str(obj, "video_url", max_length=MAX_URL_LENGTH),
        # Some tasks send a number here; it is an identifier, kept as text.
        task_id=str(task_id)[:MAX_ID_LENGTH] if task_id not in (None, "") else None,
        stream_param=_optional_str(obj, "stream_param", max_length=MAX_URL_LENGTH),
        callback_ext=parse_callback_ext(obj.get("callback_ext")),
        t=_int(obj, "t", lo=0, hi=MAX_UNIX_SECONDS),
    )


def check_gme_key_scope(event: GmeEvent) -> None:
    """A segment's key must lie under its own application's folder: the vendor writes
    `<BizID>_<RoomID>_<UserID>/...` (single stream) or `<BizID>_<RoomID>/...` (mixed), so
    a callback whose key points elsewhere in the bucket (another application's, or
    anything a leaked key could name) is refused rather than fetched."""
    folder = event.file_name.split("/", 1)[0]
    if "/" not in event.file_name or not folder.startswith(f"{event.key.biz_id}_"):
        raise InvalidCallbackError(
            "Detail.FileName", f"must lie under the application's folder ({event.key.biz_id}_...)"
        )
