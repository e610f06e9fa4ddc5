"""The pure parts of the workers' metrics: queue wait and notification outcomes."""

from datetime import UTC, datetime

import pytest

from tasks.metrics import notification_outcome, queue_wait


def test_queue_wait_counts_from_publication():
    assert queue_wait(100.0, None, 102.5) == 2.5


def test_queue_wait_of_a_delayed_task_counts_from_its_eta():
    """A countdown (settle later) is not time spent waiting for a worker."""
    eta = datetime.fromtimestamp(160.0, UTC)
    assert queue_wait(100.0, eta.isoformat(), 161.0) == 1.0
    assert queue_wait(100.0, eta, 161.0) == 1.0


def test_queue_wait_is_never_negative_across_skewed_clocks():
    assert queue_wait(100.0, None, 99.0) == 0.0


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "delivered"), (204, "delivered"), (410, "gone"), (503, "rejected"),
     (301, "rejected"), (None, "unreachable")],
)  # fmt: skip
def test_notification_outcomes(status, outcome):
    assert notification_outcome(status) == outcome
