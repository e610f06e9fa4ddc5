"""HTTPStore, the read-only https:// GME source, against a real local HTTP server."""

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from storage.domain import UnsafeKeyError
from storage.objectstore import HTTPStore, store_from_url


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "www"
    (root / "1400000000_100").mkdir(parents=True)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_fetches_keys_under_the_prefix_and_maps_404(served, tmp_path: Path):
    root, url = served
    payload = b"\xff\xfb" * 50_000
    (root / "1400000000_100" / "seg 0.mp3").write_bytes(payload)
    store = store_from_url(url)
    assert isinstance(store, HTTPStore)
    fetched = store.fetch("1400000000_100/seg 0.mp3", tmp_path / "out.mp3")
    assert fetched.size == len(payload)
    assert fetched.sha256 == hashlib.sha256(payload).hexdigest()
    with pytest.raises(FileNotFoundError):
        store.fetch("1400000000_100/missing.mp3", tmp_path / "x")
    with pytest.raises(UnsafeKeyError):
        store.url("../etc/passwd")
    assert list(store.list("1400000000_100/")) == []  # a plain HTTP prefix cannot be listed
    with pytest.raises(PermissionError):
        store.put_bytes("x", b"y")
