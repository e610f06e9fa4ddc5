from datetime import UTC, datetime, timedelta, timezone

import pytest

from foundation.config import ConfigError, parse_zone
from tasks.gme.timeline import MISSING, PAUSE, Gap, Placed, SegmentPiece, place, segment_start

BEIJING = timezone(timedelta(hours=8))
TASK = "446946705284000000"


def name(clock: str | None, folder: str = "1400000000_100_999") -> str:
    """A FileName whose time part is `clock` (HH-MM-SS on 2023-02-09), or none."""
    if clock is None:
        return f"{folder}/audio_{TASK}.mp3"
    return f"{folder}/2023-02-09-{clock}_{TASK}_audio.mp3"


def piece(seq: int, clock: str | None, seconds: float) -> SegmentPiece:
    return SegmentPiece(seq, name(clock), seconds)


def offsets(timeline) -> list[tuple[int, float]]:
    return [(p.seq_no, round(p.offset_s, 3)) for p in timeline.segments]


def test_the_vendor_sample_name_is_beijing_time():
    """The sample's 16:16:45 in +08:00 is the callback's Timestamp 1675930605 (08:16:45 UTC)."""
    start = segment_start(
        "1400000000_100_999/2023-02-09-16-16-45_446946705284000000_audio.mp3", BEIJING
    )
    assert start is not None and start.timestamp() == 1675930605
    assert start.astimezone(UTC) == datetime(2023, 2, 9, 8, 16, 45, tzinfo=UTC)


@pytest.mark.parametrize(
    "file_name",
    [
        "p/audio_446946705284000000.mp3",
        "p/1_446946705284000000_audio.mp3",
        "p/2023-02-30-10-00-00_446946705284000000_audio.mp3",  # no such day
        "p/2023-02-09-25-00-00_446946705284000000_audio.mp3",  # no such hour
        "2023-02-09-10-00-00/x_446946705284000000_audio.mp3",  # time in the folder only
    ],
)
def test_names_without_a_usable_time_give_none(file_name):
    assert segment_start(file_name, BEIJING) is None


def test_a_pause_longer_than_the_gap_setting_becomes_silence_of_its_length():
    """Muted from 10:00:05 to 10:02:05: the second segment starts 120 s after the first ends."""
    timeline = place(
        [piece(0, "10-00-00", 5.0), piece(1, "10-02-05", 3.0)], zone=BEIJING, gap_seconds=2
    )
    assert timeline.segments == (Placed(0, 0.0, 5.0), Placed(1, 125.0, 3.0))
    assert timeline.gaps == (Gap(5.0, 120.0, PAUSE),)
    assert timeline.duration_s == 128.0
    assert timeline.starts_at == datetime(2023, 2, 9, 10, 0, 0, tzinfo=BEIJING)
    assert timeline.gap_after(0) == 120.0 and timeline.gap_after(1) == 0.0


def test_pauses_up_to_the_gap_setting_are_joined_back_to_back():
    timeline = place(
        [piece(0, "10-00-00", 5.0), piece(1, "10-00-07", 3.0)], zone=BEIJING, gap_seconds=2
    )
    assert offsets(timeline) == [(0, 0.0), (1, 5.0)] and timeline.gaps == ()


def test_small_joined_pauses_are_caught_up_at_the_next_long_one():
    """The clock is the first segment's start: a later long pause is measured on that clock."""
    timeline = place(
        [piece(0, "10-00-00", 5.0), piece(1, "10-00-06", 4.0), piece(2, "10-00-20", 1.0)],
        zone=BEIJING,
        gap_seconds=2,
    )
    assert offsets(timeline) == [(0, 0.0), (1, 5.0), (2, 20.0)]
    assert timeline.gaps == (Gap(9.0, 11.0, PAUSE),)


def test_join_places_segments_end_to_end_whatever_their_names_say():
    timeline = place(
        [piece(0, "10-00-00", 5.0), piece(1, "10-02-05", 3.0)], zone=BEIJING, pad=False
    )
    assert offsets(timeline) == [(0, 0.0), (1, 5.0)] and timeline.gaps == ()


def test_a_missing_seq_no_is_silence_of_the_length_its_neighbours_tell():
    """SeqNo 1 never arrived; 0 ends at 4 s, 2 began at 10 s: 6 s of `missing` silence."""
    timeline = place(
        [piece(0, "10-00-00", 4.0), piece(2, "10-00-10", 2.0)], zone=BEIJING, gap_seconds=2
    )
    assert offsets(timeline) == [(0, 0.0), (2, 10.0)]
    assert timeline.gaps == (Gap(4.0, 6.0, MISSING),)


def test_a_short_missing_seq_no_counts_from_the_time_resolution_up():
    """1.5 s is under the pause setting, but a lost segment is not a pause: it is kept."""
    timeline = place(
        [piece(0, "10-00-00", 4.0), piece(2, "10-00-06", 2.0)], zone=BEIJING, gap_seconds=2
    )
    assert timeline.gaps == (Gap(4.0, 2.0, MISSING),)


def test_a_missing_seq_no_whose_length_is_unknown_leaves_no_gap():
    """The segment after it has no time: nothing says how long the lost one was."""
    timeline = place([piece(0, "10-00-00", 4.0), piece(2, None, 2.0)], zone=BEIJING)
    assert offsets(timeline) == [(0, 0.0), (2, 4.0)] and timeline.gaps == ()


@pytest.mark.parametrize(
    ("clocks", "why"),
    [
        (("10-00-00", "10-00-03", "10-00-20"), "a start before the previous segment's end"),
        (("10-00-00", "10-00-00", "10-00-20"), "equal times"),
        (("10-00-00", None, "10-00-20"), "a name without a time"),
        (("10-00-00", "09-59-00", "10-00-20"), "a time before the previous segment's start"),
        (("10-00-00", "10-00-00", "10-00-00"), "all times equal"),
    ],
)
def test_contradictory_times_never_move_audio_backwards_or_drop_it(clocks, why):
    """Segment 1 follows segment 0 back to back; every segment is kept, none overlaps."""
    pieces = [piece(i, clock, 5.0) for i, clock in enumerate(clocks)]
    timeline = place(pieces, zone=BEIJING, gap_seconds=2)
    assert [p.seq_no for p in timeline.segments] == [0, 1, 2], why
    assert timeline.segments[1].offset_s == 5.0, why
    ends = [p.offset_s + p.duration_s for p in timeline.segments]
    starts = [p.offset_s for p in timeline.segments]
    assert all(start >= end for start, end in zip(starts[1:], ends, strict=False)), why
    assert all(g.duration_s > 0 and g.start_s >= 0 for g in timeline.gaps), why


def test_the_third_segment_of_a_contradiction_is_still_placed_by_its_time():
    timeline = place(
        [piece(0, "10-00-00", 5.0), piece(1, "10-00-03", 5.0), piece(2, "10-00-20", 5.0)],
        zone=BEIJING,
    )
    assert offsets(timeline) == [(0, 0.0), (1, 5.0), (2, 20.0)]
    assert timeline.gaps == (Gap(10.0, 10.0, PAUSE),)


def test_a_pause_longer_than_a_task_can_last_is_a_wrong_time_and_follows():
    pieces = [piece(0, "10-00-00", 5.0), SegmentPiece(1, f"p/2024-02-09-10-00-00_{TASK}.mp3", 3.0)]
    timeline = place(pieces, zone=BEIJING)
    assert offsets(timeline) == [(0, 0.0), (1, 5.0)] and timeline.gaps == ()


def test_a_first_segment_without_a_time_takes_the_clock_from_the_next():
    timeline = place(
        [piece(0, None, 4.0), piece(1, "10-00-04", 2.0), piece(2, "10-00-30", 1.0)],
        zone=BEIJING,
    )
    assert offsets(timeline) == [(0, 0.0), (1, 4.0), (2, 30.0)]
    assert timeline.starts_at == datetime(2023, 2, 9, 10, 0, 0, tzinfo=BEIJING)


def test_segments_are_placed_in_seq_no_order_whatever_order_they_come_in():
    timeline = place(
        [piece(2, "10-01-00", 1.0), piece(0, "10-00-00", 2.0), piece(1, "10-00-30", 1.0)],
        zone=BEIJING,
    )
    assert offsets(timeline) == [(0, 0.0), (1, 30.0), (2, 60.0)]
    assert [g.as_json() for g in timeline.gaps] == [
        {"start_s": 2.0, "duration_s": 28.0, "reason": "pause"},
        {"start_s": 31.0, "duration_s": 29.0, "reason": "pause"},
    ]


def test_the_zone_moves_the_absolute_start_and_not_the_offsets():
    pieces = [piece(0, "10-00-00", 5.0), piece(1, "10-01-00", 5.0)]
    here, there = place(pieces, zone=BEIJING), place(pieces, zone=UTC)
    assert offsets(here) == offsets(there) and here.gaps == there.gaps
    assert there.starts_at is not None and here.starts_at is not None
    assert (there.starts_at - here.starts_at).total_seconds() == 8 * 3600


@pytest.mark.parametrize(
    ("text", "hours"),
    [("+08:00", 8), ("+0800", 8), ("UTC+8", 8), ("-05:30", -5.5), ("Z", 0), ("utc", 0)],
)
def test_time_zone_setting_is_a_fixed_offset(text, hours):
    assert parse_zone(text).utcoffset(None) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["Asia/Shanghai", "+25:00", "+08:99", "8", ""])
def test_a_bad_time_zone_setting_names_the_variable(text):
    with pytest.raises(ConfigError, match="RECPIPE_GME_TIME_ZONE"):
        parse_zone(text)
