"""With the archive on S3 (moto's server over HTTP), the console hands the player a
presigned URL that serves `Range`, and reads `peaks.json` beside the media."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from foundation.config import Settings
from recpipe.console import auth
from recpipe.console.app import create_app
from storage.ledger import Ledger, utcnow
from storage.objectstore import store_from_url
from tests.support.console import store_gme


def test_s3_artifacts_redirect_to_a_short_lived_presigned_url_that_serves_ranges(
    tmp_path: Path, pg_url: str, s3_endpoint: str, bucket: str
):
    archive_url = f"s3://{bucket}/recordings?endpoint_url={s3_endpoint}"
    settings = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path / "var"),
            "RECPIPE_DATABASE_URL": pg_url,
            "RECPIPE_ARCHIVE_URL": archive_url,
        }
    )
    ledger = Ledger(pg_url)
    ledger.migrate()
    rid = store_gme(ledger, 0, task="446946705284000321")
    store = store_from_url(archive_url)
    media = bytes(range(256)) * 64
    key = f"gme/1400000000/{rid}/{rid}.m4a"
    store.put_bytes(key, media, "audio/mp4")
    peaks = {"version": 2, "channels": 1, "sample_rate": 8000, "samples_per_pixel": 80,
             "bits": 8, "length": 1, "data": [-3, 4]}  # fmt: skip
    store.put_bytes(f"gme/1400000000/{rid}/{rid}.peaks.json", json.dumps(peaks).encode())
    run_id = ledger.claim(rid, now=utcnow(), force=True)
    artifact = {"url": store.url(key), "format": "m4a", "bytes": len(media), "duration_s": 1.0}
    ledger.finish_run(run_id, now=utcnow(), result={"artifacts": [artifact]}, manifest_url="")
    token = auth.new_token()
    ledger.add_token("reader", "read", auth.hash_token(token))
    app = create_app(settings, ledger=ledger, secret="s3-test-console-secret-" + "w" * 20)
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {token}"}

    answer = client.get(f"/api/v1/recordings/{rid}/artifacts/m4a?download=1", headers=bearer)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(s3_endpoint)
    assert "Expires=" in location or "X-Amz-Expires=300" in location
    assert s3_endpoint in answer.headers["Content-Security-Policy"].split("media-src", 1)[1]
    part = requests.get(location, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == media[100:200]
    assert part.headers["Content-Disposition"] == f'attachment; filename="{rid}.m4a"'

    player = client.get(f"/recordings/{rid}/player.json", headers=bearer)
    assert player.status_code == 200 and player.json["peaks"] == peaks
    ledger.dispose()
