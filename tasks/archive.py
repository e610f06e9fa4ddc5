"""Archive layout and publishing: one deterministic prefix per recording, manifest last."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from foundation import jsonsafe
from storage.domain import RecordingView, RunView, slug
from storage.domain.rooms import ROOM_SOURCE
from storage.objectstore import ObjectStore
from tasks.media.ffmpeg import content_type
from tasks.media.tools import Output, describe

MANIFEST = "manifest.json"
TIMELINE = "timeline.json"
# A file published beside the media: (name, content or a file holding it, MIME type).
Sidecar = tuple[str, bytes | Path, str]


class ManifestSource(Protocol):
    """A fetched source as the manifest lists it (a GME segment, a CSS file)."""

    @property
    def seq_no(self) -> int: ...

    def manifest_entry(self) -> dict[str, object]: ...


def archive_prefix(run: RunView) -> str:
    """Same for every revision of a recording, so reprocessing replaces, never duplicates."""
    return recording_prefix(run.recording)


def recording_prefix(rec: RecordingView) -> str:
    """The archive prefix of a recording (or a room), whichever its revision."""
    owner = rec.identity.get("BizID") or rec.details.get("appid") or "_"
    if rec.source == ROOM_SOURCE:  # a room lives beside its users' recordings
        return f"gme/{slug(str(owner))}/rooms/{rec.id}/"
    return f"{rec.source}/{slug(str(owner))}/{rec.id}/"


def build_manifest(
    run: RunView,
    sources: Sequence[ManifestSource],
    outputs: Sequence[dict[str, Any]],
    missing: Sequence[int],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`extra` adds what comes with a GME recording's audio (timeline, gaps, speech,
    loudness, sidecar files)."""
    rec = run.recording
    return {
        "recording": {"id": rec.id, "source": rec.source, rec.source: rec.identity or rec.details},
        "revision": run.revision,
        "run_id": run.id,
        "created_at": datetime.now(UTC).isoformat(),
        "sources": [s.manifest_entry() for s in sorted(sources, key=lambda s: s.seq_no)],
        "missing": sorted(missing),
        "outputs": list(outputs),
        **(extra or {}),
    }


def publish(
    store: ObjectStore,
    run: RunView,
    sources: Sequence[ManifestSource],
    outputs: Sequence[Output],
    missing: Sequence[int],
    *,
    extra: Mapping[str, Any] | None = None,
    sidecars: Sequence[Sidecar] = (),
) -> tuple[list[dict[str, Any]], str]:
    """Upload the media and its sidecars (timeline.json, peaks), then the manifest, then
    remove what an older revision or attempt left (`may_hold_leftovers`).

    Each object appears whole or not at all (S3 PUT; a rename on local disk).
    Returns the artifacts (as the notification lists them) and the manifest's URL.
    """
    prefix = archive_prefix(run)
    artifacts, entries, keep = [], [], set()
    for output in outputs:
        key = prefix + output.path.name
        store.put(key, output.path, content_type(output.format))
        keep.add(key)
        entry = describe(output)
        entries.append({**entry, "key": key})
        artifacts.append({"url": store.url(key), **entry})
    for name, data, mime in sidecars:
        if isinstance(data, Path):
            store.put(prefix + name, data, mime)
        else:
            store.put_bytes(prefix + name, data, mime)
        keep.add(prefix + name)
    manifest_key = prefix + MANIFEST
    manifest = build_manifest(run, sources, entries, missing, extra)
    store.put_bytes(
        manifest_key,
        jsonsafe.dumps(manifest, indent=2, ensure_ascii=False).encode(),
        "application/json",
    )
    keep.add(manifest_key)
    if may_hold_leftovers(run):
        for stale in list(store.list(prefix)):
            if stale.key not in keep:
                store.delete(stale.key)
    return artifacts, store.url(manifest_key)


def may_hold_leftovers(run: RunView) -> bool:
    """Whether anything but this run's own objects can be under its prefix: only an older
    revision, or an earlier attempt of this run (with other outputs configured), writes
    there. The first attempt of a first revision has nothing to list."""
    return run.revision > 1 or run.attempts > 1 or bool(run.takeovers or run.requeues)
