"""S3Store against a real S3 server over HTTP (moto's standalone server), through boto3."""

from pathlib import Path

import pytest

from storage.domain import UnsafeKeyError
from storage.objectstore import S3Store, store_from_url


def test_round_trip_listing_and_missing_objects(s3_endpoint, bucket, tmp_path: Path):
    store = store_from_url(f"s3://{bucket}/pre/fix?endpoint_url={s3_endpoint}&region=us-east-1")
    assert isinstance(store, S3Store)
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x01" * (70 * 1024 * 1024))  # over the multipart threshold
    store.put("a/big.bin", big, "application/octet-stream")
    store.put_bytes("a/small.txt", b"hello")
    assert sorted((o.key, o.size) for o in store.list("a/")) == [
        ("a/big.bin", 70 * 1024 * 1024),
        ("a/small.txt", 5),
    ]
    fetched = store.fetch("a/big.bin", tmp_path / "copy.bin")
    assert fetched.size == big.stat().st_size
    assert fetched.sha256 == __import__("hashlib").sha256(big.read_bytes()).hexdigest()
    store.fetch("a/small.txt", tmp_path / "small.txt")
    assert (tmp_path / "small.txt").read_bytes() == b"hello"
    assert store.url("a/small.txt") == f"s3://{bucket}/pre/fix/a/small.txt"
    with pytest.raises(FileNotFoundError):
        store.fetch("a/missing", tmp_path / "x")
    with pytest.raises(UnsafeKeyError):
        store.fetch("a/../../other", tmp_path / "y")
    store.delete("a/small.txt")
    assert [o.key for o in store.list("a/")] == ["a/big.bin"]
    store.check_writable()


def test_a_large_upload_fails_as_a_single_put_does(s3_endpoint, tmp_path: Path):
    """Over the multipart threshold boto3 raises its own S3UploadFailedError: it is mapped
    like the one PUT's ClientError (here: the bucket is missing), not left to fail the run
    as a bug."""
    store = store_from_url(f"s3://no-such-bucket-recpipe/x?endpoint_url={s3_endpoint}")
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(b"x")
    with big.open("wb") as out:
        out.truncate(65 * 1024 * 1024)  # sparse: over the threshold, nothing to read first
    with pytest.raises(FileNotFoundError, match="does not exist"):
        store.put("a/small.bin", small)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        store.put("a/big.bin", big)
