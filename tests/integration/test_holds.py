"""Legal holds: `recpipe hold`/`release`/`holds`, the API's hold routes (admin only), the
console's "On hold" page and the hold on a recording's page, each audited; on SQLite and
PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from foundation.config import Settings
from recpipe.console import auth
from recpipe.console.app import create_app
from storage.ledger import Ledger
from tests.support.console import (
    HOSTILE,
    PASSWORD,
    add_people,
    archived_room,
    archived_run,
    csrf_of,
    sign_in,
    store_gme,
)

SECRET = "test-console-secret-" + "h" * 32
TASK = "446946705284000901"


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    database = (
        f"sqlite:///{tmp_path / 'ledger.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    yield {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": database,
        "RECPIPE_ARCHIVE_URL": (tmp_path / "archive").as_uri(),
        "RECPIPE_GME_SOURCE_URL": (tmp_path / "source").as_uri(),
    }


@pytest.fixture
def env_ledger(env: dict[str, str]) -> Iterator[Ledger]:
    """The migrated ledger of `env`."""
    found = Ledger(env["RECPIPE_DATABASE_URL"])
    found.migrate()
    try:
        yield found
    finally:
        found.dispose()


def test_a_hold_is_kept_listed_replaced_and_released_each_audited(env_ledger: Ledger):
    rid = store_gme(env_ledger, 0, task=TASK, user="u-1")
    assert env_ledger.hold_on(rid) is None
    assert env_ledger.hold("no-such-recording", "case 12", "user:ada") is None
    held = env_ledger.hold(rid, "case 12: abuse report", "user:ada")
    assert held is not None and (held.reason, held.held_by, held.source) == (
        "case 12: abuse report",
        "user:ada",
        "gme",
    )
    again = env_ledger.hold(rid, "case 12 and 13", "token:legal")
    assert again is not None and again.reason == "case 12 and 13"
    assert [(h.recording_id, h.reason) for h in env_ledger.holds()] == [(rid, "case 12 and 13")]
    assert env_ledger.held_ids([rid, "other"]) == {rid}
    assert env_ledger.release(rid, "user:ada") is True
    assert env_ledger.release(rid, "user:ada") is False  # not held any more
    assert env_ledger.hold_on(rid) is None and env_ledger.holds() == []
    trail = [(e.actor, e.action, e.detail.get("reason")) for e in env_ledger.audit_trail(rid)]
    assert trail == [
        ("user:ada", "release", "case 12 and 13"),
        ("token:legal", "hold", "case 12 and 13"),
        ("user:ada", "hold", "case 12: abuse report"),
    ]


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`recpipe ARGS` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "recpipe", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_recpipe_hold_release_and_holds_on_the_command_line(
    env: dict[str, str], env_ledger: Ledger
):
    rid = store_gme(env_ledger, 0, task=TASK, user="u-2")
    done = cli(env, "hold", rid, "--reason", "dispute over match 7")
    assert done.returncode == 0, done.stderr
    assert f"held gme {rid}: dispute over match 7" in done.stdout
    listed = cli(env, "holds")
    assert listed.returncode == 0, listed.stderr
    assert rid in listed.stdout and "dispute over match 7" in listed.stdout
    [entry, *_] = env_ledger.audit_trail(rid)
    assert entry.action == "hold" and entry.actor.startswith("cli")

    unknown = cli(env, "hold", "nope", "--reason", "x")
    assert unknown.returncode == 1 and "no recording or room 'nope'" in unknown.stderr
    assert cli(env, "hold", rid, "--reason", "  ").returncode == 2

    released = cli(env, "release", rid)
    assert released.returncode == 0 and f"released {rid}" in released.stdout
    again = cli(env, "release", rid)
    assert again.returncode == 1 and "is not on hold" in again.stderr
    assert env_ledger.hold_on(rid) is None


def test_an_admin_user_and_an_admin_token_can_be_made(env: dict[str, str], env_ledger: Ledger):
    made = cli(env, "users", "add", "ada", "--role", "admin", "--password-stdin",
               stdin=PASSWORD + "\n")  # fmt: skip
    assert made.returncode == 0, made.stderr
    user = env_ledger.console_user("ada")
    assert user is not None and user.can_admin and user.can_operate
    token = cli(env, "tokens", "create", "legal", "--scope", "admin")
    assert token.returncode == 0, token.stderr
    [found] = [t for t in env_ledger.api_tokens() if t.name == "legal"]
    assert found.can_admin and found.can_operate


def _app(env: dict[str, str], env_ledger: Ledger) -> tuple[Any, dict[str, str]]:
    """The console on this ledger, with a viewer, an operator, an admin and a token of
    each scope; returns the app and the tokens by scope."""
    people = add_people(env_ledger)
    env_ledger.add_user("ada", "admin", auth.hash_password(PASSWORD))
    admin_token = auth.new_token()
    env_ledger.add_token("legal", "admin", auth.hash_token(admin_token))
    tokens = {"read": people.read_token, "operate": people.operate_token, "admin": admin_token}
    return create_app(Settings.from_env(env), ledger=env_ledger, secret=SECRET), tokens


@pytest.mark.parametrize("who", ["none", "read", "operate", "admin"])
def test_only_an_admin_token_holds_and_releases_through_the_api(
    env: dict[str, str], env_ledger: Ledger, who: str
):
    app, tokens = _app(env, env_ledger)
    rid = store_gme(env_ledger, 0, task=TASK, user="u-3")
    client = app.test_client()
    headers = {} if who == "none" else {"Authorization": f"Bearer {tokens[who]}"}
    held = client.post(f"/api/v1/recordings/{rid}/hold", json={"reason": "case 9"}, headers=headers)
    expected = {"none": 401, "read": 403, "operate": 403, "admin": 200}[who]
    assert held.status_code == expected, held.data
    if who != "admin":
        assert env_ledger.hold_on(rid) is None and env_ledger.audit_trail(rid) == []
        # and what it may not do, it may not undo either
        env_ledger.hold(rid, "case 9", "user:ada")
        assert client.delete(f"/api/v1/recordings/{rid}/hold", headers=headers).status_code == (
            expected
        )
        assert env_ledger.hold_on(rid) is not None
        return
    assert held.get_json() == {
        "status": "done",
        "detail": "on hold: nothing of it is deleted until it is released",
        "reason": "case 9",
        "held_by": "token:legal",
    }
    detail = client.get(f"/api/v1/recordings/{rid}", headers=headers).get_json()
    assert detail["hold"]["reason"] == "case 9" and detail["hold"]["held_by"] == "token:legal"
    listed = client.get("/api/v1/holds", headers=headers).get_json()
    assert [(h["id"], h["source"], h["reason"]) for h in listed["holds"]] == [
        (rid, "gme", "case 9")
    ]
    assert (
        client.post(
            f"/api/v1/recordings/{rid}/hold", json={"reason": ""}, headers=headers
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/api/v1/recordings/nope/hold", json={"reason": "x"}, headers=headers
        ).status_code
        == 404
    )
    assert client.delete(f"/api/v1/recordings/{rid}/hold", headers=headers).status_code == 200
    assert client.delete(f"/api/v1/recordings/{rid}/hold", headers=headers).status_code == 409
    assert client.get(f"/api/v1/recordings/{rid}", headers=headers).get_json()["hold"] is None
    assert [e.action for e in env_ledger.audit_trail(rid)] == ["release", "hold"]


def test_a_room_is_held_by_its_id_and_listed_on_the_on_hold_page_escaped(
    env: dict[str, str], env_ledger: Ledger, tmp_path: Path
):
    app, tokens = _app(env, env_ledger)
    room = archived_room(env_ledger, tmp_path / "archive", task=TASK, room="77",
                         users=[("alice", 0.0), ("bob", 2.0)])  # fmt: skip
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    client = app.test_client()
    reason = "case 4 " + HOSTILE
    held = client.post(f"/api/v1/rooms/{room.id}/hold", json={"reason": reason}, headers=admin)
    assert held.status_code == 200, held.data
    assert client.get(f"/api/v1/rooms/{room.id}", headers=admin).get_json()["hold"]["reason"] == (
        reason
    )
    viewer = app.test_client()
    assert sign_in(viewer, "vera").status_code == 302
    page = viewer.get("/holds").get_data(as_text=True)
    assert room.id in page and f"/rooms/{room.id}" in page
    assert str(escape(reason)) in page and HOSTILE not in page
    room_page = viewer.get(f"/rooms/{room.id}").get_data(as_text=True)
    assert 'id="hold"' in room_page and HOSTILE not in room_page


def test_the_recording_page_offers_hold_and_release_to_an_admin_only(
    env: dict[str, str], env_ledger: Ledger, tmp_path: Path
):
    app, _ = _app(env, env_ledger)
    rid = store_gme(env_ledger, 0, task=TASK, user="u-4")
    archived_run(env_ledger, rid, tmp_path / "archive")
    operator = app.test_client()
    assert sign_in(operator, "otto").status_code == 302
    page = operator.get(f"/recordings/{rid}").get_data(as_text=True)
    assert 'id="hold-actions"' not in page
    refused = operator.post(
        f"/recordings/{rid}/hold", data={"csrf_token": csrf_of(page), "reason": "mine"}
    )
    assert refused.status_code == 403 and env_ledger.hold_on(rid) is None

    admin = app.test_client()
    assert sign_in(admin, "ada").status_code == 302
    page = admin.get(f"/recordings/{rid}").get_data(as_text=True)
    assert 'id="hold-actions"' in page and "ada (admin)" in page
    token = csrf_of(page)
    assert admin.post(f"/recordings/{rid}/hold", data={"reason": "x"}).status_code == 400  # CSRF
    done = admin.post(f"/recordings/{rid}/hold", data={"csrf_token": token, "reason": "case 5"})
    assert done.status_code == 303
    page = admin.get(f"/recordings/{rid}").get_data(as_text=True)
    assert 'id="hold"' in page and "case 5" in page and 'id="release"' in page
    [entry, *_] = env_ledger.audit_trail(rid)
    assert (entry.actor, entry.action) == ("user:ada", "hold")
    assert 'id="audit"' in page and "user:ada" in page[page.index('id="audit"') :]
    released = admin.post(f"/recordings/{rid}/release", data={"csrf_token": csrf_of(page)})
    assert released.status_code == 303 and env_ledger.hold_on(rid) is None
