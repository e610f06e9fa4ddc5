"""Publishing a run's archive: what an older revision or attempt left is removed, and the
first attempt of a first revision, which cannot find anything, does not list the prefix."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.domain import RecordingView, RunView
from storage.objectstore import LocalStore, StoredObject
from tasks.archive import archive_prefix, publish
from tasks.media.tools import Output

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RECORDING = RecordingView(
    id="gme-1-x", source="gme", state="processing", revision=1, first_event_at=T0,
    last_event_at=T0, settle_due_at=None, details={}, identity={"BizID": 1400000000},
)  # fmt: skip


class ListingCounted(LocalStore):
    def __init__(self, root: Path):
        super().__init__(root)
        self.listed: list[str] = []

    def list(self, prefix: str) -> Iterator[StoredObject]:
        self.listed.append(prefix)
        return super().list(prefix)


def first_run(**changes: object) -> RunView:
    run = RunView("r1", RECORDING.id, 1, "running", 1, RECORDING)
    return replace(run, **changes)  # type: ignore[arg-type]


def archive(store: ListingCounted, run: RunView, tmp_path: Path) -> tuple[list[str], list[str]]:
    """Publish an m4a and a timeline for `run`: (the prefixes publish listed, the keys
    under the prefix afterwards)."""
    media = tmp_path / f"{run.recording_id}.m4a"
    media.write_bytes(b"m4a")
    output = Output("m4a", media, 3, "0" * 64, 1.0)
    publish(store, run, [], [output], [], sidecars=[("timeline.json", b"{}", "application/json")])
    listed = list(store.listed)
    return listed, sorted(o.key for o in store.list(archive_prefix(run)))


def test_a_first_attempt_of_a_first_revision_publishes_without_listing(tmp_path: Path):
    prefix = archive_prefix(first_run())
    listed, keys = archive(ListingCounted(tmp_path / "archive"), first_run(), tmp_path)
    assert listed == []
    assert keys == [f"{prefix}gme-1-x.m4a", f"{prefix}manifest.json", f"{prefix}timeline.json"]


@pytest.mark.parametrize(
    "changes",
    [{"revision": 2}, {"attempts": 2}, {"takeovers": 1}, {"requeues": 1}],
    ids=["revision 2", "second attempt", "taken over", "requeued"],
)
def test_what_an_older_revision_or_attempt_left_is_removed(tmp_path: Path, changes):
    store = ListingCounted(tmp_path / "archive")
    prefix = archive_prefix(first_run())
    store.put_bytes(prefix + "gme-1-x.mp3", b"an mp3 of an older configuration")
    listed, keys = archive(store, first_run(**changes), tmp_path)
    assert listed == [prefix]
    assert keys == [f"{prefix}gme-1-x.m4a", f"{prefix}manifest.json", f"{prefix}timeline.json"]
