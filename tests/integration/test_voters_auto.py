"""Voters that manage themselves (issue 19), with real daemons: `voters auto` on a
4-node colony grows it to 3 voters; a voter SIGKILLed is replaced once the grace period
has passed, and processes commit through the new set."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from colonynode.core.errors import ColonyError
from colonynode.sdk import Client
from tests.integration.harness import Colony, Daemon, Executors, cli, wait_until

pytestmark = pytest.mark.integration

FUNCTIONS = """
from colonynode.sdk import function

@function
def square(x):
    return x * x
"""


def voters(d: Daemon) -> set[str]:
    return {m["name"] for m in d.members() if m["voter"]}


def runs(d: Daemon, x: int) -> bool:
    """Does a call through `d` commit now? (False while a handover is under way.)"""
    try:
        with Client(d.dir) as client:
            proc = client.run("square", x, executortype="py", timeout_s=10)
            return bool(proc["state"] == "SUCCESS" and proc["output"] == [x * x])
    except ColonyError:
        return False


def test_a_killed_voter_is_replaced_after_the_grace_and_calls_still_commit(
    colony: Colony, tmp_path: Path
) -> None:
    a = colony.daemon("a")
    a.init("lab", voters="auto")  # the default of `colonynode init`
    a.start()
    nodes = [a] + [colony.joined(n, via=a) for n in "bcd"]
    for d in nodes:
        wait_until(f"{d.name}: mesh", lambda d=d: d.status()["connected_peers"] == 3)
    wait_until("three voters", lambda: voters(a) == {"a", "b", "c"})  # grown by itself
    out = cli("voters", "auto", "--grace-s", "3", "--data-dir", str(a.dir)).stdout
    assert "voters: auto, replaced after 3 s away" in out
    ex = Executors(tmp_path, FUNCTIONS)
    try:
        for d in nodes[2:]:
            ex.start(d)
        wait_until("a call commits", lambda: runs(a, 3), timeout_s=60)
        killed = time.monotonic()
        nodes[1].stop(signal.SIGKILL)  # b, a voter
        wait_until("b replaced by d", lambda: voters(a) == {"a", "c", "d"}, timeout_s=60)
        assert time.monotonic() - killed >= 3.0  # not before the grace period
        wait_until("a call commits through a, c and d", lambda: runs(a, 7), timeout_s=60)
        assert all(voters(d) == {"a", "c", "d"} for d in (nodes[2], nodes[3]))
        assert a.status()["voters_auto"]["voter_changes"] == 2  # 1 -> 3, then b -> d
    finally:
        ex.stop_all()
