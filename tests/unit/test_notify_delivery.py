import pytest

from storage.domain import NotificationState
from tasks.notify.delivery import Attempt, state_after


@pytest.mark.parametrize(
    ("status", "attempts", "expected"),
    [
        (200, 1, NotificationState.DELIVERED),
        (204, 5, NotificationState.DELIVERED),
        (410, 1, NotificationState.DISABLED),
        (500, 1, None),
        (None, 4, None),
        (500, 5, NotificationState.FAILED),
        (None, 6, NotificationState.FAILED),
        (301, 5, NotificationState.FAILED),
    ],
)
def test_state_after_an_attempt(status: int | None, attempts: int, expected: str | None):
    """2xx delivers, 410 disables, anything else retries until the budget (5) is spent."""
    attempt = Attempt(status, None if status else "ConnectionError", 12)
    assert state_after(attempt, attempts, max_attempts=5) == expected
