"""Celery settings, chosen for long media jobs. Imported lazily by `tasks.celery`, which
is when the environment is read; `tasks.celery.configure` applies explicit settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kombu import Exchange, Queue

from foundation.config import Settings
from foundation.private import private_dir
from foundation.queues import LIGHT, MEDIA, QUEUES, TRANSCRIBE
from tasks.context import settings


def celery_settings(s: Settings) -> dict[str, Any]:
    transport: dict[str, Any] = {}
    if s.embedded_broker:
        # The embedded broker: messages are files in the data directory, no server.
        for name in ("queue", "processed", "control"):
            private_dir(s.broker_dir / name)
        transport = {
            "data_folder_in": str(s.broker_dir / "queue"),
            "data_folder_out": str(s.broker_dir / "queue"),
            "processed_folder": str(s.broker_dir / "processed"),
            "control_folder": str(s.broker_dir / "control"),
            "store_processed": False,
        }
    elif s.broker_url.startswith(("redis://", "rediss://")):
        # An unacknowledged message comes back after this long: it must outlast the
        # longest task, or a slow transcode would be handed to a second worker.
        transport = {
            "visibility_timeout": s.task_time_limit_seconds + 3600,
            "socket_connect_timeout": 5,
            "socket_timeout": 30,
        }
    return {
        # kombu's filesystem transport wants a (meaningless) host, or it warns on connect.
        "broker_url": "filesystem://localhost//" if s.embedded_broker else s.broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 4,
        "broker_heartbeat": 30,
        # Workers take one message at a time and acknowledge only when it is done, so a
        # worker that dies mid-transcode hands the message back instead of losing it.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": s.task_time_limit_seconds,
        "task_soft_time_limit": s.task_time_limit_seconds - 60,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "worker_send_task_events": False,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
        # Media work, light work (settling, notifications, sweeps) and transcription on
        # separate queues, so a long transcode never delays a sweep or a notification and
        # transcription never delays the archive. A plain `celery -A tasks worker`
        # consumes all three; production runs one pool per queue (`-Q transcribe` on
        # hosts sized for the speech engine).
        "task_default_queue": LIGHT,
        "task_queues": tuple(Queue(name, Exchange(name), routing_key=name) for name in QUEUES),
        "task_routes": {
            "recpipe.process_recording": {"queue": MEDIA},
            "recpipe.transcribe": {"queue": TRANSCRIBE},
        },
        "beat_schedule": periodic_jobs(s),
        # The schedule is two intervals, so beat keeps it in memory: the default
        # shelve file is left corrupt by a SIGKILL, and beat then dies at its next start.
        # Only the beat holding the ledger's lease sends (a second one stays idle); the
        # leader also stamps beat's heartbeat at every pass (tasks.liveness).
        "beat_scheduler": "tasks.beat:LeasedScheduler",
        "worker_enable_remote_control": not s.embedded_broker,
    }


def periodic_jobs(s: Settings) -> dict[str, dict[str, Any]]:
    """The sweep, every RECPIPE_SWEEP_SECONDS; the retention job, hourly, unless
    RECPIPE_RETENTION_DAYS is 0; media retention, hourly, when RECPIPE_MEDIA_RETENTION_DAYS
    is set."""
    schedule: dict[str, dict[str, Any]] = {
        "sweep": {"task": "recpipe.sweep", "schedule": timedelta(seconds=s.sweep_seconds)},
    }
    if s.retention_days > 0:
        schedule["prune"] = {"task": "recpipe.prune", "schedule": timedelta(hours=1)}
    if s.media_retention_days is not None:
        schedule["expire_media"] = {
            "task": "recpipe.expire_media",
            "schedule": timedelta(hours=1),
        }
    return schedule


globals().update(celery_settings(settings()))
