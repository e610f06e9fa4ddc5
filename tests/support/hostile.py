"""Hostile HTTP clients for tests, on 127.0.0.1 only and bounded in time and count.

`python -m tests.support.hostile PORT COUNT SECONDS` holds COUNT slowloris connections to
127.0.0.1:PORT for SECONDS: a third trickle the request line, a third the headers, a third
the body, one byte a second each; a connection the server closes is opened again. It prints
one JSON line once every connection is open, then one with what it saw:

- `peak_open`: most connections open at once;
- `opened`, `closed_by_server`: connections opened, and those the server closed;
- `first_wave_open_at_end`: connections of the first COUNT still open when the attack
  ended (0 when the server closes slow connections within SECONDS).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import resource
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"

# Sent at once, then one byte of the trickle after another, never completing the part.
PREFIX = {
    "line": b"",
    "headers": b"POST /callbacks/gme HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    "body": (
        b"POST /callbacks/gme HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 60000\r\n\r\n"
    ),
}
TRICKLE = {
    "line": b"POST /callbacks/gme?pad=",
    "headers": b"X-Pad: ",
    "body": b'{"pad": "',
}


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Stats:
    count: int = 0
    open_now: int = 0
    peak_open: int = 0
    opened: int = 0
    closed_by_server: int = 0
    connect_errors: int = 0
    first_wave_open_at_end: int = 0


class Slowloris:
    def __init__(self, port: int, count: int, interval: float = 1.0):
        self.port, self.count, self.interval = port, count, interval
        self.stats = Stats(count=count)
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.first_wave: set[int] = set()

    async def run(self, seconds: float) -> Stats:
        kinds = itertools.cycle(PREFIX)
        opening = asyncio.Semaphore(200)  # connect in batches, not 1,000 SYNs at once
        tasks = [
            asyncio.create_task(self._hold(number, next(kinds), opening))
            for number in range(self.count)
        ]
        await asyncio.sleep(seconds)
        self.stats.first_wave_open_at_end = len(self.first_wave)
        self.stopping.set()
        await asyncio.gather(*tasks)
        return self.stats

    async def _hold(self, number: int, kind: str, opening: asyncio.Semaphore) -> None:
        first = True
        while not self.stopping.is_set():
            try:
                async with opening:
                    reader, writer = await asyncio.open_connection(HOST, self.port)
            except OSError:
                self.stats.connect_errors += 1
                await asyncio.sleep(0.2)
                continue
            self._opened(number, first)
            closed_by_server = await self._trickle(kind, reader, writer)
            self.stats.open_now -= 1
            self.first_wave.discard(number)
            if closed_by_server:
                self.stats.closed_by_server += 1
            writer.close()
            first = False

    def _opened(self, number: int, first: bool) -> None:
        s = self.stats
        s.opened += 1
        s.open_now += 1
        s.peak_open = max(s.peak_open, s.open_now)
        if first:
            self.first_wave.add(number)
            if len(self.first_wave) == self.count:
                self.ready.set()

    async def _trickle(
        self, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Trickle until the server closes (True) or the attack ends (False)."""
        pending = iter(TRICKLE[kind])
        try:
            writer.write(PREFIX[kind])
            while not self.stopping.is_set():
                writer.write(bytes([next(pending, ord("a"))]))
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(4096), self.interval)
                except TimeoutError:
                    continue
                if not data:
                    return True
        except OSError:
            return True
        return False


def flood(port: int, count: int, threads: int = 4) -> int:
    """Open and close `count` connections as fast as `threads` threads can, half of them
    with a reset (SO_LINGER 0); returns how many connected."""
    connected = [0] * threads

    def run(index: int) -> None:
        for n in range(count // threads):
            try:
                sock = socket.create_connection((HOST, port), timeout=5)
            except OSError:
                continue
            if n % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            connected[index] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(connected)


async def _main(port: int, count: int, seconds: float) -> None:
    attack = Slowloris(port, count)
    running = asyncio.create_task(attack.run(seconds))
    ready = asyncio.create_task(attack.ready.wait())
    await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
    print(json.dumps({"ready": attack.ready.is_set(), "open": attack.stats.open_now}), flush=True)
    stats = await running
    ready.cancel()
    print(json.dumps(asdict(stats)), flush=True)


if __name__ == "__main__":
    raise_open_files_limit()
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))


class Hostile:
    """A server whose paths misbehave: /trickle sends a byte every 0.1 s of a body it says
    is 1 MB long, /endless.m3u8 writes playlist lines for ever, /silent sends headers and
    then nothing until the server is closed, /loop redirects to itself, /private redirects
    to a name the resolver maps to a private address; /variants/... is a master playlist
    with two variants."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths
        self.stop = threading.Event()
        stop = self.stop

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                paths.append(self.path)
                port = self.server.server_address[1]
                if self.path == "/trickle":
                    self._head(200, {"Content-Length": str(1024 * 1024)})
                    while not stop.is_set():
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.1)
                elif self.path == "/endless.m3u8":
                    self._head(200, {"Content-Type": "application/vnd.apple.mpegurl"})
                    self.wfile.write(b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n")
                    n = 0
                    while not stop.is_set():
                        lines = "".join(f"#EXTINF:1.0,\nseg{n + i}.ts\n" for i in range(50))
                        self.wfile.write(lines.encode())
                        self.wfile.flush()
                        n += 50
                        time.sleep(0.01)
                elif self.path == "/silent":
                    self._head(200, {"Content-Length": "1000"})
                    stop.wait()  # until the server is closed
                elif self.path == "/loop":
                    self._head(302, {"Location": "/loop", "Content-Length": "0"})
                elif self.path == "/private":
                    location = f"http://internal.example.com:{port}/x"
                    self._head(302, {"Location": location, "Content-Length": "0"})
                elif self.path == "/variants/master.m3u8":
                    self._body(
                        b"#EXTM3U\n"
                        b"#EXT-X-STREAM-INF:BANDWIDTH=200000\nlow.m3u8\n"
                        b"#EXT-X-STREAM-INF:BANDWIDTH=900000\nhigh.m3u8\n"
                        b"#EXT-X-STREAM-INF:BANDWIDTH=500000\nmid.m3u8\n"
                    )
                elif self.path.startswith("/variants/") and self.path.endswith(".m3u8"):
                    name = self.path.rsplit("/", 1)[1].removesuffix(".m3u8")
                    self._body(
                        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{name}-0.ts\n"
                        f"#EXTINF:1.0,\n{name}-1.ts\n#EXT-X-ENDLIST\n".encode()
                    )
                elif self.path.startswith("/variants/"):
                    self._body(self.path.encode() * 10)
                else:
                    self._head(404, {"Content-Length": "0"})

            def _head(self, status: int, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()

            def _body(self, data: bytes) -> None:
                self._head(200, {"Content-Length": str(len(data))})
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
