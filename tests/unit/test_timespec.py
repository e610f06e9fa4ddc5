"""--since/--until values: ISO dates and times, ages, and what is refused."""

from datetime import UTC, datetime, timedelta

import pytest

from recpipe.cli.timespec import BadTimeError, parse_when

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - timedelta(seconds=30)),
        ("15m", NOW - timedelta(minutes=15)),
        ("2h", NOW - timedelta(hours=2)),
        ("1.5h", NOW - timedelta(minutes=90)),
        ("3d", NOW - timedelta(days=3)),
        ("1w", NOW - timedelta(days=7)),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-20T10:30", datetime(2026, 11, 20, 10, 30, tzinfo=UTC)),
        ("2026-11-20T10:30:00Z", datetime(2026, 11, 20, 10, 30, tzinfo=UTC)),
        ("2026-11-20T18:30:00+08:00", datetime(2026, 11, 20, 10, 30, tzinfo=UTC)),
        ("2026-11-20 10:30", datetime(2026, 11, 20, 10, 30, tzinfo=UTC)),
    ],
)
def test_iso_times_and_ages_are_read_as_utc(text: str, expected: datetime):
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday-ish", "", "2h ago", "-3d", "5y", "2026-13-01", "h"])
def test_unreadable_values_name_the_option_and_the_accepted_forms(text: str):
    with pytest.raises(BadTimeError) as caught:
        parse_when(text, NOW, "--since")
    message = str(caught.value)
    assert message.startswith(f"--since: cannot read {text!r}")
    assert "2h" in message and "2026-11-21" in message
