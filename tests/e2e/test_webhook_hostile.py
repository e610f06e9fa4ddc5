"""Hostile clients against `recpipe serve` as a process, on its default settings, on
127.0.0.1 only: a slowloris of 1,200 connections while real signed GME callbacks are
posted (embedded default and PostgreSQL + Redis), headers too large or too many, a flood
of connections that open and close, and the connection bound."""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from storage.ledger.tables import Callback
from tests.support.hostile import flood
from tests.support.metrics import sample
from tests.support.signing import sign_gme
from tests.support.stack import Stack
from tests.support.waits import wait_for

BIZ, SECRET = 1400000000, "hostile-test-key"
TASK_ID = 446946705284000777
ROOT = Path(__file__).resolve().parents[2]

SLOW_CONNECTIONS = 1200
# Longer than `recpipe serve`'s default request deadline (10 s), so every connection of the
# first wave must have been closed by the server before the attack ends.
ATTACK_SECONDS = 16.0


def callback(seq: int) -> tuple[bytes, str]:
    body = json.dumps(
        {
            "BizID": BIZ, "RoomID": "100", "UserID": "999", "TaskID": TASK_ID,
            "RecordMode": 1, "Timestamp": 1675930605, "EventType": 3,
            "Detail": {"SeqNo": seq, "FileName": f"{BIZ}_100/2026-01-01_{TASK_ID}_{seq}.mp3"},
        }
    ).encode()  # fmt: skip
    return body, sign_gme(SECRET, body)


def stored(stack: Stack) -> int:
    with stack.ledger.session() as s:
        return s.scalar(select(func.count()).select_from(Callback))


def metrics(stack: Stack) -> str:
    return requests.get(f"{stack.internal_url}/metrics", timeout=10).text


@pytest.fixture(params=["embedded", "postgresql+redis"])
def stack(request: pytest.FixtureRequest, tmp_path: Path):
    env = {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'recpipe.sqlite3'}",
    }
    if request.param == "postgresql+redis":
        env["RECPIPE_DATABASE_URL"] = request.getfixturevalue("pg_url")
        env["RECPIPE_BROKER_URL"] = request.getfixturevalue("redis_url")
    s = Stack(env, tmp_path / "logs")
    yield s
    s.stop()


def embedded_stack(tmp: Path) -> Stack:
    env = {
        "RECPIPE_DATA_DIR": str(tmp / "var"),
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_DATABASE_URL": f"sqlite:///{tmp / 'var' / 'recpipe.sqlite3'}",
    }
    return Stack(env, tmp / "logs")


@pytest.fixture
def embedded(tmp_path: Path):
    s = embedded_stack(tmp_path)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory):
    """One `recpipe serve` for every row of hostile heads: none of them stores anything."""
    s = embedded_stack(tmp_path_factory.mktemp("heads"))
    s.start_webhook()
    yield s
    s.stop()


class Attack:
    """tests.support.hostile in a process of its own, so that it does not share this
    process's interpreter with the callbacks being timed."""

    def __init__(self, port: int, count: int, seconds: float):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.hostile", str(port), str(count), str(seconds)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.ready = json.loads(self.process.stdout.readline() or "{}")
        self.ends_at = time.monotonic() + seconds

    def result(self) -> dict:
        out, _ = self.process.communicate(timeout=60)
        return json.loads(out.strip().splitlines()[-1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def test_callbacks_are_answered_and_stored_while_slow_connections_are_held(stack: Stack):
    """1,200 connections trickling a request line, headers or a body, one byte a second:
    every signed callback posted meanwhile is answered 200 and stored (its latencies are
    printed, not bounded: a test asserts no timing), the server holds every slow connection
    open without a worker, and closes each of the first wave before the attack ends."""
    stack.start_webhook()
    attack = Attack(stack.port, SLOW_CONNECTIONS, ATTACK_SECONDS)
    latencies: list[float] = []
    try:
        assert attack.ready == {"ready": True, "open": SLOW_CONNECTIONS}, stack.log_text()
        # The server has accepted them all (not merely the kernel's backlog).
        held = wait_for(
            lambda: sample(metrics(stack), "recpipe_http_connections") >= SLOW_CONNECTIONS,
            timeout=10,
            what="the server to hold the slow connections",
        )
        assert held
        seq = 0
        while time.monotonic() < attack.ends_at - 1 and seq < 300:
            body, signature = callback(seq)
            started = time.perf_counter()
            response = requests.post(
                f"{stack.url}/callbacks/gme",
                data=body,
                headers={"Content-Type": "application/json", "Signature": signature},
                timeout=30,
            )
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            seq += 1
            time.sleep(0.1)
        result = attack.result()
    finally:
        attack.stop()
    assert seq >= 20
    assert stored(stack) == seq
    assert result["peak_open"] >= SLOW_CONNECTIONS
    assert result["first_wave_open_at_end"] == 0, result
    assert result["closed_by_server"] >= SLOW_CONNECTIONS
    text = metrics(stack)
    assert sample(text, "recpipe_http_connections_closed_total", reason="slow_request") >= (
        SLOW_CONNECTIONS
    )
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(f"\n{len(latencies)} callbacks under attack: p50 {statistics.median(latencies):.3f} s, "
          f"p99 {p99:.3f} s, max {max(latencies):.3f} s")  # fmt: skip
    assert requests.get(f"{stack.internal_url}/readyz", timeout=10).status_code == 200


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # may be refused before it is all sent
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def signed_request(extra_headers: bytes) -> bytes:
    body, signature = callback(900)
    return (
        b"POST /callbacks/gme HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nSignature: " + signature.encode() + b"\r\n" + extra_headers
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


@pytest.mark.parametrize(
    ("case", "request_bytes", "status"),
    [
        ("one header of 20 KiB", signed_request(b"X-Pad: " + b"a" * 20_000 + b"\r\n"), 431),
        (
            "headers of 40 KiB",
            signed_request(b"".join(b"X-P%d: %s\r\n" % (i, b"a" * 400) for i in range(100))),
            431,
        ),
        (
            "1,000 small headers",
            signed_request(b"".join(b"X-%d: a\r\n" % i for i in range(1000))),
            431,
        ),
        ("101 headers", signed_request(b"".join(b"X-%d: a\r\n" % i for i in range(96))), 431),
        ("request line of 20 KiB", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
        (
            "not HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64 + b"\r\n\r\n",
            400,
        ),
        ("no Host", b"GET /healthz HTTP/1.1\r\n\r\n", 400),
        (
            "bad Content-Length",
            b"POST /callbacks/gme HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n",
            400,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_hostile_heads_are_refused_and_nothing_is_stored(
    refusing: Stack, case, request_bytes, status
):
    """Each bad request head gets its status, no callback is stored, and the server serves on."""
    answer = raw(refusing.port, request_bytes)
    assert status_of(answer) == status, (case, answer[:200])
    assert stored(refusing) == 0
    assert requests.get(f"{refusing.url}/healthz", timeout=10).status_code == 200


SMUGGLED_SCRAPE = b"0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize(
    "framing",
    [
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: CHUNKED\r\n",
        b"Transfer-Encoding:\tchunked\r\n",
        b"Transfer-Encoding:\r\n chunked\r\n",
    ],
    ids=["plain", "upper-case", "tab-padded", "obs-folded"],
)
def test_content_length_beside_transfer_encoding_gets_one_400_and_the_connection_ends(
    refusing: Stack, framing: bytes
):
    """A body of `0\\r\\n\\r\\nGET /metrics ...` under both lengths: one answer, 400,
    then the server closes; nothing is stored and the hidden request is never answered."""
    data = (
        b"POST /callbacks/gme HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n" % len(SMUGGLED_SCRAPE)
        + framing
        + b"\r\n"
        + SMUGGLED_SCRAPE
    )
    answer = raw(refusing.port, data)
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert status_of(answer) == 400
    assert b"connection: close" in answer.lower()
    assert stored(refusing) == 0


def test_the_public_port_serves_callbacks_and_healthz_only(refusing: Stack):
    """/readyz and /metrics are 404 on the public port and answered on the internal one."""
    for path in ("/readyz", "/metrics"):
        assert requests.get(f"{refusing.url}{path}", timeout=10).status_code == 404, path
        assert requests.get(f"{refusing.internal_url}{path}", timeout=10).status_code == 200
    assert requests.get(f"{refusing.url}/healthz", timeout=10).status_code == 200


def test_the_limits_leave_a_signed_callback_with_normal_headers_alone(embedded: Stack):
    """The control for the rows above: the same request with a few extra headers is stored."""
    embedded.start_webhook()
    answer = raw(embedded.port, signed_request(b"".join(b"X-%d: a\r\n" % i for i in range(20))))
    assert status_of(answer) == 200, answer
    assert stored(embedded) == 1


def test_a_flood_of_connections_that_open_and_close(embedded: Stack):
    """4,000 connections opened and closed at once (half with a reset) while callbacks are
    posted: each callback is answered 200 and stored, and the server lets go of every
    connection."""
    embedded.start_webhook()

    connected: list[int] = []
    flooding = threading.Thread(target=lambda: connected.append(flood(embedded.port, 4000)))
    flooding.start()
    posted = 0
    while flooding.is_alive() or posted < 5:
        assert embedded.post_gme(*callback(posted)) == 200
        posted += 1
        if posted >= 200:
            break
    flooding.join(60)
    assert connected and connected[0] >= 3000
    assert stored(embedded) == posted
    # Only the scrape's own connection is left open.
    wait_for(
        lambda: sample(metrics(embedded), "recpipe_http_connections") <= 2,
        timeout=15,
        what="the flood's connections to be let go",
    )


def test_the_connection_bound_closes_the_oldest_slow_connection_and_counts_it(embedded: Stack):
    """With --max-connections 64, 150 slow connections do not lock out a callback: each
    one over the bound closes the oldest unanswered connection, which is counted in
    /metrics and logged."""
    embedded.start_webhook(options=("--max-connections", "64"))
    slow = []
    try:
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", embedded.port), timeout=10)
            sock.sendall(b"POST /callbacks/gme HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(sock)
        assert embedded.post_gme(*callback(1)) == 200
        assert stored(embedded) == 1
        text = metrics(embedded)
        assert sample(text, "recpipe_http_connections") <= 64
        assert sample(text, "recpipe_http_connections_closed_total", reason="limit") >= 150 - 64
    finally:
        for sock in slow:
            sock.close()
    wait_for(lambda: "http.connection_limit" in embedded.log_text(), timeout=10, what="log line")


def test_an_idle_kept_alive_connection_is_closed(embedded: Stack):
    """After an answer, a connection that sends nothing more is closed by the server
    (--keepalive 1 here; 5 s by default)."""
    embedded.start_webhook(options=("--keepalive", "1"))
    with socket.create_connection(("127.0.0.1", embedded.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b'"ok"' not in answer:
            answer += sock.recv(4096)
        assert status_of(answer) == 200
        assert sock.recv(4096) == b""  # closed by the server, well before the 30 s timeout
    text = metrics(embedded)
    assert sample(text, "recpipe_http_connections_closed_total", reason="idle") >= 1
