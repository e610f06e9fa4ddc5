"""Callback signatures as the vendors make them, by recpipe's own signing code (the code
`recpipe simulate` signs with), so no test carries a copy of it: GME's HMAC-SHA1 of the
body in base64, CSS's md5 of key and time."""

from __future__ import annotations

import json

from recpipe.simulate import sign_gme as _sign_gme
from webhook.verify import css_sign, gme_signature

__all__ = ["css_sign", "gme_signature", "sign_gme"]


def sign_gme(secret: str | bytes, body: bytes) -> str:
    """The `Signature` header GME sends with `body`, for an application's SecretKey."""
    return _sign_gme(secret.encode() if isinstance(secret, str) else secret, body)


def signed_gme_callback(
    biz: int, secret: str, task_id: str, seq: int, file_name: str, *, event_type: int = 3
) -> tuple[bytes, str]:
    """A GME upload callback of user 999 in room 100 (RecordMode 1), and its signature."""
    body = json.dumps(
        {
            "BizID": biz, "RoomID": "100", "UserID": "999", "TaskID": int(task_id),
            "RecordMode": 1, "Timestamp": 1675930605, "EventType": event_type,
            "Detail": {"SeqNo": seq, "FileName": file_name},
        }
    ).encode()  # fmt: skip
    return body, sign_gme(secret, body)
