"""Many hosts (issue 16): recpipe spread over hosts that share nothing but a network.

The webhook, a light worker, two media workers, beat and the recordings' source (GME's
COS, served over HTTP) each run on a host of their own: a network namespace on a bridge,
with a disk (data, scratch, temp directories) no other host can see. The broker, the
ledger and the S3 server are the test's own, listening on the bridge's address only. A
burst of recordings is archived while one media host dies mid-run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from sqlalchemy import select

from storage.ledger.tables import Run
from tests.support.faults import PostgresServer, RedisServer
from tests.support.hosts import Host, Network
from tests.support.media import ANALYSIS_RATE, decode, dominant_frequency, duration, make_tone
from tests.support.recordings import (
    BIZ,
    SECRET,
    TONES,
    Recording,
    callbacks_of,
    check_archive,
    migrate,
    recording,
    sign,
    wait_all,
)
from tests.support.services import S3_TEST_ENV, free_port
from tests.support.stack import Receiver, Stack, parse_body
from tests.support.waits import wait_for

HOSTS = ("web", "light", "media1", "media2", "beat", "cos")
SEGMENT_SECONDS = 4.0
MID_RUN = ("concat", "transcode")  # steps that follow the fetch on the same host
LIGHT_TASKS = {"recpipe.settle", "recpipe.sweep", "recpipe.deliver_notification"}


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network(tmp_path)
    try:
        for name in HOSTS:
            net.add(name)
        yield net
    finally:
        net.close()


@pytest.fixture
def servers(network: Network, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Broker, ledger and S3 of the test's own, on the bridge's address only."""
    address = network.gateway
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    broker = RedisServer(redis_dir, host=address)
    ledger = PostgresServer(host=address)
    s3_port = free_port()
    s3_log = (tmp_path / "moto.log").open("wb")
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", address, "-p", str(s3_port)],
        stdout=s3_log,
        stderr=subprocess.STDOUT,
    )
    try:
        broker.start()
        ledger.trust(str(network.subnet))
        ledger.start()
        s3 = f"http://{address}:{s3_port}"
        wait_for(lambda: requests.get(s3, timeout=1).ok, what="moto S3 server")
        yield {"broker": broker.url, "ledger": ledger.url, "s3": s3}
    finally:
        moto.terminate()
        moto.wait(10)
        s3_log.close()
        broker.stop()
        ledger.close()


def host_env(host: Host, servers: dict[str, str], bucket: str, source: str, notify: str):
    """Every directory setting on the host's own disk; everything else over the network."""
    for folder in ("data", "scratch", "tmp"):
        (host.disk / folder).mkdir(exist_ok=True)
    return {
        "RECPIPE_DATA_DIR": str(host.disk / "data"),
        "RECPIPE_SCRATCH_DIR": str(host.disk / "scratch"),
        "TMPDIR": str(host.disk / "tmp"),
        "RECPIPE_DATABASE_URL": servers["ledger"],
        "RECPIPE_BROKER_URL": servers["broker"],
        "RECPIPE_GME_SOURCE_URL": source,
        "RECPIPE_ARCHIVE_URL": f"s3://{bucket}/archive?endpoint_url={servers['s3']}",
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={SECRET}",
        "RECPIPE_NOTIFY_URLS": notify,
        "RECPIPE_AUDIO_FORMATS": "m4a,mp3",
        "RECPIPE_SETTLE_SECONDS": "2",
        "RECPIPE_SWEEP_SECONDS": "1",
        "RECPIPE_MAX_WAIT_SECONDS": "30",
        "RECPIPE_STUCK_AFTER_SECONDS": "10",
        "RECPIPE_REQUEUE_AFTER_SECONDS": "5",
        **S3_TEST_ENV,
    }


def reaches(host: Host, address: str | None, port: int | None) -> bool:
    """A TCP connection from `host` to address:port succeeds."""
    probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)"
    command = host.command([sys.executable, "-c", probe, str(address), str(port)])
    return subprocess.run(command, capture_output=True, timeout=30).returncode == 0


class ScratchWatch:
    """Polls each host's scratch directory: which run directories appeared on which host."""

    def __init__(self, hosts: list[Host]):
        self.seen: dict[str, set[str]] = {h.name: set() for h in hosts}
        self._hosts = hosts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for host in self._hosts:
                scratch = host.disk / "scratch"
                if scratch.is_dir():
                    self.seen[host.name].update(p.name[:36] for p in scratch.iterdir())
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def log_events(path: Path) -> list[dict]:
    events = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def tasks_run(path: Path) -> set[str]:
    """The names of the tasks a worker's log says it received."""
    return set(re.findall(r"Task (recpipe\.[a-z_]+)\[[0-9a-f-]+\] received", path.read_text()))


def runs_started(path: Path) -> set[str]:
    """The runs a worker's log says it started a step of."""
    return {e["run_id"] for e in log_events(path) if e.get("event") == "step.started"}


def check_sound(s3_client, bucket: str, rec: Recording, lengths: list[float], tmp_path: Path):
    """The archived m4a is as long as the segments together and holds each one's tone, in
    SeqNo order."""
    local = tmp_path / f"{rec.id}.m4a"
    s3_client.download_file(bucket, f"archive/gme/{BIZ}/{rec.id}/{rec.id}.m4a", str(local))
    samples, start = decode(local), 0.0
    assert abs(len(samples) / ANALYSIS_RATE - sum(lengths)) < 0.5, rec.id
    for seq, length in enumerate(lengths):
        found = dominant_frequency(samples, start + length / 2)
        assert abs(found - TONES[seq]) < 15, (rec.id, seq, found)
        start += length


def test_hosts_that_share_nothing_archive_a_burst_and_a_dead_media_host_work_moves_over(
    network: Network, servers: dict[str, str], tmp_path: Path
):
    """Hosts reach each other and the broker, ledger and S3 only over the network, and see
    only their own disk. A burst of GME recordings is archived complete and in SeqNo order,
    each once, though one media host is killed mid-run: the other takes its run over from
    the first step, with nothing of the dead host's files. Transcodes run only on the media
    hosts; intake dispatch, sweeps and notifications only on the light one."""
    hosts = network.hosts
    for host in hosts.values():
        assert host.visible_hosts() == [host.name], f"{host.name} sees another host's disk"
    broker = urlsplit(servers["broker"])
    assert reaches(hosts["media2"], broker.hostname, broker.port)
    # The machine's own services, on its loopback, are out of a host's reach.
    assert not reaches(hosts["media2"], "127.0.0.1", 5432)
    assert not reaches(hosts["media2"], "127.0.0.1", 6379)

    s3_client = boto3.client("s3", endpoint_url=servers["s3"], region_name="us-east-1")
    bucket = "recpipe-hosts"
    s3_client.create_bucket(Bucket=bucket)
    migrate(servers["ledger"])
    receiver = Receiver(host=network.gateway)
    # The recordings' source: the vendor uploads segments to its own host.
    cos = hosts["cos"]
    files = [
        make_tone(tmp_path / f"{seq}.mp3", hz, SEGMENT_SECONDS) for seq, hz in enumerate(TONES)
    ]
    recordings = [recording(700 + i, segments=3, room=str(300 + i % 3)) for i in range(10)]
    for rec in recordings:
        for key, path in zip(rec.keys, files, strict=True):
            target = cos.disk / "www" / "cos" / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    source = f"http://{cos.address}:8000/cos"

    logs = tmp_path / "logs"
    stacks = {
        name: Stack(
            host_env(hosts[name], servers, bucket, source, receiver.url),
            logs,
            address=hosts[name].address,
            wrap=hosts[name].command,
        )
        for name in HOSTS
    }
    watch = ScratchWatch(list(hosts.values()))
    web = stacks["web"]
    try:
        stacks["cos"]._spawn(
            "cos",
            [sys.executable, "-m", "http.server", "8000", "--bind", cos.address,
             "--directory", str(cos.disk / "www")],
        )  # fmt: skip
        wait_for(
            lambda: requests.get(f"http://{cos.address}:8000/", timeout=2).ok,
            what="the source host",
        )
        web.start_webhook()
        stacks["light"].start_worker("light", concurrency=2, beat=False, queues="light")
        for name in ("media1", "media2"):
            stacks[name].start_worker(name, concurrency=1, beat=False, queues="media")
        stacks["beat"].start_beat("beat")

        bodies = [body for rec in recordings for body in callbacks_of(rec)]
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda b: web.post_gme(b, sign(b)), bodies))
        assert answers == [200] * len(bodies)

        # media1 dies in the middle of a run, its sources fetched, after it archived one.
        def media1_mid_run():
            with web.ledger.session() as s:
                rows = s.execute(
                    select(Run.id, Run.state, Run.step).where(Run.worker.like("%media1@%"))
                ).all()
            done = [r for r in rows if r[1] == "archived"]
            busy = [(r[0], r[2]) for r in rows if r[1] == "running" and r[2] in MID_RUN]
            return busy[0] if done and busy else None

        killed_run, killed_step = wait_for(
            media1_mid_run, timeout=90, interval=0.02, what="a run on media1 past its fetch"
        )
        killed_pids = network.kill(hosts["media1"])
        stacks["media1"].processes.pop("media1").wait(10)
        assert killed_pids and network.pids(hosts["media1"]) == []
        assert web.ledger.run(killed_run).state == "running", "it finished before the kill"

        ids = [rec.id for rec in recordings]
        states = wait_all(web, ids, timeout=120)
        assert Counter(states.values()) == {"archived": len(ids)}, states
        watch.stop()

        # Each recording once: one run, one set of objects, each segment's tone in order.
        for rec in recordings:
            assert [(r.revision, r.state) for r in web.ledger.runs_for(rec.id)] == [(1, "archived")]
        check_archive(s3_client, bucket, recordings, formats=("m4a", "mp3"))
        lengths = [duration(path) for path in files]
        for rec in recordings:
            check_sound(s3_client, bucket, rec, lengths, tmp_path)

        # The dead host's run was taken over by the other one, from the first step.
        run = web.ledger.run(killed_run)
        assert (run.attempts, run.takeovers) == (2, 1), run.steps
        first = [s["step"] for s in run.steps if s["attempt"] == 1]
        assert first[:2] == ["fetch", "concat"] and first[-1] in MID_RUN, (killed_step, run.steps)
        assert [s["step"] for s in run.steps if s["attempt"] == 2 and s.get("ok")] == [
            "fetch", "concat", "transcode", "archive",
        ]  # fmt: skip
        with web.ledger.session() as s:
            workers = dict(s.execute(select(Run.id, Run.worker)).all())
        assert "media2@" in workers[killed_run]
        by_host = Counter(re.search(r"(media[12])@", w).group(1) for w in workers.values())
        assert by_host["media1"] >= 1 and by_host["media2"] >= 1, by_host
        assert sum(by_host.values()) == len(recordings)

        # Every segment came over the network from the source host, to media hosts only;
        # the killed run's segments were fetched again by the host that took it over.
        fetched: dict[str, set[str]] = defaultdict(set)
        for line in (logs / "cos.log").read_text().splitlines():
            if found := re.match(r"(\S+) - - \[.*\] \"GET /cos/(\S+) HTTP", line):
                fetched[found.group(2)].add(found.group(1))
        media = {hosts["media1"].address, hosts["media2"].address}
        assert set().union(*fetched.values()) <= media
        killed_rec = next(r for r in recordings if r.id == run.recording_id)
        for key in killed_rec.keys:
            assert fetched[key] == media, key

        # Each host's scratch held only the runs it worked on; the dead host's leftover
        # is the run it died in, and nobody else's steps needed it.
        started = {name: runs_started(logs / f"{name}.log") for name in ("media1", "media2")}
        assert killed_run in started["media1"] and killed_run in started["media2"]
        for name in ("web", "light", "beat", "cos"):
            assert watch.seen[name] == set(), name
        for name in ("media1", "media2"):
            assert watch.seen[name] and watch.seen[name] <= started[name], name
        leftover = [p.name[:36] for p in (hosts["media1"].disk / "scratch").iterdir()]
        assert leftover == [killed_run]
        assert list((hosts["media2"].disk / "scratch").iterdir()) == []

        # The queues keep transcodes apart from intake dispatch, sweeps and notifications.
        light_tasks = tasks_run(logs / "light.log")
        assert light_tasks >= LIGHT_TASKS and "recpipe.process_recording" not in light_tasks
        for name in ("media1", "media2"):
            assert tasks_run(logs / f"{name}.log") == {"recpipe.process_recording"}, name
        assert runs_started(logs / "light.log") == set()
        assert "Sending due task" in (logs / "beat.log").read_text()

        wait_for(lambda: len(receiver.requests) >= len(ids), timeout=60, what="notifications")
        time.sleep(2)
        notes = [parse_body(r) for r in receiver.requests]
        assert sorted(n["recording"]["id"] for n in notes) == sorted(ids)
        assert {n["type"] for n in notes} == {"recording.archived"}
        for name in ("web", "light", "media2", "beat"):
            assert all(p.poll() is None for p in stacks[name].processes.values()), name
    finally:
        watch.stop()
        for stack in stacks.values():
            stack.stop()
        receiver.close()
