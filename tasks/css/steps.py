"""The media steps of a CSS recording: fetch its files, join them, make the outputs.

Like the GME steps (tasks/gme/steps.py), everything streams through files in the run's
scratch directory; ffmpeg is run through `run_tool`, which keeps the heartbeat going.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from foundation import css_hosts
from foundation.config import Settings
from storage.domain import CssFileView
from tasks.css.fetch import Fetcher, FetchError, FetchPolicy, display
from tasks.media import video
from tasks.media.ffmpeg import ProbeError, concat_list
from tasks.media.tools import Heartbeat, MediaError, Output, Tools, describe_outputs, run_tool

# Where a downloaded file of each CSS format is kept (ffmpeg probes content, not names).
SUFFIX = {"mp4": ".mp4", "flv": ".flv", "hls": ".ts", "aac": ".aac"}


@dataclass(frozen=True)
class CssSource:
    seq_no: int  # position in start-time order
    file: CssFileView
    path: Path
    bytes: int
    sha256: str
    probe: video.MediaProbe

    def manifest_entry(self) -> dict[str, object]:
        return {
            "seq_no": self.seq_no,
            "file_id": self.file.file_id,
            "file_format": self.file.file_format,
            "start_time": self.file.start_time,
            "end_time": self.file.end_time,
            "url": display(self.file.video_url),
            "bytes": self.bytes,
            "sha256": self.sha256,
            "duration_s": round(self.probe.duration_s, 3),
            "video_codec": self.probe.video_codec,
            "audio_codec": self.probe.audio_codec,
            "width": self.probe.width,
            "height": self.probe.height,
        }


def fetch_policy(settings: Settings, appid: int | None) -> FetchPolicy:
    """The fetch policy for a recording of `appid`: `{appid}` in the allowed hosts is it."""
    return FetchPolicy(
        allowed_hosts=css_hosts.expand(settings.css_allowed_hosts, appid, settings.css_app_ids),
        max_bytes=settings.css_max_file_bytes,
        timeout=settings.css_fetch_timeout_seconds,
        max_segments=settings.css_max_hls_segments,
        max_seconds=settings.css_fetch_max_seconds,
        ca_bundle=str(settings.css_ca_bundle) if settings.css_ca_bundle else None,
    )


def probe_media(tools: Tools, path: Path, what: str) -> video.MediaProbe:
    if path.stat().st_size == 0:
        raise MediaError(f"{what} is empty (0 bytes)")
    try:
        return video.parse_media_probe(
            run_tool(video.media_probe_command(tools.ffprobe, path), what)
        )
    except MediaError as exc:
        raise MediaError(f"{what} is not readable media ({exc})") from None
    except ProbeError as exc:
        raise MediaError(f"{what} is not usable media: {exc}") from None


def fetch_files(
    files: Sequence[CssFileView],
    scratch: Path,
    tools: Tools,
    policy: FetchPolicy,
    *,
    label: str,
    heartbeat: Heartbeat | None = None,
) -> list[CssSource]:
    """Download every file (one at a time: they are large) in start-time order."""
    folder = scratch / "sources"
    folder.mkdir(parents=True, exist_ok=True)
    fetcher = Fetcher(policy, heartbeat=heartbeat)
    sources = []
    ordered = sorted(files, key=lambda f: (f.start_time, f.end_time, f.file_id))
    for seq_no, file in enumerate(ordered):
        what = f"file {file.file_id} ({file.file_format}) of recording {label}"
        dest = folder / f"{seq_no:04d}{SUFFIX.get(file.file_format, '.bin')}"
        try:
            if file.file_format == "hls":
                fetched = fetcher.download_hls(file.video_url, dest, what=what)
            else:
                fetched = fetcher.download(file.video_url, dest, what=what)
        except FetchError as exc:
            raise FetchError(f"cannot fetch {what}: {exc}") from None
        probe = probe_media(tools, dest, what)
        if file.file_format == "aac" and not probe.has_audio:
            raise MediaError(f"{what} has no audio stream")
        sources.append(CssSource(seq_no, file, dest, fetched.bytes, fetched.sha256, probe))
    return sources


def require_audio(sources: Sequence[CssSource], formats: Sequence[str], *, label: str) -> None:
    """An m4a output is the recording's sound: a file without any fails the recording,
    named, rather than leaving a silent gap or no m4a at all."""
    if "m4a" not in formats:
        return
    for source in sources:
        if not source.probe.has_audio:
            raise MediaError(
                f"file {source.file.file_id} ({source.file.file_format}) of recording {label} "
                "has no audio stream, which the m4a output needs"
            )


def join(
    sources: Sequence[CssSource],
    scratch: Path,
    tools: Tools,
    *,
    label: str,
    heartbeat: Heartbeat | None = None,
) -> tuple[Path, video.MediaProbe]:
    """The files of a split stream as one, in start-time order; one file is used as is."""
    ordered = sorted(sources, key=lambda s: s.seq_no)
    if len(ordered) == 1:
        return ordered[0].path, ordered[0].probe
    list_file = scratch / "concat.txt"
    list_file.write_text(concat_list([s.path for s in ordered]))
    output = scratch / "joined.mkv"
    try:
        command = video.join_command(
            tools.ffmpeg, list_file, [s.path for s in ordered], [s.probe for s in ordered], output
        )
    except ProbeError as exc:
        raise MediaError(f"cannot join the files of recording {label}: {exc}") from None
    run_tool(command, f"joining the files of recording {label}", heartbeat)
    return output, probe_media(tools, output, f"the joined files of recording {label}")


def make_outputs(
    joined: Path,
    probe: video.MediaProbe,
    formats: Sequence[str],
    stem: str,
    scratch: Path,
    tools: Tools,
    *,
    label: str,
    heartbeat: Heartbeat | None = None,
) -> list[Output]:
    out_dir = scratch / "out"
    out_dir.mkdir(exist_ok=True)
    targets = [
        (fmt, out_dir / video.output_name(stem, fmt)) for fmt in video.plan_formats(formats, probe)
    ]
    run_tool(
        video.output_command(tools.ffmpeg, joined, probe, targets),
        f"transcoding recording {label}",
        heartbeat,
    )
    return describe_outputs(
        targets, lambda path, what: probe_media(tools, path, what).duration_s, label=label
    )
