"""Running ffmpeg and ffprobe for any chain: a heartbeat while a tool runs, one error
class naming the segment or step, probing audio, and describing what ffmpeg wrote.

Everything streams through files in one scratch directory per run; no step loads a
whole recording into memory, so a 4-hour recording costs no more memory than a
4-minute one.
"""

from __future__ import annotations

import errno
import hashlib
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.media import ffmpeg as cmd
from tasks.media import mp3, mp4
from tasks.media.ffmpeg import AudioProbe, ProbeError

Heartbeat = Callable[[], None]
HEARTBEAT_SECONDS = 15.0


class MediaError(Exception):
    """A recording's media cannot be made; the message names the segment or step."""


@dataclass(frozen=True)
class Output:
    format: str
    path: Path
    bytes: int
    sha256: str
    duration_s: float


@dataclass(frozen=True)
class Tools:
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"


def run_tool(args: Sequence[str], what: str, heartbeat: Heartbeat | None = None) -> str:
    """Run ffmpeg/ffprobe; stdout as text, or MediaError with the tail of stderr."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        process = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        # A blocking wait returns the moment the tool exits (`wait(timeout)` polls, up to
        # 50 ms late per run); the heartbeat beats from a thread of its own meanwhile.
        beating = _Heartbeats(heartbeat, process) if heartbeat else None
        try:
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            if beating:
                beating.stop()
        if code != 0:
            err.seek(0)
            raise tool_failure(what, code, err.read()[-4000:].decode(errors="replace"))
        out.seek(0)
        return out.read().decode(errors="replace")


class Beats:
    """Calls `heartbeat` at most every HEARTBEAT_SECONDS, from a loop doing the work (each
    pass calls this); nothing when there is no heartbeat."""

    def __init__(self, heartbeat: Heartbeat | None):
        self.heartbeat, self.last = heartbeat, time.monotonic()

    def __call__(self) -> None:
        if self.heartbeat and time.monotonic() - self.last > HEARTBEAT_SECONDS:
            self.heartbeat()
            self.last = time.monotonic()


class _Heartbeats:
    """Call `heartbeat` every HEARTBEAT_SECONDS until stopped; if it fails, the tool is
    killed and `stop` raises its error, as a failing heartbeat did when called inline."""

    def __init__(self, heartbeat: Heartbeat, process: subprocess.Popen[bytes]):
        self.heartbeat, self.process = heartbeat, process
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(HEARTBEAT_SECONDS):
            try:
                self.heartbeat()
            except Exception as exc:
                self.error = exc
                self.process.kill()
                return

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        if self.error is not None:
            raise self.error


def probe(tools: Tools, path: Path, what: str) -> AudioProbe:
    """What the file holds. A plain, whole MP3 is read in Python (`tasks.media.mp3`, no process);
    anything else, including every file that is not quite right, is asked of ffprobe."""
    if path.stat().st_size == 0:
        raise MediaError(f"{what} is empty (0 bytes)")
    if path.suffix.lower() == ".mp3" and (info := mp3.read(path)) is not None:
        return AudioProbe(
            codec="mp3",
            sample_rate=info.sample_rate,
            channels=info.channels,
            duration_s=info.duration_s,
            format_name="mp3",
        )
    try:
        output = run_tool(cmd.probe_command(tools.ffprobe, path), what)
        return cmd.parse_probe(output)
    except MediaError as exc:
        raise MediaError(f"{what} is not readable audio ({exc})") from None
    except ProbeError as exc:
        raise MediaError(f"{what} is not an audio file: {exc}") from None


def output_seconds(tools: Tools, path: Path, what: str) -> float:
    """The length of a file ffmpeg has just written: from an m4a's movie header or an MP3's
    frames where they can be read in Python, else by ffprobe."""
    if path.suffix.lower() == ".m4a" and (seconds := mp4.duration(path)) is not None:
        return seconds
    return probe(tools, path, what).duration_s


def describe_outputs(
    targets: Sequence[tuple[str, Path]],
    seconds: Callable[[Path, str], float],
    *,
    label: str,
) -> list[Output]:
    """Size, checksum and duration (by `seconds`, a probe) of each file ffmpeg wrote."""
    outputs = []
    for fmt, path in targets:
        length = seconds(path, f"{fmt} output of recording {label}")
        outputs.append(Output(fmt, path, path.stat().st_size, sha256_file(path), length))
    return outputs


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def describe(output: Output) -> dict[str, object]:
    entry = asdict(output)
    entry.pop("path")
    entry["duration_s"] = round(output.duration_s, 3)
    return entry


def run_tool_streaming(
    args: Sequence[str],
    what: str,
    consume: Callable[[bytes], None],
    heartbeat: Heartbeat | None = None,
) -> str:
    """Run ffmpeg whose stdout is a stream of samples: each block goes to `consume` as it
    comes (nothing is kept here). Returns stderr as text (filters' reports), or raises
    MediaError with its last line."""
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL
        )
        stream = process.stdout
        if stream is None:  # pragma: no cover - Popen gives a pipe when asked
            raise MediaError(f"{what}: no output stream")
        beat = Beats(heartbeat)
        try:
            while block := stream.read(1 << 16):
                consume(block)
                beat()
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            stream.close()
        err.seek(0)
        log = err.read().decode(errors="replace")
    if code != 0:
        raise tool_failure(what, code, log)
    return log


def tool_failure(what: str, code: int, stderr: str) -> Exception:
    """What a failed tool run raises: OSError(ENOSPC) when the disk was full (not the
    media's fault: the run is retried, and fails only if it lasts), wherever ffmpeg said
    so in the tail of its report (its last line may be just "Conversion failed!");
    else MediaError with the last line."""
    tail = [line.strip() for line in stderr.strip().splitlines() if line.strip()][-20:]
    for line in reversed(tail):
        if "No space left on device" in line:
            return OSError(errno.ENOSPC, f"{what}: {line}")
    return MediaError(f"{what}: {tail[-1] if tail else f'exit code {code}'}")
