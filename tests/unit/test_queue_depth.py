"""Queue depth of the embedded broker, and the queue names the webhook asks about."""

from pathlib import Path

from foundation.config import Settings
from foundation.queues import QUEUES, file_depths
from tasks.celeryconfig import celery_settings


def test_the_queues_measured_are_the_queues_celery_declares():
    conf = celery_settings(Settings.from_env({"RECPIPE_BROKER_URL": "redis://127.0.0.1:6379/0"}))
    assert set(QUEUES) == {queue.name for queue in conf["task_queues"]}


def test_embedded_broker_depth_counts_each_queues_message_files(tmp_path: Path):
    for name in ("1_a.media.msg", "2_b.media.msg", "3_c.light.msg", "4_d.other.msg", "x.tmp"):
        (tmp_path / name).write_bytes(b"{}")
    assert file_depths(tmp_path, QUEUES) == {"light": 1, "media": 2, "transcribe": 0}
    assert file_depths(tmp_path / "missing", QUEUES) == {"light": 0, "media": 0, "transcribe": 0}
