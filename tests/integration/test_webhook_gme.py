"""POST /callbacks/gme through the Flask app, with a real ledger and the embedded broker."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from foundation.config import Settings
from recpipe.webapp import create_app, create_apps, create_internal_app
from storage.ledger import Ledger
from storage.ledger.tables import Callback
from tests.support.signing import gme_signature, sign_gme

BIZ, SECRET = 1400000000, b"test-key"
SAMPLE = {
    "BizID": BIZ,
    "RoomID": "100",
    "UserID": "999",
    "TaskID": 446946705284000000,
    "RecordMode": 1,
    "Timestamp": 1675930605,
    "EventType": 3,
    "Detail": {"SeqNo": 0, "FileName": "1400000000_100/2023-02-09_446946705284000000_audio.mp3"},
}


def sign(body: bytes, key: bytes = SECRET) -> str:
    return sign_gme(key, body)


@pytest.fixture
def app_env(tmp_path: Path):
    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET.decode()},1400000009=other-app",
            "RECPIPE_MAX_BODY_BYTES": "4096",
        }
    )
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    app = create_app(settings, ledger=ledger)
    yield app.test_client(), ledger, settings
    ledger.dispose()


def stored(ledger: Ledger) -> int:
    with ledger.session() as s:
        return s.scalar(select(func.count()).select_from(Callback))


def post(client, body: bytes, signature: str | None = None, **headers):
    if signature is not None:
        headers["Signature"] = signature
    return client.post(
        "/callbacks/gme", data=body, headers={"Content-Type": "application/json", **headers}
    )


def queued(settings: Settings) -> list[Path]:
    """The messages handed to the embedded broker."""
    folder = settings.broker_dir / "queue"
    return list(folder.iterdir()) if folder.exists() else []


def test_accepts_and_stores_once_with_duplicates(app_env):
    client, ledger, settings = app_env
    body = json.dumps(SAMPLE).encode()
    for _ in range(3):
        response = post(client, body, sign(body))
        assert response.status_code == 200 and response.get_json() == {"code": 0}
    assert stored(ledger) == 1
    assert queued(settings) == [], "the webhook writes a settle time; beat's clock sends"


def gme_event(event_type: int, seq_no: int, task_id: int = SAMPLE["TaskID"]) -> bytes:  # type: ignore[assignment]
    name = f"1400000000_100/2023-02-09-0{seq_no}_{task_id}_audio.mp3"
    return json.dumps(
        {**SAMPLE, "TaskID": task_id, "EventType": event_type,
         "Detail": {"SeqNo": seq_no, "FileName": name}}
    ).encode()  # fmt: skip


def test_the_completing_upload_makes_the_recording_due_after_the_short_window(app_env):
    """An open segment keeps the long window; the event that completes the recording
    makes it due the short window after itself, with nothing sent to the broker."""
    from storage.domain import GmeRecordingKey

    client, ledger, settings = app_env
    rid = GmeRecordingKey(BIZ, "100", "999", str(SAMPLE["TaskID"]), 1).recording_id
    for event_type in (1, 2, 3):
        body = gme_event(event_type, 0)
        assert post(client, body, sign(body)).status_code == 200
        view = ledger.recording(rid)
        assert view is not None and view.settle_due_at is not None
        window = settings.settle_complete_seconds if event_type == 3 else settings.settle_seconds
        assert view.settle_due_at == view.last_event_at + timedelta(seconds=window)
    assert queued(settings) == []


def test_hex_signature_is_accepted(app_env):
    client, _, _ = app_env
    body = json.dumps(SAMPLE).encode()
    digest = gme_signature(SECRET, body).hex()
    assert post(client, body, digest).status_code == 200


def _reserialized(body: bytes) -> bytes:
    return json.dumps(json.loads(body), indent=1).encode()


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda b: (b, None), 401),
        (lambda b: (b, ""), 401),
        (lambda b: (b, sign(b, b"wrong")), 401),
        (lambda b: (b.replace(b'"100"', b'"101"'), sign(b)), 401),
        (lambda b: (_reserialized(b), sign(b)), 401),
        # signed correctly, but by another application's key for this BizID
        (lambda b: (b, sign(b, b"other-app")), 401),
        (lambda b: (b"not json", sign(b"not json")), 400),
        (lambda b: (b"[]", sign(b"[]")), 400),
        (lambda b: (b.replace(b"446946705284000000,", b"4.46946705284e17,"), None), 400),
        (lambda b: (b"x" * 5000, sign(b"x" * 5000)), 413),
        (lambda b: (b.replace(b'"1400000000_100/', b'"other_app/'), None), 400),
    ],
    ids=[
        "no-signature", "empty-signature", "wrong-key", "body-changed", "reserialized",
        "other-app-key", "not-json", "array", "float-task-id", "too-large", "key-out-of-scope",
    ],
)  # fmt: skip
def test_refused_requests_store_nothing(app_env, make, status):
    client, ledger, _ = app_env
    body, signature = make(json.dumps(SAMPLE).encode())
    if signature is None and status == 400:
        signature = sign(body)
    response = post(client, body, signature)
    assert response.status_code == status
    assert "error" in response.get_json()
    assert stored(ledger) == 0


def test_bad_field_is_named_in_the_400(app_env):
    client, _, _ = app_env
    body = json.dumps({**SAMPLE, "EventType": 9}).encode()
    response = post(client, body, sign(body))
    assert response.status_code == 400 and response.get_json()["field"] == "EventType"


def test_ledger_down_is_503_so_the_vendor_retries(tmp_path: Path):
    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET.decode()}",
            "RECPIPE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1",
        }
    )
    public, internal = create_apps(settings)
    body = json.dumps(SAMPLE).encode()
    response = post(public.test_client(), body, sign(body))
    assert response.status_code == 503
    ready = internal.test_client().get("/readyz")
    assert ready.status_code == 503 and "ledger" in ready.get_json()["reasons"]


def test_health_ready_and_metrics(app_env):
    """/healthz on the public app; /readyz and /metrics on the internal one only."""
    client, ledger, settings = app_env
    internal = create_internal_app(settings, ledger=ledger).test_client()
    assert client.get("/healthz").status_code == 200
    assert internal.get("/readyz").status_code == 200
    body = json.dumps(SAMPLE).encode()
    post(client, body, sign(body))
    metrics = internal.get("/metrics").get_data(as_text=True)
    assert 'recpipe_callbacks_total{outcome="accepted",provider="gme"}' in metrics


@pytest.mark.parametrize("path", ["/readyz", "/metrics"])
def test_the_public_app_does_not_serve_readiness_or_metrics(app_env, path: str):
    """Queue depths, recording counts and the first line of a ledger or broker error are
    not for the internet: 404 on the public app."""
    client, _, _ = app_env
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    ("window", "age", "status"),
    [("0", 86400, 200), ("300", 60, 200), ("300", 600, 401), ("300", -600, 401)],
)
def test_replay_window_refuses_callbacks_whose_timestamp_is_too_far_off(
    tmp_path: Path, window: str, age: int, status: int
):
    """RECPIPE_GME_REPLAY_WINDOW_SECONDS: a Timestamp further from now than the window (in
    either direction) is 401 and not stored; 0 turns the check off."""
    import time

    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET.decode()}",
            "RECPIPE_GME_REPLAY_WINDOW_SECONDS": window,
        }
    )
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    try:
        client = create_app(settings, ledger=ledger).test_client()
        body = json.dumps({**SAMPLE, "Timestamp": int(time.time()) - age}).encode()
        assert post(client, body, sign(body)).status_code == status
        assert stored(ledger) == (1 if status == 200 else 0)
    finally:
        ledger.dispose()


@pytest.mark.parametrize(("scope", "status"), [("bizid", 400), ("off", 200)])
def test_key_scope_off_accepts_a_safe_key_outside_the_application_folder(
    tmp_path: Path, scope: str, status: int
):
    """RECPIPE_GME_KEY_SCOPE=bizid refuses a FileName outside `<BizID>_...` (400, nothing
    stored); `off` stores it, while an unsafe key stays 400 either way."""
    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET.decode()}",
            "RECPIPE_GME_KEY_SCOPE": scope,
        }
    )
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    try:
        client = create_app(settings, ledger=ledger).test_client()
        outside = {**SAMPLE, "Detail": {"SeqNo": 0, "FileName": "shared/2023-02-09_audio.mp3"}}
        body = json.dumps(outside).encode()
        assert post(client, body, sign(body)).status_code == status
        assert stored(ledger) == (1 if status == 200 else 0)
        unsafe = {**SAMPLE, "Detail": {"SeqNo": 1, "FileName": "../etc/passwd.mp3"}}
        body = json.dumps(unsafe).encode()
        assert post(client, body, sign(body)).status_code == 400
    finally:
        ledger.dispose()
