"""What `recpipe run` shows in a terminal: a worker with its beat on a pseudo-terminal,
the embedded broker and a SQLite ledger, sweeping every second while beat's clock hands a
due recording to a settle look that waits. None of it is an info line: not the sweeps,
not the clock, not the look (Celery's per-task lines are debug lines there)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from foundation.config import Settings
from storage.domain import GmeEvent, GmeRecordingKey
from storage.ledger import Ledger, utcnow

ROOT = Path(__file__).resolve().parents[2]
KEY = GmeRecordingKey(1400000000, "100", "999", "446946705284000555", 1)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_an_idle_sweep_and_a_waiting_look_write_no_info_line(tmp_path: Path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RECPIPE_")},
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_SWEEP_SECONDS": "1",
        "RECPIPE_SETTLE_SECONDS": "120",
        "RECPIPE_MAX_WAIT_SECONDS": "3600",
    }
    settings = Settings.from_env(env)
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    # A recording whose segment is open, due now: its look waits until the maximum wait.
    started = utcnow() - timedelta(seconds=121)
    gme = GmeEvent(KEY, 1, 0, f"p/0_{KEY.task_id}_audio.mp3", 1675930605)
    ledger.record_gme_event(gme, "{}", {}, now=started, settle_seconds=120)
    master, terminal = pty.openpty()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--beat",
         "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
         "-n", "terminal@%h"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
        start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    output = bytearray()

    def read(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    output.extend(os.read(master, 65536))
                except OSError:
                    return

    def looked() -> bool:
        view = ledger.recording(KEY.recording_id)
        return view is not None and view.settle_due_at == started + timedelta(seconds=3600)

    try:
        deadline = time.monotonic() + 90
        while not looked() and time.monotonic() < deadline:
            read(0.5)
        assert looked(), ANSI.sub("", output.decode(errors="replace"))
        read(4)  # a few more sweeps and clock passes, idle
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        read(0.5)
        os.close(master)
        ledger.dispose()
    lines = ANSI.sub("", output.decode(errors="replace")).splitlines()
    assert any("beat.leading" in line for line in lines), lines  # beat ran, and said so
    info = [line for line in lines if "[info" in line]
    assert [line for line in info if "recpipe." in line or "sweep" in line] == [], info
