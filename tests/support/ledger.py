"""One GME recording written straight into a ledger, as intake writes it."""

from __future__ import annotations

from storage.domain import GmeEvent, GmeRecordingKey
from storage.ledger import Ledger, utcnow

KEY = GmeRecordingKey(1400000000, "100", "999", "446946705284000002", 1)
RID = KEY.recording_id


def key_of(seq: int) -> str:
    return f"p/{seq}_{KEY.task_id}_audio.mp3"


def record(ledger: Ledger, seq: int, event_type: int = 3, now=None) -> None:
    event = GmeEvent(KEY, event_type, seq, key_of(seq), 1675930605)
    ledger.record_gme_event(event, "{}", {}, now=now or utcnow(), settle_seconds=60)
