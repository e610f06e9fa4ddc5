"""ffmpeg/ffprobe commands for video recordings (CSS) and their probe parsing. Pure: no
process is run here (tasks/media/ffmpeg.py is the audio counterpart)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.media.ffmpeg import ProbeError

# Outputs of a video recording: (file extension, MIME type).
VIDEO_OUTPUTS: dict[str, tuple[str, str]] = {
    "mp4": ("mp4", "video/mp4"),
    "m4a": ("m4a", "audio/mp4"),
}
# What an mp4 may carry by stream copy; anything else is transcoded to these.
MP4_VIDEO_CODEC, MP4_AUDIO_CODEC = "h264", "aac"
X264 = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p")
AAC = ("-c:a", "aac", "-b:a", "128k")
BASE = ("-hide_banner", "-nostdin", "-v", "error", "-y")


@dataclass(frozen=True)
class MediaProbe:
    duration_s: float
    format_name: str
    video_codec: str | None = None
    width: int = 0
    height: int = 0
    audio_codec: str | None = None
    sample_rate: int = 0
    channels: int = 0

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    @property
    def layout(self) -> tuple[object, ...]:
        """What must agree between files for the concat demuxer to join them by copy."""
        return (
            self.video_codec,
            self.width,
            self.height,
            self.audio_codec,
            self.sample_rate,
            self.channels,
        )


def media_probe_command(ffprobe: str, path: Path) -> list[str]:
    return [
        ffprobe,
        "-v", "error",
        "-show_entries", "stream=codec_type,codec_name,width,height,sample_rate,channels"
        ":format=duration,format_name",
        "-of", "json",
        str(path),
    ]  # fmt: skip


def parse_media_probe(output: str | bytes) -> MediaProbe:
    try:
        data = json.loads(output or b"{}")
    except ValueError:
        raise ProbeError("ffprobe gave no readable answer") from None
    streams = data.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise ProbeError("has neither a video nor an audio stream")
    fmt = data.get("format", {})
    try:
        duration = float(fmt.get("duration"))
    except (TypeError, ValueError):
        duration = 0.0
    if duration <= 0:
        raise ProbeError("has no measurable duration")
    return MediaProbe(
        duration_s=duration,
        format_name=str(fmt.get("format_name", "")),
        video_codec=str(video.get("codec_name", "")) if video else None,
        width=_int(video, "width"),
        height=_int(video, "height"),
        audio_codec=str(audio.get("codec_name", "")) if audio else None,
        sample_rate=_int(audio, "sample_rate"),
        channels=_int(audio, "channels"),
    )


def _int(stream: dict[str, object] | None, key: str) -> int:
    try:
        return int(stream.get(key, 0)) if stream else 0  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def plan_formats(requested: Sequence[str], probe: MediaProbe) -> list[str]:
    """The requested outputs this recording can have: no mp4 without video (an `aac`
    recording), no m4a without audio; never nothing."""
    formats = [
        f for f in requested if (f != "mp4" or probe.has_video) and (f != "m4a" or probe.has_audio)
    ]
    if formats:
        return formats
    return ["mp4"] if probe.has_video else ["m4a"]


def join_by_copy(probes: Sequence[MediaProbe]) -> bool:
    return all(p.layout == probes[0].layout for p in probes)


def join_command(
    ffmpeg: str,
    list_file: Path,
    inputs: Sequence[Path],
    probes: Sequence[MediaProbe],
    output: Path,
) -> list[str]:
    """Join files in the given order. Files that agree in codecs and sizes go through the
    concat demuxer by stream copy; others are normalized to the first file's frame size
    (letterboxed) and 48 kHz stereo, and joined by the concat filter into H.264/AAC."""
    if join_by_copy(probes):
        return [
            ffmpeg, *BASE, "-f", "concat", "-safe", "0", "-i", str(list_file),
            "-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy", "-f", "matroska", str(output),
        ]  # fmt: skip
    has_video = all(p.has_video for p in probes)
    has_audio = all(p.has_audio for p in probes)
    if not (has_video or has_audio) or any(
        p.has_video != has_video or p.has_audio != has_audio for p in probes
    ):
        raise ProbeError("the files mix video-only, audio-only and audio-video streams")
    width, height = probes[0].width or 1280, probes[0].height or 720
    chains, labels = [], []
    for i in range(len(inputs)):
        if has_video:
            chains.append(
                f"[{i}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease,"
                f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[v{i}]"
            )
            labels.append(f"[v{i}]")
        if has_audio:
            chains.append(f"[{i}:a:0]aresample=48000,aformat=channel_layouts=stereo[a{i}]")
            labels.append(f"[a{i}]")
    graph = ";".join(chains) + ";" + "".join(labels)
    graph += f"concat=n={len(inputs)}:v={int(has_video)}:a={int(has_audio)}"
    maps: list[str] = []
    if has_video:
        graph += "[v]" if not has_audio else "[v][a]"
        maps += ["-map", "[v]"]
    else:
        graph += "[a]"
    if has_audio:
        maps += ["-map", "[a]"]
    args = [ffmpeg, *BASE]
    for path in inputs:
        args += ["-i", str(path)]
    return [
        *args, "-filter_complex", graph, *maps,
        *(X264 if has_video else ()), *(AAC if has_audio else ()),
        "-f", "matroska", str(output),
    ]  # fmt: skip


def output_command(
    ffmpeg: str, source: Path, probe: MediaProbe, targets: Sequence[tuple[str, Path]]
) -> list[str]:
    """One read of the source, every output written: an mp4 (H.264/AAC, `+faststart`) by
    stream copy of each stream whose codec allows it, an audio-only m4a likewise."""
    args = [ffmpeg, *BASE, "-i", str(source)]
    copy_audio = ("-c:a", "copy") if probe.audio_codec == MP4_AUDIO_CODEC else AAC
    for fmt, path in targets:
        if fmt == "mp4":
            copy_video = ("-c:v", "copy") if probe.video_codec == MP4_VIDEO_CODEC else X264
            args += ["-map", "0:v:0", *copy_video]
            if probe.has_audio:
                args += ["-map", "0:a:0", *copy_audio]
        elif fmt == "m4a":
            args += ["-map", "0:a:0", "-vn", *copy_audio]
        else:
            raise ValueError(f"unknown video output format {fmt!r}")
        args += ["-movflags", "+faststart", "-f", "mp4", str(path)]
    return args


def output_name(stem: str, fmt: str) -> str:
    return f"{stem}.{VIDEO_OUTPUTS[fmt][0]}"
