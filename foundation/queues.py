"""How many messages wait in each of recpipe's queues, read from the broker at scrape time.

`recpipe_queue_depth{queue}` counts the messages ready in a queue (not those a worker has
taken and not yet acknowledged); `recpipe_broker_up` is 0 when the broker did not answer
the scrape, so the scrape itself still succeeds during a broker outage. Each broker is
asked the cheapest way it knows: Redis `LLEN` of the queue's lists (kombu keeps one list
per priority step), AMQP a passive queue declare, the embedded broker a count of its
message files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import structlog

from foundation.config import Settings

log = structlog.get_logger("recpipe.metrics")

# recpipe's queues, declared by tasks/celeryconfig.py from these names: media work
# (fetch, mix, transcode, archive) on one, everything light (settling, notifications,
# sweeps) on another, so a long transcode never delays a sweep or a notification, and
# transcription on a third, so that it never delays the archive (docs/transcripts.md).
LIGHT = "light"
MEDIA = "media"
TRANSCRIBE = "transcribe"
QUEUES = (LIGHT, MEDIA, TRANSCRIBE)
TIMEOUT_SECONDS = 2.0
# kombu's Redis transport: the list of priority p > 0 is named queue + SEP + p.
_REDIS_PRIORITY_SEP = "\x06\x16"
_REDIS_PRIORITY_STEPS = (0, 3, 6, 9)


class BrokerUnavailableError(Exception):
    """The broker does not answer, or did not take a message: the one error for it,
    whoever met it (a queue-depth scrape, a command, the console). Transient: what needs
    the broker is tried again (`tasks.retrying`)."""


def redis_depths(
    url: str, queues: Sequence[str], timeout: float = TIMEOUT_SECONDS
) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                for step in _REDIS_PRIORITY_STEPS:
                    pipe.llen(f"{queue}{_REDIS_PRIORITY_SEP}{step}" if step else queue)
            lengths = pipe.execute()
    except redis.RedisError as exc:
        raise BrokerUnavailableError(str(exc)) from exc
    finally:
        client.close()
    per_queue = len(_REDIS_PRIORITY_STEPS)
    return {
        queue: int(sum(lengths[i * per_queue : (i + 1) * per_queue]))
        for i, queue in enumerate(queues)
    }


def amqp_depths(
    url: str, queues: Sequence[str], timeout: float = TIMEOUT_SECONDS
) -> dict[str, int]:
    """A passive declare per queue; a queue that does not exist yet holds nothing."""
    from amqp.exceptions import AMQPError, NotFound
    from kombu import Connection
    from kombu.exceptions import OperationalError

    depths: dict[str, int] = {}
    options = {"read_timeout": timeout, "write_timeout": timeout}
    try:
        with Connection(url, connect_timeout=timeout, transport_options=options) as conn:
            conn.ensure_connection(max_retries=0)
            for queue in queues:
                channel = conn.channel()
                try:
                    depths[queue] = int(channel.queue_declare(queue, passive=True).message_count)
                except NotFound:
                    depths[queue] = 0  # the passive declare closed this channel
                    continue
                channel.close()
    except (OSError, OperationalError, AMQPError) as exc:
        raise BrokerUnavailableError(str(exc) or type(exc).__name__) from exc
    return depths


def file_depths(folder: Path, queues: Sequence[str]) -> dict[str, int]:
    """The embedded broker: one file per message, named `<stamp>_<uuid>.<queue>.msg`."""
    counts = dict.fromkeys(queues, 0)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return counts
    for name in names:
        queue = name.partition(".")[2].removesuffix(".msg")
        if queue in counts and name.endswith(".msg"):
            counts[queue] += 1
    return counts


def depths(settings: Settings, queues: Sequence[str] = QUEUES) -> dict[str, int]:
    url = settings.broker_url
    if settings.embedded_broker:
        return file_depths(settings.broker_dir / "queue", queues)
    if url.startswith(("redis://", "rediss://")):
        return redis_depths(url, queues)
    if url.startswith(("amqp://", "amqps://", "pyamqp://")):
        return amqp_depths(url, queues)
    raise BrokerUnavailableError(f"no queue depth for broker scheme {url.split(':', 1)[0]}")


def known_depths(settings: Settings, queues: Sequence[str] = QUEUES) -> dict[str, int | None]:
    """Like `depths`, for a page or a task that goes on without the broker: None for
    each queue when the broker did not answer."""
    try:
        return dict(depths(settings, queues))
    except BrokerUnavailableError as exc:
        log.info("queue_depth.unknown", queues=list(queues), error=str(exc))
        return dict.fromkeys(queues, None)


class QueueDepth:
    """A collector: `recpipe_broker_up` and `recpipe_queue_depth{queue}` per scrape."""

    def __init__(self, settings: Settings, queues: Sequence[str] = QUEUES):
        self.settings = settings
        self.queues = tuple(queues)

    def collect(self) -> Iterator[Any]:
        # Imported here: prometheus_client must not be imported before a process has
        # chosen multiprocess mode (see foundation.metrics).
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("recpipe_broker_up", "1 when the broker answered this scrape")
        try:
            found = depths(self.settings, self.queues)
        except BrokerUnavailableError as exc:
            log.warning("metrics.broker_unavailable", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        gauge = GaugeMetricFamily(
            "recpipe_queue_depth", "Messages ready in each queue of the broker", labels=["queue"]
        )
        for queue in self.queues:
            gauge.add_metric([queue], found.get(queue, 0))
        yield gauge
