"""Forgetting a player, the pure parts: the keyed hash, taking a UserID out of stored text
and JSON, the report, the `player.forgotten` body, and the rules a tombstone changes (a
forgotten member of a room is settled and never mixed; a run's end leaves it forgotten)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from foundation.config import ConfigError, Settings
from foundation.queues import LIGHT
from storage.domain import RecordingState, RunState, lifecycle
from storage.domain.lifecycle import RecordingStatus
from storage.domain.players import (
    ErasureItemView,
    ErasureState,
    ErasureView,
    ForgetReport,
    ItemKind,
    ItemState,
    Kept,
    add_rows,
    holds_user,
    player_hash,
    scrub_json_text,
    scrub_text,
    scrub_value,
)
from storage.domain.rooms import Member
from tasks.forgetting import (
    FORGET_TASK,
    PLAYER_KEY_FILE,
    PlayerKeyMissingError,
    erasure_state,
    player_key,
)
from tasks.notify.body import PLAYER_FORGOTTEN, forgotten_body, forgotten_webhook_id
from tasks.settling.rooms import decide_room

KEY = b"k" * 32
NOW = datetime(2026, 12, 7, 16, 0, tzinfo=UTC)


def test_the_player_hash_is_keyed_stable_and_says_nothing_of_the_user():
    one = player_hash(KEY, 1400000000, "player-7f3a")
    assert one == player_hash(KEY, 1400000000, "player-7f3a")
    assert one.startswith("p_") and len(one) == 34 and "7f3a" not in one
    assert one != player_hash(b"j" * 32, 1400000000, "player-7f3a")  # another key
    assert one != player_hash(KEY, 1400000001, "player-7f3a")  # another app
    assert one != player_hash(KEY, 1400000000, "player-7f3b")


@pytest.mark.parametrize(
    "user",
    ["player-7f3a", "유저-한글", 'say "hi"', "back\\slash", "tab\tin"],
)
def test_a_json_body_loses_every_spelling_of_the_user_and_stays_json(user: str):
    body = {"UserID": user, "Detail": {"FileName": f"1400000000_100_{user}/0.mp3"}, "n": 999}
    for ascii_only in (True, False):
        text = json.dumps(body, ensure_ascii=ascii_only)
        scrubbed = scrub_json_text(text, user, "p_hash")
        parsed = json.loads(scrubbed)
        assert parsed["UserID"] == "p_hash"
        assert parsed["Detail"]["FileName"] == "1400000000_100_p_hash/0.mp3"
        assert parsed["n"] == 999  # numbers are left alone
        assert not holds_user(scrubbed, user) and not holds_user(parsed, user)


def test_text_that_is_not_json_is_scrubbed_as_text_and_json_without_the_user_is_unchanged():
    assert scrub_json_text("user=u-1; again u-1", "u-1", "p_x") == "user=p_x; again p_x"
    untouched = '{"b": 1,   "a": "x"}'
    assert scrub_json_text(untouched, "u-1", "p_x") == untouched
    assert scrub_text("anything", "", "p_x") == "anything"


def test_scrub_value_reaches_keys_lists_and_nested_objects():
    value = {"u-1": [{"speaker": "u-1"}, "u-1/x", 3, None], "ok": True}
    assert scrub_value(value, "u-1", "p_x") == {
        "p_x": [{"speaker": "p_x"}, "p_x/x", 3, None],
        "ok": True,
    }


@given(st.text(min_size=1, max_size=12), st.text(alphabet="/_ .=:\"'-", max_size=6))
def test_a_user_id_standing_as_a_token_never_stays(user: str, around: str):
    player = "p_" + "0" * 32
    assume("\x00" not in user and user not in player)
    scrubbed = scrub_text(f"{around}/{user}={around} {user}.", user, player)
    # The hash beside what follows it may spell the UserID again ("p_…0" + "=" for "0="):
    # what counts is that no UserID is left outside the hashes.
    assert user not in scrubbed.replace(player, "\x00")


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("1400000000_77_999/0_446946705284000977_audio.mp3", "1400000000_77_p_x/0_44694670528"
         "4000977_audio.mp3"),
        ("UserID=999, again 999.", "UserID=p_x, again p_x."),
        ("Timestamp 1765999123 and 9999", "Timestamp 1765999123 and 9999"),
        ("유저999 999유저", "유저999 999유저"),
    ],
)  # fmt: skip
def test_a_short_user_id_is_taken_out_only_where_it_stands_alone(text: str, scrubbed: str):
    assert scrub_text(text, "999", "p_x") == scrubbed


def test_rows_shared_with_others_lose_only_the_values_that_are_the_user_id():
    room = {"RoomID": "999", "participants": [{"UserID": "999"}, {"UserID": "1999"}],
            "key": "gme/1400000000/rooms/room-1/999.m4a", "speakers": ["999", "5"],
            "999": {"spans": []}}  # fmt: skip
    assert scrub_value(room, "999", "p_x", exact=True) == {
        "RoomID": "999",
        "participants": [{"UserID": "p_x"}, {"UserID": "1999"}],
        "key": "gme/1400000000/rooms/room-1/999.m4a",
        "speakers": ["p_x", "5"],
        "p_x": {"spans": []},
    }
    assert scrub_json_text("not json 999", "999", "p_x", exact=True) == "not json 999"


def test_the_report_round_trips_and_never_names_the_user():
    report = ForgetReport(
        player="p_abc",
        biz_id=1400000000,
        dry_run=False,
        state=ErasureState.WAITING,
        recordings=("gme-1-a", "gme-2-b"),
        objects=7,
        revisions=3,
        rooms_remixed=("room-1-c",),
        rooms_deleted=(),
        rows={"recordings": 2, "callbacks": 6},
        kept=(Kept("gme-2-b", "hold", "case 12"),),
        erasure_id=4,
    )
    data = report.as_json()
    assert data["kept"] == [{"id": "gme-2-b", "reason": "hold", "hold_reason": "case 12"}]
    assert list(data["rows"]) == ["callbacks", "recordings"]
    assert ForgetReport.from_json(json.loads(json.dumps(data))) == report


def test_rows_add_up_per_table_and_tables_with_none_are_left_out():
    assert add_rows({"runs": 1, "segments": 0}, {"runs": 2, "callbacks": 3}) == {
        "callbacks": 3,
        "runs": 3,
    }


def test_the_player_forgotten_body_has_the_hash_and_what_went():
    report = ForgetReport(
        player="p_abc", biz_id=1400000000, dry_run=False, state=ErasureState.DONE,
        recordings=("gme-1-a",), objects=4, rooms_remixed=("room-1-c",),
        kept=(Kept("gme-2-b", "hold", "case 12 about player-7f3a"),),
    )  # fmt: skip
    body = forgotten_body(report, NOW)
    assert body["type"] == PLAYER_FORGOTTEN == "player.forgotten"
    assert body["timestamp"] == NOW.isoformat()
    assert body["data"] == {
        "BizID": 1400000000,
        "player": "p_abc",
        "state": "done",
        "recordings": ["gme-1-a"],
        "rooms_remixed": ["room-1-c"],
        "rooms_deleted": [],
        "kept": [{"id": "gme-2-b", "reason": "hold"}],  # a hold's reason is not sent
        "objects": 4,
    }
    assert forgotten_webhook_id("p_abc", 4, 1, "done") == "msg_p_abc_e4_1_done"


def _erasure(*states: tuple[str, str]) -> ErasureView:
    return ErasureView(
        id=1, player="p_x", biz_id=1, state=ErasureState.RUNNING, requested_by="ada",
        requested_at=NOW, finished_at=None, report={},
        items=tuple(ErasureItemView(f"r{i}", k, state) for i, (k, state) in enumerate(states)),
    )  # fmt: skip


def test_an_erasure_runs_while_work_is_left_waits_on_holds_and_is_done_after():
    own, room = ItemKind.OWN, ItemKind.ROOM
    assert erasure_state(_erasure((own, ItemState.DONE), (room, ItemState.REMIXING))) == "running"
    assert erasure_state(_erasure((own, ItemState.PENDING), (room, ItemState.HELD))) == "running"
    assert erasure_state(_erasure((own, ItemState.DONE), (room, ItemState.HELD))) == "waiting"
    assert erasure_state(_erasure((own, ItemState.DONE), (room, ItemState.DONE))) == "done"
    assert erasure_state(_erasure()) == "done"


def test_a_forgotten_member_is_settled_and_left_out_of_the_mix():
    members = [
        Member("gme-a", "p_x", RecordingState.FORGOTTEN, 1, None),
        Member("gme-b", "u-2", RecordingState.ARCHIVED, 1, "run-b"),
        Member("gme-c", "u-3", RecordingState.ARCHIVED, 2, "run-c"),
    ]
    decision = decide_room(
        members, last_change_at=NOW, now=NOW.replace(hour=17), settle_seconds=30,
        last_mixed=[["gme-a", 1], ["gme-b", 1], ["gme-c", 2]],
    )  # fmt: skip
    assert decision.action == "finalize" and decision.members == ("gme-b", "gme-c")


def test_a_run_that_ends_after_its_recording_was_forgotten_leaves_it_forgotten():
    tomb = RecordingStatus(RecordingState.FORGOTTEN, None, pending_changes=False)
    for state in (RunState.ARCHIVED, RunState.FAILED):
        assert lifecycle.run_ended(tomb, state, error=None, now=NOW) == tomb


def test_the_embedded_default_keeps_a_player_key_of_its_own_and_nothing_else_does(
    tmp_path: Path,
):
    embedded = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    key = player_key(embedded)
    assert len(key) >= 32 and key == player_key(embedded)  # made once, then read
    assert (tmp_path / PLAYER_KEY_FILE).stat().st_mode & 0o777 == 0o600
    given = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_PLAYER_KEY": "x" * 32})
    assert player_key(given) == b"x" * 32
    server = Settings.from_env(
        {"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_DATABASE_URL": "postgresql://db/recpipe"}
    )
    with pytest.raises(PlayerKeyMissingError, match="RECPIPE_PLAYER_KEY"):
        player_key(server)
    with pytest.raises(ConfigError, match="at least 32"):
        Settings.from_env({"RECPIPE_PLAYER_KEY": "short"})


def test_the_forget_task_has_its_name_and_runs_on_the_light_queue():
    from tasks import jobs
    from tasks.celery import app

    assert jobs.forget.name == FORGET_TASK == "recpipe.forget"
    assert app.conf.task_default_queue == LIGHT
    assert FORGET_TASK not in (app.conf.task_routes or {})
