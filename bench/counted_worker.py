"""A Celery worker that counts, in each pool process, the processes its tasks start
(ffmpeg passes, ffprobe calls) and its ledger round trips (`benchlib.Counted`), and writes
them after each task to DIR/<pid>.json: bench/burst.py's figures per recording. The
worker's own start is not counted (each pool process starts from zero).

    python bench/counted_worker.py DIR -A tasks worker [celery worker options]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from benchlib import Counted


def main() -> None:
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    counted = Counted().start()

    from celery import signals
    from celery.__main__ import main as celery_main

    @signals.worker_process_init.connect(weak=False)
    def from_zero(**_: Any) -> None:
        counted.processes.clear()
        counted.round_trips = 0

    @signals.task_postrun.connect(weak=False)
    def write(**_: Any) -> None:
        (folder / f"{os.getpid()}.json").write_text(json.dumps(counted.counts()))

    sys.argv = ["celery", *sys.argv[2:]]
    celery_main()


if __name__ == "__main__":
    main()
