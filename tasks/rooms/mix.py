"""Mixing a room: each user's archived (already normalized) track, delayed by its first
segment's time relative to the earliest user, summed by ffmpeg's `amix`, and the mix
finished like a recording (normalized, speech, peaks). ffmpeg reads every track in turn,
frame by frame: memory stays flat in the number of users and in length."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from storage.domain import RunView
from storage.domain.rooms import Member, offsets
from storage.objectstore import ObjectStore
from tasks.archive import archive_prefix
from tasks.media import ffmpeg as cmd
from tasks.media.tools import MediaError

MIX_SAMPLE_RATE = 48000
# The archived format a mix reads, best first (lossless before lossy).
PREFERRED = ("flac", "wav", "m4a", "opus", "mp3")


@dataclass(frozen=True)
class Track:
    """One user's archived track, placed in the room."""

    seq_no: int  # the user's place in the room (for the manifest's order)
    member: Member
    key: str
    path: Path
    bytes: int
    sha256: str
    format: str
    offset_s: float
    duration_s: float
    speech: tuple[tuple[float, float], ...]

    def manifest_entry(self) -> dict[str, object]:
        return {
            "UserID": self.member.user_id,
            "recording_id": self.member.recording_id,
            "revision": self.member.revision,
            "key": self.key,
            "format": self.format,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }

    def participant(self) -> dict[str, object]:
        return {
            "UserID": self.member.user_id,
            "recording_id": self.member.recording_id,
            "revision": self.member.revision,
            "offset_s": self.offset_s,
            "duration_s": round(self.duration_s, 3),
        }

    def room_speech(self) -> dict[str, object]:
        """The user's speech spans on the room's timeline."""
        spans = [[round(a + self.offset_s, 2), round(b + self.offset_s, 2)] for a, b in self.speech]
        return {"UserID": self.member.user_id, "spans": spans}


def chosen_output(result: dict[str, Any]) -> dict[str, Any] | None:
    artifacts = {a.get("format"): a for a in result.get("artifacts") or []}
    return next((artifacts[f] for f in PREFERRED if f in artifacts), None)


def fetch_tracks(
    archive: ObjectStore,
    members: Sequence[tuple[Member, RunView]],
    scratch: Path,
    *,
    label: str,
) -> list[Track]:
    """Each member's archived output, fetched from the archive, with its offset."""
    folder = scratch / "tracks"
    folder.mkdir(parents=True, exist_ok=True)
    starts: list[datetime | None] = []
    for _member, run in members:
        text = run.result.get("starts_at")
        starts.append(datetime.fromisoformat(text) if isinstance(text, str) else None)
    tracks = []
    for i, ((member, run), offset) in enumerate(zip(members, offsets(starts), strict=True)):
        output = chosen_output(run.result)
        if output is None:
            raise MediaError(f"recording {member.recording_id} of room {label} has no audio output")
        fmt = str(output["format"])
        key = archive_prefix(run) + cmd.output_name(member.recording_id, fmt)
        dest = folder / f"{i:04d}.{fmt}"
        try:
            fetched = archive.fetch(key, dest)
        except FileNotFoundError:
            raise MediaError(
                f"the {fmt} output of recording {member.recording_id} ({key}) of room {label} "
                "is not in the archive"
            ) from None
        spans = [s for entry in run.result.get("speech") or [] for s in entry.get("spans", [])]
        tracks.append(
            Track(
                seq_no=i,
                member=member,
                key=key,
                path=dest,
                bytes=fetched.size,
                sha256=fetched.sha256,
                format=fmt,
                offset_s=offset,
                duration_s=float(output.get("duration_s") or 0.0),
                speech=tuple((float(a), float(b)) for a, b in spans),
            )
        )
    return tracks


def mix_graph(delays_s: Sequence[float]) -> str:
    """Inputs 0..n-1 delayed by their offsets and summed (no level change: every input is
    normalized already, and the mix is normalized after) into `[mix]`."""
    parts = []
    for i, delay in enumerate(delays_s):
        ms = max(0, round(delay * 1000))
        parts.append(
            f"[{i}:a:0]aresample={MIX_SAMPLE_RATE},"
            f"aformat=sample_fmts=fltp:channel_layouts=stereo,adelay=delays={ms}:all=1[t{i}]"
        )
    inputs = "".join(f"[t{i}]" for i in range(len(delays_s)))
    if len(delays_s) == 1:
        return parts[0].replace("[t0]", "[mix]")
    n = len(delays_s)
    return ";".join(parts) + f";{inputs}amix=inputs={n}:duration=longest:normalize=0[mix]"
