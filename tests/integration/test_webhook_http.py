"""Hostile requests over a real socket to `recpipe serve`: oversized bodies with
a lying, absent or chunked length are refused before they are read whole, nothing is stored,
and the server keeps serving."""

import json
import socket

import pytest
import requests
from sqlalchemy import func, select

from storage.ledger.tables import Callback
from tests.support.signing import sign_gme
from tests.support.stack import Stack

BIZ, SECRET, LIMIT = 1400000000, "http-test-key", 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    env = {
        "RECPIPE_DATA_DIR": str(tmp / "var"),
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_MAX_BODY_BYTES": str(LIMIT),
        "RECPIPE_DATABASE_URL": f"sqlite:///{tmp / 'ledger.sqlite3'}",
    }
    stack = Stack(env, tmp / "logs")
    stack.start_webhook()
    yield stack
    stack.stop()


def raw_request(port: int, head: bytes, body_chunks: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed before reading it all: fine
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def stored(stack: Stack) -> int:
    with stack.ledger.session() as s:
        return s.scalar(select(func.count()).select_from(Callback))


def headers(extra: str) -> bytes:
    return (
        "POST /callbacks/gme HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Signature: AAAA\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


def test_declared_length_over_the_limit_is_413_without_reading(server):
    answer = raw_request(server.port, headers(f"Content-Length: {10 * 1024 * 1024}\r\n"), [])
    assert status_of(answer) == 413


def test_chunked_body_over_the_limit_is_413(server):
    chunk = b"x" * 1024
    body = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(50)] + [b"0\r\n\r\n"]
    answer = raw_request(server.port, headers("Transfer-Encoding: chunked\r\n"), body)
    assert status_of(answer) == 413


def test_lying_short_length_truncates_the_body_and_fails_its_signature(server):
    body = json.dumps({"BizID": BIZ, "pad": "x" * 100}).encode()
    signature = sign_gme(SECRET, body)
    head = (
        "POST /callbacks/gme HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Signature: {signature}\r\nContent-Length: 20\r\n\r\n"
    ).encode()
    answer = raw_request(server.port, head, [body])
    assert status_of(answer) == 401


def test_server_still_serves_and_stored_nothing(server):
    before = stored(server)
    for _ in range(3):
        raw_request(server.port, headers(f"Content-Length: {LIMIT * 4}\r\n"), [b"y" * LIMIT * 4])
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert stored(server) == before == 0
