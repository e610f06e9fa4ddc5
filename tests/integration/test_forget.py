"""Forgetting a player (`tasks.forgetting`, `recpipe forget`, the API): their objects go,
every version of them; their rooms are remixed without them and the earlier mixes go; no
row of the ledger keeps their UserID; the recordings stay as tombstones nothing brings
back; held ones are kept and finished on release; a crash half-way is finished by running
again. On SQLite with a local archive and on PostgreSQL with a versioned S3 bucket.

The room's remix is made here by hand (objects written as a mix run would, its run ended);
the end-to-end proof (tests/e2e) mixes real tones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from foundation.config import Settings
from storage.domain import RecordingState
from storage.domain.players import ErasureState, player_hash
from storage.domain.rooms import room_id
from storage.ledger import Ledger, utcnow
from storage.objectstore import ObjectStore, store_from_url
from tasks import forgetting
from tasks.archive import recording_prefix
from tasks.services import Services
from tests.support.archives import ledger_rows_holding, objects_holding, versions_under
from webhook.callbacks import parse_gme

BIZ = 1400000000
TASK = "446946705284000977"
ROOM = "77"
PLAYER = "player-7f3a"
OTHERS = ("other-b41c", "other-c52d")
KEY = "forget-test-player-key-" + "k" * 16


@dataclass
class World:
    env: dict[str, str]
    settings: Settings
    ledger: Ledger
    archive: ObjectStore
    s3: Any  # a boto3 client on the versioned bucket, or None for the local archive
    bucket: str | None
    root: Path  # the local archive's folder

    def services(self) -> Services:
        source = store_from_url(self.env["RECPIPE_GME_SOURCE_URL"])
        return Services(self.settings, self.ledger, source, self.archive)

    @property
    def store(self) -> Any:
        return self.root if self.s3 is None else self.s3

    def objects_holding(self, needle: str) -> list[str]:
        return objects_holding(self.store, needle, bucket=self.bucket)

    def kept_under(self, rid: str) -> list[str]:
        recording = self.ledger.recording(rid)
        assert recording is not None
        prefix = recording_prefix(recording)
        return versions_under(
            self.store, prefix if self.s3 is None else "archive/" + prefix, bucket=self.bucket
        )


def make_world(request: pytest.FixtureRequest, tmp_path: Path, kind: str, hook: str) -> World:
    env = {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_GME_SOURCE_URL": (tmp_path / "source").as_uri(),
        "RECPIPE_NOTIFY_URLS": hook,
        "RECPIPE_PLAYER_KEY": KEY,
        "RECPIPE_SETTLE_SECONDS": "30",
    }
    s3 = bucket = None
    if kind == "sqlite-local":
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
    archive = store_from_url(settings.archive_url)
    return World(env, settings, ledger, archive, s3, bucket, tmp_path / "archive")


@pytest.fixture(params=["sqlite-local", "postgresql-s3"])
def world(request: pytest.FixtureRequest, tmp_path: Path, receiver: Any) -> Iterator[World]:
    w = make_world(request, tmp_path, request.param, receiver.url)
    try:
        yield w
    finally:
        w.ledger.dispose()


# -- what the ledger and the archive hold of a room of three ------------------------------


def callback(user: str, seq: int, event_type: int = 3) -> str:
    return json.dumps({
        "BizID": BIZ, "RoomID": ROOM, "UserID": user, "TaskID": int(TASK), "RecordMode": 0,
        "Timestamp": 1765000000 + seq, "EventType": event_type,
        "Detail": {"SeqNo": seq, "FileName": f"{BIZ}_{ROOM}_{user}/{seq}_{TASK}_audio.mp3"},
    })  # fmt: skip


def record(world: World, user: str, seq: int, event_type: int = 3) -> str:
    body = callback(user, seq, event_type)
    headers = {"User-Agent": "gme", "X-Note": f"for {user}"}
    return world.ledger.record_gme_event(
        parse_gme(body.encode()), body, headers, now=utcnow(), settle_seconds=30
    ).recording_id


def archive_run(
    world: World, rid: str, *, audio: bytes, manifest: dict[str, Any], result: dict[str, Any]
) -> str:
    """A revision of the recording (or room): its media written twice (two versions on
    S3), a sidecar written then deleted (a delete marker), its manifest, its run archived,
    its notification made and tried."""
    run_id = world.ledger.claim(rid, now=utcnow(), force=True)
    assert run_id
    run = world.ledger.run(run_id)
    assert run is not None
    prefix = recording_prefix(run.recording)
    world.archive.put_bytes(prefix + f"{rid}.m4a", b"draft " + audio, "audio/mp4")
    world.archive.put_bytes(prefix + f"{rid}.m4a", audio, "audio/mp4")
    world.archive.put_bytes(prefix + "old.peaks.json", json.dumps(manifest).encode())
    world.archive.delete(prefix + "old.peaks.json")
    world.archive.put_bytes(prefix + "manifest.json", json.dumps(manifest).encode())
    world.ledger.finish_run(
        run_id,
        now=utcnow(),
        result=result,
        manifest_url=world.archive.url(prefix + "manifest.json"),
        steps=[{"step": "fetch", "ok": True, "note": json.dumps(manifest)}],
    )
    note_body = json.dumps({"type": "recording.archived", **manifest})
    [note] = world.ledger.create_notifications(
        run_id, "recording.archived", f"msg_{rid}_r{run.revision}", note_body,
        [world.env["RECPIPE_NOTIFY_URLS"]], utcnow(),
    )  # fmt: skip
    world.ledger.record_attempt(
        note, now=utcnow(), status_code=500, error=f"HTTP 500: {manifest}", duration_ms=3,
        final_state="delivered",
    )  # fmt: skip
    world.ledger.queue_transcript(run_id, utcnow())
    world.ledger.start_transcript(run_id, utcnow())
    return run_id


def user_recording(world: World, user: str) -> str:
    rid = ""
    for seq in (0, 1):
        rid = record(world, user, seq)
    identity = {"BizID": BIZ, "RoomID": ROOM, "UserID": user, "TaskID": TASK}
    archive_run(
        world, rid, audio=f"voice of {user}".encode(),
        manifest={"recording": {"gme": identity}, "speech": [{"UserID": user}]},
        result={"included": [0, 1], "missing": [], "speech": [{"UserID": user, "spans": []}],
                "artifacts": [{"format": "m4a", "url": f"archive/{user}.m4a"}]},
    )  # fmt: skip
    world.ledger.note_room_member(rid, now=utcnow(), settle_seconds=30)
    return rid


def mix_room(world: World, members: list[str], users: list[str]) -> str:
    """The room's next revision, as a mix run would make it, of these members."""
    rid = room_id(BIZ, ROOM, TASK)
    revisions = {r: (world.ledger.recording(r) or _no(r)).revision for r in members}
    participants = [
        {"UserID": u, "recording_id": r, "revision": revisions[r]}
        for u, r in zip(users, members, strict=True)
    ]
    archive_run(
        world, rid, audio=("mix of " + " and ".join(users)).encode(),
        manifest={"participants": participants},
        result={"participants": participants, "speech": [{"UserID": u} for u in users],
                "members_key": sorted([r, revisions[r]] for r in members)},
    )  # fmt: skip
    return rid


def _no(rid: str) -> Any:
    raise AssertionError(f"no recording {rid}")


@dataclass
class Room:
    player: str  # the player's recording
    others: list[str]
    room: str


def room_of_three(world: World) -> Room:
    player = user_recording(world, PLAYER)
    others = [user_recording(world, u) for u in OTHERS]
    room = mix_room(world, [player, *others], [PLAYER, *OTHERS])
    world.ledger.record_action("ada", "note", recording_id=player, detail={"who": PLAYER})
    world.ledger.record_action("ada", "search", target=f"UserID={PLAYER}")
    return Room(player, others, room)


def remix_without_player(world: World, r: Room) -> None:
    """What beat and a media worker do with the room the erasure reopened."""
    room = world.ledger.recording(r.room)
    assert room is not None and room.state == RecordingState.COLLECTING
    mix_room(world, r.others, list(OTHERS))


def forget(world: World, **kwargs: Any) -> Any:
    return forgetting.forget_player(
        world.services(), BIZ, PLAYER, actor="user:ada", deliver=lambda _: None, **kwargs
    )


# -- the tests ----------------------------------------------------------------------------


def test_a_dry_run_reports_the_plan_and_changes_nothing(world: World):
    r = room_of_three(world)
    rows_before = ledger_rows_holding(world.ledger.engine, PLAYER)
    objects_before = world.objects_holding(PLAYER)
    assert rows_before and objects_before

    report = forget(world, dry_run=True)

    expected_player = player_hash(KEY.encode(), BIZ, PLAYER)
    assert report.dry_run and report.state == ErasureState.PLANNED
    assert report.player == expected_player and PLAYER not in json.dumps(report.as_json())
    assert report.recordings == (r.player,)
    assert report.rooms_remixed == (r.room,) and report.rooms_deleted == ()
    assert report.objects == 2  # the player's media and manifest, as they stand
    assert report.revisions == 2  # their recording's revision and the room's
    assert report.rows["recordings"] == 2 and report.rows["callbacks"] == 2
    assert report.rows["segments"] == 2 and report.rows["room_members"] == 1
    assert report.kept == ()
    assert ledger_rows_holding(world.ledger.engine, PLAYER) == rows_before
    assert world.objects_holding(PLAYER) == objects_before
    assert world.ledger.erasure_of(expected_player) is None
    assert (world.ledger.recording(r.player) or _no(r.player)).state == RecordingState.ARCHIVED
