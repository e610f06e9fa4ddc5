"""Queue depth of the embedded broker."""

from pathlib import Path

from foundation.queues import QUEUES, file_depths


def test_embedded_broker_depth_counts_each_queues_message_files(tmp_path: Path):
    for name in ("1_a.media.msg", "2_b.media.msg", "3_c.light.msg", "4_d.other.msg", "x.tmp"):
        (tmp_path / name).write_bytes(b"{}")
    assert file_depths(tmp_path, QUEUES) == {"light": 1, "media": 2, "transcribe": 0}
    assert file_depths(tmp_path / "missing", QUEUES) == {"light": 0, "media": 0, "transcribe": 0}
