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
