"""Each daemon in a network namespace of its own, joined by veth pairs to one bridge, so
the nemesis can cut and degrade one node's links (needs root and `ip`/`tc`).

    bridge czb<tag>  ── veth cz<tag><n> ══ eth0 (10.77.0.<k>/24) in netns cz<tag>-<n>

The daemons listen on their namespace's address; the CLI, the SDK and the executors
reach a daemon through the Unix socket in its data dir, which namespaces do not
separate. A cut takes a node's link down (it hears nobody, nobody hears it: a partition
of that node from the rest); a degraded link is a token bucket (`tc tbf`) in both
directions: a slow link whose queue delays frames and drops what overflows it. This
kernel has no `netem`, so there is no fixed delay or random loss; where the namespaces
cannot be made at all, `Net.make` says why and the run falls back to kills and pauses.
"""

from __future__ import annotations

import os
import subprocess

SUBNET = "10.77.0"
SLOW = ("rate", "256kbit", "burst", "8kb", "latency", "150ms")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=10)  # fmt: skip


class Net:
    def __init__(self, names: list[str]) -> None:
        self.tag = f"{os.getpid() % 100_000}"
        self.bridge = f"czb{self.tag}"
        self.names = names
        self.ns = {n: f"cz{self.tag}-{n}" for n in names}
        self.host_if = {n: f"cz{self.tag}{k}" for k, n in enumerate(names)}
        self.addr = {n: f"{SUBNET}.{10 + k}" for k, n in enumerate(names)}
        self.cut_now: set[str] = set()
        self.slow_now: set[str] = set()

    @classmethod
    def make(cls, names: list[str]) -> tuple[Net | None, str]:
        """The namespaces, or None and why not."""
        if os.geteuid() != 0:
            return None, "not root: no network namespaces"
        net = cls(names)
        try:
            net._build()
        except (OSError, subprocess.SubprocessError) as exc:
            net.remove()
            err = getattr(exc, "stderr", "") or exc
            return None, f"network namespaces unavailable ({str(err).strip()})"
        return net, "network namespaces joined by veth pairs"

    def _build(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "up")
        for n in self.names:
            ns, host = self.ns[n], self.host_if[n]
            _ip("netns", "add", ns)
            _ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", host, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.addr[n]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def prefix(self, name: str) -> list[str]:
        """The command prefix that runs a program in `name`'s namespace."""
        return ["ip", "netns", "exec", self.ns[name]]

    def listen(self, name: str) -> str:
        return f"/ip4/{self.addr[name]}/tcp/0"

    def cut(self, name: str) -> None:
        _ip("link", "set", self.host_if[name], "down")
        self.cut_now.add(name)

    def mend(self, name: str) -> None:
        _ip("link", "set", self.host_if[name], "up")
        self.cut_now.discard(name)

    def slow(self, name: str) -> None:
        for prefix in ([], self.prefix(name)):
            dev = "eth0" if prefix else self.host_if[name]
            subprocess.run([*prefix, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", *SLOW],
                           capture_output=True, check=True, timeout=10)  # fmt: skip
        self.slow_now.add(name)

    def fast(self, name: str) -> None:
        for prefix in ([], self.prefix(name)):
            dev = "eth0" if prefix else self.host_if[name]
            subprocess.run([*prefix, "tc", "qdisc", "del", "dev", dev, "root"],
                           capture_output=True, check=False, timeout=10)  # fmt: skip
        self.slow_now.discard(name)

    def heal(self) -> None:
        for n in list(self.cut_now):
            self.mend(n)
        for n in list(self.slow_now):
            self.fast(n)

    def remove(self) -> None:
        for n in self.names:
            _ip("link", "del", self.host_if[n], check=False)
            _ip("netns", "del", self.ns[n], check=False)
        _ip("link", "del", self.bridge, check=False)
