"""recpipe as real processes for end-to-end tests: `recpipe serve`, `celery -A tasks worker`,
and a downstream receiver that records the notifications it gets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from storage.ledger import Ledger
from tests.support.services import free_port
from tests.support.waits import wait_for


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A downstream endpoint; `fail_first` answers that many requests with 503 first,
    then `answer` (204 unless told otherwise, e.g. 410)."""

    fail_first: int = 0
    answer: int = 204
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(Received(dict(self.headers), body))
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(503 if failing else receiver.answer)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks/recpipe"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def stack_env(
    tmp_path: Path, database_url: str, broker_url: str, s3: str, bucket: str, **extra: str
) -> dict[str, str]:
    """The settings every end-to-end stack shares: its own data folder, the ledger, the
    broker, the archive in `bucket` on the S3 server `s3`, quick settling and sweeps.
    `extra` adds or overrides (the GME source and keys, the CSS key and hosts, ...)."""
    return {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": database_url,
        "RECPIPE_BROKER_URL": broker_url,
        "RECPIPE_ARCHIVE_URL": f"s3://{bucket}/archive?endpoint_url={s3}",
        "RECPIPE_SETTLE_SECONDS": "2",
        "RECPIPE_SWEEP_SECONDS": "1",
        **extra,
    }


class Stack:
    """recpipe's processes with one environment. `address` is where the webhook listens and
    `wrap` turns a command into the one that runs it there (another host:
    tests/support/hosts.py)."""

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        *,
        address: str = "127.0.0.1",
        wrap: Callable[[list[str]], list[str]] = list,
    ):
        # Worker metrics ports are off unless a test asks for one: concurrent stacks on one
        # machine would otherwise contend for the default port.
        # The webhook's internal listener (/readyz, /metrics) on a port of its own too.
        self.internal_port = free_port()
        self.env = {
            **os.environ,
            "RECPIPE_METRICS_PORT": "0",
            "RECPIPE_INTERNAL_LISTEN": f"{address}:{self.internal_port}",
            **env,
        }
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.address, self.wrap = address, wrap
        self.port = free_port()
        self.url = f"http://{address}:{self.port}"
        self.internal_url = f"http://{address}:{self.internal_port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ledger = Ledger(env["RECPIPE_DATABASE_URL"])

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                self.wrap(args),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def start_webhook(self, workers: int = 1, options: tuple[str, ...] = ()) -> None:
        self._spawn(
            "webhook",
            [
                sys.executable, "-m", "recpipe", "serve", "--host", self.address,
                "--port", str(self.port), "--workers", str(workers), *options,
            ],
        )  # fmt: skip
        wait_for(lambda: requests.get(f"{self.url}/healthz", timeout=1).ok, what="webhook")

    def start_worker(
        self, name: str = "worker", concurrency: int = 2, beat: bool = True, queues: str = ""
    ) -> None:
        args = [
            sys.executable, "-m", "celery", "-A", "tasks", "worker",
            "--concurrency", str(concurrency), "--loglevel", "INFO", "-n", f"{name}@%h",
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        if beat:
            args.append("--beat")
        if queues:
            args += ["--queues", queues]
        self._spawn(name, args)

    def start_beat(self, name: str = "beat") -> None:
        """`celery -A tasks beat` on its own (a worker started with beat=True embeds one)."""
        args = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO"]
        self._spawn(name, args)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, sig)
        process.wait(30)

    def post_gme(self, body: bytes, signature: str) -> int:
        response = requests.post(
            f"{self.url}/callbacks/gme",
            data=body,
            headers={"Content-Type": "application/json", "Signature": signature},
            timeout=10,
        )
        return response.status_code

    def post_css(self, body: dict) -> int:
        response = requests.post(f"{self.url}/callbacks/css", json=body, timeout=10)
        return response.status_code

    def wait_for_state(self, recording_id: str, states: tuple[str, ...], timeout: float = 90):
        def done():
            recording = self.ledger.recording(recording_id)
            return recording if recording and recording.state in states else None

        return wait_for(done, timeout=timeout, interval=0.5, what=f"{recording_id} in {states}")

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in self.logs.glob("*.log")
        )

    def stop(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
        self.ledger.dispose()


def parse_body(received: Received) -> dict:
    return json.loads(received.body)


class FileServer:
    """A real HTTP server for a directory, on 127.0.0.1, in a thread; it records the Host
    header of every request, answers paths in `redirects` with a 302 and the next
    `failures[path]` requests of a path with a 503."""

    def __init__(self, root: Path):
        import functools
        from http.server import SimpleHTTPRequestHandler

        hosts: list[str] = []
        self.hosts = hosts
        self.redirects: dict[str, str] = {}
        self.failures: dict[str, int] = {}
        redirects, failures = self.redirects, self.failures

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                hosts.append(self.headers.get("Host", ""))
                if failures.get(self.path, 0) > 0:
                    failures[self.path] -= 1
                    self.send_error(503)
                    return
                if self.path in redirects:
                    self.send_response(302)
                    self.send_header("Location", redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    @property
    def allowed(self) -> str:
        """The RECPIPE_CSS_ALLOWED_HOSTS entry for this server: its address and port."""
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
