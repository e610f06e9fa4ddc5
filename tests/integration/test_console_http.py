"""The console and its API over HTTP (Flask's client on the real app, a PostgreSQL ledger,
a Redis broker and a local archive): every route against every kind of caller, escaping
of everything that came from a callback, CSRF, the security headers, sign-in throttling,
and the webhook answering 404 to all of it."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from flask.sessions import SecureCookieSessionInterface
from jsonschema import Draft202012Validator
from kombu import Connection, Exchange, Queue
from markupsafe import escape
from sqlalchemy import create_engine, text

from foundation.config import Settings
from recpipe.console import auth, openapi
from recpipe.console.app import create_app
from storage.ledger import Ledger, utcnow
from tests.support.console import (
    HOSTILE,
    PASSWORD,
    People,
    add_people,
    archived_room,
    archived_run,
    csrf_of,
    sign_in,
    store_css,
    store_gme,
)
from tests.support.services import PG_ADMIN_URL, redis_database

SECRET = "test-console-secret-" + "x" * 32
TASK = "446946705284000555"
ROOM_TASK = "446946705284000666"
HOSTILE_ROOM_TASK = "446946705284000667"
HOSTILE_EXT = {"note": HOSTILE, "resolution": "1280x720"}
LONG_STREAM_PARAM = "txSecret=" + HOSTILE * 12


@dataclass
class World:
    settings: Settings
    ledger: Ledger
    people: People
    app: Any
    ids: dict[str, str]
    archive: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One ledger for the module: a recording per operator action (each succeeds once),
    one with hostile RoomID/UserID, one CSS recording with hostile app, stream_param and
    callback_ext."""
    name = f"recpipe_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    broker = contextlib.ExitStack()
    broker_url = broker.enter_context(redis_database())
    tmp = tmp_path_factory.mktemp("console")
    env = {
        "RECPIPE_DATA_DIR": str(tmp / "var"),
        "RECPIPE_DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}",
        "RECPIPE_BROKER_URL": broker_url,
        "RECPIPE_ARCHIVE_URL": (tmp / "archive").as_uri(),
        "RECPIPE_GME_SOURCE_URL": (tmp / "source").as_uri(),
        "RECPIPE_NOTIFY_URLS": "http://127.0.0.1:9/hooks",
    }
    settings = Settings.from_env(env)
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    people = add_people(ledger)
    archive = tmp / "archive"
    ids = {}
    for n, label in enumerate(
        ("api_reprocess", "page_reprocess", "api_redeliver", "page_redeliver")
    ):
        ids[label] = store_gme(ledger, 0, task=TASK, user=f"user-{n}")
        archived_run(ledger, ids[label], archive,
                     notification="failed" if "redeliver" in label else "delivered")  # fmt: skip
    ids["hostile"] = store_gme(ledger, 0, task=TASK, user=HOSTILE, room=HOSTILE)
    store_gme(ledger, 2, task=TASK, user=HOSTILE, room=HOSTILE)  # SeqNo 1 is missing
    archived_run(ledger, ids["hostile"], archive, notification="failed", error=HOSTILE)
    ids["css"] = store_css(ledger, text=HOSTILE)
    # The stream's next file, joining that recording: a callback_ext that is a JSON
    # object, and a stream_param longer than a page shows.
    joined = store_css(
        ledger, text=HOSTILE, file_id="f-78", start_time=1700000060, end_time=1700000120,
        video_url="https://1253000000.vod2.myqcloud.com/x/f-78.mp4",
        stream_param=LONG_STREAM_PARAM, callback_ext=json.dumps(HOSTILE_EXT),
    )  # fmt: skip
    assert joined == ids["css"]
    ids["settle"] = store_gme(ledger, 0, task=TASK, user="user-settle")
    room = archived_room(ledger, archive, task=ROOM_TASK, room="300",
                         users=[("alice", 0.0), ("bob", 3.0)])  # fmt: skip
    ids["room"], ids["room_member"] = room.id, room.members[1]
    hostile_room = archived_room(ledger, archive, task=HOSTILE_ROOM_TASK, room=HOSTILE,
                                 users=[(HOSTILE, 0.0), ("bob", 2.0)])  # fmt: skip
    ids["hostile_room"] = hostile_room.id
    app = create_app(settings, ledger=ledger, secret=SECRET)
    try:
        yield World(settings, ledger, people, app, ids, archive)
    finally:
        ledger.dispose()
        broker.close()  # flushed, and the lease given back
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def forged_cookie(world: World) -> str:
    """A session cookie naming the operator, signed with a key that is not the console's."""
    impostor = create_app(world.settings, ledger=world.ledger, secret="not-the-secret-" + "y" * 32)
    serializer = SecureCookieSessionInterface().get_signing_serializer(impostor)
    assert serializer is not None
    return str(serializer.dumps({"_user_id": "a-session-key", "_fresh": True}))


def caller(world: World, who: str, kind: str) -> tuple[Any, dict[str, str]]:
    """A client and headers for: nobody, a wrong credential, a reader, an operator."""
    client = world.app.test_client()
    headers: dict[str, str] = {}
    if who == "wrong":
        if kind == "api":
            headers["Authorization"] = "Bearer " + auth.new_token()
        else:
            client.set_cookie("recpipe_console", forged_cookie(world))
    elif who in ("read", "operate"):
        if kind == "api":
            token = world.people.read_token if who == "read" else world.people.operate_token
            headers["Authorization"] = f"Bearer {token}"
        else:
            assert sign_in(client, "vera" if who == "read" else "otto").status_code == 302
    return client, headers


# (method, path, kind, permission, status for those allowed)
ROUTES = [
    ("GET", "/api/v1/recordings", "api", "read", 200),
    ("GET", "/api/v1/recordings/{api_reprocess}", "api", "read", 200),
    ("GET", "/api/v1/rooms/room-1", "api", "read", 404),
    ("GET", "/api/v1/rooms/{room}", "api", "read", 200),
    ("GET", "/api/v1/rooms/{hostile}", "api", "read", 404),  # a recording, not a room
    ("GET", "/api/v1/recordings/{api_reprocess}/artifacts/m4a", "api", "read", 200),
    ("POST", "/api/v1/recordings/{api_reprocess}/reprocess", "api", "operate", 202),
    ("POST", "/api/v1/recordings/{api_redeliver}/redeliver", "api", "operate", 202),
    ("POST", f"/api/v1/gme/tasks/{TASK}/stop", "api", "operate", 202),
    ("GET", "/", "page", "read", 200),
    ("GET", "/recordings", "page", "read", 200),
    ("GET", "/recordings/{hostile}", "page", "read", 200),
    ("GET", "/recordings/{hostile}/player.json", "page", "read", 200),
    ("GET", "/attention", "page", "read", 200),
    ("GET", "/rooms/room-1", "page", "read", 404),
    ("GET", "/rooms/{hostile_room}", "page", "read", 200),
    ("GET", "/rooms/{hostile}", "page", "read", 404),  # a recording, not a room
    ("POST", "/recordings/{page_reprocess}/reprocess", "page", "operate", 303),
    ("POST", "/recordings/{page_redeliver}/redeliver", "page", "operate", 303),
    ("POST", "/recordings/{settle}/settle", "page", "operate", 303),
    ("POST", "/sweep", "page", "operate", 303),
]
WHO = ["none", "wrong", "read", "operate"]


def expected(kind: str, method: str, permission: str, ok: int, who: str) -> int:
    if who == "none":
        return 401 if kind == "api" else 302
    if who == "wrong":
        if kind == "api":
            return 401
        return 400 if method == "POST" else 302  # a forged session has no CSRF token
    if who == "read" and permission == "operate":
        return 403
    return ok


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(("method", "path", "kind", "permission", "ok"), ROUTES)
def test_every_route_answers_each_kind_of_caller_as_the_contract_says(
    world: World, method: str, path: str, kind: str, permission: str, ok: int, who: str
):
    """401 (a page: a redirect to /login) without a valid credential, 403 for a viewer or
    read token acting, the route's own answer otherwise; a refused action leaves no trace
    in the audit trail."""
    client, headers = caller(world, who, kind)
    url = path.format(**world.ids)
    before = len(world.ledger.audit_trail())
    if method == "POST" and kind == "page":
        page = client.get("/login" if who in ("none", "wrong") else "/recordings")
        data = {} if who == "wrong" else {"csrf_token": csrf_of(page.get_data(as_text=True))}
        response = client.post(url, data=data, headers=headers)
    elif method == "POST":
        response = client.post(url, json={}, headers=headers)
    else:
        response = client.get(url, headers=headers)
    assert response.status_code == expected(kind, method, permission, ok, who), response.data
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/login")
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response.close()
    after = len(world.ledger.audit_trail())
    acted = method == "POST" and who == "operate"
    assert after > before if acted else after == before


def test_an_operator_action_is_recorded_with_who_and_when_and_shown_on_the_page(world: World):
    client, _ = caller(world, "operate", "page")
    page = client.get(f"/recordings/{world.ids['hostile']}")
    response = client.post(
        f"/recordings/{world.ids['hostile']}/reprocess",
        data={"csrf_token": csrf_of(page.get_data(as_text=True)), "from_step": "fetch"},
    )
    assert response.status_code == 303
    [entry, *_] = world.ledger.audit_trail(world.ids["hostile"])
    assert (entry.actor, entry.action) == ("user:otto", "reprocess")
    assert entry.detail["outcome"] == "queued"
    html = client.get(f"/recordings/{world.ids['hostile']}").get_data(as_text=True)
    audit = html[html.index('id="audit"') :]
    assert "user:otto" in audit and "reprocess" in audit and entry.at.strftime("%H:%M:%S") in audit


def test_reprocess_through_the_api_queues_a_new_revision_on_the_broker(world: World):
    rid = store_gme(world.ledger, 0, task=TASK, user="user-api-broker")
    archived_run(world.ledger, rid, world.archive)
    client, headers = caller(world, "operate", "api")
    response = client.post(
        f"/api/v1/recordings/{rid}/reprocess", json={"from_step": "transcode"}, headers=headers
    )
    assert response.status_code == 202, response.json
    assert response.json["outcome"] == "queued" and response.json["run_id"]
    assert world.ledger.recording(rid).revision == 2
    with Connection(world.settings.broker_url, connect_timeout=5) as conn:
        media = Queue("media", Exchange("media"), routing_key="media")(conn.default_channel)
        assert media.queue_declare(passive=True).message_count >= 1
    again = client.post(f"/api/v1/recordings/{rid}/reprocess", json={}, headers=headers)
    assert again.status_code == 409  # already processing
    bad = client.post(f"/api/v1/recordings/{rid}/reprocess", json={"from_step": "x"},
                      headers=headers)  # fmt: skip
    assert bad.status_code == 400


def test_stopping_a_gme_task_sends_recpipe_stop_gme_task_by_name(world: World):
    client, headers = caller(world, "operate", "api")
    task = "446946705284000999"
    with Connection(world.settings.broker_url, connect_timeout=5) as conn:
        light = Queue("light", Exchange("light"), routing_key="light")(conn.default_channel)
        light.declare()
        light.purge()
        response = client.post(f"/api/v1/gme/tasks/{task}/stop", headers=headers)
        assert response.status_code == 202, response.json
        message = light.get(no_ack=True)
    assert message is not None
    assert message.headers["task"] == "recpipe.stop_gme_task"
    assert json.loads(message.body)[0] == [task]
    bad = client.post("/api/v1/gme/tasks/12ab/stop", headers=headers)
    assert bad.status_code == 400


def test_list_filters_search_and_cursor_pagination(world: World):
    client, headers = caller(world, "read", "api")
    seen: list[str] = []
    url = "/api/v1/recordings?limit=2"
    while url:
        page = client.get(url, headers=headers).json
        assert len(page["recordings"]) <= 2
        seen += [r["id"] for r in page["recordings"]]
        url = f"/api/v1/recordings?limit=2&cursor={page['next']}" if page["next"] else ""
    assert len(seen) == len(set(seen)) >= 7
    created = [client.get(f"/api/v1/recordings/{rid}", headers=headers).json["created_at"]
               for rid in seen]  # fmt: skip
    assert created == sorted(created, reverse=True)

    def ids(query: str) -> set[str]:
        response = client.get(f"/api/v1/recordings?{query}", headers=headers)
        assert response.status_code == 200, response.json
        return {r["id"] for r in response.json["recordings"]}

    assert ids("q=user-settle") == {world.ids["settle"]}  # UserID
    assert ids("q=live_7") == ids("q=f-77") == ids("source=css") == {world.ids["css"]}
    assert world.ids["hostile"] in ids(f"q={TASK}")  # TaskID
    assert ids(f"q={world.ids['settle']}") == {world.ids["settle"]}
    assert world.ids["settle"] in ids("state=collecting&since=1h")
    assert ids("state=collecting&since=2000-01-01T00:00") >= {world.ids["settle"]}
    assert ids("since=2999-01-01") == set()
    assert ids("until=2000-01-01") == set()
    assert world.ids["settle"] in ids("since=1h&until=2999-01-01")
    assert world.ids["settle"] not in ids("since=1h&until=1h")
    for bad in ("state=nope", "source=x", "since=yesterday-ish", "until=soon", "limit=0",
                "cursor=%%%"):  # fmt: skip
        assert client.get(f"/api/v1/recordings?{bad}", headers=headers).status_code == 400


def test_recording_detail_is_what_recpipe_status_json_prints(world: World):
    from recpipe.reports import recording_detail

    client, headers = caller(world, "read", "api")
    rid = world.ids["page_redeliver"]
    served = client.get(f"/api/v1/recordings/{rid}", headers=headers).json
    assert served == json.loads(json.dumps(recording_detail(world.ledger, rid)))
    assert client.get("/api/v1/recordings/gme-nope", headers=headers).status_code == 404


def test_artifacts_are_served_with_range_and_a_safe_download_name(world: World):
    client, headers = caller(world, "read", "api")
    rid = world.ids["api_redeliver"]
    url = f"/api/v1/recordings/{rid}/artifacts/m4a"
    with client.get(url, headers=headers) as whole:
        assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
        assert whole.headers["Cache-Control"] == "private, no-store"
        data = whole.data
    with client.get(url, headers={**headers, "Range": "bytes=10-19"}) as part:
        assert part.status_code == 206
        assert part.data == data[10:20]
        assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    with client.get(url + "?download=1", headers=headers) as download:
        assert download.headers["Content-Disposition"] == f"attachment; filename={rid}.m4a"
    assert (
        client.get(f"/api/v1/recordings/{rid}/artifacts/opus", headers=headers).status_code == 404
    )


def test_text_from_callbacks_is_escaped_in_html_attributes_and_embedded_json(world: World):
    """RoomID, UserID (GME), app, stream_param and callback_ext (CSS) and a delivery error
    are printed as text: never as markup, in no page."""
    client, _ = caller(world, "operate", "page")
    pages = [
        f"/recordings/{world.ids['hostile']}",
        f"/recordings/{world.ids['css']}",
        f"/recordings?q={world.ids['hostile']}",
        f"/recordings?q={HOSTILE}",
        "/attention",
    ]
    for url in pages:
        response = client.get(url)
        html = response.get_data(as_text=True)
        assert response.status_code == 200, url
        assert "<script>alert" not in html and "<img src=x" not in html, url
        assert "\"'>" not in html, url  # no way out of an attribute either
        assert re.findall(r"<script\b[^>]*>", html) == [
            tag for tag in re.findall(r"<script\b[^>]*>", html) if "nonce=" in tag
        ], url
    hostile_page = client.get(f"/recordings/{world.ids['hostile']}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile_page  # shown, as text
    assert "{{7*7}}" in hostile_page and ">49<" not in hostile_page
    embedded = re.search(
        r'<script type="application/json" id="page-data"[^>]*>(.*?)</script>', hostile_page, re.S
    )
    assert embedded and json.loads(embedded.group(1))["identity"]["UserID"] == HOSTILE
    assert "<" not in embedded.group(1)
    css_page = client.get(f"/recordings/{world.ids['css']}").get_data(as_text=True)
    # `app` (not covered by the vendor's signature), as text and in a copy button's attribute
    app = str(escape(HOSTILE))
    assert f'<th>app</th><td><code>{app}</code> <button type="button" class="copy" ' \
           f'data-copy="{app}">' in css_page  # fmt: skip


def callback_cells(html: str) -> list[tuple[str, str]]:
    """The (field, cell's inner HTML) of each CSS file's stream_param and callback_ext."""
    return re.findall(r'<td class="callback-text (\w+)">(.*?)</td>', html, re.S)


def test_a_css_files_stream_param_and_callback_ext_are_shown_as_text_cut_to_fit(world: World):
    """What each file's callback carried beside the media, untrusted: escaped (quotes too),
    no link made from it, an object as compact JSON, a long value cut with its length."""
    client, _ = caller(world, "read", "page")
    html = client.get(f"/recordings/{world.ids['css']}").get_data(as_text=True)
    ext = json.dumps(HOSTILE_EXT, ensure_ascii=False, separators=(", ", ": "))
    shown = LONG_STREAM_PARAM[:300]
    assert callback_cells(html) == [
        ("stream_param", f"<code>{escape(HOSTILE)}</code>"),
        ("callback_ext", f"<code>{escape(HOSTILE)}</code>"),
        ("stream_param", f"<code>{escape(shown)}</code> "
                         f'<span class="note">… {len(LONG_STREAM_PARAM)} characters, '
                         "whole in the API</span>"),
        ("callback_ext", f"<code>{escape(ext)}</code>"),
    ]  # fmt: skip
    assert "&#34;" in callback_cells(html)[0][1]  # the quote, as text
    assert all("<a" not in cell and "href" not in cell for _, cell in callback_cells(html))


def served_detail(world: World, collection: str, rid: str, schema_name: str) -> dict:
    """`GET /api/v1/<collection>/<rid>` as a reader: the same object `recpipe status --json`
    prints (one function), valid against the OpenAPI document's `schema_name`."""
    from recpipe.reports import recording_detail

    client, headers = caller(world, "read", "api")
    served = client.get(f"/api/v1/{collection}/{rid}", headers=headers).json
    assert served == json.loads(json.dumps(recording_detail(world.ledger, rid)))
    document = openapi.document()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    Draft202012Validator(schema).validate(served)
    return served


def test_the_api_serves_a_css_files_stream_param_and_callback_ext_whole(world: World):
    """`files` in a CSS recording's detail, as recpipe status --json prints it: the values
    as the callbacks carried them (a JSON object parsed), and as the OpenAPI document says."""
    client, headers = caller(world, "read", "api")
    served = served_detail(world, "recordings", world.ids["css"], "RecordingDetail")
    assert [(f["file_id"], f["stream_param"], f["callback_ext"]) for f in served["files"]] == [
        ("f-77", HOSTILE, HOSTILE),
        ("f-78", LONG_STREAM_PARAM, HOSTILE_EXT),
    ]
    gme = client.get(f"/api/v1/recordings/{world.ids['hostile']}", headers=headers).json
    assert "files" not in gme


def test_a_post_without_its_csrf_token_is_refused(world: World):
    client, _ = caller(world, "operate", "page")
    rid = world.ids["settle"]
    before = len(world.ledger.audit_trail(rid))
    assert client.post(f"/recordings/{rid}/settle").status_code == 400
    assert client.post(f"/recordings/{rid}/settle", data={"csrf_token": "x"}).status_code == 400
    # The session also works on the API, where a POST needs the token in a header.
    assert client.post(f"/api/v1/recordings/{rid}/redeliver", json={}).status_code == 400
    assert len(world.ledger.audit_trail(rid)) == before
    fresh = world.app.test_client()
    assert fresh.post("/login", data={"name": "otto", "password": "x"}).status_code == 400


def test_every_answer_carries_a_nonce_csp_nosniff_and_refuses_framing(world: World):
    client, _ = caller(world, "operate", "page")
    nonces = set()
    for url in ("/login", "/", "/recordings", f"/recordings/{world.ids['hostile']}",
                "/api/v1/openapi.json", "/api/v1/recordings", "/nope"):  # fmt: skip
        response = client.get(url)
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        nonces.add(re.search(r"'nonce-([^']+)'", csp).group(1))
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
    assert len(nonces) == 7  # a fresh nonce per answer
    html = client.get(f"/recordings/{world.ids['hostile']}").get_data(as_text=True)
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "nonce=" in tag


def test_the_session_cookie_is_httponly_samesite_and_secure_behind_https(world: World):
    client = world.app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    plain = client.post("/login", data={"name": "vera", "password": "a long enough password",
                                        "csrf_token": token})  # fmt: skip
    cookie = plain.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie
    secure = world.app.test_client()
    forwarded = {"X-Forwarded-Proto": "https"}
    token = csrf_of(secure.get("/login", headers=forwarded).get_data(as_text=True))
    answer = secure.post(
        "/login",
        data={"name": "vera", "password": "a long enough password", "csrf_token": token},
        headers={**forwarded, "Referer": "https://localhost/login"},
    )
    assert answer.status_code == 302
    assert "Secure" in answer.headers["Set-Cookie"]


def test_removing_a_user_or_revoking_a_token_ends_their_access(world: World):
    world.ledger.add_user("tmp-user", "viewer", auth.hash_password("another long password"))
    client = world.app.test_client()
    assert sign_in(client, "tmp-user", "another long password").status_code == 302
    assert client.get("/recordings").status_code == 200
    world.ledger.remove_user("tmp-user")
    assert client.get("/recordings").status_code == 302
    token = auth.new_token()
    world.ledger.add_token("tmp-token", "read", auth.hash_token(token))
    bearer = {"Authorization": f"Bearer {token}"}
    assert world.app.test_client().get("/api/v1/recordings", headers=bearer).status_code == 200
    world.ledger.revoke_token("tmp-token")
    assert world.app.test_client().get("/api/v1/recordings", headers=bearer).status_code == 401


def test_repeated_failed_sign_ins_are_answered_429_counted_in_redis(world: World):
    """Counted in the broker's Redis, so every console process shares the count; a right
    password does not get through while throttled."""
    client = world.app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))

    def attempt(password: str) -> int:
        data = {"name": "otto", "password": password, "csrf_token": token}
        response = client.post("/login", data=data, environ_base={"REMOTE_ADDR": "10.9.8.7"})
        return int(response.status_code)

    statuses = [attempt(f"wrong-{n}") for n in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
    assert attempt("a long enough password") == 429
    keys = redis.Redis.from_url(world.settings.broker_url).keys("LIMITS*")
    assert keys


def test_the_webhook_answers_404_to_every_console_and_api_route(world: World):
    from recpipe.webapp import create_app as webhook_app

    webhook = webhook_app(world.settings, ledger=world.ledger).test_client()
    for method, path, *_ in [*ROUTES, ("GET", "/login"), ("POST", "/login"),
                             ("GET", "/api/v1/openapi.json"), ("POST", "/logout")]:  # fmt: skip
        url = path.format(**world.ids)
        response = webhook.open(url, method=method)
        assert response.status_code == 404, (method, url)


def test_needs_attention_lists_each_problem_with_the_action_that_fixes_it(world: World):
    from storage.ledger import utcnow

    undelivered = store_gme(world.ledger, 0, task=TASK, user="user-undelivered")
    archived_run(world.ledger, undelivered, world.archive, notification="failed")
    broken = store_gme(world.ledger, 0, task=TASK, user="user-broken")
    run_id = world.ledger.claim(broken, now=utcnow(), force=True)
    world.ledger.fail_run(run_id, now=utcnow(), error="segment 0 is not an audio file")
    client, _ = caller(world, "operate", "page")
    html = client.get("/attention").get_data(as_text=True)
    failed = html[html.index("Failed recordings") : html.index("Failed or disabled")]
    assert broken in failed and "segment 0 is not an audio file" in failed
    assert f'action="/recordings/{broken}/reprocess"' in failed
    notes = html[html.index("Failed or disabled notifications") : html.index("heart-beating")]
    assert f'action="/recordings/{undelivered}/redeliver"' in notes
    viewer, _ = caller(world, "read", "page")
    seen = viewer.get("/attention").get_data(as_text=True)
    assert "/redeliver" not in seen and "/reprocess" not in seen  # no buttons for a viewer


def test_the_player_gets_the_peaks_and_timeline_beside_the_media(world: World):
    rid = world.ids["page_redeliver"]
    folder = world.archive / "gme" / "1400000000" / rid
    peaks = {"version": 2, "channels": 1, "sample_rate": 48000, "samples_per_pixel": 480,
             "bits": 8, "length": 2, "data": [-10, 12, -100, 90]}  # fmt: skip
    timeline = {"timeline": [], "gaps": [{"start_s": 1.0, "duration_s": 2.0, "reason": "pause"}],
                "speech": [{"UserID": HOSTILE, "spans": [[0.0, 1.0]]}]}  # fmt: skip
    (folder / f"{rid}.peaks.json").write_text(json.dumps(peaks))
    (folder / "timeline.json").write_text(json.dumps(timeline))
    client, _ = caller(world, "read", "page")
    served = client.get(f"/recordings/{rid}/player.json")
    assert served.status_code == 200 and served.mimetype == "application/json"
    assert served.json == {"format": "m4a", "peaks": peaks, "timeline": timeline}
    bare = client.get(f"/recordings/{world.ids['api_redeliver']}/player.json").json
    assert bare == {"format": "m4a", "peaks": None, "timeline": None}


def test_operator_actions_of_the_cli_and_the_console_are_listed_on_the_first_page(world: World):
    world.ledger.record_action("cli:root", "token.create", target=HOSTILE)
    client, _ = caller(world, "read", "page")
    html = client.get("/").get_data(as_text=True)
    audit = html[html.index('id="audit"') :]
    assert "cli:root" in audit and "token.create" in audit
    assert "<script>alert" not in audit


def test_the_list_refreshes_itself_only_while_something_on_it_is_in_progress(world: World):
    client, _ = caller(world, "read", "page")
    busy = client.get("/recordings?state=collecting").get_data(as_text=True)
    # The console's script refreshes it when no player plays; without scripts, the meta.
    assert 'data-refresh="5"' in busy
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in busy
    done = client.get("/recordings?state=archived").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in done and "data-refresh" not in done
    for rid in re.findall(r'data-copy="(gme-[^"]+)"', done):  # ids whole, copyable
        assert f"<code>{rid}</code>" in done


def test_a_room_is_served_with_its_participants_as_recpipe_status_json_prints_it(world: World):
    """`GET /api/v1/rooms/{id}`: participants on the room's clock, members with their
    states and revisions, revision, artifacts and manifest; the same object the CLI
    prints (one function)."""
    client, headers = caller(world, "read", "api")
    rid = world.ids["room"]
    served = served_detail(world, "rooms", rid, "RoomDetail")
    assert served["source"] == "room" and served["revision"] == 1 and served["state"] == "archived"
    assert served["mixed_revision"] == 1
    assert [(p["UserID"], p["offset_s"], p["duration_s"]) for p in served["participants"]] == [
        ("alice", 0.0, 4.0), ("bob", 3.0, 4.0)
    ]  # fmt: skip
    assert {(m["UserID"], m["state"], m["revision"]) for m in served["members"]} == {
        ("alice", "archived", 1), ("bob", "archived", 1)
    }  # fmt: skip
    assert [a["format"] for a in served["artifacts"]] == ["m4a"]
    assert served["manifest"].endswith(f"/rooms/{rid}/manifest.json")
    member = client.get(f"/api/v1/recordings/{world.ids['room_member']}", headers=headers).json
    assert member["room"] == rid
    alone = client.get(f"/api/v1/recordings/{world.ids['settle']}", headers=headers).json
    assert alone["room"] is None
    assert client.get("/api/v1/rooms/room-1", headers=headers).status_code == 404
    rooms = client.get("/api/v1/recordings?source=room", headers=headers).json["recordings"]
    assert {r["id"] for r in rooms} == {rid, world.ids["hostile_room"]}


def test_the_room_page_places_each_participant_on_one_clock_with_its_speech(world: World):
    """Each user's bar at offset_s for duration_s on the room's length (bob 3 s into a 7 s
    room), its speech spans from timeline.json; links to the users' pages and back; the
    mix's player."""
    client, _ = caller(world, "read", "page")
    rid = world.ids["room"]
    html = client.get(f"/rooms/{rid}").get_data(as_text=True)
    bars = re.findall(r'<rect class="bar" x="([0-9.]+)" y="3" width="([0-9.]+)"', html)
    assert [(float(x), float(w)) for x, w in bars] == [
        (0.0, pytest.approx(571.43, abs=0.01)),
        (pytest.approx(428.57, abs=0.01), pytest.approx(571.43, abs=0.01)),
    ]
    spans = re.findall(r'<rect class="speech" x="([0-9.]+)"', html)
    assert len(spans) == 4 and float(spans[2]) == pytest.approx(3.5 / 7 * 1000, abs=0.01)
    for member in world.ledger.room_members(rid):
        assert f'href="/recordings/{member.recording_id}"' in html
    media = f"/api/v1/recordings/{rid}/artifacts/m4a"
    assert f'<audio id="player" controls preload="metadata" src="{media}">' in html
    embedded = re.search(r'<script type="application/json" id="page-data"[^>]*>(.*?)</script>',
                         html, re.S)  # fmt: skip
    assert embedded and json.loads(embedded.group(1))["player"] == f"/recordings/{rid}/player.json"
    member = client.get(f"/recordings/{world.ids['room_member']}").get_data(as_text=True)
    assert f'href="/rooms/{rid}"' in member
    as_recording = client.get(f"/recordings/{rid}").get_data(as_text=True)
    assert f'href="/rooms/{rid}"' in as_recording
    listed = client.get("/recordings?source=room").get_data(as_text=True)
    assert f'href="/rooms/{rid}"' in listed and 'value="room" selected' in listed


def test_hostile_user_and_room_ids_are_escaped_on_the_room_page(world: World):
    client, _ = caller(world, "read", "page")
    response = client.get(f"/rooms/{world.ids['hostile_room']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "\"'>" not in html  # not out of an attribute (the lanes' aria-label) either
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # RoomID, UserID twice
    assert "{{7*7}}" in html and ">49<" not in html
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "nonce=" in tag
    embedded = re.search(r'<script type="application/json" id="page-data"[^>]*>(.*?)</script>',
                         html, re.S)  # fmt: skip
    assert embedded and "<" not in embedded.group(1)
    assert json.loads(embedded.group(1))["identity"]["RoomID"] == HOSTILE
    assert len(re.findall(r'<rect class="bar"', html)) == 2


STATIC = sorted(
    p.name for p in (Path(__file__).parents[2] / "recpipe" / "console" / "static").iterdir()
)


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("name", STATIC)
def test_static_files_need_a_session_but_the_sign_in_page_s_stylesheet(
    world: World, name: str, who: str
):
    """Only what /login loads (its stylesheet) is served to anyone; the rest is 401 without
    a valid credential and 200 to a viewer or operator."""
    from recpipe.console.pages import PUBLIC_STATIC

    client, headers = caller(world, who, "page")
    response = client.get(f"/static/console/{name}", headers=headers)
    if who in ("none", "wrong") and name not in PUBLIC_STATIC:
        assert response.status_code == 401
        assert name.encode() not in response.data and b"function" not in response.data
    else:
        assert response.status_code == 200
        assert response.data == (Path(__file__).parents[2] / "recpipe" / "console" / "static"
                                 / name).read_bytes()  # fmt: skip
    response.close()


def test_the_sign_in_page_loads_only_its_stylesheet(world: World):
    anonymous = world.app.test_client()
    html = anonymous.get("/login").get_data(as_text=True)
    loaded = re.findall(r'(?:href|src)="(/static/console/[^"]+)"', html)
    assert loaded == ["/static/console/console.css"]
    with anonymous.get("/static/console/console.css") as stylesheet:
        assert stylesheet.status_code == 200
    for traversal in ("../app.py", "..%2fapp.py", "%2e%2e/app.py"):
        assert anonymous.get(f"/static/console/{traversal}").status_code in (401, 404)
    signed_in, _ = caller(world, "read", "page")
    assert signed_in.get("/static/console/../app.py").status_code == 404


def test_a_user_changes_their_password_and_their_other_sessions_end(world: World):
    name = f"pat{uuid.uuid4().hex[:6]}"
    world.ledger.add_user(name, "viewer", auth.hash_password(PASSWORD))
    here, elsewhere = world.app.test_client(), world.app.test_client()
    assert sign_in(here, name).status_code == sign_in(elsewhere, name).status_code == 302
    form = here.get("/account/password")
    assert form.status_code == 200 and 'name="current"' in form.get_data(as_text=True)
    token = csrf_of(form.get_data(as_text=True))
    new = "a new and longer password"

    def change(current: str, first: str, again: str, csrf: str | None = token) -> int:
        data = {"current": current, "new": first, "again": again}
        if csrf is not None:
            data["csrf_token"] = csrf
        return here.post("/account/password", data=data).status_code

    assert change(PASSWORD, new, new, csrf=None) == 400  # no CSRF token
    assert change("not the password", new, new) == 401
    assert change(PASSWORD, new, new + "!") == 400  # the two differ
    assert change(PASSWORD, "short", "short") == 400
    assert elsewhere.get("/").status_code == 200  # nothing changed yet
    assert change(PASSWORD, new, new) == 302
    assert here.get("/").status_code == 200  # this session goes on
    assert elsewhere.get("/").status_code == 302  # the other one ended
    assert sign_in(world.app.test_client(), name).status_code == 401
    assert sign_in(world.app.test_client(), name, new).status_code == 302
    [entry] = [e for e in world.ledger.audit_trail() if e.target == name]
    assert (entry.actor, entry.action) == (f"user:{name}", "user.password")


def copy_of(world: World, client: Any) -> Any:
    """Another browser holding a copy of `client`'s session cookie, at the same address."""
    cookie = client.get_cookie("recpipe_console")
    assert cookie is not None
    thief = world.app.test_client()
    thief.environ_base["REMOTE_ADDR"] = client.environ_base["REMOTE_ADDR"]
    thief.set_cookie("recpipe_console", cookie.value)
    return thief


def test_signing_out_ends_the_session_on_the_server_and_a_copied_cookie_with_it(world: World):
    """Sign-out is a POST with its CSRF token; afterwards neither this browser nor anyone
    holding a copy of its cookie is signed in."""
    client, _ = caller(world, "read", "page")
    thief = copy_of(world, client)
    page = client.get("/recordings")
    assert page.status_code == 200 and thief.get("/recordings").status_code == 200
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert thief.get("/recordings").status_code == 200
    out = client.post("/logout", data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    assert out.status_code == 302 and out.headers["Location"].endswith("/login")
    assert client.get("/recordings").status_code == 302
    still = thief.get("/recordings")
    assert still.status_code == 302 and "/login" in still.headers["Location"]
    assert "Sign out" not in thief.get("/login").get_data(as_text=True)


def test_a_session_is_not_carried_to_another_address_by_x_forwarded_for(world: World):
    """The session is bound to the connection's address: a copied cookie used from another
    address is refused, even when the request claims the first address in X-Forwarded-For."""
    client, _ = caller(world, "read", "page")
    address = client.environ_base["REMOTE_ADDR"]
    elsewhere = copy_of(world, client)
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.99"
    claims = {"X-Forwarded-For": address}
    assert elsewhere.get("/recordings", headers=claims).status_code == 302
    assert elsewhere.get("/recordings").status_code == 302
    assert client.get("/recordings", headers={"X-Forwarded-For": "192.0.2.99"}).status_code == 200


def test_sessions_are_listed_and_revoked_per_user_and_a_new_password_ends_them(world: World):
    name = f"sam{uuid.uuid4().hex[:6]}"
    world.ledger.add_user(name, "viewer", auth.hash_password(PASSWORD))
    first, second = world.app.test_client(), world.app.test_client()
    assert sign_in(first, name).status_code == sign_in(second, name).status_code == 302
    listed = world.ledger.console_sessions(name, now=utcnow())
    assert [s.address for s in listed] == [
        first.environ_base["REMOTE_ADDR"], second.environ_base["REMOTE_ADDR"]
    ]  # fmt: skip
    assert world.ledger.revoke_sessions(name, listed[0].id) == 1
    assert first.get("/").status_code == 302 and second.get("/").status_code == 200
    assert world.ledger.revoke_sessions(name) == 1
    assert second.get("/").status_code == 302
    third = world.app.test_client()
    assert sign_in(third, name).status_code == 302
    world.ledger.set_password_hash(name, auth.hash_password("yet another long password"))
    assert third.get("/").status_code == 302
    assert world.ledger.console_sessions(name, now=utcnow()) == []


def test_flasks_own_static_route_is_off(world: World):
    """Only the gated `/static/console/...` serves the console's files."""
    assert "static" not in {rule.endpoint for rule in world.app.url_map.iter_rules()}
    anonymous = world.app.test_client()
    for name in ("console.js", "console.css"):
        assert anonymous.get(f"/static/{name}").status_code == 404
    assert anonymous.get("/static/console/console.js").status_code == 401


def test_failed_sign_ins_do_not_lock_the_user_out_from_another_address(world: World):
    """Throttling counts a name at an address: someone guessing otto's password from a few
    addresses is throttled at each, and otto signing in from his own is not."""

    def attempt(address: str, password: str) -> int:
        client = world.app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        token = csrf_of(client.get("/login").get_data(as_text=True))
        data = {"name": "otto", "password": password, "csrf_token": token}
        return int(client.post("/login", data=data).status_code)

    spread = [attempt(f"198.51.100.{n}", f"wrong-{n}-{m}") for n in range(1, 5) for m in range(4)]
    assert spread == [401] * 16  # four addresses, four guesses each: none over its limit
    guesses = [attempt("198.51.100.7", f"wrong-{n}") for n in range(8)]
    assert guesses[:5] == [401] * 5 and set(guesses[5:]) == {429}
    assert attempt("198.51.100.8", PASSWORD) == 302
    assert attempt("198.51.100.7", PASSWORD) == 429  # still throttled where the guesses came


def test_sign_in_attempts_are_counted_before_the_password_is_checked(world: World):
    """40 wrong passwords at once from one address: 5 are checked (401), the rest 429."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    clients = []
    for _ in range(40):
        client = world.app.test_client()
        client.environ_base["REMOTE_ADDR"] = "198.51.100.40"
        clients.append((client, csrf_of(client.get("/login").get_data(as_text=True))))
    start = Barrier(len(clients))

    def attempt(n: int) -> int:
        client, token = clients[n]
        data = {"name": "vera", "password": f"wrong-{n}", "csrf_token": token}
        start.wait()
        return int(client.post("/login", data=data).status_code)

    with ThreadPoolExecutor(len(clients)) as pool:
        statuses = list(pool.map(attempt, range(len(clients))))
    assert sorted(statuses) == [401] * 5 + [429] * 35


def test_an_artifact_key_that_escapes_the_archive_is_404(world: World, tmp_path: Path):
    """A key with `%2e%2e`, or a link in the archive that leads out of it, is answered
    404 (the media, its player data and the page), never 500 or the file outside."""
    outside = tmp_path / "secret.m4a"
    outside.write_bytes(b"not for the console")
    escaped = store_gme(world.ledger, 0, task=TASK, user=f"escape-{uuid.uuid4().hex[:6]}")
    archived_run(world.ledger, escaped, world.archive)
    [run] = world.ledger.runs_for(escaped)
    [artifact] = run.result["artifacts"]
    folder = Path(urlsplit(artifact["url"]).path).parent
    (folder / f"{escaped}.m4a").unlink()
    (folder / f"{escaped}.m4a").symlink_to(outside)
    (folder / "timeline.json").symlink_to(outside)
    encoded = store_gme(world.ledger, 0, task=TASK, user=f"encoded-{uuid.uuid4().hex[:6]}")
    run_id = world.ledger.claim(encoded, now=utcnow(), force=True)
    assert run_id
    url = world.archive.as_uri() + f"/gme/%2e%2e/%2e%2e/{outside.name}"
    result = {"artifacts": [{"url": url, "format": "m4a", "bytes": 19, "duration_s": 1.0}]}
    world.ledger.finish_run(run_id, now=utcnow(), result=result, manifest_url="file:///m.json")
    _, bearer = caller(world, "read", "api")
    client, _ = caller(world, "read", "page")
    for rid in (escaped, encoded):
        media = client.get(f"/api/v1/recordings/{rid}/artifacts/m4a", headers=bearer)
        assert media.status_code == 404 and b"not for the console" not in media.data
        assert client.get(f"/recordings/{rid}").status_code == 200
    player = client.get(f"/recordings/{escaped}/player.json")
    assert player.status_code == 200 and player.json["timeline"] is None
    assert client.get(f"/recordings/{encoded}/player.json").status_code == 404  # no media


def test_a_session_ends_when_its_eight_hours_are_over(world: World):
    """The ledger refuses a session past its lifetime, whatever the cookie says, and drops it."""
    from datetime import timedelta

    name = f"eve{uuid.uuid4().hex[:6]}"
    world.ledger.add_user(name, "viewer", auth.hash_password(PASSWORD))
    key, start = auth.hash_token(auth.new_token()), utcnow()
    eight = timedelta(hours=8)
    assert world.ledger.start_session(name, key, now=start, lifetime=eight, address=None,
                                      agent=None)  # fmt: skip
    later = world.ledger.session_user(key, now=start + eight - timedelta(seconds=1))
    assert later is not None and later.name == name
    assert world.ledger.session_user(key, now=start + eight) is None
    assert world.ledger.console_sessions(name, now=start) == []


def test_the_api_writes_strict_json_where_a_level_does_not_exist(world: World):
    """A non-finite number reaching a body (a ledger row written before levels were made
    null, on SQLite, which kept `-Infinity`) is null: browsers' JSON.parse refuses NaN."""
    from flask import jsonify

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    with world.app.app_context():
        body = jsonify(loudness={"integrated_lufs": float("-inf"), "range_lu": float("nan")})
    served = json.loads(body.get_data(as_text=True), parse_constant=refuse)
    assert served == {"loudness": {"integrated_lufs": None, "range_lu": None}}
