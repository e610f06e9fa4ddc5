"""The archived media of a recording, for the player and for downloads: served with `Range`
from a local archive, or by a redirect to a presigned URL (five minutes) on S3; and the
`peaks.json` / `timeline.json` beside them, when the pipeline wrote them."""

from __future__ import annotations

import json
import posixpath
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Response, redirect, send_file

from storage.domain import UnsafeKeyError, safe_key
from storage.objectstore import LocalStore, S3Store, store_from_url

PRESIGNED_SECONDS = 300
MAX_SIDE_FILE_BYTES = 8 * 1024 * 1024
MEDIA_TYPES = {
    "m4a": "audio/mp4",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp4": "video/mp4",
}


@dataclass(frozen=True)
class Artifact:
    format: str
    key: str  # in the archive store
    bytes: int | None
    duration_s: float | None


def download_name(recording_id: str, fmt: str) -> str:
    """A file name made only of safe characters, whatever the id holds."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", recording_id).strip("._") or "recording"
    return f"{stem[:120]}.{re.sub(r'[^a-z0-9]', '', fmt.lower())[:8]}"


class Archive:
    def __init__(self, archive_url: str):
        self.store: Any = store_from_url(archive_url)
        self._prefix = self.store.url("x")[:-1]

    def key_of(self, url: str) -> str | None:
        """The key of an object URL that lies in this archive; None for anything else (a
        key with `..`, `%2e%2e` or any other escape is not one the pipeline wrote)."""
        if not url.startswith(self._prefix):
            return None
        try:
            return safe_key(url[len(self._prefix) :])
        except UnsafeKeyError:
            return None

    def artifacts(self, run: dict[str, Any] | None) -> list[Artifact]:
        found = []
        for a in (run or {}).get("artifacts") or []:
            key = self.key_of(str(a.get("url", "")))
            fmt = str(a.get("format", ""))
            if key and fmt in MEDIA_TYPES:
                found.append(Artifact(fmt, key, a.get("bytes"), a.get("duration_s")))
        return found

    def serve(self, artifact: Artifact, name: str, *, as_attachment: bool) -> Response:
        mimetype = MEDIA_TYPES[artifact.format]
        if isinstance(self.store, LocalStore):
            try:
                path: Path | None = self.store.local_path(artifact.key)
            except UnsafeKeyError:  # a link that leads out of the archive
                path = None
            if path is None or not path.is_file():
                return Response(
                    json.dumps({"error": "the archived file is gone"}),
                    404,
                    mimetype="application/json",
                )
            response = send_file(
                path,
                mimetype=mimetype,
                as_attachment=as_attachment,
                download_name=name,
                conditional=True,
            )
            # Recordings are private: no shared cache keeps them, no browser cache either.
            response.headers["Cache-Control"] = "private, no-store"
            return response
        if isinstance(self.store, S3Store):
            disposition = "attachment" if as_attachment else "inline"
            url = self.store.presigned_get(
                artifact.key,
                PRESIGNED_SECONDS,
                content_type=mimetype,
                content_disposition=f'{disposition}; filename="{name}"',
            )
            return redirect(url, 302)  # type: ignore[return-value]
        raise TypeError(f"cannot serve media from {type(self.store).__name__}")

    def side_file(self, artifact: Artifact, name: str) -> Any | None:
        """`<stem>.peaks.json` ("peaks") or the `timeline.json` ("timeline") beside the
        media, parsed; None when absent or not JSON."""
        if name == "peaks":
            key = posixpath.splitext(artifact.key)[0] + ".peaks.json"
        else:
            key = posixpath.join(posixpath.dirname(artifact.key), "timeline.json")
        with tempfile.TemporaryDirectory(prefix="recpipe-console-") as scratch:
            dest = Path(scratch) / "side.json"
            try:
                fetched = self.store.fetch(key, dest)
            except (FileNotFoundError, UnsafeKeyError):  # UnsafeKeyError: a link out of it
                return None
            if fetched.size > MAX_SIDE_FILE_BYTES:
                return None
            try:
                return json.loads(dest.read_bytes())
            except ValueError:
                return None

    def origin(self) -> str | None:
        """The scheme and host presigned URLs point at (for the page's CSP)."""
        if isinstance(self.store, S3Store):
            return self.store.endpoint_origin()
        return None
