"""The broker is down when callbacks arrive: they are stored and answered 200 all the same
(the webhook sends nothing to it), and beat's settle clock hands their recordings out
once due."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from foundation.config import Settings
from recpipe.webapp import create_app
from storage.domain import GmeRecordingKey
from storage.ledger import Ledger, utcnow
from storage.ledger.tables import Callback
from tasks.sweeping import settle_due
from tests.support.services import free_port
from tests.support.signing import sign_gme

BIZ, SECRET, TASK = 1400000000, b"test-key", 446946705284000003
RID = GmeRecordingKey(BIZ, "100", "999", str(TASK), 1).recording_id


def callback(event_type: int, seq: int) -> tuple[bytes, str]:
    body = json.dumps(
        {
            "BizID": BIZ, "RoomID": "100", "UserID": "999", "TaskID": TASK, "RecordMode": 1,
            "Timestamp": 1675930605, "EventType": event_type,
            "Detail": {"SeqNo": seq, "FileName": f"{BIZ}_100/{seq}_{TASK}_audio.mp3"},
        }
    ).encode()  # fmt: skip
    return body, sign_gme(SECRET, body)


@pytest.mark.parametrize("scheme", ["redis://127.0.0.1:{port}/0", "amqp://127.0.0.1:{port}//"])
def test_callbacks_are_stored_and_answered_while_the_broker_is_down(tmp_path: Path, scheme: str):
    """Nothing listens on the broker's port: every callback is 200 and stored, none is left
    undispatched, and the clock hands the recording out once its settle time comes."""
    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_BROKER_URL": scheme.format(port=free_port()),
            "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET.decode()}",
            "RECPIPE_SETTLE_SECONDS": "60",
        }
    )
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    try:
        client = create_app(settings, ledger=ledger).test_client()
        for event_type, seq in [(1, 0), (3, 0), (3, 1), (3, 1)]:
            body, signature = callback(event_type, seq)
            response = client.post(
                "/callbacks/gme",
                data=body,
                headers={"Content-Type": "application/json", "Signature": signature},
            )
            assert (response.status_code, response.get_json()) == (200, {"code": 0})
        with ledger.session() as s:
            stored = {
                (c.event_type, c.dispatched_at is None, c.duplicates)
                for c in s.scalars(select(Callback))
            }
        assert stored == {(1, False, 0), (3, False, 0), (3, False, 1)}
        assert ledger.callbacks(undispatched=True) == []

        settled: list[str] = []
        assert settle_due(ledger, settled.append, now=utcnow()) == 0
        settle_due(ledger, settled.append, now=utcnow() + timedelta(seconds=61))
        assert settled == [RID]
    finally:
        ledger.dispose()
