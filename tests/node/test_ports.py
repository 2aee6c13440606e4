"""Sticky listen ports (node/daemon/ports.py): a `tcp/0` entry asks for its last port."""

from __future__ import annotations

import socket

from colonynode.node.daemon.ports import remember, sticky

ENTRY = "/ip4/127.0.0.1/tcp/0"


def test_the_port_a_tcp_zero_entry_got_is_remembered() -> None:
    addrs = ["/ip4/127.0.0.1/tcp/40123/p2p/12D3KooWabc", "/ip4/10.0.0.1/tcp/40123/p2p/x"]
    assert remember([ENTRY], addrs) == {ENTRY: 40123}
    assert remember(["/ip4/127.0.0.1/tcp/4001"], addrs) == {}  # a fixed port: nothing to keep
    assert remember([ENTRY, "/ip6/::1/tcp/0"], addrs) == {}  # whose port is whose: unclear


def test_a_free_remembered_port_is_asked_for_again_and_a_taken_one_is_not() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert sticky([ENTRY], {ENTRY: port}) == [f"/ip4/127.0.0.1/tcp/{port}"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        assert sticky([ENTRY], {ENTRY: busy}) == [ENTRY]
    assert sticky([ENTRY, "/ip4/127.0.0.1/tcp/4001"], {}) == [ENTRY, "/ip4/127.0.0.1/tcp/4001"]
