from datetime import UTC, datetime, timedelta

from storage.domain.lifecycle import Decision
from storage.domain.rooms import Member, offsets, room_id, sources_key
from tasks.media.finish import analysis_command, finish_command
from tasks.rooms.mix import chosen_output, mix_graph
from tasks.settling.rooms import decide_room

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def member(rid: str, state: str = "archived", revision: int = 1) -> Member:
    return Member(rid, rid.upper(), state, revision, run_id=f"run-{rid}-{revision}")


def decide(members, *, now=T0 + timedelta(seconds=200), last_mixed=None):
    return decide_room(
        members, last_change_at=T0, now=now, settle_seconds=120, last_mixed=last_mixed
    )


def test_room_id_is_deterministic_per_biz_room_and_task():
    assert room_id(1, "100", "446946705284000000") == room_id(1, "100", "446946705284000000")
    assert room_id(1, "100", "446946705284000000").startswith("room-446946705284000000-")
    assert room_id(1, "100", "1") != room_id(1, "101", "1") != room_id(2, "100", "1")


def test_a_room_waits_while_a_user_is_not_finished():
    """A settle window, not a second: the user's run end moves the room's settle time."""
    d = decide([member("a"), member("b", state="collecting")])
    assert d == Decision("wait", recheck_at=T0 + timedelta(seconds=200 + 120))


def test_a_room_waits_for_the_settle_window_after_its_last_change():
    d = decide([member("a"), member("b")], now=T0 + timedelta(seconds=30))
    assert d.action == "wait" and d.recheck_at == T0 + timedelta(seconds=120)


def test_a_finished_quiet_room_mixes_its_archived_users_only():
    d = decide([member("b"), member("a"), member("c", state="failed")])
    assert d == Decision("finalize", members=("a", "b"))


def test_a_room_whose_users_all_failed_fails():
    d = decide([member("a", state="failed"), member("b", state="failed")])
    assert d.action == "fail" and "no recording" in d.reason


def test_the_same_users_and_revisions_again_make_no_new_revision():
    mixed = sources_key([member("a"), member("b")])
    assert decide([member("a"), member("b")], last_mixed=mixed).action == "unchanged"
    assert decide([member("a"), member("b", revision=2)], last_mixed=mixed).action == "finalize"
    assert decide([member("a"), member("b"), member("c")], last_mixed=mixed).action == "finalize"


def test_offsets_are_relative_to_the_earliest_user():
    starts = [T0 + timedelta(seconds=4), T0, None, T0 + timedelta(seconds=2.5)]
    assert offsets(starts) == [4.0, 0.0, 0.0, 2.5]
    assert offsets([None, None]) == [0.0, 0.0]


def test_the_mix_delays_each_user_and_sums_without_changing_levels():
    graph = mix_graph([0.0, 2.0, 4.25])
    assert "[1:a:0]aresample=48000," in graph and "adelay=delays=2000:all=1[t1]" in graph
    assert "adelay=delays=4250:all=1[t2]" in graph
    assert graph.endswith("[t0][t1][t2]amix=inputs=3:duration=longest:normalize=0[mix]")
    assert mix_graph([0.0]).endswith("adelay=delays=0:all=1[mix]")


def test_a_mix_is_finished_from_its_graph_and_never_copied():
    args = finish_command(
        "ffmpeg", ["-i", "a.m4a", "-i", "b.m4a"], [("m4a", "o.m4a")],  # type: ignore[list-item]
        sample_rate=48000, channels=2, copy_format="m4a", source_graph=mix_graph([0.0, 1.0]),
    )  # fmt: skip
    graph = args[args.index("-filter_complex") + 1]
    assert ";[mix]anull,asplit=2[o0][m];" in graph and "copy" not in args


def test_a_mix_is_measured_from_its_graph_in_the_analysis_decode():
    args = analysis_command(
        "ffmpeg", ["-i", "a.m4a", "-i", "b.m4a"], "t.pcm",  # type: ignore[arg-type]
        source_graph=mix_graph([0.0, 1.0]), sample_rate=48000, channels=2,
    )  # fmt: skip
    graph = args[args.index("-filter_complex") + 1]
    assert ";[mix]ebur128=framelog=verbose:peak=sample," in graph


def test_the_mix_reads_a_lossless_output_before_a_lossy_one():
    result = {"artifacts": [{"format": "mp3"}, {"format": "flac"}, {"format": "m4a"}]}
    assert chosen_output(result) == {"format": "flac"}
    assert chosen_output({"artifacts": []}) is None
