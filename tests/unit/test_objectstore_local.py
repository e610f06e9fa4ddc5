from pathlib import Path

import pytest

from storage.domain import UnsafeKeyError, safe_key
from storage.objectstore import LocalStore


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "a/../b",
        "..",
        "a//b",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a/%2e%2e/b",
        "x" * 1025,
        "a/./b",
    ],
)
def test_unsafe_keys_are_refused(key):
    with pytest.raises(UnsafeKeyError):
        safe_key(key)


def test_local_store_round_trip_and_listing(tmp_path: Path):
    store = LocalStore(tmp_path / "root")
    store.put_bytes("a/b/one.txt", b"1")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 3_000_000)
    store.put("a/two.bin", src)
    assert sorted((o.key, o.size) for o in store.list("a/")) == [
        ("a/b/one.txt", 1),
        ("a/two.bin", 3_000_000),
    ]
    fetched = store.fetch("a/two.bin", tmp_path / "copy")
    assert fetched.size == 3_000_000 and len(fetched.sha256) == 64
    with pytest.raises(FileNotFoundError):
        store.open("a/missing")
    store.delete("a/b/one.txt")
    assert [o.key for o in store.list("a/")] == ["a/two.bin"]
    assert not list((tmp_path / "root").rglob(".tmp-*"))


def test_local_store_never_leaves_its_root_through_a_link(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(UnsafeKeyError):
        LocalStore(root).open("escape/secret")
