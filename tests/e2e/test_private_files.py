"""The embedded default's data directory after real use (`recpipe users add`, `recpipe serve`
taking a signed GME callback onto the embedded broker, `recpipe console` making its secret),
started with umask 022 as a shell gives it: the folder is 0700 and every file in it 0600 (the
ledger holds argon2 hashes and raw callbacks; the broker's files the dispatched work)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.recordings import BIZ, SECRET, recording, sign
from tests.support.services import free_port
from tests.support.waits import wait_for

CLI = [sys.executable, "-m", "recpipe"]


def modes(data: Path) -> dict[str, int]:
    """Every folder and file under `data` (the folder itself as '.') and its mode bits."""
    found = {".": stat.S_IMODE(data.stat().st_mode)}
    for path in data.rglob("*"):
        found[path.relative_to(data).as_posix()] = stat.S_IMODE(path.lstat().st_mode)
    return found


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [*CLI, *args], env=env, stdout=out, stderr=subprocess.STDOUT, umask=0o022
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(20)


def test_the_data_directory_is_0700_and_its_files_0600_after_real_use(tmp_path: Path):
    data = tmp_path / "var"
    env = {
        **os.environ,
        "RECPIPE_DATA_DIR": str(data),
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_METRICS_PORT": "0",
        "RECPIPE_INTERNAL_LISTEN": "off",  # tests side by side would share 9108
    }
    for name in ("RECPIPE_DATABASE_URL", "RECPIPE_BROKER_URL", "RECPIPE_ARCHIVE_URL",
                 "RECPIPE_GME_SOURCE_URL", "RECPIPE_CONSOLE_SECRET"):  # fmt: skip
        env.pop(name, None)
    added = subprocess.run(
        [*CLI, "users", "add", "otto", "--role", "operator", "--password-stdin"],
        env=env, input=b"a long enough password\n", capture_output=True, umask=0o022,
        timeout=120, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    port = free_port()
    webhook = spawn(["serve", "--port", str(port)], env, tmp_path / "webhook.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{url}/healthz", timeout=1).ok, what="recpipe serve")
        rec = recording(300, segments=1)
        for event_type in (1, 2, 3):
            body = rec.callback(event_type, 0)
            answer = requests.post(
                f"{url}/callbacks/gme",
                data=body,
                headers={"Content-Type": "application/json", "Signature": sign(body)},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
    finally:
        stop(webhook)
    # The webhook sends nothing to the broker (beat's clock settles); a reprocess does:
    # its chain lands as a message file of the embedded broker.
    sent = subprocess.run(
        [*CLI, "reprocess", rec.id], env=env, capture_output=True, umask=0o022, timeout=120,
        check=False,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    console_port = free_port()
    console = spawn(["console", "--port", str(console_port)], env, tmp_path / "console.log")
    try:
        wait_for(
            lambda: requests.get(f"http://127.0.0.1:{console_port}/login", timeout=1).ok,
            what="recpipe console",
        )
    finally:
        stop(console)
    found = modes(data)
    assert "ledger.sqlite3" in found and "console-secret" in found
    assert any(name.startswith("broker/queue/") for name in found), sorted(found)
    wide = {
        name: oct(mode)
        for name, mode in found.items()
        if mode & 0o077 and not stat.S_ISLNK((data / name).lstat().st_mode)
    }
    assert wide == {}
    assert found["."] == 0o700


def test_an_existing_data_directory_made_by_an_earlier_version_is_narrowed(tmp_path: Path):
    """A folder and ledger an earlier version left 0755 / 0644 are 0700 / 0600 once recpipe
    starts on them again."""
    data = tmp_path / "var"
    env = {
        **os.environ,
        "RECPIPE_DATA_DIR": str(data),
        "RECPIPE_METRICS_PORT": "0",
        "RECPIPE_INTERNAL_LISTEN": "off",
    }
    for name in ("RECPIPE_DATABASE_URL", "RECPIPE_BROKER_URL"):
        env.pop(name, None)
    made = subprocess.run([*CLI, "migrate"], env=env, capture_output=True, timeout=120,
                          check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    data.chmod(0o755)
    (data / "ledger.sqlite3").chmod(0o644)
    port = free_port()
    webhook = spawn(["serve", "--port", str(port)], env, tmp_path / "webhook.log")
    try:
        wait_for(
            lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok,
            what="recpipe serve",
        )
    finally:
        stop(webhook)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "ledger.sqlite3").stat().st_mode) == 0o600
