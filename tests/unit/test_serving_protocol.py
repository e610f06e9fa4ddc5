"""recpipe's HTTP front as a parser: raw bytes over a real socket on 127.0.0.1 to one
`Front` in this process, whose app records every request it is handed. Request smuggling
shapes, pipelining, the limits and half-closed connections."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from recpipe import serving

LIMITS = serving.Limits(
    request_seconds=2.0,
    keepalive_seconds=2.0,
    max_header_bytes=2048,
    max_headers=20,
    max_body_bytes=1024,
    graceful_seconds=2.0,
)


@dataclass
class Recorder:
    """A WSGI app that answers each request with what it was handed, as JSON."""

    seen: list[tuple[str, str, bytes]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > LIMITS.max_body_bytes:
            start_response("413 Payload Too Large", [("Content-Length", "2")])
            return [b"{}"]
        body = environ["wsgi.input"].read()
        self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], body))
        answer = json.dumps({"path": environ["PATH_INFO"], "body": body.decode()}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
        start_response("200 OK", headers)
        return [answer]


@dataclass
class Served:
    port: int
    app: Recorder

    def connect(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return conn

    def exchange(self, data: bytes) -> bytes:
        """Send `data` at once and read until the server closes the connection."""
        with self.connect() as conn:
            conn.sendall(data)
            return read_until_closed(conn)


@contextmanager
def front(limits: serving.Limits = LIMITS) -> Iterator[Served]:
    app = Recorder()
    sock = serving.listen("127.0.0.1", 0)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    pool = ThreadPoolExecutor(2)

    def run() -> None:
        loop.run_until_complete(serving.run_fronts([(sock, app)], pool, limits, False, stop))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield Served(sock.getsockname()[1], app)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        pool.shutdown()
        loop.close()
        sock.close()


@pytest.fixture
def served() -> Iterator[Served]:
    with front() as s:
        yield s


def read_until_closed(conn: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def answers(stream: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The HTTP/1.1 answers in a byte stream, each (status, headers, body)."""
    found = []
    while stream:
        head, sep, rest = stream.partition(b"\r\n\r\n")
        assert sep, stream
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        length = int(headers.get("content-length", "0"))
        if status == 100:
            found.append((status, headers, b""))
            stream = rest
            continue
        found.append((status, headers, rest[:length]))
        stream = rest[length:]
    return found


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


def get(path: str, extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n"


SMUGGLED = b"0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"

# Each a request head whose body length a proxy in front could read otherwise than h11.
AMBIGUOUS = {
    "content-length and transfer-encoding": (
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(SMUGGLED)
    ),
    "transfer-encoding before content-length": (
        b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(SMUGGLED)
    ),
    "upper-case transfer-encoding": (
        b"Content-Length: %d\r\nTransfer-Encoding: CHUNKED\r\n" % len(SMUGGLED)
    ),
    "tab-padded transfer-encoding": (
        b"Content-Length: %d\r\nTransfer-Encoding:\tchunked\t\r\n" % len(SMUGGLED)
    ),
    "obs-folded transfer-encoding": (
        b"Content-Length: %d\r\nTransfer-Encoding:\r\n chunked\r\n" % len(SMUGGLED)
    ),
    "transfer-encoding folded into another header": (
        b"Content-Length: %d\r\nX-Pad: a\r\n\tTransfer-Encoding: chunked\r\n" % len(SMUGGLED)
    ),
    "upper-case transfer-encoding alone": b"Transfer-Encoding: Chunked\r\n",
    "tab-padded transfer-encoding alone": b"Transfer-Encoding:\tchunked\r\n",
    "obs-folded transfer-encoding alone": b"Transfer-Encoding:\r\n\tchunked\r\n",
    "content-length twice, equal": b"Content-Length: %d\r\nContent-Length: %d\r\n"
    % (len(SMUGGLED), len(SMUGGLED)),
    "content-length as a list": b"Content-Length: %d, %d\r\n" % (len(SMUGGLED), len(SMUGGLED)),
}


@pytest.mark.parametrize("head", AMBIGUOUS.values(), ids=AMBIGUOUS.keys())
def test_a_request_whose_length_reads_two_ways_is_refused_and_its_connection_closed(
    served: Served, head: bytes
):
    """One answer, 400 with Connection: close, then the server closes; the app is handed
    nothing, neither the outer request nor the one hidden in its body."""
    data = b"POST /callbacks/gme HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + SMUGGLED
    got = answers(served.exchange(data))
    assert [status for status, _, _ in got] == [400]
    assert got[0][1]["connection"] == "close"
    assert served.app.seen == []


def test_transfer_encoding_twice_is_refused_by_h11_itself(served: Served):
    """h11 answers this one 501 before the head is handed over: refused and closed too."""
    data = (
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + SMUGGLED
    )
    got = answers(served.exchange(data))
    assert [(status, headers["connection"]) for status, headers, _ in got] == [(501, "close")]
    assert served.app.seen == []


def test_transfer_encoding_on_http_1_0_is_refused(served: Served):
    data = b"POST /x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + SMUGGLED
    assert [status for status, _, _ in answers(served.exchange(data))] == [400]
    assert served.app.seen == []


def test_the_smuggling_shape_behind_an_answered_request_is_refused_on_that_connection(
    served: Served,
):
    """Pipelined: the first request is answered, the ambiguous second one is 400 and ends
    the connection; the request hidden in its body never reaches the app."""
    head = AMBIGUOUS["content-length and transfer-encoding"]
    data = get("/first") + b"POST /second HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + SMUGGLED
    got = answers(served.exchange(data))
    assert [status for status, _, _ in got] == [200, 400]
    assert [path for _, path, _ in served.app.seen] == ["/first"]


def test_a_plain_chunked_body_is_read_whole(served: Served):
    data = (
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    got = answers(served.exchange(data))
    assert [status for status, _, _ in got] == [200]
    assert served.app.seen == [("POST", "/c", b"hello world")]


def test_pipelined_requests_are_answered_in_order_on_one_connection(served: Served):
    """Three requests sent at once: three answers in order, and the connection stays open
    for a fourth."""
    with served.connect() as conn:
        conn.sendall(get("/a") + post("/b", b"bee") + get("/c"))
        stream = b""
        while stream.count(b"HTTP/1.1 200") < 3 or not stream.endswith(b"}"):
            chunk = conn.recv(65536)
            assert chunk, f"closed after {stream!r}"
            stream += chunk
        conn.sendall(get("/d", b"Connection: close\r\n"))
        stream += read_until_closed(conn)
    got = answers(stream)
    assert [json.loads(body)["path"] for _, _, body in got] == ["/a", "/b", "/c", "/d"]
    assert [path for _, path, _ in served.app.seen] == ["/a", "/b", "/c", "/d"]
    assert served.app.seen[1] == ("POST", "/b", b"bee")


def test_a_head_over_the_limit_is_431_and_closed(served: Served):
    data = get("/big", b"X-Pad: " + b"a" * 4096 + b"\r\n")
    got = answers(served.exchange(data))
    assert [(status, headers["connection"]) for status, headers, _ in got] == [(431, "close")]
    assert served.app.seen == []


def test_too_many_headers_is_431(served: Served):
    data = get("/many", b"".join(b"X-H%d: 1\r\n" % i for i in range(30)))
    assert [status for status, _, _ in answers(served.exchange(data))] == [431]
    assert served.app.seen == []


def test_a_body_over_the_limit_is_not_read_and_the_connection_ends(served: Served):
    """The app sees the declared length and answers 413; nothing pipelined behind the
    oversized body is taken as a request."""
    body = b"x" * (LIMITS.max_body_bytes + 10)
    got = answers(served.exchange(post("/big", body) + get("/after")))
    assert [(status, headers["connection"]) for status, headers, _ in got] == [(413, "close")]
    assert served.app.seen == []


def test_a_request_line_that_does_not_parse_is_400(served: Served):
    assert [s for s, _, _ in answers(served.exchange(b"NOT HTTP AT ALL\r\n\r\n"))] == [400]


def test_a_whole_request_then_a_half_close_still_gets_its_answer(served: Served):
    """The client shuts its sending side after the request: the answer still comes, then
    the server closes."""
    with served.connect() as conn:
        conn.sendall(post("/half", b"body"))
        conn.shutdown(socket.SHUT_WR)
        got = answers(read_until_closed(conn))
    assert [status for status, _, _ in got] == [200]
    assert served.app.seen == [("POST", "/half", b"body")]


def test_a_request_cut_by_a_half_close_is_dropped_unanswered(served: Served):
    """Half a body then end of stream: nobody to answer, nothing for the app."""
    with served.connect() as conn:
        conn.sendall(post("/cut", b"0123456789")[:-5])
        conn.shutdown(socket.SHUT_WR)
        assert read_until_closed(conn) == b""
    assert served.app.seen == []


def test_a_request_that_never_completes_is_closed_unanswered():
    """A head that stops halfway is cut at the request deadline without an answer."""
    limits = serving.Limits(request_seconds=0.3, keepalive_seconds=0.3, max_body_bytes=1024)
    with front(limits) as s, s.connect() as conn:
        conn.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\n")
        assert read_until_closed(conn) == b""
        assert s.app.seen == []


def test_an_idle_kept_alive_connection_is_closed_after_its_answer():
    limits = serving.Limits(request_seconds=2, keepalive_seconds=0.3, max_body_bytes=1024)
    with front(limits) as s, s.connect() as conn:
        conn.sendall(get("/once"))
        got = answers(read_until_closed(conn))
        assert [status for status, _, _ in got] == [200]


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n", None),
        (b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n", None),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding:  chunked \r\n", None),
        (
            b"POST / HTTP/1.1\nContent-Length: 3\nTransfer-Encoding: chunked\n",
            "Content-Length and Transfer-Encoding",
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: +3\r\n", "Content-Length repeated or not a number"),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding other than chunked",
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\n  folded\r\n", "folded header line"),
    ],
)
def test_framing_problem_reads_the_raw_head(head: bytes, problem: str | None):
    found = serving.framing_problem(head + b"\r\n", b"1.1")
    assert found == problem


def test_h11_is_pinned_past_cve_2025_43859():
    """h11 before 0.16 accepted chunked bodies with bad line endings (CVE-2025-43859);
    the requirement excludes those versions, and the one installed is not one of them."""
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    [h11_req] = [Requirement(r) for r in project["dependencies"] if r.startswith("h11")]
    assert not h11_req.specifier.contains("0.15.0")
    assert h11_req.specifier.contains("0.16.0")
    assert Version(h11.__version__) >= Version("0.16")
