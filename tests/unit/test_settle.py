from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from storage.domain import RecordingView, SegmentView
from storage.domain.lifecycle import Decision
from tasks.settling.gme import decide_gme, missing_seq_nos, recovered_segments

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def recording(*segments: SegmentView, last_event: datetime = T0) -> RecordingView:
    return RecordingView(
        id="gme-1-x",
        source="gme",
        state="collecting",
        revision=0,
        first_event_at=T0,
        last_event_at=last_event,
        settle_due_at=None,
        details={},
        identity={"TaskID": "446946705284000000"},
        segments=segments,
    )


def seg(seq: int, state: str = "uploaded", name: str | None = None) -> SegmentView:
    return SegmentView(
        seq, name or f"p/2023-01-01-00-00-0{seq}_446946705284000000_audio.mp3", state
    )


def test_waits_for_quiet_time():
    d = decide_gme(
        recording(seg(0)), T0 + timedelta(seconds=5), settle_seconds=120, max_wait_seconds=600
    )
    assert d.action == "wait" and d.recheck_at == T0 + timedelta(seconds=120)


def test_finalizes_when_quiet_and_complete():
    d = decide_gme(
        recording(seg(1), seg(0)),
        T0 + timedelta(seconds=121),
        settle_seconds=120,
        max_wait_seconds=600,
    )
    assert (d.action, d.included, d.missing) == ("finalize", (0, 1), ())


def test_waits_for_started_segments_until_the_maximum():
    rec = recording(seg(0), seg(1, "started"))
    quiet = decide_gme(rec, T0 + timedelta(seconds=200), settle_seconds=120, max_wait_seconds=600)
    assert quiet.action == "wait" and quiet.missing == (1,)
    late = decide_gme(rec, T0 + timedelta(seconds=601), settle_seconds=120, max_wait_seconds=600)
    assert (late.action, late.included, late.missing) == ("finalize", (0,), (1,))


def test_gaps_count_as_missing():
    assert missing_seq_nos([seg(0), seg(3), seg(2, "completed")]) == (1, 2)


def test_fails_when_nothing_was_uploaded():
    d = decide_gme(
        recording(seg(0, "started")),
        T0 + timedelta(hours=2),
        settle_seconds=120,
        max_wait_seconds=600,
    )
    assert d.action == "fail" and "no segment" in d.reason


def test_recovers_lost_upload_of_a_known_key_and_slots_unknown_keys_in_order():
    a, b, c, d = (f"p/2023-01-01-00-00-0{i}_446946705284000000_audio.mp3" for i in range(4))
    segments = [seg(0, name=a), seg(1, "started", name=b), seg(3, name=d)]
    listing = [a, b, c, d, "p/other_999_audio.mp3", "p/notes.txt"]
    assert recovered_segments(segments, "446946705284000000", listing) == [(1, b), (2, c)]


def test_recovers_trailing_segment_after_the_last_known():
    a, b = (f"p/2023-01-01-00-00-0{i}_446946705284000000_audio.mp3" for i in range(2))
    assert recovered_segments([seg(0, name=a)], "446946705284000000", [a, b]) == [(1, b)]


def whole(seq: int) -> SegmentView:
    return SegmentView(seq, f"p/{seq}_446946705284000000_audio.mp3", "uploaded", events=7)


def test_a_complete_recording_settles_in_the_short_window():
    rec = recording(whole(0), whole(1))
    early = decide_gme(
        rec, T0 + timedelta(seconds=5), settle_seconds=120, max_wait_seconds=600,
        complete_seconds=20,
    )  # fmt: skip
    assert (early.action, early.recheck_at) == ("wait", T0 + timedelta(seconds=20))
    done = decide_gme(
        rec, T0 + timedelta(seconds=20), settle_seconds=120, max_wait_seconds=600,
        complete_seconds=20,
    )  # fmt: skip
    assert (done.action, done.included) == ("finalize", (0, 1))


@pytest.mark.parametrize(
    "segments",
    [
        (whole(0), SegmentView(1, "p/1.mp3", "started", events=1)),  # open
        (whole(0), SegmentView(1, "p/1.mp3", "uploaded", events=5)),  # no completed event
        (whole(0), whole(2)),  # SeqNo 1 missing
        (whole(0), SegmentView(1, "p/1.mp3", "uploaded", recovered=True)),  # no events
    ],
)
def test_an_incomplete_recording_keeps_the_long_window_and_sleeps_until_it(
    segments: tuple[SegmentView, ...],
):
    """No look every short window: the event that completes it writes the short settle time."""
    d = decide_gme(
        recording(*segments), T0 + timedelta(seconds=5), settle_seconds=120,
        max_wait_seconds=600, complete_seconds=20,
    )  # fmt: skip
    assert d == Decision("wait", recheck_at=T0 + timedelta(seconds=120))


def test_a_stopped_recording_is_finalized_once_every_started_segment_is_uploaded():
    stopped = replace(recording(whole(0), seg(1)), stopped_at=T0)
    d = decide_gme(stopped, T0, settle_seconds=120, max_wait_seconds=600, complete_seconds=20)
    assert (d.action, d.included) == ("finalize", (0, 1))
    waiting = replace(stopped, segments=(whole(0), seg(1, "started")))
    d = decide_gme(waiting, T0, settle_seconds=120, max_wait_seconds=600, complete_seconds=20)
    # It waits until the end of the wait: every upload to a stopped recording is due at
    # once and writes its own settle time, which beat's clock reads.
    assert (d.action, d.missing, d.recheck_at) == ("wait", (1,), T0 + timedelta(seconds=600))
    assert d == Decision(
        "wait", recheck_at=T0 + timedelta(seconds=600), included=(0,), missing=(1,),
        look_in_source=True,
    )  # fmt: skip
