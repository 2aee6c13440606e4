"""Gossip between real daemons: records reach every member, and a node that was down
catches up through anti-entropy after it restarts (issue 6)."""

from __future__ import annotations

import pytest

from tests.integration.harness import Colony, Daemon, cli, cli_json, wait_until

pytestmark = pytest.mark.integration


def notes(d: Daemon) -> set[str]:
    rows = cli_json("gossip", "ls", "--kind", "note", "--limit", "1000", "--data-dir", str(d.dir))
    return {r["body"]["text"] for r in rows}


def publish(d: Daemon, text: str) -> None:
    cli("gossip", "publish", "note", f'{{"text": "{text}"}}', "--data-dir", str(d.dir))


def test_records_reach_all_five_and_a_restarted_node_catches_up(colony: Colony) -> None:
    a = colony.founder("a")
    others = [colony.joined(name, via=a) for name in ("b", "c", "d", "e")]
    nodes = [a, *others]
    for d in nodes:
        wait_until(f"{d.name} to see 5 members", lambda d=d: d.status()["members"] == 5)
        wait_until(f"{d.name} to have gossip peers",
                   lambda d=d: d.status()["gossip"]["peers"] >= 2)  # fmt: skip

    publish(others[1], "hello from c")
    for d in nodes:
        wait_until(f"{d.name} to receive c's note", lambda d=d: notes(d) == {"hello from c"})

    # Every node holds the same records first (e hears of the joins before its own only
    # by anti-entropy): what e accepts after its restart is then exactly what it missed.
    def held(d: Daemon) -> tuple[int, int]:
        st = d.status()["gossip"]
        return st["bodies"], st["gaps"]

    wait_until("every node to hold the same records",
               lambda: len({held(d) for d in nodes}) == 1 and held(a)[1] == 0)  # fmt: skip
    # e goes down; records published meanwhile reach it after it restarts.
    e = others[3]
    assert e.stop() == 0
    for i in range(20):
        publish(nodes[i % 4], f"while e was down {i}")
    expected = {"hello from c"} | {f"while e was down {i}" for i in range(20)}
    for d in nodes[:4]:
        wait_until(f"{d.name} to hold all 21", lambda d=d: notes(d) == expected)
    e.start()
    wait_until("e to catch up", lambda: notes(e) == expected, timeout_s=30)
    st = e.status()["gossip"]
    assert st["accepted"] == 20 and st["invalid_signature"] == 0  # exactly what it missed
    assert st["non_member_author"] == 0 and st["non_member_peer"] == 0
