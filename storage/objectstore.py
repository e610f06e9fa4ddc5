"""Object stores: a handful of methods with an S3 and a local-directory implementation.

Keys are always relative, '/'-separated and checked by `safe_key` before they reach
a filesystem path or a bucket. boto3's errors for a missing object become
`FileNotFoundError` here, so callers never see a vendor exception for that case.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

import boto3
import requests
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from storage.domain import UnsafeKeyError, safe_key

CHUNK = 1024 * 1024


class StoreUnavailableError(Exception):
    """The object store cannot be reached or refused the request (not a missing object):
    worth retrying later. The message names the store's URL and what failed."""


@contextmanager
def _vendor_errors(what: str) -> Iterator[None]:
    """boto3's errors other than a missing object become StoreUnavailableError, those of a
    multipart upload (`upload_file` wraps the ClientError it met) as those of one PUT."""
    try:
        yield
    except ClientError as exc:
        if _is_missing(exc):
            raise FileNotFoundError(f"{what} does not exist") from None
        raise StoreUnavailableError(f"{what}: {exc}") from exc
    except S3UploadFailedError as exc:
        met = exc.__cause__ or exc.__context__
        if isinstance(met, ClientError) and _is_missing(met):
            raise FileNotFoundError(f"{what} does not exist") from None
        raise StoreUnavailableError(f"{what}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailableError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    sha256: str


class ObjectStore(Protocol):
    def put(self, key: str, path: Path, content_type: str | None = None) -> None: ...
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None: ...
    def list(self, prefix: str) -> Iterator[StoredObject]: ...
    def delete(self, key: str) -> None: ...
    def purge(self, prefix: str) -> int: ...
    def purge_noncurrent(self, prefix: str) -> int: ...
    def url(self, key: str) -> str: ...
    def fetch(self, key: str, dest: Path) -> Fetched: ...
    def check_writable(self) -> None: ...


def join_key(prefix: str, key: str) -> str:
    return posixpath.join(prefix, key) if prefix else key


def _copy_hashing(src: IO[bytes], dst: IO[bytes]) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


class LocalStore:
    """A directory; writes go to a temporary file in the same directory, then os.replace."""

    def __init__(self, root: Path):
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / safe_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise UnsafeKeyError("object key leaves the store root")
        return path

    def open(self, key: str) -> IO[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{self.url(key)} does not exist")
        return path.open("rb")

    @contextmanager
    def _atomic_write(self, key: str) -> Iterator[IO[bytes]]:
        """A file beside the target that replaces it only once complete and synced."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, key: str, path: Path, content_type: str | None = None) -> None:
        with self._atomic_write(key) as out, path.open("rb") as src:
            shutil.copyfileobj(src, out, CHUNK)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        with self._atomic_write(key) as out:
            out.write(data)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        base = self.root / prefix if prefix else self.root
        if prefix:
            safe_key(prefix.rstrip("/"))
        start = base if base.is_dir() else base.parent
        if not start.is_dir() or not start.resolve().is_relative_to(self.root):
            return  # a missing root is an empty store, not a walk of its parent
        for dirpath, _dirs, files in os.walk(start):
            for name in sorted(files):
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield StoredObject(key, full.stat().st_size)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def purge(self, prefix: str) -> int:
        """Delete every object under `prefix` (a folder's key, ending in `/`), half-written
        ones too, and the folder; the number of objects deleted."""
        if not prefix.endswith("/"):
            raise ValueError(f"purge takes a folder's prefix, not {prefix!r}")
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        removed = 0
        for dirpath, _dirs, files in os.walk(folder, topdown=False):
            for name in files:
                (Path(dirpath) / name).unlink(missing_ok=True)
                removed += 0 if name.startswith(".tmp-") else 1
            with contextlib.suppress(FileNotFoundError):  # a purge beside this one took it
                Path(dirpath).rmdir()
        return removed

    def purge_noncurrent(self, prefix: str) -> int:
        """A disk keeps no earlier versions: an object written again replaced the old one,
        and a deleted one is gone. Nothing to do."""
        if not prefix.endswith("/"):
            raise ValueError(f"purge takes a folder's prefix, not {prefix!r}")
        return 0

    def url(self, key: str) -> str:
        return (self.root / key).as_uri()

    def local_path(self, key: str) -> Path:
        """Where the object lies on this disk (for a server that sends files itself)."""
        return self._path(key)

    def fetch(self, key: str, dest: Path) -> Fetched:
        with self.open(key) as src, dest.open("wb") as out:
            size, sha = _copy_hashing(src, out)
        return Fetched(dest, size, sha)

    def check_writable(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        probe = ".recpipe-write-check"
        self.put_bytes(probe, b"ok")
        self.delete(probe)


class _HashingWriter:
    """A file wrapper that hashes what boto3's (possibly threaded) download writes."""

    def __init__(self, out: IO[bytes]):
        self._out = out
        self._lock = threading.Lock()
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        with self._lock:
            self.digest.update(data)
            self.size += len(data)
            return self._out.write(data)


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", client: Any = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        # Multipart uploads of large outputs; parts stay large.
        self._upload_config = TransferConfig(
            multipart_threshold=64 * CHUNK, multipart_chunksize=64 * CHUNK, max_concurrency=4
        )

    def _key(self, key: str) -> str:
        return join_key(self.prefix, safe_key(key))

    def put(self, key: str, path: Path, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else None
        with _vendor_errors(self.url(key)):
            if path.stat().st_size < self._upload_config.multipart_threshold:
                # One PUT: `upload_file` would start a transfer manager and its threads for
                # a file that goes in one request anyway.
                with path.open("rb") as body:
                    self.client.put_object(
                        Bucket=self.bucket, Key=self._key(key), Body=body, **(extra or {})
                    )
                return
            self.client.upload_file(
                str(path), self.bucket, self._key(key), ExtraArgs=extra, Config=self._upload_config
            )

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        with _vendor_errors(self.url(key)):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        full = (
            join_key(self.prefix, prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        with _vendor_errors(f"listing {self.url(prefix)}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    yield StoredObject(item["Key"][strip:], int(item["Size"]))

    def delete(self, key: str) -> None:
        with _vendor_errors(self.url(key)):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def purge(self, prefix: str) -> int:
        """Delete every object under `prefix` for good: on a versioned bucket every version
        and every delete marker (a delete marker alone hides an object, it does not delete
        it). The number of objects (keys) that had a version."""
        if not prefix.endswith("/"):
            raise ValueError(f"purge takes a folder's prefix, not {prefix!r}")
        full = join_key(self.prefix, prefix)
        keys: set[str] = set()
        paginator = self.client.get_paginator("list_object_versions")
        with _vendor_errors(f"purging {self.url(prefix)}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                batch = []
                for item in page.get("Versions", []):
                    keys.add(item["Key"])
                    batch.append({"Key": item["Key"], "VersionId": item["VersionId"]})
                for item in page.get("DeleteMarkers", []):
                    batch.append({"Key": item["Key"], "VersionId": item["VersionId"]})
                for start in range(0, len(batch), 1000):  # S3's most per request
                    done = self.client.delete_objects(
                        Bucket=self.bucket,
                        Delete={"Objects": batch[start : start + 1000], "Quiet": True},
                    )
                    if done.get("Errors"):
                        first = done["Errors"][0]
                        raise StoreUnavailableError(
                            f"purging {self.url(prefix)}: {first.get('Key')}: "
                            f"{first.get('Code')} {first.get('Message')}"
                        )
        return len(keys)

    def purge_noncurrent(self, prefix: str) -> int:
        """Keep only the current version of each object under `prefix`: on a versioned
        bucket every earlier version (what a key held before it was written again) and
        every delete marker (with the versions it hid) is deleted for good. The number
        of versions deleted; 0 on a bucket without versioning."""
        if not prefix.endswith("/"):
            raise ValueError(f"purge takes a folder's prefix, not {prefix!r}")
        full = join_key(self.prefix, prefix)
        removed = 0
        paginator = self.client.get_paginator("list_object_versions")
        with _vendor_errors(f"purging earlier versions of {self.url(prefix)}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                batch = [
                    {"Key": item["Key"], "VersionId": item["VersionId"]}
                    for item in page.get("Versions", [])
                    if not item.get("IsLatest") and item.get("VersionId") not in (None, "null")
                ]
                removed += len(batch)
                batch += [
                    {"Key": item["Key"], "VersionId": item["VersionId"]}
                    for item in page.get("DeleteMarkers", [])
                ]
                self._delete_versions(batch, prefix)
        return removed

    def _delete_versions(self, batch: Sequence[dict[str, str]], prefix: str) -> None:
        for start in range(0, len(batch), 1000):  # S3's most per request
            done = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch[start : start + 1000], "Quiet": True}
            )
            if done.get("Errors"):
                first = done["Errors"][0]
                raise StoreUnavailableError(
                    f"purging {self.url(prefix)}: {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}"
                )

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{join_key(self.prefix, key)}"

    def presigned_get(
        self, key: str, expires: int, *, content_type: str, content_disposition: str
    ) -> str:
        """A GET URL that works for `expires` seconds, with the answer's headers fixed."""
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(key),
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": content_disposition,
                },
                ExpiresIn=expires,
            )
        )

    def endpoint_origin(self) -> str:
        """Scheme and host of the service presigned URLs point at."""
        parts = urlsplit(self.client.meta.endpoint_url)
        return f"{parts.scheme}://{parts.netloc}"

    def fetch(self, key: str, dest: Path) -> Fetched:
        """One GET, streamed to `dest` and hashed as it comes (`download_fileobj` would
        first ask for the object's size with a HEAD); botocore raises on a body cut short."""
        with dest.open("wb") as out:
            writer = _HashingWriter(out)
            with _vendor_errors(self.url(key)):
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
                body = response["Body"]
                try:
                    for chunk in body.iter_chunks(CHUNK):
                        writer.write(chunk)
                finally:
                    body.close()
        return Fetched(dest, writer.size, writer.digest.hexdigest())

    def check_writable(self) -> None:
        probe = ".recpipe-write-check"
        self.put_bytes(probe, b"ok")
        self.delete(probe)


class HTTPStore:
    """A read-only source behind an https:// prefix (e.g. a CDN in front of COS)."""

    def __init__(self, base_url: str, session: requests.Session | None = None, timeout: float = 30):
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout

    def url(self, key: str) -> str:
        return f"{self.base_url}/{quote(safe_key(key))}"

    def open(self, key: str) -> IO[bytes]:
        try:
            response = self.session.get(self.url(key), stream=True, timeout=self.timeout)
        except requests.RequestException as exc:
            raise StoreUnavailableError(f"{self.url(key)}: {exc}") from exc
        if response.status_code == 404:
            raise FileNotFoundError(f"{self.url(key)} does not exist")
        if response.status_code >= 500 or response.status_code == 429:
            raise StoreUnavailableError(f"{self.url(key)}: HTTP {response.status_code}")
        response.raise_for_status()
        response.raw.decode_content = True
        return response.raw  # type: ignore[return-value]

    def fetch(self, key: str, dest: Path) -> Fetched:
        with self.open(key) as src, dest.open("wb") as out:
            size, sha = _copy_hashing(src, out)
        return Fetched(dest, size, sha)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        return iter(())  # a plain HTTP prefix cannot be listed

    def put(self, key: str, path: Path, content_type: str | None = None) -> None:
        raise PermissionError("an https:// source is read-only")

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        raise PermissionError("an https:// source is read-only")

    def delete(self, key: str) -> None:
        raise PermissionError("an https:// source is read-only")

    def purge(self, prefix: str) -> int:
        raise PermissionError("an https:// source is read-only")

    def purge_noncurrent(self, prefix: str) -> int:
        raise PermissionError("an https:// source is read-only")

    def check_writable(self) -> None:
        raise PermissionError("an https:// source is read-only")


def _is_missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket")


def s3_client(query: str) -> Any:
    """A boto3 S3 client for an s3:// URL's query (endpoint_url, region, profile)."""
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    session = boto3.session.Session(profile_name=params.get("profile"))
    return session.client(
        "s3",
        endpoint_url=params.get("endpoint_url"),
        region_name=params.get("region"),
        config=BotoConfig(
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=16,
            s3={"addressing_style": "path"} if params.get("endpoint_url") else None,
        ),
    )


def store_from_url(url: str) -> ObjectStore:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        return S3Store(parts.netloc, parts.path, s3_client(parts.query))
    if parts.scheme in ("http", "https"):
        return HTTPStore(url)
    raise ValueError(f"unsupported store URL scheme {parts.scheme!r}")
