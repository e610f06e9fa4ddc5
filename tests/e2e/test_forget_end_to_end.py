"""The proof that a forgotten player is gone, with recpipe as real processes (webhook, worker
with beat, `recpipe forget` as an operator runs it): on PostgreSQL with a versioned bucket on
an S3 server over HTTP, and on the embedded default (SQLite, the local archive, the embedded
broker).

A GME room of three users, each speaking a tone of their own, then a fourth who comes later
(revision 2). One of the first three is forgotten. Afterwards no object in the store (every
version of every key) holds their UserID or their voice, the room's mix (its revision 3)
still has everyone else's tone and not theirs, no row of the ledger holds their UserID, a
signed player.forgotten carrying the keyed hash went downstream, a vendor retry of their old
callbacks or a new segment of theirs brings nothing back, and forgetting them again changes
nothing. Each check is first seen to fail before forget. Forget killed half-way and run
again gives the same. With transcription on, the room's transcripts lose them too. A player
forgotten while their callbacks still wait for a worker is never archived at all.

The forgotten UserID is Korean: JSON writes it escaped (a raw callback's body) or not (what
recpipe writes), and both spellings are looked for."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from standardwebhooks.webhooks import Webhook

from storage.domain.players import player_hash
from storage.domain.rooms import room_id
from tests.support.archives import ledger_rows_holding, objects_holding, versions_under
from tests.support.faults import TcpProxy
from tests.support.media import level_at, loudest_level, speech_track
from tests.support.rooms import RoomTask
from tests.support.signing import sign_gme
from tests.support.stack import Received, Stack, parse_body, stack_env
from tests.support.traces import (
    ABSENT,
    HEARD,
    StoredObject,
    holds,
    local_objects,
    s3_objects,
    sounds,
)
from tests.support.waits import wait_for

BIZ, SECRET, ROOM = 1400000000, "forget-test-key", "700"
TASK = 446946705284000919  # > 2**53
FORGOTTEN = "플레이어-7f3a91"  # never found by chance in a sound's bytes
# user: (tone Hz, [(clock second of 10:00:ss, seconds), ...]); the forgotten one pauses.
SPEAKERS = {
    "player-alice": (440.0, [(0, 4.0)]),
    FORGOTTEN: (660.0, [(1, 2.0), (6, 2.0)]),  # a pause over 2 s is kept
    "player-carol": (880.0, [(2, 4.0)]),
}
LATE = {"player-dave": (1250.0, [(9, 2.0)])}  # revision 2 of the room
EVERYONE = {**SPEAKERS, **LATE}
TONES = {user: hz for user, (hz, _) in EVERYONE.items()}
OTHERS = [user for user in TONES if user != FORGOTTEN]
# A test-only key for the keyed hash of the PostgreSQL stack (the embedded default keeps
# one of its own in the data directory).
PLAYER_KEY = "recpipe-test-player-key-0123456789abcdef"

_ROOM = RoomTask(BIZ, ROOM, TASK)
RID = room_id(BIZ, ROOM, str(TASK))
FORGOTTEN_RID = _ROOM.recording_id(FORGOTTEN)


@dataclass
class Place:
    """Where one stack keeps everything: its settings, where GME uploads a file, every
    object (every version) of its archive, and those that hold a text (name@version)."""

    env: dict[str, str]
    upload: Callable[[str, Path], None]
    objects: Callable[[], list[StoredObject]]
    holding: Callable[[str], list[str]]
    kept_under: Callable[[str], list[str]]  # every version and delete marker under a prefix
    archive_through: Callable[[str], str] | None = None  # the archive's URL via an endpoint


def _s3_place(request: pytest.FixtureRequest, tmp_path: Path, common: dict[str, str]) -> Place:
    s3_client, endpoint = (
        request.getfixturevalue("s3_client"),
        request.getfixturevalue("s3_endpoint"),
    )
    archive = request.getfixturevalue("bucket")
    s3_client.put_bucket_versioning(Bucket=archive, VersioningConfiguration={"Status": "Enabled"})
    source = f"{archive}-cos"  # the vendor's bucket is not recpipe's store
    s3_client.create_bucket(Bucket=source)
    env = stack_env(
        tmp_path,
        request.getfixturevalue("pg_url"),
        request.getfixturevalue("redis_url"),
        endpoint,
        archive,
        RECPIPE_GME_SOURCE_URL=f"s3://{source}/cos?endpoint_url={endpoint}",
        RECPIPE_PLAYER_KEY=PLAYER_KEY,
        **common,
    )

    def upload(key: str, path: Path) -> None:
        s3_client.upload_file(str(path), source, f"cos/{key}")

    return Place(
        env,
        upload,
        lambda: s3_objects(s3_client, archive),
        lambda needle: objects_holding(s3_client, needle, bucket=archive),
        lambda prefix: versions_under(s3_client, f"archive/{prefix}", bucket=archive),
        lambda endpoint: f"s3://{archive}/archive?endpoint_url={endpoint}",
    )


def _embedded_place(tmp_path: Path, common: dict[str, str]) -> Place:
    data = tmp_path / "var"
    # The defaults but for the ledger's URL, which the test reads too: the embedded broker,
    # the archive and the GME source in the data directory, no player key set.
    env = {
        "RECPIPE_DATA_DIR": str(data),
        "RECPIPE_DATABASE_URL": f"sqlite:///{data / 'ledger.sqlite3'}",
        "RECPIPE_SWEEP_SECONDS": "1",
        "RECPIPE_SETTLE_SECONDS": "2",
        **common,
    }
    for name in ("RECPIPE_BROKER_URL", "RECPIPE_ARCHIVE_URL", "RECPIPE_GME_SOURCE_URL"):
        assert name not in os.environ, f"{name} is set: the embedded default cannot be tested"

    def upload(key: str, path: Path) -> None:
        (data / "source" / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / "source" / key)

    return Place(
        env,
        upload,
        lambda: local_objects(data / "archive"),
        lambda needle: objects_holding(data / "archive", needle),
        lambda prefix: versions_under(data / "archive", prefix),
    )


@pytest.fixture(params=["postgresql-s3", "embedded"])
def place(request: pytest.FixtureRequest, tmp_path: Path, receiver, whsec) -> Place:
    common = {
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_NOTIFY_URLS": receiver.url,
        "RECPIPE_NOTIFY_SECRET": whsec,
        "RECPIPE_MAX_WAIT_SECONDS": "4",
    }
    if request.param == "postgresql-s3":
        return _s3_place(request, tmp_path, common)
    return _embedded_place(tmp_path, common)


@pytest.fixture
def stack(place: Place, tmp_path: Path):
    s = Stack(place.env, tmp_path / "logs")
    s.start_webhook()
    s.start_worker(concurrency=2, beat=True)
    yield s
    s.stop()


def sign(body: bytes) -> str:
    return sign_gme(SECRET, body)


def post_shuffled(stack: Stack, bodies: list[bytes], seed: int) -> None:
    shuffled = list(bodies)
    random.Random(seed).shuffle(shuffled)
    assert [stack.post_gme(body, sign(body)) for body in shuffled] == [200] * len(shuffled)


def notes(receiver, kind: str) -> list[Received]:
    return [r for r in receiver.requests if parse_body(r)["type"] == kind]


def room_archived(stack: Stack, revision: int) -> None:
    def done() -> bool:
        room = stack.ledger.recording(RID)
        assert room is None or room.state != "failed", (room.error, stack.log_text())
        return room is not None and room.revision == revision and room.state == "archived"

    wait_for(done, timeout=180, interval=0.5, what=f"revision {revision} of the room archived")


def make_room(stack: Stack, place: Place, receiver, tmp_path: Path) -> list[bytes]:
    """Three users, then a fourth as revision 2; returns the forgotten user's callbacks."""
    bodies = _ROOM.speak(tmp_path, SPEAKERS, place.upload)
    post_shuffled(stack, bodies, seed=27)
    room_archived(stack, 1)
    post_shuffled(stack, _ROOM.speak(tmp_path, LATE, place.upload), seed=28)
    room_archived(stack, 2)
    wait_for(lambda: len(notes(receiver, "room.archived")) >= 2, timeout=60, what="room notes")
    return [b for b in bodies if json.loads(b)["UserID"] == FORGOTTEN]


FORGET = [sys.executable, "-m", "recpipe", "forget", "--app", str(BIZ), "--user", FORGOTTEN]


def forget(stack: Stack, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FORGET, "--json", *options], env=stack.env, capture_output=True, text=True, timeout=300
    )


def ledger_rows(place: Place, needle: str) -> list[tuple[str, str, str]]:
    """(table, column, value) of every value of the ledger that holds `needle`."""
    engine = create_engine(place.env["RECPIPE_DATABASE_URL"])
    try:
        return ledger_rows_holding(engine, needle)
    finally:
        engine.dispose()


def data_files_holding(data: Path, needle: str) -> list[str]:
    """The files of a data directory whose path or bytes hold `needle`, but its `source`
    folder (the vendor's uploads, on the embedded default) and the ledger's file."""
    return [
        str(path)
        for path in sorted(data.rglob("*"))
        if path.is_file()
        and path.relative_to(data).parts[0] != "source"
        and not path.name.startswith("ledger.sqlite3")
        and (holds(str(path.relative_to(data)), needle) or holds(path.read_bytes(), needle))
    ]


def the_mix(objects: list[StoredObject]) -> list[StoredObject]:
    """Every stored version of the room's mix."""
    return [o for o in objects if o.name.endswith(f"rooms/{RID}/{RID}.m4a")]


def voices(objects: list[StoredObject], scratch: Path) -> dict[str, Any]:
    """Each sound in the store, by name@version: its samples."""
    return {f"{o.name}@{o.version}": samples for o, samples in sounds(objects, scratch)}


def spoke(user: str) -> list[float]:
    """The middle of each of the user's segments, on the room's clock."""
    return [second + seconds / 2 for second, seconds in EVERYONE[user][1]]


def heard_where_they_spoke(samples, user: str) -> bool:
    return all(level_at(samples, at, TONES[user]) >= HEARD for at in spoke(user))


def assert_there_before_forget(stack: Stack, place: Place, tmp_path: Path) -> None:
    """The checks of the proof fail on the room as it is before forget."""
    objects = place.objects()
    assert place.holding(FORGOTTEN), "the UserID is in no object before forget"
    assert any(FORGOTTEN_RID in o.name for o in objects)
    assert place.kept_under(f"gme/{BIZ}/{FORGOTTEN_RID}/")
    found = voices(objects, tmp_path / "sound")
    theirs = [
        n for n, samples in found.items() if loudest_level(samples, TONES[FORGOTTEN]) >= HEARD
    ]
    own = [n for n in theirs if FORGOTTEN_RID in n]
    assert own and len(theirs) > len(own), f"their voice is not where it should be: {theirs}"
    [mix] = [o for o in the_mix(objects) if o.latest]
    for user in TONES:
        assert heard_where_they_spoke(found[f"{mix.name}@{mix.version}"], user), user
    if place.archive_through is None:  # the local archive is in the data directory
        assert data_files_holding(Path(place.env["RECPIPE_DATA_DIR"]), FORGOTTEN)
    rows = ledger_rows(place, FORGOTTEN)
    assert {table for table, _, _ in rows} >= {"recordings", "callbacks", "segments"}, rows


def player_of(report: dict, place: Place) -> str:
    """The keyed hash the report names, checked against the stack's player key (the
    setting, or on the embedded default the key kept in its data directory)."""
    key = place.env.get("RECPIPE_PLAYER_KEY") or (
        (Path(place.env["RECPIPE_DATA_DIR"]) / "player-key").read_text().strip()
    )
    assert report["player"] == player_hash(key.encode(), BIZ, FORGOTTEN), report
    return str(report["player"])


def assert_forgotten(
    stack: Stack, place: Place, receiver, whsec, tmp_path: Path, revision: int = 3
) -> set[str]:
    """The proof, the room at `revision`. Returns what it saw of the store (each object's
    name@version)."""
    objects = place.objects()
    # No object holds the UserID; none is (a version of) the player's own track.
    assert place.holding(FORGOTTEN) == []
    assert [o.name for o in objects if FORGOTTEN_RID in o.name] == []
    # Nothing is left under their recording's prefix, not even a delete marker; the room
    # keeps one version of each of its objects (no earlier mix hidden behind the current).
    assert place.kept_under(f"gme/{BIZ}/{FORGOTTEN_RID}/") == []
    room = place.kept_under(f"gme/{BIZ}/rooms/{RID}/")
    assert room and len(room) == len(set(room)) and not any("marker" in k for k in room), room
    # Their voice is in no sound left; everyone else's is in the room's mix, and each of the
    # others' own track is still there.
    found = voices(objects, tmp_path / "sound")
    theirs = {
        name: level
        for name, samples in found.items()
        if (level := loudest_level(samples, TONES[FORGOTTEN])) >= ABSENT
    }
    assert theirs == {}, f"{FORGOTTEN}'s tone is still in {theirs}"
    mixes = the_mix(objects)
    assert mixes, "the room's mix is gone"
    for mix in mixes:
        for user in OTHERS:
            assert heard_where_they_spoke(found[f"{mix.name}@{mix.version}"], user), user
    for user in OTHERS:
        own = [n for n in found if _ROOM.recording_id(user) in n]
        assert own, f"{user}'s own track is gone"
        assert all(loudest_level(found[n], TONES[user]) >= HEARD for n in own), user
    # Nor does any file recpipe keeps in its data directory (scratch, the embedded broker's
    # messages, metrics, the local archive), but the GME source the embedded default keeps
    # there for the vendor, and the SQLite ledger, whose rows are read next.
    assert data_files_holding(Path(place.env["RECPIPE_DATA_DIR"]), FORGOTTEN) == []
    # No row of the ledger holds the UserID: raw callbacks, notification bodies, audit...
    assert ledger_rows(place, FORGOTTEN) == []
    # The recording is a tombstone that says forgotten, with the time.
    tombstone = stack.ledger.recording(FORGOTTEN_RID)
    assert tombstone is not None and tombstone.state == "forgotten", tombstone
    assert tombstone.tombstoned_at is not None
    room = stack.ledger.recording(RID)
    assert room is not None and (room.state, room.revision) == ("archived", revision), room
    # room.archived for that revision, and player.forgotten: signed, without the UserID.
    [archived] = [
        n for n in notes(receiver, "room.archived")
        if n.headers["webhook-id"] == f"msg_{RID}_r{revision}_archived"
    ]  # fmt: skip
    Webhook(whsec).verify(archived.body, archived.headers)
    assert not holds(archived.body, FORGOTTEN)
    participants = parse_body(archived)["room"]["participants"]
    assert sorted(p["UserID"] for p in participants) == sorted(OTHERS)
    forgotten = notes(receiver, "player.forgotten")
    assert forgotten
    for note in forgotten:
        Webhook(whsec).verify(note.body, note.headers)
        assert not holds(note.body, FORGOTTEN) and not holds(str(note.headers), FORGOTTEN)
    return {f"{o.name}@{o.version}" for o in objects}


def assert_player_forgotten_note(receiver, player: str) -> None:
    [data] = {
        json.dumps(parse_body(n)["data"], sort_keys=True)
        for n in notes(receiver, "player.forgotten")
    }
    body = json.loads(data)
    assert body["BizID"] == BIZ and body["player"] == player, body
    assert FORGOTTEN_RID in body["recordings"] and RID in body["rooms_remixed"], body
    assert body["rooms_deleted"] == [] and body["kept"] == [], body
    assert body["objects"] > 0, body


def wait_forgotten(stack: Stack, receiver) -> None:
    room_archived(stack, 3)
    wait_for(lambda: notes(receiver, "player.forgotten"), timeout=120, what="player.forgotten")


def test_a_forgotten_player_is_gone_from_store_ledger_and_mix(
    place: Place, stack: Stack, receiver, whsec, tmp_path: Path
):
    """Forget one of a room's four users (a dry run first changes nothing); the proof; a
    vendor retry of their callbacks, a new segment of theirs and forget again change
    nothing."""
    theirs = make_room(stack, place, receiver, tmp_path)
    # A dry run says what would go, and changes nothing.
    before = {(o.name, o.version) for o in place.objects()}
    planned = forget(stack, "--dry-run")
    assert planned.returncode == 0, (planned.stdout, planned.stderr)
    plan = json.loads(planned.stdout)
    assert (plan["dry_run"], plan["state"]) == (True, "planned"), plan
    assert plan["recordings"] == [FORGOTTEN_RID] and plan["rooms_remixed"] == [RID], plan
    assert plan["objects"] == len([o for o in before if FORGOTTEN_RID in o[0]]), plan
    assert {(o.name, o.version) for o in place.objects()} == before
    assert_there_before_forget(stack, place, tmp_path)

    done = forget(stack)
    assert done.returncode == 0, (done.stdout, done.stderr, stack.log_text())
    assert not holds(done.stdout + done.stderr, FORGOTTEN), done.stdout
    report = json.loads(done.stdout)
    player = player_of(report, place)
    assert report["BizID"] == BIZ and report["dry_run"] is False, report
    assert FORGOTTEN_RID in report["recordings"] and report["objects"] > 0, report
    assert RID in report["rooms_remixed"] and report["rooms_deleted"] == [], report
    wait_forgotten(stack, receiver)
    stored = assert_forgotten(stack, place, receiver, whsec, tmp_path)
    assert_player_forgotten_note(receiver, player)

    # A vendor retry of their old callbacks (the exact signed bodies) is a duplicate.
    for body in theirs:
        assert stack.post_gme(body, sign(body)) == 200
    time.sleep(6)  # settle, sweep and max wait all pass: nothing comes back
    assert assert_forgotten(stack, place, receiver, whsec, tmp_path) == stored
    # A new segment of theirs, uploaded and told (events never seen): nothing comes back,
    # and the ledger keeps no UserID of it.
    more = _ROOM.speak(tmp_path, {FORGOTTEN: (660.0, [(12, 1.0)])}, place.upload)
    late = [json.dumps({**json.loads(b), "Detail": {**json.loads(b)["Detail"], "SeqNo": 2}})
            .encode() for b in more]  # fmt: skip
    assert [stack.post_gme(body, sign(body)) for body in late] == [200] * len(late)
    time.sleep(6)
    assert assert_forgotten(stack, place, receiver, whsec, tmp_path) == stored

    # Forget again: the same standing erasure, nothing new deleted, no new revision.
    notified = len(receiver.requests)
    again = forget(stack)
    assert again.returncode == 0, (again.stdout, again.stderr)
    repeated = json.loads(again.stdout)
    assert player_of(repeated, place) == player and repeated["state"] == "done", repeated
    time.sleep(4)
    assert assert_forgotten(stack, place, receiver, whsec, tmp_path) == stored
    assert [parse_body(r)["type"] for r in receiver.requests[notified:]] in (
        [],
        ["player.forgotten"],
    )


def erasures(database_url: str) -> list[str]:
    """The state of each erasure in the ledger."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("erasures"):
                return []
            return [row.state for row in conn.execute(text("SELECT state FROM erasures"))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("place", ["postgresql-s3"], indirect=True)
def test_forget_killed_half_way_is_finished_by_running_it_again(
    place: Place, stack: Stack, receiver, whsec, tmp_path: Path
):
    """With the workers stopped, `recpipe forget` reaches the store through a TCP proxy
    that holds every byte: it is SIGKILLed once it has recorded the erasure and made the
    player's recording a tombstone, while its deletes are stuck on their way to the store.
    Run again (and the workers back), the proof holds."""
    make_room(stack, place, receiver, tmp_path)
    assert_there_before_forget(stack, place, tmp_path)
    stack.kill("worker", signal.SIGTERM)  # nothing but forget itself finishes it
    theirs = {f"{o.name}@{o.version}" for o in place.objects() if FORGOTTEN_RID in o.name}
    assert place.archive_through is not None
    proxy = TcpProxy("127.0.0.1", int(place.env["RECPIPE_ARCHIVE_URL"].rsplit(":", 1)[1]))
    proxy.stall.set()
    stuck = {**stack.env, "RECPIPE_ARCHIVE_URL": place.archive_through(proxy.endpoint)}
    log = (tmp_path / "forget-killed.log").open("wb")
    killed = subprocess.Popen(
        [*FORGET, "--json"], env=stuck, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    database = place.env["RECPIPE_DATABASE_URL"]
    try:

        def half_way() -> bool:
            assert killed.poll() is None, (tmp_path / "forget-killed.log").read_text()
            tombstone = stack.ledger.recording(FORGOTTEN_RID)
            return bool(erasures(database)) and tombstone.state == "forgotten"  # type: ignore[union-attr]

        wait_for(half_way, timeout=120, interval=0.2, what="forget half-way")
        os.killpg(killed.pid, signal.SIGKILL)
        assert killed.wait(30) == -signal.SIGKILL
    finally:
        log.close()
        proxy.close()
    # Half-way: the erasure is not done, the player's objects are all still stored and the
    # room still has them.
    assert "done" not in erasures(database)
    after = {f"{o.name}@{o.version}" for o in place.objects() if FORGOTTEN_RID in o.name}
    assert after == theirs
    assert stack.ledger.recording(RID).revision == 2  # type: ignore[union-attr]

    done = forget(stack)
    assert done.returncode == 0, (done.stdout, done.stderr)
    report = json.loads(done.stdout)
    stack.start_worker(concurrency=2, beat=True)
    wait_forgotten(stack, receiver)
    assert_forgotten(stack, place, receiver, whsec, tmp_path)
    assert_player_forgotten_note(receiver, player_of(report, place))
    assert erasures(database) == ["done"]


WORDS = ("delta", "hotel")  # what the forgotten player says, one word a segment


def test_a_forgotten_players_words_leave_the_room_transcript(
    request: pytest.FixtureRequest, tmp_path: Path, receiver, whsec
):
    """With transcription on (pocketsphinx) and the forgotten player saying words instead
    of their tone, their room's transcripts go too: no version of any object, no row, holds
    their UserID once the room's revision 3 is transcribed without them, even when that is
    after the erasure finished (the transcribe worker was busy)."""
    (tmp_path / "words.txt").write_text("\n".join(WORDS) + "\n")
    place = _s3_place(
        request,
        tmp_path,
        {
            "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
            "RECPIPE_NOTIFY_URLS": receiver.url,
            "RECPIPE_NOTIFY_SECRET": whsec,
            "RECPIPE_MAX_WAIT_SECONDS": "4",
            "RECPIPE_TRANSCRIBE": "pocketsphinx",
            "RECPIPE_POCKETSPHINX_WORDS": str(tmp_path / "words.txt"),
        },
    )
    stack = Stack(place.env, tmp_path / "logs")
    try:
        stack.start_webhook()
        stack.start_worker("media", concurrency=2, queues="light,media")
        stack.start_worker("speech", concurrency=1, beat=False, queues="transcribe")
        others = {u: v for u, v in SPEAKERS.items() if u != FORGOTTEN}
        bodies = _ROOM.speak(tmp_path, others, place.upload)
        for seq, ((second, seconds), word) in enumerate(
            zip(SPEAKERS[FORGOTTEN][1], WORDS, strict=True)
        ):
            path = tmp_path / f"said-{seq}.mp3"
            speech_track(path, [(word, 0.4)], seconds)
            key = _ROOM.file_name(FORGOTTEN, second)
            place.upload(key, path)
            bodies += [_ROOM.callback(FORGOTTEN, ev, seq, key) for ev in (1, 2, 3)]
        post_shuffled(stack, bodies, seed=29)
        room_archived(stack, 1)
        post_shuffled(stack, _ROOM.speak(tmp_path, LATE, place.upload), seed=30)
        room_archived(stack, 2)
        transcribed(stack, 2)
        said = stack.ledger.transcript_of(RID)
        assert said is not None and holds(json.dumps(said.document), FORGOTTEN), said
        assert [n for n in place.holding(FORGOTTEN) if n.split("?")[0].endswith(".vtt")]

        # Transcription is slower than mixing: revision 3 is transcribed after the erasure
        # has deleted the earlier revisions' objects.
        stack.kill("speech", signal.SIGTERM)
        done = forget(stack)
        assert done.returncode == 0, (done.stdout, done.stderr)
        wait_forgotten(stack, receiver)
        stack.start_worker("speech", concurrency=1, beat=False, queues="transcribe")
        transcribed(stack, 3)
        time.sleep(3)  # the sweep's next pass, had anything been left for it
        assert place.holding(FORGOTTEN) == []
        assert ledger_rows(place, FORGOTTEN) == []
        assert place.kept_under(f"gme/{BIZ}/{FORGOTTEN_RID}/") == []
    finally:
        stack.stop()


def transcribed(stack: Stack, revision: int) -> None:
    def ready() -> bool:
        found = stack.ledger.transcript_of(RID, revision)
        assert found is None or found.state != "failed", found
        return found is not None and found.state == "ready"

    wait_for(ready, timeout=180, interval=0.5, what=f"the room's transcript of revision {revision}")


@pytest.mark.parametrize("place", ["postgresql-s3"], indirect=True)
def test_a_player_forgotten_while_their_recording_arrives_is_never_archived(
    place: Place, tmp_path: Path, receiver, whsec
):
    """Everyone's callbacks are in, no worker has taken anything yet, and one player is
    forgotten: their recording never gets archived, and the room is mixed without them."""
    stack = Stack(place.env, tmp_path / "logs")
    try:
        stack.start_webhook()
        bodies = _ROOM.speak(tmp_path, EVERYONE, place.upload)
        post_shuffled(stack, bodies, seed=31)
        done = forget(stack)
        assert done.returncode == 0, (done.stdout, done.stderr)
        report = json.loads(done.stdout)
        assert report["recordings"] == [FORGOTTEN_RID], report
        stack.start_worker(concurrency=2, beat=True)
        room_archived(stack, 1)
        wait_for(lambda: notes(receiver, "player.forgotten"), timeout=120, what="player.forgotten")
        time.sleep(4)  # the sweep's next passes, had anything been left for them
        assert_forgotten(stack, place, receiver, whsec, tmp_path, revision=1)
        assert ledger_rows(place, FORGOTTEN) == []
        [data] = {json.dumps(parse_body(n)["data"]) for n in notes(receiver, "player.forgotten")}
        assert json.loads(data)["player"] == player_of(report, place)
    finally:
        stack.stop()


@pytest.mark.parametrize("place", ["postgresql-s3"], indirect=True)
def test_a_player_forgotten_while_their_recording_is_processed_is_not_archived(
    place: Place, tmp_path: Path, receiver, whsec
):
    """The worker's archive is held by a TCP proxy, so the player's recording is being
    processed and gets no further, when the player is forgotten; once the proxy lets the
    worker through, nothing of theirs is archived, or it is deleted after, and the room is
    mixed without them."""
    assert place.archive_through is not None
    proxy = TcpProxy("127.0.0.1", int(place.env["RECPIPE_ARCHIVE_URL"].rsplit(":", 1)[1]))
    proxy.stall.set()
    held = {**place.env, "RECPIPE_ARCHIVE_URL": place.archive_through(proxy.endpoint)}
    stack = Stack(held, tmp_path / "logs")
    try:
        stack.start_webhook()
        # Each user's media task stalls at the archive: a slot for each user, and one
        # left for the settle looks (with two slots, the player's recording could wait
        # behind two stalled others and never start).
        stack.start_worker(concurrency=len(EVERYONE) + 1, beat=True)
        post_shuffled(stack, _ROOM.speak(tmp_path, EVERYONE, place.upload), seed=32)
        stack.wait_for_state(FORGOTTEN_RID, ("processing",), timeout=120)
        done = forget(Stack(place.env, tmp_path / "cli-logs"))  # straight to the store
        assert done.returncode == 0, (done.stdout, done.stderr)
        report = json.loads(done.stdout)
        assert report["recordings"] == [FORGOTTEN_RID], report
        proxy.stall.clear()
        wait_for(lambda: notes(receiver, "player.forgotten"), timeout=180, what="player.forgotten")
        stack.wait_for_state(RID, ("archived", "failed"), timeout=180)
        time.sleep(4)  # the sweep's next passes, had anything been left for them
        room = stack.ledger.recording(RID)
        assert room is not None
        assert_forgotten(stack, place, receiver, whsec, tmp_path, revision=room.revision)
        assert ledger_rows(place, FORGOTTEN) == []
    finally:
        stack.stop()
        proxy.close()
