"""What the benchmarks share: local services (a fresh PostgreSQL database, a Redis database,
moto's S3 server), child processes, pre-signed GME callbacks, an HTTP load generator, and
py-spy. Everything targets 127.0.0.1 and is bounded in time and requests.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get(
    "RECPIPE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RECPIPE_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# Dummy values for the local moto server; not credentials of anything real.
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BIZ_ID = 1400000000
BENCH_SECRET = b"recpipe-bench-key"  # a key made up for the benchmark's own callbacks
TASK_ID_BASE = 446946705284000000  # > 2**53, as GME's TaskIDs are


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own 127.0.0.1
        return bool(response.status == 200)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment for children: ours without AWS profile/endpoint leaks, plus extra."""
    env = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        env.pop(name, None)
    env.update(DUMMY_AWS)
    env["NO_PROXY"] = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    # A bench reads no /readyz or /metrics of the webhook: its internal listener stays off,
    # so two benches (or a bench and a test) never fight over 127.0.0.1:9108.
    env["RECPIPE_INTERNAL_LISTEN"] = "off"
    env.update(extra)
    return env


# -- services ---------------------------------------------------------------------------


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database on the local server, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@contextmanager
def redis_database(db: int) -> Iterator[str]:
    """A Redis database number of the benchmark's own, flushed before and after."""
    import redis

    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@contextmanager
def moto_server(log_path: Path) -> Iterator[str]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env({}),
        )
    try:
        wait_until(lambda: http_ok(endpoint), 30, "moto S3 server")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=DUMMY_AWS["AWS_DEFAULT_REGION"],
        aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
    )


# -- child processes --------------------------------------------------------------------


class Processes:
    """Children in their own process groups, logged to files, stopped by their own ids."""

    def __init__(self, logs: Path, env: dict[str, str]):
        self.logs, self.env = logs, env
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, args: Sequence[str], cwd: Path | None = None) -> int:
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                list(args),
                env=self.env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.running[name] = process
        return process.pid

    def alive(self, name: str) -> bool:
        return self.running[name].poll() is None

    def stop(self, name: str) -> None:
        process = self.running.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def vm_hwm_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU time of one process so far; with `reaped`, plus that of the
    children it has waited for (ffmpeg runs of a worker)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_backends(database_url: str) -> list[int]:
    """Server process ids of the connections to one database (local server only)."""
    from sqlalchemy import create_engine, text

    name = database_url.rsplit("/", 1)[1]
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            ).all()
    finally:
        engine.dispose()
    return [int(r[0]) for r in rows]


def self_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_so_far() -> float:
    """User + system CPU seconds of this process and of the children it has waited for
    (ffmpeg, ffprobe): what a recording costs a media worker's cores."""
    import resource

    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# -- GME callbacks ----------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    body: bytes
    signature: str
    event_type: int
    recording: int


def gme_callback(
    task_id: int, room: str, user: str, seq_no: int, event_type: int, file_name: str
) -> Signed:
    import base64
    import hashlib
    import hmac

    body = json.dumps(
        {
            "BizID": BIZ_ID,
            "RoomID": room,
            "UserID": user,
            "TaskID": task_id,
            "RecordMode": 1,
            "Timestamp": int(time.time()),
            "EventType": event_type,
            "Detail": {"SeqNo": seq_no, "FileName": file_name},
        },
        separators=(",", ":"),
    ).encode()
    digest = hmac.new(BENCH_SECRET, body, hashlib.sha1).digest()
    return Signed(body, base64.b64encode(digest).decode(), event_type, task_id)


# Where the bench's recordings begin on the room's clock (08:00:00 in the FileName's zone).
CLOCK_START = datetime(2026, 1, 1, 8, 0, 0)
# The spacing of segments whose media no bench processes (the webhook benches).
UNPROCESSED_SEGMENT_S = 300.0


def segment_key(task_id: int, room: str, seq_no: int, *, start_s: float) -> str:
    """A GME-like key: `bizid_room/<start time>_<TaskID>_audio_<SeqNo>.mp3`, whose time is
    the segment's start second on the room's clock (`start_s` after `CLOCK_START`). recpipe
    places segments by that time and pads the pauses between them with silence, so the
    names must tell the truth about the media (see `back_to_back`)."""
    stamp = (CLOCK_START + timedelta(seconds=int(start_s))).strftime("%Y-%m-%d-%H-%M-%S")
    return f"{BIZ_ID}_{room}/{stamp}_{task_id}_audio_{seq_no}.mp3"


def back_to_back(durations: Sequence[float]) -> list[float]:
    """The start seconds of segments of these lengths laid end to end (no pause)."""
    starts, at = [], 0.0
    for seconds in durations:
        starts.append(at)
        at += seconds
    return starts


def recording_keys(task_id: int, room: str, durations: Sequence[float]) -> list[str]:
    """The keys of one recording's segments, of these lengths, back to back."""
    return [
        segment_key(task_id, room, seq_no, start_s=start)
        for seq_no, start in enumerate(back_to_back(durations))
    ]


def interleaved_callbacks(
    recordings: int,
    segments: int,
    first_task: int,
    events: Sequence[int] = (1, 2, 3),
    *,
    seconds: Callable[[int, int], float] = lambda _r, _seq: UNPROCESSED_SEGMENT_S,
) -> list[Signed]:
    """Callbacks of `recordings` recordings, in the order a busy vendor sends them: each
    recording's segments and events in order, the recordings interleaved (so consecutive
    requests touch different recordings, as many concurrent rooms do). `seconds(r, seq_no)`
    is how long segment `seq_no` of recording `r` lasts: the keys name back-to-back starts."""
    keys = [
        recording_keys(
            TASK_ID_BASE + first_task + r,
            str(10000 + first_task + r),
            [seconds(r, seq_no) for seq_no in range(segments)],
        )
        for r in range(recordings)
    ]
    out = []
    for seq_no in range(segments):
        for event_type in events:
            for r in range(recordings):
                task_id = TASK_ID_BASE + first_task + r
                room = str(10000 + first_task + r)
                out.append(gme_callback(task_id, room, "999", seq_no, event_type, keys[r][seq_no]))
    return out


# -- the load generator -----------------------------------------------------------------


@dataclass
class LoadResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    by_event_ms: dict[int, list[float]] = field(default_factory=dict)
    wall_s: float = 0.0
    late_ms: list[float] = field(default_factory=list)  # open loop: start delay behind schedule

    def record(self, item: Signed, status: int, latency_ms: float) -> None:
        self.sent += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies_ms.append(latency_ms)
        self.by_event_ms.setdefault(item.event_type, []).append(latency_ms)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "wall_s": round(self.wall_s, 3),
            "rps": round(self.ok / self.wall_s, 1) if self.wall_s else 0.0,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p90_ms": percentile(self.latencies_ms, 90),
            "p99_ms": percentile(self.latencies_ms, 99),
            "max_ms": round(max(self.latencies_ms), 2) if self.latencies_ms else None,
            "p50_ms_by_event": {
                str(k): percentile(v, 50) for k, v in sorted(self.by_event_ms.items())
            },
            "p99_ms_by_event": {
                str(k): percentile(v, 99) for k, v in sorted(self.by_event_ms.items())
            },
            "late_p99_ms": percentile(self.late_ms, 99) if self.late_ms else None,
        }


def percentile(values: Sequence[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank], 2)


class Client:
    """One keep-alive HTTP/1.1 connection, reopened when the server closes it."""

    def __init__(self, port: int, path: str):
        self.port, self.path = port, path
        self.conn: http.client.HTTPConnection | None = None

    def post(self, item: Signed) -> int:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(
                    "POST",
                    self.path,
                    body=item.body,
                    headers={"Content-Type": "application/json", "Signature": item.signature},
                )
                response = self.conn.getresponse()
                response.read()
                if response.will_close:
                    self.close()
                return response.status
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def closed_loop(
    port: int, path: str, items: Sequence[Signed], clients: int, max_seconds: float
) -> LoadResult:
    """`clients` threads, each posting the next item as soon as its last one is answered,
    until the items run out or `max_seconds` pass."""
    result = LoadResult()
    lock = threading.Lock()
    cursor = iter(items)
    deadline = time.monotonic() + max_seconds

    def run() -> None:
        client = Client(port, path)
        try:
            while time.monotonic() < deadline:
                with lock:
                    item = next(cursor, None)
                if item is None:
                    return
                started = time.perf_counter()
                try:
                    status = client.post(item)
                except (http.client.HTTPException, OSError):
                    with lock:
                        result.errors += 1
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    result.record(item, status, elapsed)
        finally:
            client.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_seconds + 60)
    result.wall_s = time.perf_counter() - began
    return result


def open_loop(
    port: int, path: str, items: Sequence[Signed], rate: float, seconds: float, pool: int = 64
) -> LoadResult:
    """Requests started on a fixed schedule (`rate` per second), whatever the answers do:
    latency counts from the scheduled start, so a stalled server shows up as queueing
    (no coordinated omission). `pool` connections carry the requests."""
    count = min(len(items), int(rate * seconds))
    result = LoadResult()
    lock = threading.Lock()
    work: queue.Queue[tuple[Signed, float] | None] = queue.Queue()

    def run() -> None:
        client = Client(port, path)
        try:
            while (job := work.get()) is not None:
                item, scheduled = job
                late = (time.perf_counter() - scheduled) * 1000
                try:
                    status = client.post(item)
                except (http.client.HTTPException, OSError):
                    with lock:
                        result.errors += 1
                    continue
                elapsed = (time.perf_counter() - scheduled) * 1000
                with lock:
                    result.record(item, status, elapsed)
                    result.late_ms.append(late)
        finally:
            client.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(pool)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    for i in range(count):
        scheduled = began + i / rate
        pause = scheduled - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        work.put((items[i], scheduled))
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join(seconds + 60)
    result.wall_s = time.perf_counter() - began
    return result


# -- bare ffmpeg: the baselines ---------------------------------------------------------


def bare_concat_aac(inputs: list[str], output: Path) -> dict[str, float]:
    """The physical baseline: one bare ffmpeg that decodes the segments once and encodes
    AAC at 128 kbit/s once (`ffmpeg -f concat ... -c:a aac -b:a 128k`). Wall and CPU s."""
    started, cpu_before = time.perf_counter(), cpu_so_far()
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *inputs,
         "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(output)],
        check=True,
    )  # fmt: skip
    return {"wall_s": time.perf_counter() - started, "cpu_s": cpu_so_far() - cpu_before}


def bare_finish(
    inputs: list[str],
    output: Path,
    scratch: Path,
    sample_rate: int = 48000,
    channels: int = 1,
    pre_filter: str = "",
) -> dict[str, float]:
    """What recpipe's transcode does, as a bare script would: one decode measuring the
    integrated loudness and sample peak (`ebur128`) into a float PCM copy on disk, then one
    encode from it with a linear `volume` gain to -16 LUFS and AAC, while a thread reads the
    copy 10 s at a time with numpy: min/max per 20 ms (the peaks) and the runs of 0.5 s
    under -40 dB after the gain (the silences). `inputs` may carry a filter graph making
    `[mix]` as `pre_filter` (a room)."""
    import re
    import threading

    import numpy as np

    layout = "mono" if channels == 1 else "stereo"
    pcm = scratch / "decoded.f32"
    start = f"{pre_filter};[mix]" if pre_filter else "[0:a:0]"
    mark = time.perf_counter()
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-v", "info", "-y", *inputs,
         "-filter_complex",
         f"{start}ebur128=framelog=verbose:peak=sample,aresample={sample_rate},"
         f"aformat=sample_fmts=flt:channel_layouts={layout}[pcm]",
         "-map", "[pcm]", "-f", "f32le", str(pcm)],
        check=True, capture_output=True, text=True,
    ).stderr  # fmt: skip
    summary = log[log.rfind("Summary:") :]
    found = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    integrated = float(found.group(1)) if found else -70.0
    gain = -16.0 - integrated if integrated > -70.0 else 0.0
    measure_s = time.perf_counter() - mark
    mark = time.perf_counter()
    factor = 10 ** (gain / 20)
    quiet = np.float32(0.01 / factor)
    width = sample_rate // 50
    peaks: list[np.ndarray] = []
    changes = [0]  # quiet/loud changes seen: the silences' edges

    def scan() -> None:
        with pcm.open("rb") as f:
            while len(block := np.fromfile(f, dtype="<f4", count=10 * sample_rate * channels)):
                frames = block.reshape(-1, channels)
                mono = frames.mean(axis=1) if channels > 1 else frames[:, 0]
                level = np.abs(frames).max(axis=1)
                edges = np.diff((level < quiet).view(np.int8), prepend=0, append=0)
                changes[0] += int(np.count_nonzero(edges))
                usable = len(mono) - len(mono) % width
                pixels = mono[:usable].reshape(-1, width)
                peaks.append(np.stack([pixels.min(1), pixels.max(1)], 1).ravel() * factor)

    scanner = threading.Thread(target=scan)
    scanner.start()
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-v", "info", "-y",
         "-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", str(pcm),
         "-af", f"volume={gain:.2f}dB:precision=float",
         "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(output)],
        check=True, capture_output=True,
    )  # fmt: skip
    scanner.join()
    pcm.unlink()
    data = np.rint(np.concatenate(peaks) * 32768).astype(int) if peaks else np.empty(0)
    (scratch / "peaks.json").write_text(json.dumps({"data": data.tolist()}))
    return {"measure": measure_s, "encode": time.perf_counter() - mark}


class Counted:
    """In a bench's child process: the processes it starts (by program name: ffmpeg
    passes, ffprobe calls) and the statements it sends to the ledger (round trips), from
    the moment `start` is called."""

    def __init__(self) -> None:
        self.processes: dict[str, int] = {}
        self.round_trips = 0
        self._on = False

    def start(self) -> Counted:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        original = subprocess.Popen.__init__
        counted = self

        def popen(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
            if counted._on:
                program = Path(str(args[0] if isinstance(args, list | tuple) else args)).name
                counted.processes[program] = counted.processes.get(program, 0) + 1
            original(self, args, *rest, **kwargs)

        subprocess.Popen.__init__ = popen  # type: ignore[method-assign]

        def note(*_args: Any) -> None:
            if counted._on:
                counted.round_trips += 1

        event.listen(Engine, "before_cursor_execute", note)
        self._on = True
        return self

    def counts(self) -> dict[str, Any]:
        return {"processes": dict(sorted(self.processes.items())), "ledger_round_trips":
                self.round_trips}  # fmt: skip

    def stop(self) -> dict[str, Any]:
        self._on = False
        return self.counts()


# -- profiling --------------------------------------------------------------------------


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Profiler:
    """py-spy on a running process: a flame graph (svg) and collapsed stacks (txt), side by
    side, for `seconds`. `mode` "gil" samples only the thread holding the GIL (where the
    process's CPU goes: a thread waiting for the GIL in a C extension looks busy otherwise);
    "wall" samples every thread, idle ones included (where a request's time goes); "cpu"
    is py-spy's default (threads it thinks are running)."""

    def __init__(self, pid: int, out: Path, stem: str, seconds: float, *, mode: str = "cpu"):
        self.files: list[Path] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        tool = py_spy()
        if tool is None:
            print("  (py-spy not found: no profile; pip install py-spy)")
            return
        out.mkdir(parents=True, exist_ok=True)
        for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
            target = out / f"{stem}.{suffix}"
            args = [
                tool, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                "--rate", "250", "--nonblocking", "--subprocesses",
                "--format", fmt, "--output", str(target),
            ]  # fmt: skip
            if mode == "gil":
                args.append("--gil")
            elif mode == "wall":
                args.append("--idle")
            self.procs.append(
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            )
            self.files.append(target)

    def stop(self) -> list[Path]:
        """End the recording now (py-spy writes its output on SIGINT)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        return self.wait()

    def wait(self) -> list[Path]:
        for proc in self.procs:
            try:
                _out, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                _out, err = proc.communicate(timeout=30)
            if proc.returncode not in (0, None) and err:
                print(f"  py-spy: {err.decode(errors='replace').strip().splitlines()[-1]}")
        return [f for f in self.files if f.exists()]


def collapsed_top(
    path: Path, *, within: str | None = None, limit: int = 15
) -> tuple[int, list[tuple[str, float, float]]]:
    """Top functions of a collapsed-stack profile: (samples, [(function, inclusive %, self %)]).
    `within` keeps only stacks that pass through a frame containing that text, and shares
    are of those stacks."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_short_frame(f) for f in stack.split(";")]
        if within is not None:
            index = next((i for i, f in enumerate(frames) if within in f), None)
            if index is None:
                continue
            frames = frames[index:]
        count = int(count_text)
        total += count
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:limit]
    return total, [
        (name, 100 * n / total, 100 * own.get(name, 0) / total) for name, n in ranked if total
    ]


def _short_frame(frame: str) -> str:
    """`send_task (celery/app/base.py:812)` -> `send_task (celery/app/base.py)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3", str(ROOT) + "/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{name} ({file})" if file else name


def print_top(title: str, path: Path, *, within: str | None = None, limit: int = 15) -> None:
    total, rows = collapsed_top(path, within=within, limit=limit)
    scope = f" (stacks through {within!r})" if within else ""
    print(f"\n  {title}: {total} samples{scope}; inclusive% / self%")
    for name, incl, self_pct in rows:
        print(f"    {incl:5.1f}% {self_pct:5.1f}%  {name}")


class Receiver:
    """The downstream URL of a bench: notes when each recording's first notification
    arrives, and answers 204, except 503 to every `fail_every`th POST (0: never)."""

    def __init__(self, fail_every: int = 0) -> None:
        self.posts = 0
        self.arrived: dict[str, datetime] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = datetime.now(UTC)
                try:
                    recording = json.loads(body).get("recording") or {}
                except (ValueError, AttributeError):
                    recording = {}
                with outer.lock:
                    outer.posts += 1
                    fail = fail_every and outer.posts % fail_every == 0
                    if not fail:  # a refused POST is not a delivery
                        outer.arrived.setdefault(str(recording.get("id")), at)
                self.send_response(503 if fail else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
