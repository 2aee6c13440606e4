"""A node killed with SIGKILL and restarted keeps every acknowledged process (issue 9):
its view comes back from the gossip ledger, the voters' registers from LMDB, and the
processes then run to completion, each once."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.integration.harness import Colony, Executors, cli, cli_json, wait_until

pytestmark = pytest.mark.integration

FUNCTIONS = """
from colonynode.sdk import function

@function
def square(x):
    return x * x
"""
N = 20
RUN = ("--executortype", "py", "--wait")


def test_a_sigkilled_and_restarted_node_keeps_every_acknowledged_process(
    colony: Colony, tmp_path: Path
) -> None:
    a = colony.founder("a")  # a colony of one: a is the only voter, the only copy
    spec = tmp_path / "spec.json"
    pids = []
    for i in range(N):
        spec.write_text(json.dumps({"funcname": "square", "args": [i],
                                    "conditions": {"executortype": "py"}}))  # fmt: skip
        pids.append(cli("submit", str(spec), "--data-dir", str(a.dir)).stdout.strip())
    a.stop(signal.SIGKILL)  # every pid above was acknowledged: durable at the voter
    a.start()
    listed = {p["processid"]: p["state"] for p in cli_json("ps", "--limit", "100",
                                                           "--data-dir", str(a.dir))}  # fmt: skip
    assert listed == dict.fromkeys(pids, "WAITING")
    for pid in pids[:3]:
        majority = cli_json("get", pid, "--consistent", "--data-dir", str(a.dir))
        assert majority["state"] == "WAITING" and majority["consistent"]["answered"] == 1

    ex = Executors(tmp_path, FUNCTIONS)
    ex.start(a)
    try:
        for i, pid in enumerate(pids):
            done = cli_json("wait", pid, "--timeout", "60", "--data-dir", str(a.dir))
            assert done["state"] == "SUCCESS" and done["output"] == [i * i]
    finally:
        ex.stop_all()
    wait_until("ps to list them all SUCCESS", lambda: all(
        p["state"] == "SUCCESS" for p in cli_json("ps", "--data-dir", str(a.dir))))  # fmt: skip


def test_a_restarted_node_listens_on_its_old_port_and_one_on_a_new_port_is_found_again(
    colony: Colony,
) -> None:
    """A `tcp/0` listener keeps its port across restarts (node/daemon/ports.py); when the
    port did change (here: forgotten), the members redial the new one, which they learn
    from whoever the node reaches (the chaos run found such nodes apart for good)."""
    a = colony.founder("a")
    b, c = colony.joined("b", via=a), colony.joined("c", via=a)
    mesh = lambda: all(d.status()["connected_peers"] == 2 for d in (a, b, c))  # noqa: E731
    wait_until("a full mesh", mesh)
    before = c.addr()
    c.stop(signal.SIGKILL)
    c.start()
    assert c.addr() == before
    wait_until("the mesh again", mesh)
    for d in (b, c):  # both come back on new ports; b knows only c's old one
        d.stop(signal.SIGKILL)
        settings = json.loads((d.dir / "node.json").read_text())
        (d.dir / "node.json").write_text(json.dumps({**settings, "bound_ports": {}}))
    c.start()
    b.start()
    assert c.addr() != before
    wait_until("b and c to find each other on their new ports", mesh, timeout_s=30)


def test_an_executor_waits_out_its_nodes_restart_and_serves_again(
    colony: Colony, tmp_path: Path
) -> None:
    a = colony.founder("a")
    ex = Executors(tmp_path, FUNCTIONS)
    ex.start(a)
    try:
        assert cli_json("run", "square", "3", *RUN, "--data-dir", str(a.dir))["output"] == [9]
        a.stop(signal.SIGKILL)
        a.start()
        done = cli_json("run", "square", "4", *RUN, "--data-dir", str(a.dir))
        assert done["state"] == "SUCCESS" and done["output"] == [16]
        assert ex.procs["a"].poll() is None  # the same executor process, registered again
        assert "registered again" in ex.log(a)
    finally:
        ex.stop_all()
