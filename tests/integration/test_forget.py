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
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from standardwebhooks.webhooks import Webhook

from foundation.config import Settings
from storage.domain import RecordingState
from storage.domain.players import ErasureState, ItemState, player_hash
from storage.domain.rooms import room_id
from storage.domain.transcripts import TranscriptLineView
from storage.ledger import Ledger, utcnow
from storage.objectstore import ObjectStore, store_from_url
from tasks import forgetting
from tasks.archive import recording_prefix
from tasks.notify import outbox
from tasks.services import Services
from tests.support.archives import ledger_rows_holding, objects_holding, versions_under
from tests.support.cli import cli
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
    world: World,
    rid: str,
    *,
    audio: bytes,
    manifest: dict[str, Any],
    result: dict[str, Any],
    speakers: list[str],
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
        steps=[
            {"step": "fetch", "ok": False, "error": f"odd: {json.dumps(manifest)}"},
            {"step": "fetch", "ok": True},
        ],
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
    segments = [
        {"speaker": u, "start_s": float(i), "end_s": i + 1.0, "text": f"hello from {u}"}
        for i, u in enumerate(speakers)
    ]
    flags = [
        {"speaker": u, "start_s": float(i), "end_s": i + 1.0, "match": "hello",
         "text": f"hello from {u}"}
        for i, u in enumerate(speakers)
    ]  # fmt: skip
    world.ledger.finish_transcript(
        run_id, utcnow(), engine="test", language="en",
        json_url=world.archive.url(prefix + "transcript.json"),
        vtt_url=world.archive.url(prefix + "transcript.vtt"),
        summary={"speakers": list(speakers)}, document={"segments": segments, "flags": flags},
        lines=[TranscriptLineView(x["speaker"], x["start_s"], x["end_s"], x["text"])
               for x in segments],
        flags=flags,
    )  # fmt: skip
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
        speakers=[user],
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
        speakers=users,
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


def deliver_all(world: World, whsec: str, receiver: Any, ids: list[int]) -> None:
    """Send the notifications as the delivery task does (signed, Standard Webhooks)."""
    import requests

    from tasks.notify import delivery

    for nid in ids:
        note = world.ledger.notification(nid)
        assert note is not None
        attempt = delivery.deliver(
            requests.Session(), note.url, note.webhook_id, note.body, secret=whsec, timeout=5
        )
        assert attempt.status_code == 204


def erasure_notes(world: World, erasure_id: int) -> list[Any]:
    from sqlalchemy import select

    from storage.ledger.tables import Notification

    with world.ledger.session() as s:
        ids = s.scalars(
            select(Notification.id)
            .where(Notification.erasure_id == erasure_id)
            .order_by(Notification.id)
        ).all()
    return [world.ledger.notification(i) for i in ids]


def test_forget_deletes_every_version_remixes_the_room_and_leaves_no_user_id(
    world: World, receiver: Any, whsec: str
):
    r = room_of_three(world)
    player = player_hash(KEY.encode(), BIZ, PLAYER)

    report = forget(world)

    assert not report.dry_run and report.state == ErasureState.RUNNING  # the room's remix
    assert report.player == player and report.recordings == (r.player,)
    assert report.rooms_remixed == (r.room,) and report.rooms_deleted == ()
    # The media written twice (two versions on S3), its manifest, and on S3 the deleted
    # sidecar's version and delete marker (one object that had a version).
    assert report.objects == (2 if world.s3 is None else 3)
    assert world.kept_under(r.player) == []
    tomb = world.ledger.recording(r.player)
    assert tomb is not None and tomb.state == RecordingState.FORGOTTEN and tomb.tombstoned_at
    assert tomb.identity["UserID"] == player
    assert erasure_notes(world, report.erasure_id) == []  # nothing said before it is done

    remix_without_player(world, r)
    done = forgetting.finish(world.services(), report.erasure_id)

    assert done.state == ErasureState.DONE and done.rooms_remixed == (r.room,)
    assert done.rows["recordings"] >= 2 and done.rows["callbacks"] == 2
    assert done.rows["transcript_lines"] == 2 and done.rows["audit_entries"] >= 2
    # Only the new revision's objects are left of the room, each with its one version.
    room_left = world.kept_under(r.room)
    assert len(room_left) == len(set(room_left)) == 2 and "(delete marker)" not in str(room_left)
    assert ledger_rows_holding(world.ledger.engine, PLAYER) == []
    assert world.objects_holding(PLAYER) == []
    # Everyone else is still there.
    for other, rid in zip(OTHERS, r.others, strict=True):
        assert ledger_rows_holding(world.ledger.engine, other)
        assert world.objects_holding(other)
        assert (world.ledger.recording(rid) or _no(rid)).state == RecordingState.ARCHIVED

    [note] = erasure_notes(world, report.erasure_id)
    assert note.run_id is None and note.event_type == "player.forgotten"
    body = json.loads(note.body)
    assert body["type"] == "player.forgotten" and PLAYER not in note.body
    assert body["data"] == {
        "BizID": BIZ, "player": player, "state": "done", "recordings": [r.player],
        "rooms_remixed": [r.room], "rooms_deleted": [], "kept": [], "objects": done.objects,
    }  # fmt: skip
    # Lost with its task, it is handed out again by the sweep, as any notification.
    later = utcnow() + timedelta(hours=1)
    assert note.id in outbox.lost_deliveries(world.ledger, later)
    deliver_all(world, whsec, receiver, [note.id])
    [received] = receiver.requests
    Webhook(whsec).verify(received.body, received.headers)
    assert (
        received.headers["webhook-id"] == note.webhook_id and PLAYER.encode() not in received.body
    )

    [audit] = [e for e in world.ledger.audit_trail() if e.action == "forget"]
    assert audit.actor == "user:ada" and audit.target == player
    assert audit.detail["recordings"] == 1 and audit.detail["rooms"] == 1


def test_a_vendor_retry_or_a_new_callback_does_not_bring_a_forgotten_recording_back(
    world: World,
):
    r = room_of_three(world)
    report = forget(world)
    remix_without_player(world, r)
    forgetting.finish(world.services(), report.erasure_id)

    assert record(world, PLAYER, 1) == r.player  # a vendor's retry of an old callback
    assert record(world, PLAYER, 7) == r.player  # a segment never seen
    tomb = world.ledger.recording(r.player)
    assert tomb is not None and tomb.state == RecordingState.FORGOTTEN
    assert tomb.settle_due_at is None
    assert world.ledger.claim(r.player, now=utcnow(), force=True) is None
    # The new callback brought the UserID in again; beat's sweep (or the erasure's next
    # pass) takes it out.
    assert ledger_rows_holding(world.ledger.engine, PLAYER)
    assert forgetting.resume_unfinished(world.services(), lambda _: None) == []
    assert ledger_rows_holding(world.ledger.engine, PLAYER) == []
    again = forgetting.finish(world.services(), report.erasure_id)
    assert again.state == ErasureState.DONE
    assert world.kept_under(r.player) == []


def test_forget_twice_reports_the_same_erasure_and_changes_nothing_more(world: World):
    r = room_of_three(world)
    first = forget(world)
    remix_without_player(world, r)
    done = forgetting.finish(world.services(), first.erasure_id)
    notes = erasure_notes(world, first.erasure_id)

    again = forget(world)

    assert again.erasure_id == first.erasure_id and again.state == ErasureState.DONE
    assert again.objects == done.objects and again.recordings == done.recordings
    assert again.rooms_remixed == done.rooms_remixed
    assert erasure_notes(world, first.erasure_id) == notes  # not sent twice
    room = world.ledger.recording(r.room)
    assert room is not None and room.state == RecordingState.ARCHIVED  # not remixed again
    assert ledger_rows_holding(world.ledger.engine, PLAYER) == []


def test_a_forget_that_crashed_half_way_is_finished_by_running_it_again(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    """The ledger part committed, then the process died before the archive was purged."""
    r = room_of_three(world)

    def crash(prefix: str) -> int:
        raise RuntimeError("killed half-way")

    svc = world.services()
    monkeypatch.setattr(svc.archive, "purge", crash)
    with pytest.raises(RuntimeError, match="half-way"):
        forgetting.forget_player(svc, BIZ, PLAYER, actor="user:ada")
    monkeypatch.undo()
    tomb = world.ledger.recording(r.player)
    assert tomb is not None and tomb.state == RecordingState.FORGOTTEN
    assert world.kept_under(r.player)  # the media is still there
    player = player_hash(KEY.encode(), BIZ, PLAYER)
    erasure = world.ledger.erasure_of(player)
    assert erasure is not None and erasure.state == ErasureState.RUNNING
    # The sweep would hand it out: it has something to do.
    assert erasure.id in world.ledger.unfinished_erasures()

    report = forgetting.finish(world.services(), erasure.id)  # as `recpipe.forget` does
    assert world.kept_under(r.player) == [] and report.state == ErasureState.RUNNING
    remix_without_player(world, r)
    assert forget(world).state == ErasureState.DONE  # or asked again
    assert ledger_rows_holding(world.ledger.engine, PLAYER) == []
    assert world.objects_holding(PLAYER) == []
    assert world.ledger.unfinished_erasures() == []


def test_a_held_recording_is_kept_and_reported_and_finished_on_release(world: World):
    r = room_of_three(world)
    world.ledger.hold(r.player, "case 12", "user:lex")

    report = forget(world)

    assert [k.as_json() for k in report.kept] == [
        {"id": r.player, "reason": "hold", "hold_reason": "case 12"}
    ]
    assert world.kept_under(r.player)  # nothing of it deleted
    held = world.ledger.recording(r.player)
    assert held is not None and held.state == RecordingState.ARCHIVED
    # The room's next revision still mixes the held recording, as a mix run would.
    mix_room(world, [r.player, *r.others], [PLAYER, *OTHERS])
    waiting = forgetting.finish(world.services(), report.erasure_id)
    assert waiting.state == ErasureState.WAITING
    [note] = erasure_notes(world, report.erasure_id)
    assert json.loads(note.body)["data"]["kept"] == [{"id": r.player, "reason": "hold"}]
    assert world.ledger.unfinished_erasures() == []  # the hold stands: nothing to do

    assert world.ledger.release(r.player, "user:lex")
    assert world.ledger.unfinished_erasures() == [report.erasure_id]  # the sweep's cue
    sent: list[int] = []
    svc = world.services()
    assert forgetting.resume_unfinished(svc, sent.append) == [report.erasure_id]
    resumed = forgetting.finish(svc, report.erasure_id)  # as recpipe.forget: no UserID
    # The room still mixed the held recording: it is remixed once more.
    assert resumed.state == ErasureState.RUNNING and world.kept_under(r.player) == []
    remix_without_player(world, r)
    done = forgetting.finish(world.services(), report.erasure_id)
    assert done.state == ErasureState.DONE and done.kept == ()
    assert ledger_rows_holding(world.ledger.engine, PLAYER) == []
    assert world.objects_holding(PLAYER) == []
    assert [json.loads(n.body)["data"]["state"] for n in erasure_notes(world, done.erasure_id)] == [
        "waiting",
        "done",
    ]


def test_a_room_with_no_one_else_left_is_deleted_whole(world: World):
    player = user_recording(world, PLAYER)
    other = user_recording(world, OTHERS[0])
    room = mix_room(world, [player, other], [PLAYER, OTHERS[0]])
    forget(world)
    assert forgetting.forget_player(
        world.services(), BIZ, OTHERS[0], actor="user:ada", deliver=lambda _: None
    ).rooms_deleted == (room,)
    gone = world.ledger.recording(room)
    assert gone is not None and gone.state == RecordingState.FORGOTTEN
    assert world.kept_under(room) == []
    assert ledger_rows_holding(world.ledger.engine, PLAYER) == []
    assert ledger_rows_holding(world.ledger.engine, OTHERS[0]) == []


# -- the API and the command line ---------------------------------------------------------


def console_app(world: World) -> tuple[Any, dict[str, str]]:
    """The console on the world's ledger (its tasks' settings too), with a token of each
    scope."""
    from recpipe.console import auth
    from recpipe.console.app import create_app
    from tasks import context
    from tests.support.console import add_people

    context.use(world.settings)
    people = add_people(world.ledger)
    admin = auth.new_token()
    world.ledger.add_token("legal", "admin", auth.hash_token(admin))
    tokens = {"read": people.read_token, "operate": people.operate_token, "admin": admin}
    app = create_app(world.settings, ledger=world.ledger, secret="forget-test-" + "s" * 32)
    return app, tokens


@pytest.fixture
def fresh_context() -> Iterator[None]:
    from tasks import context

    yield
    context.use(Settings.from_env())
    context.reset()


@pytest.mark.parametrize("who", ["none", "read", "operate", "admin"])
def test_only_an_admin_forgets_a_player_through_the_api(
    world: World, who: str, fresh_context: None
):
    r = room_of_three(world)
    app, tokens = console_app(world)
    client = app.test_client()
    headers = {} if who == "none" else {"Authorization": f"Bearer {tokens[who]}"}
    url = f"/api/v1/players/{BIZ}/{PLAYER}/forget"

    dry = client.post(url, json={"dry_run": True}, headers=headers)
    expected = {"none": 401, "read": 403, "operate": 403, "admin": 200}[who]
    assert dry.status_code == expected, dry.data
    if who != "admin":
        assert client.post(url, headers=headers).status_code == expected
        assert [e for e in world.ledger.audit_trail() if e.action == "forget"] == []
        assert (world.ledger.recording(r.player) or _no(r.player)).state == "archived"
        return
    plan = dry.get_json()
    assert plan["dry_run"] is True and plan["state"] == "planned"
    assert plan["recordings"] == [r.player] and PLAYER not in dry.get_data(as_text=True)
    assert (world.ledger.recording(r.player) or _no(r.player)).state == "archived"

    done = client.post(url, headers=headers)
    assert done.status_code == 202, done.data
    report = done.get_json()
    assert report["state"] == "running" and report["rooms_remixed"] == [r.room]
    assert report["player"] == plan["player"] and PLAYER not in done.get_data(as_text=True)
    assert (world.ledger.recording(r.player) or _no(r.player)).state == "forgotten"
    [audit] = [e for e in world.ledger.audit_trail() if e.action == "forget"]
    assert audit.actor == "token:legal" and audit.target == report["player"]
    for bad in ({"dry_run": "yes"}, ["x"]):
        assert client.post(url, json=bad, headers=headers).status_code == 400


def test_without_a_player_key_only_the_embedded_default_forgets_with_one_it_keeps(
    world: World, fresh_context: None
):
    world.settings = Settings.from_env({**world.env, "RECPIPE_PLAYER_KEY": ""})
    app, tokens = console_app(world)
    answer = app.test_client().post(
        f"/api/v1/players/{BIZ}/{PLAYER}/forget",
        json={"dry_run": True},
        headers={"Authorization": f"Bearer {tokens['admin']}"},
    )
    if world.s3 is None:  # the embedded default: a key made once in its data directory
        assert answer.status_code == 200, answer.data
        kept = (world.settings.data_dir / "player-key").read_text().strip()
        assert answer.get_json()["player"] == player_hash(kept.encode(), BIZ, PLAYER)
        return
    assert answer.status_code == 503
    assert answer.get_json()["setting"] == "RECPIPE_PLAYER_KEY"
    assert "RECPIPE_PLAYER_KEY" in answer.get_json()["error"]


def test_recpipe_forget_plans_forgets_and_says_so_with_its_exit_codes(world: World):
    r = room_of_three(world)
    args = ("forget", "--app", str(BIZ), "--user", PLAYER)

    dry = cli(world.env, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "objects would be deleted: 2" in dry.stdout and f"rooms would be remixed: {r.room}"
    assert "(dry run: nothing changed)" in dry.stdout and PLAYER not in dry.stdout
    plan = json.loads(cli(world.env, *args, "--dry-run", "--json").stdout)
    assert plan["state"] == "planned" and plan["recordings"] == [r.player]
    assert (world.ledger.recording(r.player) or _no(r.player)).state == "archived"

    done = cli(world.env, *args, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["state"] == "running" and report["rooms_remixed"] == [r.room]
    assert PLAYER not in done.stdout
    assert world.kept_under(r.player) == []
    [audit] = [e for e in world.ledger.audit_trail() if e.action == "forget"]
    assert audit.actor.startswith("cli") and audit.target == report["player"]

    assert cli(world.env, "forget", "--app", "0", "--user", PLAYER).returncode == 2
    assert cli(world.env, "forget", "--app", str(BIZ), "--user", " ").returncode == 2
    if world.s3 is not None:
        keyless = cli({**world.env, "RECPIPE_PLAYER_KEY": ""}, *args, "--dry-run")
        assert keyless.returncode == 2 and keyless.stdout == ""
        assert keyless.stderr.count("\n") == 1 and "RECPIPE_PLAYER_KEY" in keyless.stderr


def test_a_run_under_way_when_its_recording_is_forgotten_leaves_nothing_behind(world: World):
    r = room_of_three(world)
    run_id = world.ledger.claim(r.player, now=utcnow(), force=True)  # a reprocess, say
    assert run_id and world.ledger.start_run(run_id, worker="w1", now=utcnow(), stale_after=60)

    report = forget(world)
    erasure = world.ledger.erasure(report.erasure_id)
    assert erasure is not None
    [own] = erasure.items_of("own")
    assert own.state == ItemState.PENDING  # its run may still write the archive

    # The worker finishes: it wrote the archive again, and tells the ledger.
    run = world.ledger.run(run_id)
    assert run is not None
    prefix = recording_prefix(run.recording)
    world.archive.put_bytes(prefix + f"{r.player}.m4a", f"voice of {PLAYER}".encode())
    world.ledger.finish_run(
        run_id, now=utcnow(), result={"speech": [{"UserID": PLAYER}]}, manifest_url="x",
        steps=[{"step": "fetch", "error": f"{BIZ}_{ROOM}_{PLAYER}/0.mp3 is odd"}],
    )  # fmt: skip
    tomb = world.ledger.recording(r.player)
    assert tomb is not None and tomb.state == RecordingState.FORGOTTEN
    ended = world.ledger.run(run_id)
    assert ended is not None and ended.state == "failed" and ended.result == {}

    remix_without_player(world, r)
    assert forgetting.finish(world.services(), report.erasure_id).state == ErasureState.DONE
    assert world.kept_under(r.player) == []
    assert ledger_rows_holding(world.ledger.engine, PLAYER) == []


def test_a_run_that_writes_and_ends_while_the_pass_purges_is_purged_again(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    """The worker's last upload and its run's end land between the pass's purge and its
    look at the recording's runs: the pass asked about the runs before it purged, so the
    recording stays pending and the next pass deletes what the worker wrote (found by the
    end-to-end proof once recordings were finished faster)."""
    r = room_of_three(world)
    run_id = world.ledger.claim(r.player, now=utcnow(), force=True)
    assert run_id and world.ledger.start_run(run_id, worker="w1", now=utcnow(), stale_after=60)
    run = world.ledger.run(run_id)
    assert run is not None
    prefix = recording_prefix(run.recording)
    real_purge = forgetting._purge

    def purge_while_the_worker_ends(svc: Services, recording_id: str, now: Any) -> int:
        purged = real_purge(svc, recording_id, now)
        if recording_id == r.player and world.ledger.runs_under_way(recording_id):
            world.archive.put_bytes(prefix + "manifest.json", f"voice of {PLAYER}".encode())
            world.ledger.finish_run(run_id, now=utcnow(), result={}, manifest_url="x")
        return purged

    monkeypatch.setattr(forgetting, "_purge", purge_while_the_worker_ends)
    report = forget(world)
    erasure = world.ledger.erasure(report.erasure_id)
    assert erasure is not None
    [own] = erasure.items_of("own")
    assert own.state == ItemState.PENDING
    assert world.kept_under(r.player) != []  # what the worker wrote after the purge

    remix_without_player(world, r)
    assert forgetting.finish(world.services(), report.erasure_id).state == ErasureState.DONE
    assert world.kept_under(r.player) == []
    assert world.objects_holding(PLAYER) == []


def test_a_held_room_is_kept_whole_and_remixed_without_the_player_once_released(world: World):
    r = room_of_three(world)
    world.ledger.hold(r.room, "case 31", "user:lex")
    room_before = world.kept_under(r.room)

    report = forget(world)

    assert report.state == ErasureState.WAITING and report.rooms_remixed == ()
    assert [(k.id, k.hold_reason) for k in report.kept] == [(r.room, "case 31")]
    assert world.kept_under(r.player) == []  # their own recording went
    assert world.kept_under(r.room) == room_before  # the room, evidence, is whole
    held = world.ledger.recording(r.room)
    assert held is not None and held.state == RecordingState.ARCHIVED

    assert world.ledger.release(r.room, "user:lex")
    resumed = forgetting.finish(world.services(), report.erasure_id)
    assert resumed.state == ErasureState.RUNNING and resumed.rooms_remixed == (r.room,)
    remix_without_player(world, r)
    done = forgetting.finish(world.services(), report.erasure_id)
    assert done.state == ErasureState.DONE and done.kept == ()
    assert ledger_rows_holding(world.ledger.engine, PLAYER) == []
    assert world.objects_holding(PLAYER) == []


# -- a real mix, in process -----------------------------------------------------------------


def test_the_room_is_mixed_again_without_the_players_tone_and_with_everyone_elses(
    ledger: Ledger, tmp_path: Path, tone: Any
):
    """Three users, each a tone, mixed by tasks.processing; the player (440 Hz) forgotten,
    the room settles and mixes again: 440 Hz is gone from the mix, 880 and 1320 Hz stay."""
    from storage.domain import GmeEvent, GmeRecordingKey
    from storage.objectstore import LocalStore
    from tasks import processing, settling
    from tests.support.media import ANALYSIS_RATE, decode

    settings = Settings.from_env({
        "RECPIPE_DATA_DIR": str(tmp_path / "var"), "RECPIPE_DATABASE_URL": ledger.url,
        "RECPIPE_PLAYER_KEY": KEY, "RECPIPE_SETTLE_SECONDS": "1",
    })  # fmt: skip
    source, archive = LocalStore(tmp_path / "source"), LocalStore(tmp_path / "archive")
    svc = Services(settings, ledger, source, archive)

    def run(rid: str) -> Any:
        run_id = ledger.claim(rid, now=utcnow(), force=True)
        assert run_id
        done = processing.process(svc, run_id, "test-worker")
        assert done is not None and done.state == "archived", done and done.error
        return done

    users = {PLAYER: 440.0, OTHERS[0]: 880.0, OTHERS[1]: 1320.0}
    rids = {}
    for user, frequency in users.items():
        key = GmeRecordingKey(BIZ, ROOM, user, TASK, 0)
        name = f"{BIZ}_{ROOM}_{user}/2026-01-01-10-00-00_{TASK}_audio.mp3"
        source.put(name, tone(f"{user}.mp3", frequency, 3.0))
        body = callback(user, 0)
        ledger.record_gme_event(GmeEvent(key, 3, 0, name, 1675930605), body, {},
                                now=utcnow(), settle_seconds=0)  # fmt: skip
        rids[user] = run(key.recording_id).recording_id
        room = ledger.note_room_member(rids[user], now=utcnow(), settle_seconds=0)
    assert room is not None
    first = run(room)
    assert {p["UserID"] for p in first.result["participants"]} == set(users)

    def band(run_view: Any, frequency: float) -> float:
        [artifact] = [a for a in run_view.result["artifacts"] if a["format"] == "m4a"]
        samples = decode(archive.local_path(artifact["url"].split("/archive/", 1)[1]))
        spectrum = np.abs(np.fft.rfft(samples))
        freqs = np.fft.rfftfreq(len(samples), 1 / ANALYSIS_RATE)
        return float(spectrum[(freqs > frequency - 15) & (freqs < frequency + 15)].max())

    assert band(first, 440.0) > 0.3 * band(first, 880.0)

    report = forgetting.forget_player(svc, BIZ, PLAYER, actor="user:ada")
    assert report.rooms_remixed == (room,) and report.state == ErasureState.RUNNING
    later = utcnow() + timedelta(minutes=5)
    assert settling.settle(svc, room, now=later).action == "finalize"
    room_now = ledger.recording(room)
    assert room_now is not None and room_now.current_run_id
    second = processing.process(svc, room_now.current_run_id, "test-worker")
    assert second is not None and second.state == "archived", second and second.error
    assert forgetting.finish(svc, report.erasure_id).state == ErasureState.DONE

    assert [p["UserID"] for p in second.result["participants"]] == list(OTHERS)
    assert band(second, 440.0) < 0.02 * band(second, 880.0)
    assert band(second, 1320.0) > 0.3 * band(second, 880.0)
    assert ledger_rows_holding(ledger.engine, PLAYER) == []
    assert objects_holding(tmp_path / "archive", PLAYER) == []


def test_a_short_user_id_that_is_also_the_room_id_leaves_everyone_elses_rows_alone(
    world: World,
):
    """UserID "77" in RoomID "77": the player's own rows lose it wherever it stands alone;
    the room's and the others' rows lose only the values that name the player."""
    player_rid = user_recording(world, ROOM)
    others = [user_recording(world, u) for u in OTHERS]
    room = mix_room(world, [player_rid, *others], [ROOM, *OTHERS])
    report = forgetting.forget_player(
        world.services(), BIZ, ROOM, actor="user:ada", deliver=lambda _: None
    )
    mix_room(world, others, list(OTHERS))
    assert forgetting.finish(world.services(), report.erasure_id).state == ErasureState.DONE

    mine = world.ledger.recording(player_rid)
    assert mine is not None and mine.identity["UserID"] == report.player
    for rid in [room, *others]:
        kept = world.ledger.recording(rid)
        assert kept is not None and kept.identity["RoomID"] == ROOM
    theirs = world.ledger.callbacks(recording_ids=others)
    assert len(theirs) == 4 and {json.loads(c.body)["RoomID"] for c in theirs} == {ROOM}
    [own, *_] = world.ledger.callbacks(recording_ids=[player_rid])
    assert json.loads(own.body)["UserID"] == report.player
    for run in world.ledger.runs_for(room):
        users = {p["UserID"] for p in run.result.get("participants") or []}
        assert ROOM not in users
        for note in world.ledger.notifications_for_run(run.id):
            assert json.loads(note.body).get("RoomID", ROOM) == ROOM


def test_two_requests_at_once_make_one_erasure(world: World):
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import func, select

    from storage.ledger.tables import Erasure

    r = room_of_three(world)
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: forget(world), range(2)))
    assert reports[0].erasure_id == reports[1].erasure_id
    with world.ledger.session() as s:
        assert s.scalar(select(func.count()).select_from(Erasure)) == 1
    assert world.kept_under(r.player) == []
