"""Bounded state over time (issue 19) between real daemons: voters drop the registers
of closed processes after their retention, each node's view keeps only their outcome,
and the colony goes on taking and running processes."""

from __future__ import annotations

import json

import pytest

from colonynode.sdk import Client
from tests.integration.harness import Daemon, Executors, wait_until

pytestmark = pytest.mark.integration

FUNCTIONS = """
from colonynode.sdk import function

@function
def add(a, b):
    return a + b

@function
def ticker(*previous):  # a cron's roots get the previous tick's output
    return "ticked"

@function
def join(*args):  # a generator's batch: its args
    return "".join(args)
"""

SHORT = {"retention_s": 2.0, "view_retention_s": 2.0}


def short_retention(d: Daemon) -> None:
    d.stop()
    settings = json.loads((d.dir / "node.json").read_text())
    (d.dir / "node.json").write_text(json.dumps({**settings, **SHORT}))
    d.start()


def test_closed_processes_are_compacted_everywhere_and_the_colony_goes_on(
    setup: tuple[list[Daemon], Executors],
) -> None:
    nodes, ex = setup
    for d in nodes:
        short_retention(d)
    for d in nodes:
        wait_until(f"{d.name}: mesh", lambda d=d: d.status()["connected_peers"] == 2)
    a, b, _ = nodes
    ex.start(b, concurrency=2)
    with Client(a.dir) as client:
        first = list(client.map("add", range(20), range(20), executortype="py"))
        assert first == [[2 * i] for i in range(20)]
        pids = [p["processid"] for p in client.list("SUCCESS")]
        assert len(pids) == 20

        def retention(d: Daemon) -> dict[str, int]:
            return d.status()["retention"]  # type: ignore[no-any-return]

        for d in nodes:  # every voter dropped every closed register
            wait_until(f"{d.name}: registers dropped",
                       lambda d=d: retention(d)["registers"] == 0
                       and retention(d)["registers_dropped"] >= 20, timeout_s=60)  # fmt: skip
            wait_until(f"{d.name}: view compacted",
                       lambda d=d: retention(d)["view_compacted"] >= 20, timeout_s=60)  # fmt: skip
        old = client.get(pids[0])
        assert old["compacted"] is True and old["state"] == "SUCCESS"
        assert old["output"] in ([2 * i] for i in range(20)) and old["spec"]["args"] == []

        second = list(client.map("add", [100, 200], [1, 2], executortype="py"))
        assert second == [[101], [202]]  # no submission refused after compaction
        assert all(retention(d)["compacted_submits_refused"] == 0 for d in nodes)


def test_a_crons_ticks_are_compacted_and_each_tick_still_runs_once(
    setup: tuple[list[Daemon], Executors],
) -> None:
    """A cron firing every second: the voters drop its ticks' registers (one series
    horizon each, not one register a tick), and every tick ran exactly once."""
    nodes, ex = setup
    for d in nodes:
        short_retention(d)
    for d in nodes:
        wait_until(f"{d.name}: mesh", lambda d=d: d.status()["connected_peers"] == 2)
    a = nodes[0]
    ex.start(nodes[1], concurrency=2)
    spec = {"nodename": "tick", "funcname": "ticker", "args": [],
            "conditions": {"executortype": "py"}}  # fmt: skip
    with Client(a.dir) as client:
        cronid = client.add_cron("ticker", [spec], interval_s=1)["cronid"]

        def retention(d: Daemon) -> dict[str, int]:
            return d.status()["retention"]  # type: ignore[no-any-return]

        for d in nodes:
            dropped = lambda d=d: retention(d)["registers_dropped"] >= 10  # noqa: E731
            wait_until(f"{d.name}: ten ticks dropped", dropped, timeout_s=90)
            held = retention(d)
            assert held["series_horizons"] == 1
            # the cron's definition and the ticks within the last retention or so
            assert held["registers"] < held["registers_dropped"]
        runs = [p for p in client.list("SUCCESS") if p.get("processgraphid")]
        assert len(runs) >= 10 and not client.list("FAILED")
        assert {p["spec"]["funcname"] for p in runs} == {"ticker"}
        graphs = [p["processgraphid"] for p in runs]
        assert len(graphs) == len(set(graphs)), "a tick's graph ran twice"
        assert client.get_cron(cronid)["lastrun"]


def test_a_generators_registers_are_compacted_and_each_arg_is_used_once(
    setup: tuple[list[Daemon], Executors],
) -> None:
    """A generator's packed args, its batches' decisions and their workflows are
    dropped after the retention once each batch's workflow is held and has run (one
    series horizon, not one register an arg), and every arg went into exactly one
    batch."""
    nodes, ex = setup
    for d in nodes:
        short_retention(d)
    for d in nodes:
        wait_until(f"{d.name}: mesh", lambda d=d: d.status()["connected_peers"] == 2)
    ex.start(nodes[1], concurrency=2)
    spec = {"nodename": "join", "funcname": "join", "conditions": {"executortype": "py"}}
    with Client(nodes[0].dir) as client:
        gid = client.add_generator("joiner", [spec], trigger=2)["generatorid"]
        for i in range(20):
            with Client(nodes[i % 3].dir) as packer:
                packer.pack(gid, f"w{i:02d};")

        def retention(d: Daemon) -> dict[str, int]:
            return d.status()["retention"]  # type: ignore[no-any-return]

        # 20 args, 10 decisions and 10 one-step workflows; the definition is kept
        for d in nodes:
            wait_until(f"{d.name}: the generator's registers dropped",
                       lambda d=d: retention(d)["registers"] == 1
                       and retention(d)["registers_dropped"] >= 40, timeout_s=90)  # fmt: skip
            assert retention(d)["series_horizons"] == 1
        runs = [p for p in client.list("SUCCESS") if p.get("generatorid") == gid]
        used = sorted(p["output"][0] for p in runs)
        assert len(runs) == 10 and not client.list("FAILED")
        assert "".join(used) == "".join(f"w{i:02d};" for i in range(20)), used
        assert client.get_generator(gid)["used"] == 20
