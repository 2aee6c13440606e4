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
