"""recpipe as separate hosts on one machine, for integration tests.

Each host is a network namespace (`ip netns`) joined to a bridge in the root namespace by a
veth pair, and its processes run in a mount namespace of their own in which the hosts'
root directory shows only that host's directory: no host can read another's disk. The
test's servers (broker, ledger, S3) listen on the bridge's address, the only way to reach
them from a host. Needs root (CI runs the tests as root) and iproute2 (`make services` installs it):
`Network` skips without them, and fails under CI.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.required import missing

# Runs inside a host's fresh mount namespace: keep the host's own directory ($1) aside at
# $2, cover the hosts' root ($3) with an empty tmpfs, put the host's directory back, run.
_OWN_DISK_ONLY = (
    'set -e; mount --bind "$1" "$2"; mount -t tmpfs -o size=64k,mode=755 hosts "$3"; '
    'mkdir "$1"; mount --move "$2" "$1"; shift 3; exec "$@"'
)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    address: str
    disk: Path  # the only directory of the hosts' root this host sees
    root: Path
    stage: Path

    def command(self, args: list[str]) -> list[str]:
        """`args` run on this host: in its network namespace, seeing only its own disk."""
        return [
            "ip", "netns", "exec", self.netns,
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", _OWN_DISK_ONLY, "sh", str(self.disk), str(self.stage), str(self.root),
            *args,
        ]  # fmt: skip

    def visible_hosts(self) -> list[str]:
        """What this host sees of the hosts' root."""
        listing = self.command(["ls", "-A", str(self.root)])
        return subprocess.run(listing, capture_output=True, text=True, check=True).stdout.split()


class Network:
    """A bridge with an address of a /24 no route of the machine uses, and hosts added to it
    one by one. Names carry a random tag, so runs side by side do not meet; `close` removes
    everything made so far (call it in a `finally`), whatever failed."""

    def __init__(self, root: Path):
        if os.geteuid() != 0:
            missing("root, for network namespaces (separate hosts)")
        _remove_leftovers()
        self.tag = secrets.token_hex(3)
        self.root = root / "hosts"
        self.stage = root / "stage"
        self.root.mkdir(parents=True)
        self.stage.mkdir()
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._links: list[str] = []
        self.bridge = f"rpb{self.tag}"
        self.subnet = _unused_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        probe = f"recpipe-{self.tag}-probe"
        try:
            made = _ip("netns", "add", probe, check=False)
        except FileNotFoundError:
            missing("`ip` (iproute2), for separate hosts")
        if made.returncode != 0:
            missing(f"`ip netns add` permission ({made.stderr.strip()})")
        _ip("netns", "del", probe, check=False)
        self._links.append(self.bridge)
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def add(self, name: str) -> Host:
        index = len(self.hosts)
        netns = f"recpipe-{os.getpid()}-{self.tag}-{name}"
        outside, inside = f"rp{self.tag}h{index}", f"rp{self.tag}n{index}"
        address = str(self.subnet.network_address + 10 + index)
        self._namespaces.append(netns)
        _ip("netns", "add", netns)
        self._links.append(outside)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", netns)
        _ip("link", "set", outside, "master", self.bridge, "up")
        _ip("-n", netns, "link", "set", inside, "name", "eth0")
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        disk = self.root / name
        disk.mkdir()
        host = Host(name, netns, address, disk, self.root, self.stage)
        self.hosts[name] = host
        return host

    def pids(self, host: Host) -> list[int]:
        found = _ip("netns", "pids", host.netns, check=False).stdout
        return [int(pid) for pid in found.split()]

    def kill(self, host: Host) -> list[int]:
        """The host dies: SIGKILL to every process in its namespace, until none is left."""
        killed: list[int] = []
        for _ in range(50):
            pids = self.pids(host)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed.extend(pids)
        return killed

    def close(self) -> None:
        for netns in reversed(self._namespaces):
            _remove_namespace(netns)
        for link in reversed(self._links):  # a veth goes with its namespace; the rest here
            _remove_link(link)


def _remove_namespace(netns: str) -> None:
    for pid in _ip("netns", "pids", netns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", netns, check=False)


def _remove_link(link: str) -> None:
    if _ip("link", "show", link, check=False).returncode == 0:
        _ip("link", "del", link, check=False)


def _remove_leftovers() -> None:
    """What a test run that was itself killed left behind: the namespaces named after a
    process that is gone, their processes, and their bridges."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        found = re.match(r"recpipe-(\d+)-([0-9a-f]{6})-\S+", line)
        if found is None or Path(f"/proc/{found.group(1)}").exists():
            continue
        _remove_namespace(found.group(0))
        _remove_link(f"rpb{found.group(2)}")


def _unused_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that overlaps none of the machine's routes or addresses."""
    used = []
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("broadcast", "local", "unicast"):
            word = line.split()[1]
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(word, strict=False))
    for _ in range(100):
        candidate = ipaddress.ip_network(
            f"10.{secrets.randbelow(200) + 50}.{secrets.randbelow(254) + 1}.0/24"
        )
        if not any(candidate.overlaps(net) for net in used if net.prefixlen > 0):
            return candidate
    raise RuntimeError("no unused 10.x.y.0/24 for the test network")
