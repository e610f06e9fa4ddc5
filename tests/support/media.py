"""Test media made with ffmpeg at test time, and the analysis that proves what is in a file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

ANALYSIS_RATE = 16000


def make_tone(
    path: Path,
    frequency: float,
    seconds: float,
    *,
    sample_rate: int = 44100,
    channels: int = 1,
    codec: str = "libmp3lame",
    gain_db: float = 0.0,
) -> Path:
    """A sine tone; `gain_db` changes its level (ffmpeg's sine is at -18 dBFS)."""
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
            "-i", f"sine=frequency={frequency}:duration={seconds}:sample_rate={sample_rate}",
            "-af", f"volume={gain_db}dB",
            "-ac", str(channels), "-c:a", codec, "-b:a", "64k", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        check=True,
        capture_output=True,
    ).stdout
    return float(json.loads(out)["format"]["duration"])


def decode(path: Path) -> np.ndarray:
    """Mono float samples at ANALYSIS_RATE."""
    raw = subprocess.run(
        [
            "ffmpeg", "-v", "error", "-nostdin", "-i", str(path),
            "-ac", "1", "-ar", str(ANALYSIS_RATE), "-f", "s16le", "-",
        ],
        check=True,
        capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def dominant_frequency(samples: np.ndarray, at: float, window: float = 0.4) -> float:
    """The strongest frequency in a window centred on `at` seconds."""
    half = int(window * ANALYSIS_RATE / 2)
    centre = int(at * ANALYSIS_RATE)
    chunk = samples[max(0, centre - half) : centre + half]
    spectrum = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk))))
    freqs = np.fft.rfftfreq(len(chunk), 1 / ANALYSIS_RATE)
    return float(freqs[int(np.argmax(spectrum))])


def level_at(samples: np.ndarray, at: float, hz: float, window: float = 0.4) -> float:
    """The magnitude of the spectrum around `hz` in a window centred on `at` seconds."""
    half = int(window * ANALYSIS_RATE / 2)
    centre = int(at * ANALYSIS_RATE)
    chunk = samples[centre - half : centre + half]
    spectrum = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk)))) / len(chunk)
    freqs = np.fft.rfftfreq(len(chunk), 1 / ANALYSIS_RATE)
    return float(spectrum[(freqs > hz - 20) & (freqs < hz + 20)].max())


def loudest_level(samples: np.ndarray, hz: float, window: float = 0.4) -> float:
    """The highest `level_at` of `hz` in any window of the sound (windows a half apart)."""
    seconds = len(samples) / ANALYSIS_RATE
    if seconds <= window:
        return level_at(samples, seconds / 2, hz, window=seconds)
    starts = np.arange(window / 2, seconds - window / 2, window / 2)
    return max(level_at(samples, float(at), hz, window) for at in starts)


def make_video(
    path: Path,
    frequency: float,
    seconds: float,
    *,
    video: tuple[str, ...] = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
    audio: tuple[str, ...] = ("-c:a", "aac", "-b:a", "64k"),
    extra: tuple[str, ...] = (),
) -> Path:
    """A small test-pattern video with a sine tone of `frequency` as its sound."""
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=15:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}:sample_rate=44100",
            *video, *audio, "-shortest", *extra, str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def make_hls(
    folder: Path, frequency: float, seconds: float, *, master: bool = True, fmp4: bool = False
) -> Path:
    """An HLS recording (MPEG-TS segments of one second, or with `fmp4` an EXT-X-MAP init
    section and fMP4 fragments) in `folder`; returns the master playlist, which names the
    media playlist by a relative URI, or the media playlist."""
    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    segments = (
        ("-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
         "-hls_segment_filename", str(media / "seg%03d.m4s"))
        if fmp4
        else ("-hls_segment_filename", str(media / "seg%03d.ts"))
    )  # fmt: skip
    make_video(
        media / "index.m3u8",
        frequency,
        seconds,
        extra=(
            "-g", "15", "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", *segments,
        ),
    )  # fmt: skip
    if not master:
        return media / "index.m3u8"
    playlist = folder / "master.m3u8"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=160x120\nmedia/index.m3u8\n"
    )
    return playlist


def streams(path: Path) -> list[str]:
    """The codec names of a file's streams, e.g. ['h264', 'aac']."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "json", str(path)],
        check=True,
        capture_output=True,
    ).stdout
    return [s["codec_name"] for s in json.loads(out)["streams"]]


def speak_word(tmp: Path, word: str) -> np.ndarray:
    """One word said by espeak-ng (Debian package espeak-ng), as 16 kHz mono samples."""
    wav = tmp / f"say-{word}.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), word], check=True)
    return decode(wav)


def speech_track(path: Path, words_at: list[tuple[str, float]], seconds: float) -> dict:
    """An mp3 of `seconds` holding each word said at its offset (silence elsewhere).
    Returns each word's (start, end) of sound in the file, measured from the samples."""
    track = np.zeros(int(seconds * ANALYSIS_RATE), dtype=np.float32)
    placed = {}
    for word, at in words_at:
        said = speak_word(path.parent, word)
        loud = np.flatnonzero(np.abs(said) > 0.01)
        start = int(at * ANALYSIS_RATE)
        track[start : start + len(said)] = said[: len(track) - start]
        placed[word] = (at + loud[0] / ANALYSIS_RATE, at + loud[-1] / ANALYSIS_RATE)
    raw = path.with_suffix(".f32")
    raw.write_bytes(track.astype("<f4").tobytes())
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "f32le",
         "-ar", str(ANALYSIS_RATE), "-ac", "1", "-i", str(raw), "-c:a", "libmp3lame",
         "-b:a", "64k", str(path)],
        check=True,
    )  # fmt: skip
    raw.unlink()
    return placed
