"""Reading the times operators type: ISO dates and times, or ages like `2h`. Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
HINT = "use an ISO date or time (2026-11-21, 2026-11-21T10:00, ...+08:00) or an age (30m, 2h, 3d)"


class BadTimeError(ValueError):
    """A --since/--until value that is neither an ISO date/time nor an age."""

    def __init__(self, option: str, value: str):
        super().__init__(f"{option}: cannot read {value!r}: {HINT}")


def parse_when(value: str, now: datetime, option: str = "time") -> datetime:
    """`2h` is two hours before `now`; an ISO value without a zone is UTC."""
    text = value.strip().lower()
    age = _AGE.match(text)
    if age:
        return now - timedelta(seconds=float(age.group(1)) * _UNITS[age.group(2)])
    try:
        when = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise BadTimeError(option, value) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
