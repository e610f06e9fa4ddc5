"""What the transcript tests share: an archived GME recording to hang a transcript on."""

from __future__ import annotations

import json
import time

from storage.ledger import Ledger, utcnow
from webhook.callbacks import parse_gme

BIZ, TASK = 1400000000, "446946705284000556"


def archived(ledger: Ledger, user: str) -> tuple[str, str]:
    body = json.dumps(
        {
            "BizID": BIZ, "RoomID": "9", "UserID": user, "TaskID": int(TASK),
            "RecordMode": 1, "Timestamp": int(time.time()), "EventType": 3,
            "Detail": {"SeqNo": 0, "FileName": f"{BIZ}_9_{user}/x_{TASK}.mp3"},
        }
    )  # fmt: skip
    rid = ledger.record_gme_event(
        parse_gme(body.encode()), body, {}, now=utcnow(), settle_seconds=30
    ).recording_id
    run_id = ledger.claim(rid, now=utcnow(), force=True)
    ledger.finish_run(run_id, now=utcnow(), result={"artifacts": []}, manifest_url="m")
    return rid, run_id
