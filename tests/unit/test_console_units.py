"""The console's pure parts: the OpenAPI document, where a sign-in may send you, download
names, password and token hashing, the console secret, pagination cursors."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from foundation.config import ConfigError, Settings
from recpipe.console import auth, openapi
from recpipe.console.media import download_name
from recpipe.console.pages import CallbackText, callback_text
from storage.ledger.console import BadCursorError, decode_cursor, encode_cursor


def test_the_openapi_document_is_valid_openapi_3():
    document = openapi.document()
    validate(document)
    assert document["openapi"].startswith("3.")


def test_the_openapi_document_lists_every_route_of_the_contract():
    paths = openapi.document()["paths"]
    assert set(paths) == {
        "/api/v1/recordings",
        "/api/v1/recordings/{recording_id}",
        "/api/v1/rooms/{room_id}",
        "/api/v1/recordings/{recording_id}/reprocess",
        "/api/v1/recordings/{recording_id}/redeliver",
        "/api/v1/gme/tasks/{TaskID}/stop",
        "/api/v1/recordings/{recording_id}/artifacts/{format}",
        "/api/v1/recordings/{recording_id}/hold",
        "/api/v1/rooms/{room_id}/hold",
        "/api/v1/holds",
        "/api/v1/players/{BizID}/{UserID}/forget",
        "/api/v1/search",
        "/api/v1/flags",
        "/api/v1/flags/{flag_id}/review",
        "/api/v1/recordings/{recording_id}/transcript",
        "/api/v1/openapi.json",
    }
    assert set(paths["/api/v1/recordings/{recording_id}/hold"]) == {"post", "delete"}
    assert set(paths["/api/v1/rooms/{room_id}/hold"]) == {"post", "delete"}


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/recordings?state=failed", "/recordings?state=failed"),
        ("/", "/"),
        (None, "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/ok\\..", "/"),
        ("javascript:alert(1)", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("/recordings?", "/recordings"),
    ],
)
def test_a_sign_in_sends_you_only_to_a_path_on_this_site(target, safe):
    assert auth.safe_next(target) == safe


@pytest.mark.parametrize(
    ("recording_id", "name"),
    [
        ("gme-446946705284000000-0123456789ab", "gme-446946705284000000-0123456789ab.m4a"),
        ('css-a"; filename="evil.exe', "css-a_filename_evil.exe.m4a"),
        ("../../etc/passwd", "etc_passwd.m4a"),
        ("\r\nX-Injected: 1", "X-Injected_1.m4a"),
        ("", "recording.m4a"),
    ],
)
def test_download_names_are_made_of_safe_characters(recording_id, name):
    assert download_name(recording_id, "m4a") == name


def test_passwords_are_argon2id_and_verified_in_constant_shape():
    hashed = auth.hash_password("a long enough password")
    assert hashed.startswith("$argon2id$")
    assert auth.verify_password(hashed, "a long enough password")
    assert not auth.verify_password(hashed, "a long enough passworD")
    assert not auth.verify_password(None, "anything")  # an unknown name: still hashed
    assert not auth.verify_password("not a hash", "x")


def test_tokens_are_random_and_kept_as_their_sha256():
    one, two = auth.new_token(), auth.new_token()
    assert one != two and one.startswith("rpc_") and len(one) > 40
    assert len(auth.hash_token(one)) == 64 and auth.hash_token(one) != one


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 65, "<b>"])
def test_user_and_token_names_are_plain(name):
    with pytest.raises(auth.BadNameError):
        auth.check_name(name)


def test_the_embedded_default_keeps_a_random_console_secret_in_the_data_dir(tmp_path: Path):
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    first = auth.console_secret(settings)
    assert len(first) >= 32 and auth.console_secret(settings) == first
    path = tmp_path / "console-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path / "other")})
    assert auth.console_secret(other) != first


def test_outside_the_embedded_default_the_console_secret_is_required():
    settings = Settings.from_env({"RECPIPE_DATABASE_URL": "postgresql+psycopg://db/recpipe"})
    with pytest.raises(ConfigError, match="RECPIPE_CONSOLE_SECRET"):
        auth.console_secret(settings)
    with pytest.raises(ConfigError, match="at least 32"):
        Settings.from_env({"RECPIPE_CONSOLE_SECRET": "short"})
    given = Settings.from_env(
        {"RECPIPE_DATABASE_URL": "postgresql+psycopg://db/r", "RECPIPE_CONSOLE_SECRET": "s" * 40}
    )
    assert auth.console_secret(given) == "s" * 40


def test_cursors_round_trip_and_foreign_ones_are_refused():
    when = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert decode_cursor(encode_cursor(when, "gme-1-ab")) == (when, "gme-1-ab")
    for bad in ("%%%", "bm90IGpzb24", "WzFd"):
        with pytest.raises(BadCursorError):
            decode_cursor(bad)


def test_a_room_s_clock_places_users_by_offset_in_the_order_they_joined():
    from recpipe.console.pages import room_clock

    participants = [
        {"UserID": "late", "recording_id": "gme-2", "revision": 2, "offset_s": 5.0,
         "duration_s": 5.0},
        {"UserID": "first", "recording_id": "gme-1", "revision": 1, "offset_s": 0.0,
         "duration_s": 4.0},
    ]  # fmt: skip
    timeline = {"speech": [{"UserID": "late", "spans": [[6.0, 7.0]]}]}
    clock = room_clock(participants, timeline, 10.0)
    assert clock.seconds == 10.0
    assert [(lane.user_id, lane.x, lane.width) for lane in clock.lanes] == [
        ("first", 0.0, 400.0),
        ("late", 500.0, 500.0),
    ]
    assert clock.lanes[1].speech == [(600.0, 100.0)] and clock.lanes[0].speech == []
    assert clock.ticks[0] == (0.0, 0.0) and clock.ticks[-1] == (10.0, 1000.0)


def test_a_room_s_clock_survives_a_damaged_timeline_and_odd_numbers():
    """NaN, strings, missing keys and spans past the end are drawn within the lane or not at
    all; nothing raises."""
    from recpipe.console.pages import room_clock

    participants = [{"UserID": "u", "offset_s": "nan", "duration_s": None}, {"offset_s": 2}]
    for timeline in (None, [], {"speech": "x"}, {"speech": [{"UserID": "u", "spans": [[0, 99],
                     "bad", [1]]}]}):  # fmt: skip
        clock = room_clock(participants, timeline, None)
        assert [lane.x for lane in clock.lanes] == [0.0, 1000.0]
        assert all(0 <= x <= 1000 and x + w <= 1000.5 for lane in clock.lanes
                   for x, w in lane.speech)  # fmt: skip
    assert room_clock([], None, None).lanes == []


@pytest.mark.parametrize(
    ("value", "shown", "length", "cut"),
    [
        (None, "", 0, False),
        ("a" * 300, "a" * 300, 300, False),
        ("a" * 301, "a" * 300, 301, True),
        ({"k": "<é>"}, '{"k": "<é>"}', 12, False),
    ],
)
def test_a_callbacks_free_text_is_shown_cut_to_the_pages_limit(value, shown, length, cut):
    """Escaping is the template's; this only decides how much of the text a page shows."""
    assert callback_text(value) == CallbackText(shown, length, cut)


def test_a_hold_reason_is_text_of_at_most_its_length_with_something_in_it():
    from storage.domain.console import MAX_HOLD_REASON, hold_reason

    assert hold_reason("  case 12 ") == "case 12"
    assert hold_reason("x" * MAX_HOLD_REASON) == "x" * MAX_HOLD_REASON
    for refused in ("", "   ", "x" * (MAX_HOLD_REASON + 1), " " + "x" * MAX_HOLD_REASON, None, 7):
        assert hold_reason(refused) is None
