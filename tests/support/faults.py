"""Real faults for integration tests: a PostgreSQL of the test's own that the test stops and
starts, and a TCP proxy in front of a server (the S3 server) that the test cuts, slows or
stalls."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tests.support.required import missing
from tests.support.services import free_port
from tests.support.waits import wait_for


def _pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are: pg_config's bindir, the PATH, or Debian's versioned
    directories (off the PATH, newest first)."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidate = Path(found.stdout.strip())
        if found.returncode == 0 and (candidate / "initdb").exists():
            return candidate
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    debian = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    return max(debian, key=lambda p: _version(p.parent.name), default=None)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


class PostgresServer:
    """initdb into a directory of its own, then `pg_ctl` start/stop, as the `postgres` user
    when the tests run as root (PostgreSQL refuses to run as root)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        bindir = _pg_bindir()
        if bindir is None:
            missing("PostgreSQL server binaries (initdb, pg_ctl)")
        self.bindir = bindir
        self.host, self.port = host, free_port()
        # Not under pytest's tmp_path: its parents are private to root, and the server
        # runs as another user.
        self.root = Path(tempfile.mkdtemp(prefix="recpipe-pg-"))
        self.data = self.root / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
            "-E", "UTF8",
        )  # fmt: skip
        self.url = f"postgresql+psycopg://postgres@{host}:{self.port}/postgres"

    def trust(self, network: str) -> None:
        """Let clients from `network` (e.g. 10.1.2.0/24) in without a password."""
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {network} trust\n")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            cwd=self.root,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses={self.host} -k {self.root} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "pg.log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session and stops; `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class TcpProxy:
    """Forwards 127.0.0.1:`port` to a server. `cut()` closes every connection and refuses
    new ones until `restore()`; `rate` limits the bytes per second each way; `stall` holds
    every byte until it is cleared."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.rate: float | None = None
        self.stall = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._serving = threading.Event()
        self.restore()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        self._serving.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        self._serving.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._serving.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            if not self._serving.is_set():
                client.close()
                upstream.close()
                return
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(16384):
                while self.stall.is_set():
                    time.sleep(0.05)
                if self.rate:
                    time.sleep(len(chunk) / self.rate)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)

    def close(self) -> None:
        self.cut()


def wait_ready(url: str, timeout: float = 60) -> None:
    import requests

    wait_for(
        lambda: requests.get(f"{url}/readyz", timeout=5).status_code == 200,
        timeout=timeout,
        what="/readyz 200",
    )


class RedisServer:
    """A throwaway redis-server of the test's own, that the test stops and starts."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1"):
        self.host, self.port = host, free_port()
        self.workdir = workdir
        self.url = f"redis://{host}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", self.host,
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                "--protected-mode", "no" if self.host != "127.0.0.1" else "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        wait_for(client.ping, timeout=20, what="redis-server")
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
