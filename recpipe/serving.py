"""The webhook's HTTP server: an asyncio front that reads whole requests, then a thread pool.

The webhook faces the internet, so a client may open connections and trickle bytes into
them (slowloris) for as long as it likes. Here such a client costs a socket and a small
object, never a thread: every connection is read by one event loop per process, under
deadlines and limits, and only a complete request (line, headers and a body of at most
the configured size) is handed to the WSGI app on a thread pool.

- a request must arrive whole within `request_seconds` of its first byte (or of the
  connection being accepted); a kept-alive connection may wait `keepalive_seconds` for
  the next one; either way a late connection is closed;
- request line and headers over `max_header_bytes`, or more than `max_headers` headers,
  are answered 431; anything h11 cannot parse 400;
- a request whose length could be read two ways is answered 400 and its connection closed
  before the app sees it (`framing_problem`): Content-Length beside Transfer-Encoding, a
  Transfer-Encoding other than the bare word `chunked` (upper case, tab padded, folded),
  Transfer-Encoding on HTTP/1.0, Content-Length twice or as a list, any folded header
  line. h11 alone would read some of these as chunked and keep the connection, and a
  proxy in front that trusted Content-Length would then see another request boundary
  than this server (request smuggling);
- a body over `max_body_bytes` is not read: the app sees the declared length (or the first
  `max_body_bytes + 1` bytes) and answers its own 413, and the connection is closed;
- at most `max_connections` connections per process are open; one more closes the oldest
  connection that is not being answered (a slow one, or an idle keep-alive), which is
  logged and counted in `recpipe_http_connections_closed_total{reason="limit"}`.

`serve` runs `workers` processes that accept on the listening sockets (the public one and,
for the webhook, the internal one of `/readyz` and `/metrics`), restarts any that dies, and
stops them on SIGTERM or SIGINT after the requests in hand are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import h11
import structlog
from prometheus_client import Counter, Gauge

log = structlog.get_logger("recpipe.http")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

OPEN_CONNECTIONS = Gauge(
    "recpipe_http_connections",
    "Open HTTP connections of the webhook",
    multiprocess_mode="livesum",
)
CLOSED_CONNECTIONS = Counter(
    "recpipe_http_connections_closed_total",
    "Connections the webhook closed before a client finished with them, by reason",
    ["reason"],
)
# Reasons: a request not whole in time, a kept-alive connection idle too long, the
# connection bound reached, headers too large or too many, a request that does not parse
# or whose length could be read two ways.
REASONS = ("slow_request", "idle", "limit", "headers_too_large", "malformed")

# Descriptors a worker keeps for itself beyond its connections: ledger and broker
# connections, logs, the metrics files, the listening socket.
RESERVED_FDS = 256
WORKER_BOOT_FAILED = 3


@dataclass(frozen=True)
class Limits:
    max_connections: int = 4096
    request_seconds: float = 10.0
    keepalive_seconds: float = 5.0
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    max_body_bytes: int = 64 * 1024
    graceful_seconds: float = 20.0


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("http.nofile_not_raised", soft=soft, hard=hard, error=str(exc))
    return soft


def fit_limits(limits: Limits, open_files: int) -> Limits:
    """`limits` with `max_connections` lowered to what the descriptor limit leaves."""
    room = max(16, open_files - RESERVED_FDS)
    if limits.max_connections <= room:
        return limits
    log.warning(
        "http.max_connections_lowered",
        wanted=limits.max_connections,
        allowed=room,
        open_files_limit=open_files,
    )
    return replace(limits, max_connections=room)


class ListenError(Exception):
    """The address cannot be listened on (in use, not this host's, no permission)."""


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(_backlog())
    sock.setblocking(False)
    return sock


def _backlog() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(128, min(4096, int(f.read())))
    except (OSError, ValueError):
        return 1024


# -- framing ----------------------------------------------------------------------------


def framing_problem(head: bytes, http_version: bytes) -> str | None:
    """Why the length of a request with this head could be read two ways, or None.

    `head` is the request line and header lines as received (up to the blank line). h11
    unfolds folded lines, lower-cases and trims `Transfer-Encoding` and takes a repeated
    equal Content-Length as one before anyone sees them, so this reads the raw bytes: a
    proxy in front may not have done the same, and then it and this server would split
    the stream into different requests."""
    lines = head.split(b"\n")[1:]
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for raw in lines:
        line = raw.removesuffix(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            return "folded header line"
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.append(value)
    if codings and lengths:
        return "Content-Length and Transfer-Encoding"
    if len(lengths) > 1 or any(not v.strip(b" ").isdigit() for v in lengths):
        return "Content-Length repeated or not a number"
    if codings and http_version != b"1.1":
        return "Transfer-Encoding in HTTP/1.0"
    if len(codings) > 1 or any(v.strip(b" ") != b"chunked" for v in codings):
        return "Transfer-Encoding other than chunked"
    return None


# -- one connection ---------------------------------------------------------------------

READING, WAITING, ANSWERING, LINGERING, CLOSED = (
    "reading",
    "waiting",
    "answering",
    "lingering",
    "closed",
)
# After answering a request whose body was not read (413), what the client still sends is
# read and dropped for a while before closing: closing with unread data would make the
# kernel reset the connection, and the client could lose the answer.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20
# The raw head kept for `framing_problem` may run past `max_header_bytes` by the request
# line, the separators and the blank line that h11's bound does not count.
HEAD_SLACK = 8192


class HttpConnection(asyncio.Protocol):
    """One client connection: h11 parses, deadlines bound, the pool answers."""

    def __init__(self, front: Front):
        self.front = front
        self.limits = front.limits
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=front.limits.max_header_bytes
        )
        self.transport: asyncio.Transport | None = None
        self.state = READING
        self.timer: asyncio.TimerHandle | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.declared: int | None = None
        self.close_after = False
        self.eof = False
        self.discarded = 0
        # The raw bytes of the head being read (h11 hands over its headers normalised):
        # what `framing_problem` checks.
        self.head = bytearray()

    # asyncio calls these

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP transport
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        self._arm(self.limits.request_seconds, "slow_request")
        self.front.opened(self)

    def data_received(self, data: bytes) -> None:
        if self.state is LINGERING:
            self.discarded += len(data)
            if self.discarded > LINGER_BYTES and self.transport is not None:
                self.transport.abort()
            return
        if self.state is WAITING:
            self.state = READING
            self._arm(self.limits.request_seconds, "slow_request")
        if self.request is None:
            self._keep_head(data)
        self.h11.receive_data(data)
        self._advance()

    def eof_received(self) -> bool:
        self.eof = True
        if self.state is LINGERING and self.transport is not None:
            self.state = CLOSED
            self.transport.close()
            return True
        if self.state is WAITING:  # closed between requests: the usual end of keep-alive
            self.close()
            return True
        self.h11.receive_data(b"")
        self._advance()
        return True  # keep the write side open: a half-closed client still gets its answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self._disarm()
        self.front.closed(self)

    # reading

    def _advance(self) -> None:
        while self.state is READING:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self.eof:  # the client went away mid-request: nobody to answer
                    self.close()
                    return
                status = exc.error_status_hint
                self.refuse(status, "headers_too_large" if status == 431 else "malformed")
                return
            kind = type(event)
            if kind is h11.Data:
                self.body += event.data  # type: ignore[union-attr]
                if len(self.body) > self.limits.max_body_bytes:
                    del self.body[self.limits.max_body_bytes + 1 :]
                    self.close_after = True
                    self._answer()
            elif kind is h11.EndOfMessage:
                self._answer()
            elif kind is h11.Request:
                self._begin(event)  # type: ignore[arg-type]
            elif kind is h11.ConnectionClosed:
                self.close()
            else:  # NEED_DATA, or PAUSED once a request is whole
                return

    def _keep_head(self, data: bytes) -> None:
        room = self.limits.max_header_bytes + HEAD_SLACK - len(self.head)
        if room > 0:
            self.head += data[:room]

    def _begin(self, request: h11.Request) -> None:
        # h11 bounds a head that arrives in pieces; one that arrives whole is measured here.
        head = len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers)
        if len(request.headers) > self.limits.max_headers or head > self.limits.max_header_bytes:
            self.refuse(431, "headers_too_large")
            return
        raw = bytes(self.head).lstrip(b"\r\n")  # h11 skips blank lines before a request
        ends = [i for i in (raw.find(b"\n\r\n"), raw.find(b"\n\n")) if i >= 0]
        end = min(ends, default=-1)
        if end < 0:  # longer than h11 and the bound above let through: never seen whole
            self.refuse(431, "headers_too_large")
            return
        problem = framing_problem(raw[: end + 1], request.http_version)
        self.head = bytearray()
        if problem is not None:
            log.info("http.ambiguous_framing", peer=self.peer[0], problem=problem)
            self.refuse(400, "malformed", linger=True)
            return
        self.request, self.body, self.declared = request, bytearray(), None
        for name, value in request.headers:
            if name == b"content-length":
                self.declared = int(value)
        if self.declared is not None and self.declared > self.limits.max_body_bytes:
            # Refused unread: the app sees the declared length and answers 413.
            self.close_after = True
            self._answer()
            return
        if self.h11.they_are_waiting_for_100_continue:
            self._write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))

    # answering

    def _answer(self) -> None:
        if self.request is None:
            return
        self.state = ANSWERING
        self._disarm()
        if self.transport is not None:
            self.transport.pause_reading()
        environ = self.front.environ(self.request, bytes(self.body), self.declared, self.peer)
        future = self.front.pool.submit(call_app, self.front.app, environ)
        future.add_done_callback(self._answered_threadsafe)
        self.front.in_hand.add(future)

    def _answered_threadsafe(self, future: Future[Answer]) -> None:
        self.front.loop.call_soon_threadsafe(self._answered, future)

    def _answered(self, future: Future[Answer]) -> None:
        self.front.in_hand.discard(future)
        if self.state is CLOSED or self.transport is None or self.request is None:
            return
        answer = future.result()
        headers = answer.headers
        if self.close_after or self.front.stopping:
            headers = [*headers, (b"connection", b"close")]
        try:
            out = self.h11.send(
                h11.Response(status_code=answer.status, headers=headers, reason=answer.reason)
            )
            if answer.body and self.request.method != b"HEAD":
                out += self.h11.send(h11.Data(data=answer.body))
            out += self.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            log.exception("http.bad_answer", status=answer.status)
            self.refuse(500, None)
            return
        self._write(out)
        if self.close_after and not self.eof:
            self._linger()
            return
        if self.h11.our_state is h11.MUST_CLOSE or self.close_after or self.front.stopping:
            self.close()
            return
        self.h11.start_next_cycle()
        self.request, self.body, self.declared = None, bytearray(), None
        self.head = bytearray()
        self._keep_head(self.h11.trailing_data[0])
        if self.h11.trailing_data[0]:  # pipelined: the next request has begun
            self.state = READING
            self._arm(self.limits.request_seconds, "slow_request")
        else:
            self.state = WAITING
            self._arm(self.limits.keepalive_seconds, "idle")
        self.transport.resume_reading()
        self._advance()

    def refuse(self, status: int, reason: str | None, *, linger: bool = False) -> None:
        """Answer `status` with a JSON error and close; nothing reaches the app. With
        `linger`, what the client still sends is dropped for a while first, so that the
        answer is not lost to a reset."""
        if reason:
            CLOSED_CONNECTIONS.labels(reason).inc()
        phrase = HTTPStatus(status).phrase
        body = json.dumps({"error": phrase.lower()}).encode()
        head = (
            f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self._write(head + body)
        if linger and not self.eof:
            self._linger()
            return
        self.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """Close once written; a client that does not read is cut at the keep-alive bound."""
        if self.transport is not None and self.state is not CLOSED:
            self.state = CLOSED
            self.transport.close()
            self._arm(self.limits.keepalive_seconds, None)

    def _linger(self) -> None:
        """Close our side once the answer is out, and drop what the client still sends."""
        if self.transport is None:
            return
        self.state = LINGERING
        self.transport.write_eof()
        self.transport.resume_reading()
        self._arm(LINGER_SECONDS, None)

    def abort(self, reason: str) -> None:
        CLOSED_CONNECTIONS.labels(reason).inc()
        self.state = CLOSED
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    # deadlines

    def _arm(self, seconds: float, reason: str | None) -> None:
        self._disarm()
        self.timer = self.front.loop.call_later(seconds, self._late, reason)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _late(self, reason: str | None) -> None:
        self.timer = None
        if reason is None:  # closing, and the client would not take the last bytes
            if self.transport is not None:
                self.transport.abort()
            return
        self.abort(reason)


# -- the app side -----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


def call_app(app: WsgiApp, environ: dict[str, Any]) -> Answer:
    """Run the WSGI app on one whole request (on a pool thread); the answer in memory.

    The webhook's answers are small JSON documents and the metrics page."""
    started: list[Any] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return chunks.append

    try:
        result = app(environ, start_response)
        try:
            chunks.extend(chunk for chunk in result if chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        code, _, reason = status.partition(" ")
        encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return Answer(int(code), reason.encode("latin-1"), encoded, b"".join(chunks))
    except Exception:
        log.exception("http.app_failed", path=environ.get("PATH_INFO"))
        body = b'{"error":"internal error"}'
        return Answer(500, b"Internal Server Error", [(b"content-type", b"application/json")], body)


# -- one process's front ----------------------------------------------------------------


class Front:
    """The connections of one process, the bound on them, and the WSGI environ."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app: WsgiApp,
        pool: ThreadPoolExecutor,
        limits: Limits,
        server: tuple[str, int],
        multiprocess: bool,
    ):
        self.loop, self.app, self.pool, self.limits = loop, app, pool, limits
        self.server_name, self.server_port = server[0], str(server[1])
        self.multiprocess = multiprocess
        # Insertion ordered: the first connection not being answered is the oldest such.
        self.connections: dict[HttpConnection, None] = {}
        self.in_hand: set[Future[Answer]] = set()
        self.stopping = False
        self._limit_hits = 0
        self._limit_logged_at = 0.0

    def protocol(self) -> HttpConnection:
        return HttpConnection(self)

    def opened(self, conn: HttpConnection) -> None:
        self.connections[conn] = None
        OPEN_CONNECTIONS.inc()
        if len(self.connections) > self.limits.max_connections:
            victim = next(c for c in self.connections if c.state is not ANSWERING)
            self.connections.pop(victim, None)
            OPEN_CONNECTIONS.dec()
            victim.abort("limit")
            self._limit_reached()

    def closed(self, conn: HttpConnection) -> None:
        if self.connections.pop(conn, False) is None:
            OPEN_CONNECTIONS.dec()

    def _limit_reached(self) -> None:
        """Log the bound being hit, at most every 10 s: an attack must not flood the log."""
        self._limit_hits += 1
        now = time.monotonic()
        if now - self._limit_logged_at >= 10:
            log.warning(
                "http.connection_limit",
                max_connections=self.limits.max_connections,
                closed_since_last_line=self._limit_hits,
            )
            self._limit_hits, self._limit_logged_at = 0, now

    def environ(
        self, request: h11.Request, body: bytes, declared: int | None, peer: tuple[str, int]
    ) -> dict[str, Any]:
        target = request.target
        if not target.startswith(b"/"):  # absolute form, or `*`
            target = urlsplit(target).path if b"://" in target else b"/"
            if b"?" in request.target:
                target += b"?" + request.target.split(b"?", 1)[1]
        path, _, query = target.partition(b"?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method.decode("ascii"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "SERVER_NAME": self.server_name,
            "SERVER_PORT": self.server_port,
            "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
            "REMOTE_ADDR": peer[0],
            "REMOTE_PORT": str(peer[1]),
            # The body is whole (or cut one byte past the limit): its length is known.
            "CONTENT_LENGTH": str(len(body) if declared is None or len(body) else declared),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": self.multiprocess,
            "wsgi.run_once": False,
        }
        for name, value in request.headers:
            if name in (b"content-length", b"transfer-encoding"):
                continue
            if name == b"content-type":
                environ["CONTENT_TYPE"] = value.decode("latin-1")
                continue
            if b"_" in name:  # X_Forwarded_For would pass for X-Forwarded-For otherwise
                continue
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            environ[key] = f"{environ[key]},{text}" if key in environ else text
        return environ

    async def drain(self) -> None:
        """Stop taking requests: close idle connections, answer those in hand."""
        self.stopping = True
        deadline = self.loop.time() + self.limits.graceful_seconds
        while self.loop.time() < deadline:
            for conn in list(self.connections):
                if conn.state is not ANSWERING:
                    conn.close()
            if not self.in_hand and not self.connections:
                return
            await asyncio.sleep(0.05)


# -- processes ----------------------------------------------------------------------------


def serve(
    make_apps: Callable[[], Sequence[WsgiApp]],
    addresses: Sequence[tuple[str, int]],
    *,
    workers: int = 1,
    threads: int = 8,
    limits: Limits | None = None,
    on_worker_exit: Callable[[int], None] = lambda _pid: None,
) -> int:
    """Listen on each of `addresses` and run `workers` processes; each makes its apps with
    `make_apps` after the fork (one per address, in order) and serves every listener.
    Returns the exit code once stopped."""
    limits = fit_limits(limits or Limits(), raise_open_files_limit())
    socks: list[socket.socket] = []
    try:
        for host, port in addresses:
            socks.append(listen(host, port))
    except ListenError:
        for sock in socks:
            sock.close()
        raise
    for sock in socks:
        bound = sock.getsockname()
        log.info(
            "http.listening",
            host=bound[0],
            port=bound[1],
            workers=workers,
            threads=threads,
            max_connections=limits.max_connections,
            request_seconds=limits.request_seconds,
            keepalive_seconds=limits.keepalive_seconds,
        )
    children: dict[int, float] = {}
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            code = _worker(socks, make_apps, limits, threads, workers > 1)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        children[pid] = time.monotonic()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        for _ in range(workers):
            spawn()
        while not stopping:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid, status = 0, 0
            if pid == 0:
                time.sleep(0.2)
                continue
            if pid not in children:
                continue
            started = children.pop(pid)
            on_worker_exit(pid)
            exit_code = os.waitstatus_to_exitcode(status)
            if exit_code == WORKER_BOOT_FAILED:
                log.error("http.worker_boot_failed", pid=pid)
                stopping, code = True, 1
                break
            log.warning("http.worker_exited", pid=pid, code=exit_code)
            if time.monotonic() - started < 1:
                time.sleep(1)  # no tight loop of a worker that dies at once
            spawn()
    finally:
        for pid in children:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + limits.graceful_seconds + 5
        while children and time.monotonic() < deadline:
            for pid in list(children):
                done, _status = os.waitpid(pid, os.WNOHANG)
                if done:
                    children.pop(pid)
                    on_worker_exit(pid)
            time.sleep(0.05)
        for pid in children:
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            on_worker_exit(pid)
        for sock in socks:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _worker(
    socks: Sequence[socket.socket],
    make_apps: Callable[[], Sequence[WsgiApp]],
    limits: Limits,
    threads: int,
    multiprocess: bool,
) -> int:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    try:
        apps = make_apps()
    except Exception:
        log.exception("http.app_not_made")
        return WORKER_BOOT_FAILED
    with ThreadPoolExecutor(threads, thread_name_prefix="http") as pool:
        asyncio.run(run_fronts(list(zip(socks, apps, strict=True)), pool, limits, multiprocess))
    return 0


async def run_fronts(
    listeners: Sequence[tuple[socket.socket, WsgiApp]],
    pool: ThreadPoolExecutor,
    limits: Limits,
    multiprocess: bool,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve each listening socket's app until `stop` is set (by default: until SIGTERM or
    SIGINT), then answer the requests in hand."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    fronts: list[Front] = []
    servers: list[asyncio.Server] = []
    for sock, app in listeners:
        host, port = sock.getsockname()[:2]
        front = Front(loop, app, pool, limits, (str(host), int(port)), multiprocess)
        fronts.append(front)
        servers.append(await loop.create_server(front.protocol, sock=sock, backlog=_backlog()))
    await stop.wait()
    for server in servers:
        server.close()
    await asyncio.gather(*(front.drain() for front in fronts))
