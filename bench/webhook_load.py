"""Benchmark the webhook (figure 3): verified GME callbacks per second and latency.

`recpipe serve` (recpipe's HTTP server, ledger on a fresh PostgreSQL database, broker on a
Redis database of its own) against two baselines on the same server and settings
(`bench/bare_app.py`), driven by the same load generator, in the same run:

  bare:        a bare Flask app that answers 200 {"code":0};
  bare+store:  the same app storing each body with one INSERT on the same PostgreSQL
               first, the durable write no webhook can skip.

Each is measured in turn:

  (a) maximum throughput: --clients keep-alive connections posting back to back, at most
      --requests requests or --max-seconds;
  (b) a fixed rate: --rate requests/s for --rate-seconds, started on schedule whatever the
      answers do (open loop), latency counted from the scheduled start.

Every callback is distinct (own TaskID/SeqNo/EventType) and validly signed, so recpipe
stores each one; the mix is a vendor's: per segment, started (1), completed (2) and
uploaded (3), the last of which also hands a settle task to the broker.

The three take --rounds turns each; the table shows the round with the median
recpipe/bare throughput ratio, and every round's ratios are printed.

    python bench/webhook_load.py [--quick] [--rounds 3] [--clients 16] [--requests 6000]
                            [--rate 200] [--profile] [--wrk] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    BENCH_SECRET,
    BIZ_ID,
    ROOT,
    LoadResult,
    Processes,
    Profiler,
    Signed,
    children_of,
    clean_env,
    closed_loop,
    cpu_seconds,
    free_port,
    fresh_database,
    http_ok,
    interleaved_callbacks,
    open_loop,
    postgres_backends,
    print_top,
    redis_database,
    self_cpu_seconds,
    vm_hwm_mb,
    wait_until,
)

PATH = "/callbacks/gme"
RECORDINGS_PER_SET = 100


def callbacks(count: int, first_task: int) -> list[Signed]:
    segments = max(1, math.ceil(count / (3 * RECORDINGS_PER_SET)))
    return interleaved_callbacks(RECORDINGS_PER_SET, segments, first_task)[:count]


class Target:
    """One server under test: how to start it and where its worker processes are."""

    def __init__(
        self, name: str, args: list[str], procs: Processes, port: int, db_url: str | None = None
    ):
        self.name, self.args, self.procs, self.port = name, args, procs, port
        self.db_url = db_url
        self.pid = 0

    def start(self) -> None:
        self.pid = self.procs.spawn(self.name, self.args, cwd=ROOT)
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{self.port}/healthz"), 60, f"{self.name} to serve"
        )
        wait_until(lambda: children_of(self.pid), 10, f"{self.name}'s worker process")

    def workers(self) -> list[int]:
        return children_of(self.pid)

    def cpu(self) -> tuple[float, float, float]:
        """CPU seconds so far of: the server's worker processes, the ledger's PostgreSQL
        backends, and this load generator (on a small machine they share the cores)."""
        backends = postgres_backends(self.db_url) if self.db_url else []
        return (
            sum(cpu_seconds(pid) for pid in self.workers()),
            sum(cpu_seconds(pid) for pid in backends),
            self_cpu_seconds(),
        )

    def stop(self) -> None:
        self.procs.stop(self.name)


def measure(target: Target, sets: dict[str, list[Signed]], args: argparse.Namespace) -> dict:
    print(f"\n== {target.name}: http://127.0.0.1:{target.port}{PATH} ==")
    target.start()
    try:
        closed_loop(target.port, PATH, sets["warmup"], args.clients, 30)
        cpu0 = target.cpu()
        peak = closed_loop(target.port, PATH, sets["peak"], args.clients, args.max_seconds)
        cpu_ms = [
            round(1000 * (after - before) / max(1, peak.sent), 2)
            for before, after in zip(cpu0, target.cpu(), strict=True)
        ]
        report(f"max throughput, {args.clients} clients", peak)
        paced = open_loop(target.port, PATH, sets["paced"], args.rate, args.rate_seconds)
        report(f"{args.rate:g} requests/s for {args.rate_seconds:g} s", paced)
        result: dict[str, Any] = {
            "peak": {
                **peak.summary(),
                "server_cpu_ms_per_request": cpu_ms[0],
                "postgres_cpu_ms_per_request": cpu_ms[1],
                "client_cpu_ms_per_request": cpu_ms[2],
            },
            "paced": paced.summary(),
            "worker_vmhwm_mb": [round(vm_hwm_mb(p) or 0, 1) for p in target.workers()],
        }
        if args.wrk and shutil.which("wrk"):
            result["wrk"] = run_wrk(target.port, sets["wrk"], args)
            print(f"  wrk: {result['wrk']}")
        if args.profile:
            result["profiles"] = profile(target, sets["profile"], args)
        return result
    finally:
        target.stop()


def report(title: str, load: LoadResult) -> None:
    s = load.summary()
    print(
        f"  {title}: {s['ok']}/{s['requests']} ok in {s['wall_s']:.1f} s = {s['rps']:.0f}/s, "
        f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms"
        + (f", statuses {s['statuses']}" if set(s["statuses"]) != {"200"} else "")
        + (f", {load.errors} connection errors" if load.errors else "")
    )


def profile(target: Target, items: list[Signed], args: argparse.Namespace) -> list[str]:
    """py-spy on the server's worker process under the same closed-loop load: the GIL holder (CPU),
    then every thread (wall clock)."""
    files: list[str] = []
    half = len(items) // 2
    for kind, chunk in (("gil", items[:half]), ("wall", items[half:])):
        worker = target.workers()[0]
        seconds = args.profile_seconds
        profiler = Profiler(worker, args.out, f"webhook-{target.name}-{kind}", seconds, mode=kind)
        time.sleep(0.5)  # let py-spy attach before the load starts
        closed_loop(target.port, PATH, chunk, args.clients, seconds - 1)
        written = profiler.wait()
        files += [str(f) for f in written]
        raw = next((f for f in written if f.suffix == ".txt"), None)
        if raw is not None:
            print_top(f"{target.name} {kind} profile ({raw})", raw, within="call_app", limit=25)
    return files


WRK_SCRIPT = """
local requests = {}
%s
local i = 0
request = function()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end
done = function(summary, latency, requests_done)
  io.write(string.format("RESULT %%d %%d %%.3f %%.3f %%.3f\\n", summary.requests,
    summary.duration, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
"""


def run_wrk(port: int, items: list[Signed], args: argparse.Namespace) -> dict[str, Any]:
    """wrk (C, closed loop) as a second load generator, cycling through distinct callbacks."""
    lines = []
    for item in items:
        headers = f'{{["Content-Type"]="application/json", ["Signature"]="{item.signature}"}}'
        body = item.body.decode().replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'requests[#requests + 1] = wrk.format("POST", "{PATH}", {headers}, "{body}")')
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % "\n".join(lines))
    seconds = max(2, int(args.wrk_seconds))
    try:
        output = subprocess.run(
            [
                "wrk", "-t", "2", "-c", str(args.clients), "-d", f"{seconds}s",
                "--timeout", "10s", "-s", script.name, f"http://127.0.0.1:{port}{PATH}",
            ],
            capture_output=True, text=True, timeout=seconds + 60, check=False,
        ).stdout  # fmt: skip
    finally:
        Path(script.name).unlink(missing_ok=True)
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", output)
    if not match:
        return {"error": output.strip()[-300:]}
    done, micros = int(match[1]), int(match[2])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests": done,
        "rps": round(done / (micros / 1e6), 1),
        "p50_ms": float(match[3]),
        "p99_ms": float(match[4]),
        "max_ms": float(match[5]),
        "non_2xx": int(non2xx[1]) if non2xx else 0,
        "distinct_bodies": len(items),
    }


def stored_callbacks(database_url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM callbacks")).scalar_one())
    finally:
        engine.dispose()


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def print_table(
    recpipe: dict, bare: dict, stored: dict | None, args: argparse.Namespace
) -> dict[str, Any]:
    rows = [
        ("max throughput, req/s", "peak", "rps", "higher is better; goal ratio >= 0.5"),
        ("  p50 ms", "peak", "p50_ms", ""),
        ("  p99 ms", "peak", "p99_ms", ""),
        ("  server CPU ms/request", "peak", "server_cpu_ms_per_request", "worker process(es)"),
        ("  PostgreSQL CPU ms/request", "peak", "postgres_cpu_ms_per_request", "its backends"),
        ("  client CPU ms/request", "peak", "client_cpu_ms_per_request", "load generator"),
        (f"at {args.rate:g} req/s: p50 ms", "paced", "p50_ms", ""),
        (f"at {args.rate:g} req/s: p99 ms", "paced", "p99_ms", "goal: recpipe < 50 ms"),
    ]
    if "wrk" in recpipe and "rps" in recpipe["wrk"] and "rps" in bare.get("wrk", {}):
        rows += [
            ("wrk max throughput, req/s", "wrk", "rps", "C load generator"),
            ("  wrk p99 ms", "wrk", "p99_ms", ""),
        ]
    header = (
        f"{'figure 3: webhook':<30} {'recpipe':>9} {'bare':>9} {'ratio':>7}"
        f" {'bare+store':>10} {'ratio':>7}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    ratios: dict[str, Any] = {}
    for label, phase, key, note in rows:
        a, b = recpipe[phase].get(key), bare[phase].get(key)
        c = stored[phase].get(key) if stored and phase in stored else None
        r, rc = ratio(a, b), ratio(a, c)
        ratios[f"{phase}.{key}"] = r
        ratios[f"store.{phase}.{key}"] = rc
        print(f"{label:<30} {a!s:>9} {b!s:>9} {r!s:>7} {c!s:>10} {rc!s:>7}  {note}")
    by_event = recpipe["peak"]["p50_ms_by_event"]
    print(f"recpipe p50 ms by EventType at max throughput: {by_event}")
    return ratios


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter phases")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections (a)")
    parser.add_argument("--requests", type=int, default=6000, help="at most this many in (a)")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="at most this long (a)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s in (b)")
    parser.add_argument("--rate-seconds", type=float, default=15.0, help="duration of (b)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (both)")
    parser.add_argument("--threads", type=int, default=8, help="app threads per process (both)")
    parser.add_argument("--rounds", type=int, default=3, help="bare/recpipe turns (median shown)")
    parser.add_argument("--redis-db", type=int, default=15, help="Redis database (flushed)")
    parser.add_argument("--profile", action="store_true", help="py-spy the workers afterwards")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--wrk", action="store_true", help="also measure (a) with wrk")
    parser.add_argument("--wrk-seconds", type=float, default=10.0)
    parser.add_argument("--out", dest="out_arg", default="bench/out")
    args = parser.parse_args()
    if args.quick:
        args.requests = min(args.requests, 2000)
        args.max_seconds = min(args.max_seconds, 10.0)
        args.rate_seconds = min(args.rate_seconds, 5.0)
        args.wrk_seconds = min(args.wrk_seconds, 4.0)
        args.profile_seconds = min(args.profile_seconds, 6.0)
        args.rounds = 1
    args.out = Path(args.out_arg)
    return args


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="webhook-", dir=args.out))
    server = ["--workers", str(args.workers), "--threads", str(args.threads)]
    # Distinct callbacks per phase and round: nothing is a duplicate of an earlier request.
    sizes = {
        "warmup": 300,
        "peak": args.requests,
        "paced": int(args.rate * args.rate_seconds),
        "profile": int(2 * args.profile_seconds * 1500) if args.profile else 0,
        "wrk": int(args.wrk_seconds * 3000) if args.wrk else 0,
    }
    rounds: list[dict[str, list[Signed]]] = []
    offset = 0
    for _ in range(args.rounds):
        sets = {}
        for name, size in sizes.items():
            sets[name] = callbacks(size, offset)
            offset += 10_000_000
        rounds.append(sets)
    print(f"pre-signed {sum(len(s) for r in rounds for s in r.values())} distinct GME callbacks")

    results: list[dict[str, Any]] = []
    try:
        with fresh_database("recpipe_bench") as db_url, redis_database(args.redis_db) as redis:
            env = clean_env(
                {
                    "RECPIPE_DATA_DIR": str(work / "data"),
                    "RECPIPE_DATABASE_URL": db_url,
                    "RECPIPE_BROKER_URL": redis,
                    "RECPIPE_GME_SECRET_KEYS": f"{BIZ_ID}={BENCH_SECRET.decode()}",
                    "RECPIPE_SETTLE_SECONDS": "120",
                    "RECPIPE_LOG_LEVEL": "INFO",
                }
            )
            procs = Processes(work, env)
            try:
                # Bare and recpipe take turns, round after round: a machine whose speed
                # drifts (other tenants, thermal) moves both sides of each ratio alike.
                for number, sets in enumerate(rounds, 1):
                    if args.rounds > 1:
                        print(f"\n#### round {number} of {args.rounds}")
                    port = free_port()
                    bare = Target(
                        "bare",
                        [sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port", str(port),
                         *server],
                        procs, port,
                    )  # fmt: skip
                    result = {"bare": measure(bare, sets, args)}
                    port = free_port()
                    with_store = Target(
                        "bare+store",
                        [sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port", str(port),
                         "--store", db_url.replace("+psycopg", ""), *server],
                        procs, port, db_url,
                    )  # fmt: skip
                    result["bare+store"] = measure(with_store, sets, args)
                    port = free_port()
                    recpipe = Target(
                        "recpipe",
                        [sys.executable, "-m", "recpipe", "serve", "--port", str(port), *server],
                        procs,
                        port,
                        db_url,
                    )
                    result["recpipe"] = measure(recpipe, sets, args)
                    results.append(result)
            finally:
                procs.stop_all()
            stored = stored_callbacks(db_url)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    by_ratio = sorted(
        results, key=lambda r: (r["recpipe"]["peak"]["rps"] or 0) / (r["bare"]["peak"]["rps"] or 1)
    )
    median = by_ratio[len(by_ratio) // 2]
    if len(results) > 1:
        for base in ("bare", "bare+store"):
            each = [ratio(r["recpipe"]["peak"]["rps"], r[base]["peak"]["rps"]) for r in results]
            print(f"\nthroughput ratio to {base} of each round: {each}")
        print("the table shows the median round (by the ratio to bare)")
    ratios = print_table(median["recpipe"], median["bare"], median.get("bare+store"), args)
    print(f"callbacks stored by recpipe: {stored}")
    command = shlex.join(["python", "bench/webhook_load.py", *sys.argv[1:]])
    report = {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "results": median,
        "rounds": results,
        "stored_callbacks": stored,
        "ratios_recpipe_over_bare": ratios,
    }
    result_file = args.out / "webhook.json"
    result_file.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {result_file}\nreproduce: {command}")


def _cpus() -> int | None:
    import os

    return os.cpu_count()


if __name__ == "__main__":
    main()
