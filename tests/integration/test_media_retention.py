"""Media retention (RECPIPE_MEDIA_RETENTION_DAYS, beat's `recpipe.expire_media`, `recpipe
prune --media`): old media goes, every version of it on a versioned bucket; the recording
stays as a tombstone that nothing brings back; held ones are kept. On SQLite with a local
archive and on PostgreSQL with a versioned S3 bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from foundation.config import Settings
from recpipe.console.app import create_app
from storage.domain import RecordingState
from storage.ledger import Ledger, utcnow
from storage.objectstore import ObjectStore, store_from_url
from tasks import expiry
from tasks.archive import archive_prefix
from tasks.services import Services
from tests.support.console import PASSWORD, add_people, sign_in, store_gme
from webhook.callbacks import parse_gme

TASK = "446946705284000931"
HOOK = "http://127.0.0.1:9/hooks"


@dataclass
class World:
    env: dict[str, str]
    settings: Settings
    ledger: Ledger
    archive: ObjectStore
    s3: Any  # a boto3 client on the versioned bucket, or None for the local archive
    bucket: str | None

    def services(self) -> Services:
        source = store_from_url(self.env["RECPIPE_GME_SOURCE_URL"])
        return Services(self.settings, self.ledger, source, self.archive)


@pytest.fixture(params=["sqlite-local", "postgresql-s3"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    env = {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_GME_SOURCE_URL": (tmp_path / "source").as_uri(),
        "RECPIPE_NOTIFY_URLS": HOOK,
    }
    s3 = bucket = None
    if request.param == "sqlite-local":
        env["RECPIPE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'ledger.db'}"
        env["RECPIPE_ARCHIVE_URL"] = (tmp_path / "archive").as_uri()
    else:
        env["RECPIPE_DATABASE_URL"] = request.getfixturevalue("pg_url")
        endpoint = request.getfixturevalue("s3_endpoint")
        s3 = request.getfixturevalue("s3_client")
        bucket = request.getfixturevalue("bucket")
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        env["RECPIPE_ARCHIVE_URL"] = f"s3://{bucket}/archive?endpoint_url={endpoint}"
    settings = Settings.from_env(env)
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    try:
        yield World(env, settings, ledger, store_from_url(settings.archive_url), s3, bucket)
    finally:
        ledger.dispose()


def archived(world: World, user: str) -> str:
    """A GME recording archived with a few objects under its prefix; on S3 the media has
    two versions and a deleted sidecar leaves a delete marker."""
    rid = store_gme(world.ledger, 0, task=TASK, user=user)
    run_id = world.ledger.claim(rid, now=utcnow(), force=True)
    assert run_id
    run = world.ledger.run(run_id)
    assert run is not None
    prefix = archive_prefix(run)
    world.archive.put_bytes(prefix + f"{rid}.m4a", b"first take " + user.encode(), "audio/mp4")
    world.archive.put_bytes(prefix + f"{rid}.m4a", b"second take " + user.encode(), "audio/mp4")
    world.archive.put_bytes(prefix + "manifest.json", json.dumps({"user": user}).encode())
    world.archive.put_bytes(prefix + "old.peaks.json", b"{}")
    world.archive.delete(prefix + "old.peaks.json")
    media = {"url": world.archive.url(prefix + f"{rid}.m4a"), "format": "m4a", "bytes": 20,
             "sha256": "ab", "duration_s": 1.0}  # fmt: skip
    world.ledger.finish_run(
        run_id, now=utcnow(), result={"included": [0], "missing": [], "artifacts": [media]},
        manifest_url=world.archive.url(prefix + "manifest.json"),
    )  # fmt: skip
    return rid


def left_under(world: World, rid: str) -> list[str]:
    """Everything the store still keeps under the recording's prefix: every version and
    delete marker on S3, every file on disk."""
    recording = world.ledger.recording(rid)
    assert recording is not None and recording.current_run_id
    run = world.ledger.run(recording.current_run_id)
    assert run is not None
    prefix = archive_prefix(run)
    if world.s3 is None:
        folder = Path(world.env["RECPIPE_ARCHIVE_URL"].removeprefix("file://")) / prefix
        return sorted(str(p) for p in folder.rglob("*")) if folder.exists() else []
    found = world.s3.list_object_versions(Bucket=world.bucket, Prefix="archive/" + prefix)
    return [v["Key"] for v in found.get("Versions", []) + found.get("DeleteMarkers", [])]


def test_old_media_goes_with_every_version_and_the_recording_stays_a_tombstone(world: World):
    old, held = archived(world, "u-old"), archived(world, "u-held")
    assert len(left_under(world, old)) >= 2
    world.ledger.hold(held, "case 31", "user:ada")
    sent: list[int] = []
    before = utcnow() + timedelta(seconds=5)  # both finished before this
    report = expiry.expire_media(
        world.services(), before=before, now=utcnow(), limit=10, deliver=sent.append
    )
    assert report.expired == [old] and report.purged == [old]
    assert left_under(world, old) == []
    assert len(left_under(world, held)) >= 2  # the hold kept it whole
    tomb = world.ledger.recording(old)
    assert tomb is not None and tomb.state == RecordingState.EXPIRED and tomb.tombstoned_at
    kept = world.ledger.recording(held)
    assert kept is not None and kept.state == RecordingState.ARCHIVED

    [note_id] = sent
    note = world.ledger.notification(note_id)
    assert note is not None and note.url == HOOK and note.state == "pending"
    body = json.loads(note.body)
    assert body["type"] == "recording.expired" and body["recording"]["id"] == old
    assert body["recording"]["gme"]["UserID"] == "u-old"
    # On S3 the sidecar deleted earlier still had a version: it counts, and it went too.
    assert body["deleted_objects"] == (2 if world.s3 is None else 3)
    assert body["artifacts"] == [] and body["manifest"] is None
    assert note.webhook_id == f"msg_{old}_expired"

    # A second pass finds nothing new; releasing the hold lets the next pass take it.
    again = expiry.expire_media(
        world.services(), before=before, now=utcnow(), limit=10, deliver=sent.append
    )
    assert again.expired == [] and again.purged == [] and len(sent) == 1
    assert world.ledger.release(held, "user:ada")
    last = expiry.expire_media(
        world.services(), before=before, now=utcnow(), limit=10, deliver=sent.append
    )
    assert last.expired == [held] and left_under(world, held) == []


def test_what_is_newer_than_the_cutoff_or_not_finished_is_kept(world: World):
    done = archived(world, "u-new")
    collecting = store_gme(world.ledger, 0, task=TASK, user="u-busy")
    before = utcnow() - timedelta(days=1)  # finished after this: too new
    report = expiry.expire_media(
        world.services(), before=before, now=utcnow(), limit=10, deliver=lambda _: None
    )
    assert report.expired == [] and len(left_under(world, done)) >= 2
    later = expiry.expire_media(
        world.services(), before=utcnow() + timedelta(seconds=5), now=utcnow(), limit=10,
        deliver=lambda _: None,
    )  # fmt: skip
    assert later.expired == [done]
    busy = world.ledger.recording(collecting)
    assert busy is not None and busy.state == RecordingState.COLLECTING


def test_a_pass_that_stopped_half_way_is_finished_by_the_next(world: World):
    rid = archived(world, "u-crash")
    before = utcnow() + timedelta(seconds=5)
    # The tombstone was made, then the pass died before it deleted anything.
    assert world.ledger.expire(rid, before, utcnow()) is not None
    assert world.ledger.tombstones_to_purge(10) == [rid]
    assert len(left_under(world, rid)) >= 2
    sent: list[int] = []
    report = expiry.expire_media(
        world.services(), before=before, now=utcnow(), limit=10, deliver=sent.append
    )
    assert report.expired == [] and report.purged == [rid] and left_under(world, rid) == []
    assert len(sent) == 1 and world.ledger.tombstones_to_purge(10) == []


def test_nothing_brings_a_tombstone_back(world: World):
    """A vendor's retry of an old callback, a late segment and a reprocess all leave an
    expired recording expired (the media must not be made again from the source)."""
    rid = archived(world, "u-gone")
    expiry.expire_media(
        world.services(), before=utcnow() + timedelta(seconds=5), now=utcnow(), limit=10,
        deliver=lambda _: None,
    )  # fmt: skip
    for seq in (0, 5):  # the same segment again, and one never seen
        body = json.dumps({
            "BizID": 1400000000, "RoomID": "100", "UserID": "u-gone", "TaskID": int(TASK),
            "RecordMode": 1, "Timestamp": 1700000000 + seq, "EventType": 3,
            "Detail": {"SeqNo": seq, "FileName": f"1400000000_100/{seq}_{TASK}_audio.mp3"},
        })  # fmt: skip
        result = world.ledger.record_gme_event(
            parse_gme(body.encode()), body, {}, now=utcnow(), settle_seconds=30
        )
        assert result.recording_id == rid
    tomb = world.ledger.recording(rid)
    assert tomb is not None and tomb.state == RecordingState.EXPIRED and tomb.settle_due_at is None
    assert world.ledger.claim(rid, now=utcnow(), force=True) is None


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recpipe", *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_recpipe_prune_media_shows_then_deletes_what_retention_lets_go(world: World):
    rid = archived(world, "u-cli")
    held = archived(world, "u-cli-held")
    world.ledger.hold(held, "case 2", "cli")
    off = cli(world.env, "prune", "--media")
    assert off.returncode == 2 and "RECPIPE_MEDIA_RETENTION_DAYS is off" in off.stderr
    # Everything finished before a cutoff a moment in the future: both, but one is held.
    env = {**world.env, "RECPIPE_MEDIA_RETENTION_DAYS": "0.00001"}
    time.sleep(1.5)  # 0.00001 days is 0.864 s: both finished before the cutoff now
    dry = cli(env, "prune", "--media", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would expire {rid}" in dry.stdout and held not in dry.stdout
    assert "1 would expire; 1 on hold, kept" in dry.stdout
    assert len(left_under(world, rid)) >= 2
    done = cli(env, "prune", "--media")
    assert done.returncode == 0, done.stderr
    objects = 2 if world.s3 is None else 3
    assert (
        f"expired {rid}" in done.stdout and f"1 expired, {objects} objects deleted" in done.stdout
    )
    assert left_under(world, rid) == [] and len(left_under(world, held)) >= 2


def test_an_expired_recording_shows_as_such_and_serves_no_media(world: World):
    rid = archived(world, "u-page")
    expiry.expire_media(
        world.services(), before=utcnow() + timedelta(seconds=5), now=utcnow(), limit=10,
        deliver=lambda _: None,
    )  # fmt: skip
    add_people(world.ledger)
    app = create_app(world.settings, ledger=world.ledger, secret="retention-test-" + "s" * 32)
    client = app.test_client()
    assert sign_in(client, "vera", PASSWORD).status_code == 302
    page = client.get(f"/recordings/{rid}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="tombstone"' in html and "Expired" in html and 'class="flash error"' not in html
    assert client.get(f"/api/v1/recordings/{rid}/artifacts/m4a").status_code == 404
    listed = client.get("/api/v1/recordings?state=expired").get_json()
    assert [r["id"] for r in listed["recordings"]] == [rid]
