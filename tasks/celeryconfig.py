"""Celery settings, chosen for long media jobs. Imported lazily by `tasks.celery`."""

from __future__ import annotations

from datetime import timedelta

from kombu import Exchange, Queue

from tasks.context import settings

_s = settings()

broker_url = _s.broker_url
broker_connection_retry_on_startup = True
broker_transport_options: dict[str, object] = {}
if _s.embedded_broker:
    # The embedded broker: messages are files in the data directory, no server.
    for _name in ("queue", "processed", "control"):
        (_s.broker_dir / _name).mkdir(parents=True, exist_ok=True)
    broker_transport_options = {
        "data_folder_in": str(_s.broker_dir / "queue"),
        "data_folder_out": str(_s.broker_dir / "queue"),
        "processed_folder": str(_s.broker_dir / "processed"),
        "control_folder": str(_s.broker_dir / "control"),
        "store_processed": False,
    }
elif _s.broker_url.startswith(("redis://", "rediss://")):
    # An unacknowledged message comes back after this long: it must outlast the
    # longest task, or a slow transcode would be handed to a second worker.
    broker_transport_options = {
        "visibility_timeout": _s.task_time_limit_seconds + 3600,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
    }

# Workers take one message at a time and acknowledge only when it is done, so a
# worker that dies mid-transcode hands the message back instead of losing it.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_time_limit = _s.task_time_limit_seconds
task_soft_time_limit = _s.task_time_limit_seconds - 60
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
task_store_errors_even_if_ignored = False
worker_send_task_events = False
worker_hijack_root_logger = False
broker_heartbeat = 30
timezone = "UTC"
enable_utc = True

# Media work and light work (settling, notifications, sweeps) on separate queues, so
# a long transcode never delays the sweeps or a notification. A plain
# `celery -A tasks worker` consumes both; production runs one pool per queue.
task_default_queue = "light"
task_queues = (
    Queue("light", Exchange("light"), routing_key="light"),
    Queue("media", Exchange("media"), routing_key="media"),
)
task_routes = {"recpipe.process_recording": {"queue": "media"}}

beat_schedule = {
    "sweep": {"task": "recpipe.sweep", "schedule": timedelta(seconds=_s.sweep_seconds)},
}
beat_schedule_filename = str(_s.data_dir / "celerybeat-schedule")
worker_enable_remote_control = not _s.embedded_broker
