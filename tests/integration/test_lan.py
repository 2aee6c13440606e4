"""LAN discovery (issue 19): daemons inside a private network namespace whose loopback
carries multicast, so nothing leaves the machine; `--mdns` adverts and `join --mdns`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Colony, Daemon, wait_until

pytestmark = pytest.mark.integration


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[tuple[Colony, list[str]]]:
    """A colony whose daemons run in one network namespace (`ip netns exec`): loopback
    up, multicast on, 224.0.0.0/4 routed to it."""
    assert os.geteuid() == 0, "LAN tests need root for a private network namespace (CI has it)"
    ns = f"cnlan{os.getpid() % 100_000}"
    _ip("netns", "add", ns)
    colony = Colony(tmp_path)
    try:
        for args in (("link", "set", "lo", "up"), ("link", "set", "lo", "multicast", "on"),
                     ("route", "add", "224.0.0.0/4", "dev", "lo")):  # fmt: skip
            _ip("netns", "exec", ns, "ip", *args)
        yield colony, ["ip", "netns", "exec", ns]
    finally:
        colony.stop_all()
        _ip("netns", "del", ns)


def daemon(colony: Colony, name: str, prefix: list[str]) -> Daemon:
    d = colony.daemon(name)
    d.prefix = prefix
    d.extra = ["--mdns"]
    return d


def test_a_node_joins_through_the_lan_without_an_address(lan: tuple[Colony, list[str]]) -> None:
    colony, prefix = lan
    a = daemon(colony, "a", prefix)
    a.init()
    a.start()
    b = daemon(colony, "b", prefix)
    b.join("", a.invite())  # `colonynode join --invite T --mdns`: no multiaddr
    assert b.member_names() == {"a", "b"}
    assert "found" in b.log() and "on the LAN" in b.log()
    wait_until("a hears b's advert", lambda: a.status()["lan"]["adverts"] >= 1)


def test_a_member_whose_addresses_are_all_stale_finds_the_others_on_the_lan(
    lan: tuple[Colony, list[str]],
) -> None:
    """a and b both come back on new ports: each knows the other only by an address it
    no longer listens on, so without the LAN neither could reach the other (the DHT
    needs a connection first); their adverts give them the new ones."""
    colony, prefix = lan
    a = daemon(colony, "a", prefix)
    a.init()
    a.start()
    b = daemon(colony, "b", prefix)
    b.join("", a.invite())
    for d in (b, a):
        port = int(d.addr().split("/tcp/")[1].split("/")[0])
        d.stop()
        d.listen = f"/ip4/127.0.0.1/tcp/{port + 1 if port < 65535 else port - 1}"
    a.start()  # both on new ports: every address either knows of the other is stale
    b.start()
    wait_until("b reaches a through the LAN",
               lambda: b.status()["connected_peers"] == 1, timeout_s=30)  # fmt: skip
    assert a.status()["lan"]["adverts"] + b.status()["lan"]["adverts"] >= 1
