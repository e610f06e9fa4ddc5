"""A player's page and `GET /api/v1/players/{BizID}/{UserID}` over HTTP (Flask's client on
the real app, a PostgreSQL ledger, a Redis broker and a local archive): their recordings and
rooms with holds, every route against every kind of caller, the forget form (admin only,
the UserID typed again, CSRF, a dry run first, audited), a hostile UserID shown as text,
forgotten and expired tombstones shown as such, 404 and 410 from the API, and 503 naming
RECPIPE_PLAYER_KEY when a ledger other than the embedded default has no key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from markupsafe import escape

from foundation.config import Settings
from recpipe.console import auth, openapi
from recpipe.console.app import create_app
from storage.ledger import Ledger, utcnow
from tests.support.console import (
    BIZ,
    HOSTILE,
    PASSWORD,
    add_people,
    archived_room,
    archived_run,
    csrf_of,
    sign_in,
    store_gme,
)

SECRET = "test-console-secret-" + "p" * 32
PLAYER_KEY = "test-player-key-" + "k" * 32
OWN_TASK = "446946705284000801"
ROOM_TASK = "446946705284000802"
HOSTILE_TASK = "446946705284000803"
ALONE_TASK = "446946705284000804"
PLAYER = "p-1"
HOLD_REASON = "case 41: <b>abuse</b> report"


@dataclass
class World:
    env: dict[str, str]
    ledger: Ledger
    app: Any
    tokens: dict[str, str]
    archive: Path
    own: str  # p-1's own recording (RecordMode 1), on hold
    second: str  # another of p-1's own, not held
    room: str  # the room p-1 was in with bob
    member: str  # p-1's recording in that room


def _env(tmp_path: Path, database: str, broker: str, key: str | None) -> dict[str, str]:
    env = {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": database,
        "RECPIPE_BROKER_URL": broker,
        "RECPIPE_ARCHIVE_URL": (tmp_path / "archive").as_uri(),
        "RECPIPE_GME_SOURCE_URL": (tmp_path / "source").as_uri(),
    }
    if key is not None:
        env["RECPIPE_PLAYER_KEY"] = key
    return env


def _world(env: dict[str, str], tmp_path: Path) -> Iterator[World]:
    """The console on a fresh ledger: a viewer, an operator, an admin and a token of each
    scope; the player p-1 with two recordings of their own (one on hold) and one in a room
    with bob."""
    ledger = Ledger(env["RECPIPE_DATABASE_URL"])
    ledger.migrate()
    people = add_people(ledger)
    ledger.add_user("ada", "admin", auth.hash_password(PASSWORD))
    admin_token = auth.new_token()
    ledger.add_token("legal", "admin", auth.hash_token(admin_token))
    tokens = {"read": people.read_token, "operate": people.operate_token, "admin": admin_token}
    archive = tmp_path / "archive"
    own = store_gme(ledger, 0, task=OWN_TASK, user=PLAYER, room="200")
    archived_run(ledger, own, archive)
    second = store_gme(ledger, 0, task=ALONE_TASK, user=PLAYER, room="201")
    archived_run(ledger, second, archive)
    assert ledger.hold(own, HOLD_REASON, "user:ada") is not None
    room = archived_room(ledger, archive, task=ROOM_TASK, room="300",
                         users=[(PLAYER, 0.0), ("bob", 3.0)])  # fmt: skip
    app = create_app(Settings.from_env(env), ledger=ledger, secret=SECRET)
    try:
        yield World(env, ledger, app, tokens, archive, own, second, room.id, room.members[0])
    finally:
        ledger.dispose()


@pytest.fixture
def world(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[World]:
    yield from _world(_env(tmp_path, pg_url, redis_url, PLAYER_KEY), tmp_path)


@pytest.fixture
def keyless(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[World]:
    """PostgreSQL without RECPIPE_PLAYER_KEY: not the embedded default, so no key."""
    yield from _world(_env(tmp_path, pg_url, redis_url, None), tmp_path)


@pytest.fixture
def embedded(redis_url: str, tmp_path: Path) -> Iterator[World]:
    """The embedded default's ledger (SQLite) without RECPIPE_PLAYER_KEY: it keeps its own."""
    yield from _world(_env(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", redis_url, None),
                      tmp_path)  # fmt: skip


def page_of(user_id: str, biz_id: int = BIZ) -> str:
    return f"/players/{biz_id}/{quote(user_id, safe='')}"


def api_of(user_id: str, biz_id: int = BIZ) -> str:
    return f"/api/v1/players/{biz_id}/{quote(user_id, safe='')}"


def browser(world: World, name: str | None) -> Any:
    client = world.app.test_client()
    if name is not None:
        assert sign_in(client, name).status_code == 302
    return client


PEOPLE = {"none": None, "read": "vera", "operate": "otto", "admin": "ada"}


def _expected(who: str, kind: str, permission: str, ok: int) -> int:
    if who == "none":
        return 401 if kind == "api" else 302
    if permission == "admin" and who != "admin":
        return 403
    return ok


# (method, path, kind, permission, status for those allowed)
ROUTES = [
    ("GET", "/players", "page", "read", 200),
    ("GET", f"/players?BizID={BIZ}&UserID={PLAYER}", "page", "read", 303),
    ("GET", page_of(PLAYER), "page", "read", 200),
    ("GET", page_of("nobody"), "page", "read", 404),
    ("POST", page_of(PLAYER) + "/forget", "page", "admin", 200),  # a dry run
    ("GET", api_of(PLAYER), "api", "read", 200),
    ("GET", api_of("nobody"), "api", "read", 404),
    ("GET", f"/api/v1/players/{2**63}/{PLAYER}", "api", "read", 400),
]


@pytest.mark.parametrize(("method", "path", "kind", "permission", "ok"), ROUTES)
def test_every_player_route_answers_each_kind_of_caller(
    world: World, method: str, path: str, kind: str, permission: str, ok: int
):
    """401 (a page: to /login) for nobody, 403 for a viewer or operator asking to forget,
    the route's answer otherwise; the dry run changes nothing (no erasure, no tombstone)."""
    for who, name in PEOPLE.items():
        if kind == "api":
            client = world.app.test_client()
            headers = {"Authorization": f"Bearer {world.tokens[who]}"} if who != "none" else {}
            response = client.get(path, headers=headers)
        else:
            client, headers = browser(world, name), {}
            if method == "POST":
                token = csrf_of(client.get("/login" if name is None else "/").get_data(True))
                response = client.post(path, data={"csrf_token": token, "mode": "preview"})
            else:
                response = client.get(path)
        assert response.status_code == _expected(who, kind, permission, ok), (who, response.data)
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/login")
    recordings = [world.ledger.recording(i) for i in (world.own, world.second, world.member)]
    assert [r.state for r in recordings if r] == ["archived"] * 3


def test_the_page_lists_the_players_recordings_and_rooms_with_holds_and_links(world: World):
    viewer = browser(world, "vera")
    html = viewer.get(page_of(PLAYER)).get_data(as_text=True)
    recordings = html[html.index('id="recordings"') : html.index('id="rooms"')]
    rooms = html[html.index('id="rooms"') :]
    for rid in (world.own, world.second, world.member):
        assert f'href="/recordings/{rid}"' in recordings
    assert f'href="/rooms/{world.room}"' in rooms and world.own not in rooms
    assert str(escape(HOLD_REASON)) in recordings and HOLD_REASON not in html
    assert OWN_TASK in recordings and ROOM_TASK in rooms
    assert 'id="forget-actions"' not in html  # a viewer is offered no forget
    assert 'id="forget-actions"' not in browser(world, "otto").get(page_of(PLAYER)).get_data(True)
    assert 'id="forget-form"' in browser(world, "ada").get(page_of(PLAYER)).get_data(True)

    # Found from the navigation, the recordings page, and a recording's UserID.
    assert 'href="/players"' in html
    assert 'id="find-player-link"' in viewer.get("/recordings").get_data(as_text=True)
    found = viewer.get("/players", query_string={"BizID": str(BIZ), "UserID": PLAYER})
    assert found.status_code == 303 and found.headers["Location"] == page_of(PLAYER)
    bad = viewer.get("/players", query_string={"BizID": "x", "UserID": PLAYER})
    assert bad.status_code == 400 and "BizID" in bad.get_data(as_text=True)
    recording = viewer.get(f"/recordings/{world.second}").get_data(as_text=True)
    assert f'<a href="{page_of(PLAYER)}" id="player-link"' in recording


def test_the_api_serves_the_player_as_its_openapi_document_says(world: World):
    client = world.app.test_client()
    headers = {"Authorization": f"Bearer {world.tokens['read']}"}
    served = client.get(api_of(PLAYER), headers=headers).get_json()
    document = openapi.document()
    schema = {"$ref": "#/components/schemas/Player", "components": document["components"]}
    Draft202012Validator(schema).validate(served)
    assert (served["BizID"], served["UserID"], served["erasure"]) == (BIZ, PLAYER, None)
    assert {r["id"] for r in served["recordings"]} == {world.own, world.second, world.member}
    assert [r["id"] for r in served["rooms"]] == [world.room]
    held = {r["id"]: r["hold"] for r in served["recordings"]}
    assert held[world.own]["reason"] == HOLD_REASON and held[world.second] is None
    assert "/api/v1/players/{BizID}/{UserID}" in document["paths"]
    missing = client.get(api_of("nobody"), headers=headers)
    assert missing.status_code == 404 and missing.get_json() == {
        "error": "no recording of this player"
    }
    # A path ending in /forget is the forget route's (POST), never a player of that name.
    allowed = client.options(f"{api_of(PLAYER)}/forget", headers=headers).headers["Allow"]
    assert "GET" not in allowed and "POST" in allowed
    assert client.get(api_of("x/forget"), headers=headers).status_code == 405
    assert client.get(api_of("x/b"), headers=headers).status_code == 404  # a `/` is fine
    too_long = client.get(api_of("u" * 257), headers=headers)
    assert too_long.status_code == 400 and too_long.get_json()["parameter"] == "UserID"


def test_a_hostile_user_id_is_text_on_the_page_and_whole_in_the_api(world: World):
    room = archived_room(world.ledger, world.archive, task=HOSTILE_TASK, room=HOSTILE,
                         users=[(HOSTILE, 0.0), ("bob", 2.0)])  # fmt: skip
    admin = browser(world, "ada")
    response = admin.get(page_of(HOSTILE))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert HOSTILE not in html and "<script>alert" not in html
    assert str(escape(HOSTILE)) in html
    assert f'href="/rooms/{room.id}"' in html
    # The recording's page links its UserID here.
    recording = admin.get(f"/recordings/{room.members[0]}").get_data(as_text=True)
    assert HOSTILE not in recording
    link = re.search(r'<a href="([^"]+)" id="player-link"', recording)
    assert link and admin.get(unescape(link.group(1))).status_code == 200
    served = admin.get(api_of(HOSTILE)).get_json()
    assert served["UserID"] == HOSTILE and [r["id"] for r in served["rooms"]] == [room.id]
    # The forget form posts back to this player: a dry run whose report is text too.
    action = re.search(r'<form method="post" action="([^"]+)" class="forget"', html)
    assert action and unescape(action.group(1)).endswith("/forget")
    preview = admin.post(
        unescape(action.group(1)), data={"csrf_token": csrf_of(html), "mode": "preview"}
    )
    text = preview.get_data(as_text=True)
    assert preview.status_code == 200 and 'id="report"' in text
    assert HOSTILE not in text and str(escape(HOSTILE)) in text


def _forget_form(client: Any, user_id: str) -> str:
    return csrf_of(client.get(page_of(user_id)).get_data(as_text=True))


def test_forget_previews_then_needs_the_user_id_typed_and_is_audited(world: World):
    admin = browser(world, "ada")
    token = _forget_form(admin, PLAYER)
    url = page_of(PLAYER) + "/forget"
    before = world.ledger.audit_trail()

    # No CSRF token: refused, nothing happens.
    refused = admin.post(url, data={"mode": "forget", "confirm": PLAYER})
    assert refused.status_code == 400
    # The dry run: the report, nothing changed.
    preview = admin.post(url, data={"csrf_token": token, "mode": "preview"})
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and 'id="report"' in html and "dry run" in html
    report = html[html.index('id="report"') :]
    assert world.second in report and world.room in report
    assert world.own in report[report.index('id="report-kept"') :]
    assert str(escape(HOLD_REASON)) in report  # kept, with the hold's reason
    assert world.ledger.recording(world.second).state == "archived"
    # The UserID typed wrong (a prefix, another case, spaces): nothing happens, and says so.
    for typed in ("", "p-", "P-1", f" {PLAYER}", PLAYER + " "):
        wrong = admin.post(url, data={"csrf_token": token, "mode": "forget", "confirm": typed})
        text = wrong.get_data(as_text=True)
        assert wrong.status_code == 400 and 'id="refused"' in text
        assert "does not match" in text and "nothing was forgotten" in text
    assert world.ledger.recording(world.second).state == "archived"
    assert [e.action for e in world.ledger.audit_trail()] == [e.action for e in before]

    # Typed right: forgotten, the report shown, the erasure audited with who asked.
    done = admin.post(url, data={"csrf_token": token, "mode": "forget", "confirm": PLAYER})
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and "Forgotten: what was done" in html
    assert world.ledger.recording(world.second).state == "forgotten"
    assert world.ledger.recording(world.own).state == "archived"  # held: kept
    [entry] = [e for e in world.ledger.audit_trail() if e.action == "forget"]
    assert entry.actor == "user:ada" and PLAYER not in str(entry.target) + str(entry.detail)

    # The player's page says they were forgotten, and lists the tombstones and what is kept.
    page = admin.get(page_of(PLAYER)).get_data(as_text=True)
    assert 'id="forgotten"' in page and "Forgotten on" in page and "user:ada" in page
    assert world.second in page and world.own in page and "tombstone-at" in page


def test_tombstones_show_forgotten_and_expired_with_the_time_never_as_errors(world: World):
    admin = browser(world, "ada")
    token = _forget_form(admin, PLAYER)
    done = admin.post(
        page_of(PLAYER) + "/forget", data={"csrf_token": token, "mode": "forget", "confirm": PLAYER}
    )
    assert done.status_code == 200
    # An expired one beside it: bob's room recording, its media deleted by retention.
    bob = next(m.recording_id for m in world.ledger.room_members(world.room) if m.user_id == "bob")
    now = utcnow()
    assert world.ledger.expire(bob, now + timedelta(days=1), now) is not None

    forgotten = world.ledger.recording(world.second)
    assert forgotten is not None and forgotten.tombstoned_at is not None
    for rid, state, words in ((world.second, "forgotten", "Forgotten on"), (bob, "expired",
                                                                          "Expired")):  # fmt: skip
        response = admin.get(f"/recordings/{rid}")
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert 'id="tombstone"' in html and words in html
        assert f"badge state-{state}" in html
        assert 'class="flash error"' not in html
        assert "download</a>" not in html and 'id="player"' not in html
        assert 'id="no-media"' in html
        # The time, to the second in UTC; no Reprocess (it would undo the deletion).
        stamp = world.ledger.recording(rid).tombstoned_at.strftime("%Y-%m-%d %H:%M:%SZ")
        assert stamp in html[html.index('id="tombstone"') :][:300]
        assert 'id="reprocess"' not in html and 'id="no-reprocess"' in html
    # An expired room: a notice with the time, no mix, no lanes.
    other = archived_room(world.ledger, world.archive, task="446946705284000807", room="303",
                          users=[("carol", 0.0), ("dave", 1.0)])  # fmt: skip
    assert world.ledger.expire(other.id, now + timedelta(days=1), now) is not None
    room = admin.get(f"/rooms/{other.id}").get_data(as_text=True)
    assert 'id="tombstone"' in room and "Expired" in room and "badge state-expired" in room
    assert 'class="flash error"' not in room and 'id="artifacts"' not in room
    assert 'class="participant ' not in room and "download</a>" not in room
    # The forgotten recording's page names no player.
    assert PLAYER not in admin.get(f"/recordings/{world.second}").get_data(as_text=True)
    # The list shows them by state, with the time.
    listed = admin.get("/recordings", query_string={"state": "forgotten"}).get_data(True)
    assert world.second in listed and "tombstone-at" in listed and PLAYER not in listed
    listed = admin.get("/recordings", query_string={"state": "expired"}).get_data(True)
    assert bob in listed and "tombstone-at" in listed


def test_the_api_answers_410_for_a_forgotten_player_and_the_page_says_when(world: World):
    # p-2: one recording and a room alone, nothing held: nothing carries the UserID after.
    rid = store_gme(world.ledger, 0, task="446946705284000805", user="p-2", room="202")
    archived_run(world.ledger, rid, world.archive)
    solo = archived_room(world.ledger, world.archive, task="446946705284000806", room="302",
                         users=[("p-2", 0.0), ("eve", 1.0)])  # fmt: skip
    now = utcnow()  # eve's recording expired: no one else is left in that room
    assert world.ledger.expire(solo.members[1], now + timedelta(days=1), now) is not None
    admin = browser(world, "ada")
    token = _forget_form(admin, "p-2")
    done = admin.post(
        page_of("p-2") + "/forget", data={"csrf_token": token, "mode": "forget", "confirm": "p-2"}
    )
    assert done.status_code == 200
    headers = {"Authorization": f"Bearer {world.tokens['read']}"}
    gone = world.app.test_client().get(api_of("p-2"), headers=headers)
    body = gone.get_json()
    assert gone.status_code == 410 and body["error"] == "this player was forgotten"
    assert body["forgotten_at"] and body["erasure"]["requested_by"] == "user:ada"
    assert body["erasure"]["player"].startswith("p_") and "p-2" not in gone.get_data(True)
    document = openapi.document()
    schema = document["paths"]["/api/v1/players/{BizID}/{UserID}"]["get"]["responses"]["410"]
    Draft202012Validator(schema["content"]["application/json"]["schema"]).validate(body)
    page = admin.get(page_of("p-2"))
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="forgotten"' in html and "Forgotten on" in html
    assert f'href="/recordings/{rid}"' in html and "badge state-forgotten" in html
    assert f'href="/rooms/{solo.id}"' in html[html.index('id="rooms"') :]
    # The room no one else was in is deleted whole: a tombstone, not an error.
    room = admin.get(f"/rooms/{solo.id}")
    text = room.get_data(as_text=True)
    assert room.status_code == 200 and world.ledger.recording(solo.id).state == "forgotten"
    assert 'id="tombstone"' in text and "Forgotten on" in text and "p-2" not in text
    assert 'class="flash error"' not in text and 'id="artifacts"' not in text
    assert 'class="participant ' not in text and 'id="no-media"' in text


def test_forget_is_503_naming_the_key_outside_the_embedded_default(keyless: World):
    admin = browser(keyless, "ada")
    html = admin.get(page_of(PLAYER)).get_data(as_text=True)
    assert "RECPIPE_PLAYER_KEY" in html and 'id="forget-form"' not in html
    for mode in ("preview", "forget"):
        answer = admin.post(
            page_of(PLAYER) + "/forget",
            data={"csrf_token": csrf_of(html), "mode": mode, "confirm": PLAYER},
        )
        text = answer.get_data(as_text=True)
        assert answer.status_code == 503 and "RECPIPE_PLAYER_KEY" in text
    assert keyless.ledger.recording(keyless.second).state == "archived"
    # Reading still works: the player is found by the UserID.
    headers = {"Authorization": f"Bearer {keyless.tokens['read']}"}
    served = keyless.app.test_client().get(api_of(PLAYER), headers=headers)
    assert served.status_code == 200 and served.get_json()["erasure"] is None


def test_the_embedded_default_forgets_from_the_console_with_its_own_key(embedded: World):
    admin = browser(embedded, "ada")
    html = admin.get(page_of(PLAYER)).get_data(as_text=True)
    assert 'id="forget-form"' in html and "RECPIPE_PLAYER_KEY" not in html
    done = admin.post(
        page_of(PLAYER) + "/forget",
        data={"csrf_token": csrf_of(html), "mode": "forget", "confirm": PLAYER},
    )
    assert done.status_code == 200 and "Forgotten: what was done" in done.get_data(True)
    assert embedded.ledger.recording(embedded.second).state == "forgotten"
    key = Path(embedded.env["RECPIPE_DATA_DIR"]).rglob("player-key")
    assert [oct(p.stat().st_mode & 0o777) for p in key] == ["0o600"]
    page = admin.get(page_of(PLAYER)).get_data(as_text=True)
    assert 'id="forgotten"' in page and embedded.second in page
