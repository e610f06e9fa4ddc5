"""Transcripts in the console and the API: the transcript beside the player (speakers in
their lane's colour, untrusted text escaped), search (API and page) opening the player at
the hit's second, the Flagged list cued a few seconds before, a flag marked reviewed by an
operator only and audited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from markupsafe import escape

from foundation.config import Settings
from recpipe.console import openapi
from recpipe.console.app import create_app
from storage.domain.transcripts import TranscriptLineView
from storage.ledger import Ledger, utcnow
from tests.support.console import (
    HOSTILE,
    add_people,
    archived_room,
    archived_run,
    csrf_of,
    sign_in,
    store_gme,
)

SECRET = "test-console-secret-" + "t" * 32
TASK, ROOM_TASK = "446946705284000901", "446946705284000902"
SAID = "meet me at the bridge " + HOSTILE


@dataclass
class World:
    ledger: Ledger
    app: Any
    people: Any
    ids: dict[str, str]
    archive: Path | None = None


def transcribe(ledger: Ledger, rid: str, segments: list[dict], flags=(), lines=True) -> None:
    recording = ledger.recording(rid)
    run_id = recording.current_run_id
    assert ledger.queue_transcript(run_id, utcnow())
    assert ledger.start_transcript(run_id, utcnow())
    ledger.finish_transcript(
        run_id, utcnow(), engine="pocketsphinx", language="en", json_url="j", vtt_url="v",
        summary={"words": 5}, document={"segments": segments, "flags": list(flags)},
        lines=[TranscriptLineView(s["speaker"], s["start_s"], s["end_s"], s["text"])
               for s in segments] if lines else [],
        flags=list(flags),
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("console-transcripts")
    settings = Settings.from_env({
        "RECPIPE_DATA_DIR": str(tmp / "var"),
        "RECPIPE_DATABASE_URL": f"sqlite:///{tmp / 'ledger.sqlite3'}",
        "RECPIPE_ARCHIVE_URL": (tmp / "archive").as_uri(),
        "RECPIPE_GME_SOURCE_URL": (tmp / "source").as_uri(),
    })  # fmt: skip
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    people = add_people(ledger)
    archive = tmp / "archive"
    ids = {"hostile": store_gme(ledger, 0, task=TASK, user=HOSTILE)}
    archived_run(ledger, ids["hostile"], archive)
    segment = {"speaker": HOSTILE, "start_s": 12.5, "end_s": 15.0, "text": SAID, "words": []}
    flag = {"speaker": HOSTILE, "start_s": 13.0, "end_s": 13.6, "match": "bridge",
            "text": SAID}  # fmt: skip
    transcribe(ledger, ids["hostile"], [segment], flags=[flag])
    room = archived_room(ledger, archive, task=ROOM_TASK, room="300",
                         users=[("alice", 0.0), ("bob", 3.0)])  # fmt: skip
    ids["room"] = room.id
    transcribe(ledger, room.id, [
        {"speaker": "alice", "start_s": 1.0, "end_s": 2.0, "text": "alpha", "words": []},
        {"speaker": "bob", "start_s": 3.5, "end_s": 4.0, "text": "delta", "words": []},
    ], lines=False)  # fmt: skip
    app = create_app(settings, ledger=ledger, secret=SECRET)
    yield World(ledger, app, people, ids, archive)
    ledger.dispose()


def api(world: World, token: str | None = None) -> tuple[Any, dict[str, str]]:
    return world.app.test_client(), {"Authorization": f"Bearer {token or world.people.read_token}"}


def page(world: World, who: str = "vera") -> Any:
    client = world.app.test_client()
    assert sign_in(client, who).status_code == 302
    return client


def schema(name: str) -> Draft202012Validator:
    document = openapi.document()
    answer = document["paths"][name]["get"]["responses"]["200"]
    return Draft202012Validator(
        {**answer["content"]["application/json"]["schema"], "components": document["components"]}
    )


def test_search_api_finds_the_words_and_links_the_player_at_their_second(world: World):
    client, headers = api(world)
    served = client.get("/api/v1/search", query_string={"q": "the BRIDGE"}, headers=headers)
    assert served.status_code == 200
    schema("/api/v1/search").validate(served.json)
    [hit] = served.json["hits"]
    assert (hit["recording_id"], hit["speaker"], hit["text"]) == (
        world.ids["hostile"],
        HOSTILE,
        SAID,
    )
    assert hit["player"] == f"/recordings/{world.ids['hostile']}?t=12.5"
    assert served.json["next"] is None
    assert client.get("/api/v1/search", query_string={"q": "nothing like it"},
                      headers=headers).json == {"hits": [], "next": None}  # fmt: skip
    for bad in ({}, {"q": " "}, {"q": "x" * 257}, {"q": "a\x00b"}, {"q": "a", "cursor": "z"}):
        assert client.get("/api/v1/search", query_string=bad, headers=headers).status_code == 400
    assert client.get("/api/v1/search", query_string={"q": "bridge"}).status_code == 401


def test_search_pages_follow_their_next_cursor_in_the_api_and_the_more_link(world: World):
    """61 lines saying one word: the API's pages of 50 follow `next` to every hit once,
    and the search page's "more" link opens the second page."""
    rid = store_gme(world.ledger, 0, task="446946705284000903", user="paging")
    archived_run(world.ledger, rid, world.archive)
    transcribe(world.ledger, rid, [
        {"speaker": "paging", "start_s": float(i), "end_s": i + 0.5,
         "text": f"zebra crossing {'!' * (i % 7)}", "words": []}
        for i in range(61)
    ])  # fmt: skip
    client, headers = api(world)
    seen, cursor = [], None
    for _ in range(3):
        served = client.get(
            "/api/v1/search",
            headers=headers,
            query_string={"q": "zebra", **({"cursor": cursor} if cursor else {})},
        )
        schema("/api/v1/search").validate(served.json)
        seen += [h["start_s"] for h in served.json["hits"]]
        cursor = served.json["next"]
        if cursor is None:
            break
    assert cursor is None and sorted(seen) == [float(i) for i in range(61)]
    assert len(seen) == len(set(seen))

    viewer = page(world)
    html = viewer.get("/search", query_string={"q": "zebra"}).get_data(as_text=True)
    assert html.count('<tr class="hit">') == 50
    [more] = re.findall(r'<a href="([^"]+)">more</a>', html)
    second = viewer.get(more.replace("&amp;", "&")).get_data(as_text=True)
    assert second.count('<tr class="hit">') == 11 and ">more</a>" not in second
    refused = viewer.get("/search", query_string={"q": "zebra", "cursor": "nope"})
    assert refused.status_code == 400


def test_the_recordings_page_shows_its_transcript_escaped_and_cued(world: World):
    client = page(world)
    rid = world.ids["hostile"]
    html = client.get(f"/recordings/{rid}?t=9.5").get_data(as_text=True)
    assert HOSTILE not in html
    [line] = re.findall(r'<li class="speaker-0" data-start="12.5" data-end="15.0"[^>]*>.*?</li>',
                        html, re.S)  # fmt: skip
    assert str(escape(SAID)) in line and str(escape(HOSTILE)) in line
    assert '"cue": 9.5' in html or '"cue":9.5' in html
    assert "<script>alert" not in html


def test_the_search_page_escapes_hits_and_links_the_player(world: World):
    html = page(world).get("/search", query_string={"q": "bridge"}).get_data(as_text=True)
    assert HOSTILE not in html and str(escape(SAID)) in html
    assert f'href="/recordings/{world.ids["hostile"]}?t=12.5"' in html
    empty = page(world).get("/search", query_string={"q": "zzzz"}).get_data(as_text=True)
    assert "Nothing said matches." in empty


def test_a_room_colours_each_speaker_as_their_lane(world: World):
    html = page(world).get(f"/rooms/{world.ids['room']}").get_data(as_text=True)
    lanes = dict(re.findall(r'<tr class="participant (speaker-\d)".*?<code>([^<]+)</code>',
                            html, re.S))  # fmt: skip
    lines = dict(re.findall(r'<li class="(speaker-\d)"[^>]*>.*?<span class="speaker">([^<]+)<',
                            html, re.S))  # fmt: skip
    assert {v: k for k, v in lanes.items()} == {v: k for k, v in lines.items()}
    assert set(lanes.values()) == {"alice", "bob"} and len(set(lanes)) == 2


def test_flags_are_listed_cued_before_and_reviewed_by_an_operator_once(world: World):
    rid = world.ids["hostile"]
    client, headers = api(world)
    served = client.get("/api/v1/flags", query_string={"reviewed": "false"}, headers=headers)
    schema("/api/v1/flags").validate(served.json)
    [flag] = served.json["flags"]
    assert (flag["recording_id"], flag["match"], flag["speaker"]) == (rid, "bridge", HOSTILE)
    assert flag["player"] == f"/recordings/{rid}?t=10.0"  # 3 s before the word

    viewer = page(world, "vera")
    html = viewer.get("/flags").get_data(as_text=True)
    assert HOSTILE not in html and f'href="/recordings/{rid}?t=10.0"' in html
    assert "Mark reviewed" not in html  # a viewer may not act
    refused = viewer.post(f"/flags/{flag['id']}/review", data={"csrf_token": csrf_of(html)})
    assert refused.status_code == 403
    assert client.post(f"/api/v1/flags/{flag['id']}/review", headers=headers).status_code == 403

    operator = page(world, "otto")
    html = operator.get("/flags").get_data(as_text=True)
    assert "Mark reviewed" in html
    done = operator.post(f"/flags/{flag['id']}/review", data={"csrf_token": csrf_of(html)})
    assert done.status_code == 303
    assert operator.post(f"/flags/{flag['id']}/review").status_code == 400  # no CSRF token
    [entry] = [e for e in world.ledger.audit_trail(rid) if e.action == "review_flag"]
    assert (entry.actor, entry.target) == ("user:otto", str(flag["id"]))
    assert client.get("/api/v1/flags", query_string={"reviewed": "false"},
                      headers=headers).json == {"flags": []}  # fmt: skip
    [reviewed] = client.get("/api/v1/flags", query_string={"reviewed": "true"},
                            headers=headers).json["flags"]  # fmt: skip
    assert reviewed["reviewed_by"] == "user:otto"
    again = api(world, world.people.operate_token)
    answer = again[0].post(f"/api/v1/flags/{flag['id']}/review", headers=again[1])
    assert answer.status_code == 200 and answer.json["reviewed_by"] == "user:otto"
    assert again[0].post("/api/v1/flags/99999/review", headers=again[1]).status_code == 404


def test_the_transcript_api_serves_the_current_document(world: World):
    client, headers = api(world)
    served = client.get(f"/api/v1/recordings/{world.ids['hostile']}/transcript", headers=headers)
    schema("/api/v1/recordings/{recording_id}/transcript").validate(served.json)
    assert served.json["state"] == "ready"
    assert served.json["document"]["segments"][0]["text"] == SAID
    assert client.get("/api/v1/recordings/nope/transcript", headers=headers).status_code == 404
