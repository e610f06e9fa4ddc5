"""recpipe_queue_depth read from real brokers: messages published to the media queue are
counted in Redis and RabbitMQ alike, and an unreachable broker says recpipe_broker_up 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

from foundation.config import Settings
from foundation.queues import QueueDepth
from tests.support.services import closed_port
from tests.support.waits import wait_for


def scrape(settings: Settings) -> dict[str, float]:
    return {
        f"{s.name}{s.labels.get('queue', '')}": s.value
        for family in QueueDepth(settings).collect()
        for s in family.samples
    }


@pytest.mark.parametrize("broker", ["redis_url", "amqp_url"])
def test_queue_depth_counts_messages_waiting_in_the_broker(broker: str, request, tmp_path: Path):
    url = request.getfixturevalue(broker)
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_BROKER_URL": url})
    assert scrape(settings) == {
        "recpipe_broker_up": 1,
        "recpipe_queue_depthlight": 0,
        "recpipe_queue_depthmedia": 0,
        "recpipe_queue_depthtranscribe": 0,
    }
    media = Queue("media", Exchange("media"), routing_key="media")
    with Connection(url) as conn:
        producer = conn.Producer()
        for n in range(3):
            producer.publish({"n": n}, exchange=media.exchange, routing_key="media",
                             declare=[media], priority=9 if n == 2 else None)  # fmt: skip
    # An AMQP publish is not confirmed: the broker may count it a moment later.
    found = wait_for(
        lambda: (d := scrape(settings))["recpipe_queue_depthmedia"] >= 3 and d, timeout=10
    )
    assert (found["recpipe_queue_depthmedia"], found["recpipe_queue_depthlight"]) == (3, 0)


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_an_unreachable_broker_is_reported_down_within_bounds(scheme: str, tmp_path: Path):
    url = f"{scheme}://127.0.0.1:{closed_port()}/" + ("0" if scheme == "redis" else "/")
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_BROKER_URL": url})
    assert scrape(settings) == {"recpipe_broker_up": 0}
