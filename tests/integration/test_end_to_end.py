"""Processes end to end between real daemons and executors (issue 9, first slice):
functions run once, failures fail, maxexectime retries then fails, and a process whose
executor's node is SIGKILLed completes elsewhere, exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from colonynode.consensus.register import REASON_EXPIRED, REASON_WAITED
from tests.integration.harness import (
    Daemon,
    Executors,
    Gate,
    cli,
    cli_json,
    state_of,
    wait_until,
)

pytestmark = pytest.mark.integration

FUNCTIONS = """
import socket
import time
from colonynode.sdk import function

@function
def add(a, b):
    return a + b

@function
def boom():
    raise ValueError("it broke")

@function
def slow(seconds):
    time.sleep(seconds)
    return ["slept", seconds]

@function
def gated(gate):  # runs until the test opens the gate (harness.Gate): no race with a clock
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(gate)
        s.recv(1)
    return ["opened"]
"""


def run(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("run", *args, "--executortype", "py", "--wait", "--json", "--timeout", "60",
               "--data-dir", str(d.dir), check=False)  # fmt: skip


def test_success_failure_and_maxexectime(setup: tuple[list[Daemon], Executors]) -> None:
    (a, b, c), ex = setup
    ex.start(b)
    ex.start(c)
    ok = run(a, "add", "1", "2")
    assert ok.returncode == 0, ok.stderr
    proc = json.loads(ok.stdout)
    assert proc["state"] == "SUCCESS" and proc["output"] == [3]
    assert proc["executor"] in {"b-py", "c-py"} and proc["epoch"] >= 1

    failed = run(a, "boom")
    assert failed.returncode == 1
    bad = json.loads(failed.stdout)
    assert bad["state"] == "FAILED" and bad["errors"] == ["ValueError: it broke"]
    assert bad["retries"] == 0  # an explicit fail is never retried

    late = run(a, "slow", "4", "--maxexectime", "1", "--maxretries", "1")
    assert late.returncode == 1
    over = json.loads(late.stdout)
    assert over["state"] == "FAILED" and over["output"] == []
    # The consistent view agrees: closed FAILED by the voters, the retry was spent; and
    # every node's own view shows what the voters committed (it used to show retries 0
    # and its own words while the voters said retries 1 and why).
    majority = cli_json("get", over["processid"], "--consistent", "--data-dir", str(c.dir))
    assert majority["state"] == "FAILED" and majority["consistent"]["committed"]
    assert majority["retries"] == 1 and majority["errors"] == [REASON_EXPIRED]
    for node in (a, b, c):
        wait_until(f"{node.name} to show the voters' result", lambda n=node: cli_json(
            "get", over["processid"], "--data-dir", str(n.dir))["retries"] == 1)  # fmt: skip
        view = cli_json("get", over["processid"], "--data-dir", str(node.dir))
        assert view["state"] == "FAILED" and view["errors"] == majority["errors"]


def test_executor_node_killed_mid_process_completes_elsewhere_once(
    setup: tuple[list[Daemon], Executors],
) -> None:
    (a, b, c), ex = setup
    ex.start(b)
    with Gate() as gate:
        pid = cli("run", "gated", gate.path, "--maxretries", "2", "--executortype", "py",
                  "--data-dir", str(a.dir)).stdout.strip()  # fmt: skip
        wait_until("b to start it", lambda: state_of(b, pid) == "RUNNING")
        b.stop(signal.SIGKILL)
        ex.procs["b"].kill()
        gate.open()  # the run that takes over finishes
        ex.start(c)
        done = cli("wait", pid, "--timeout", "90", "--json", "--data-dir", str(a.dir),
                   check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    proc = json.loads(done.stdout)
    assert proc["state"] == "SUCCESS" and proc["output"] == ["opened"]
    assert proc["executor"] == "c-py" and proc["epoch"] >= 2
    majority = cli_json("get", pid, "--consistent", "--data-dir", str(c.dir))
    assert majority["state"] == "SUCCESS" and majority["output"] == ["opened"]
    assert majority["retries"] >= 1


def submit(d: Daemon, tmp: Path, name: str, spec: dict) -> str:  # type: ignore[type-arg]
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({"conditions": {"executortype": "py"}, **spec}))
    return cli("submit", str(path), "--data-dir", str(d.dir)).stdout.strip()


def test_priority_executornames_and_maxwaittime(
    setup: tuple[list[Daemon], Executors], tmp_path: Path
) -> None:
    (a, b, c), ex = setup
    # Submitted before any executor exists: the urgent one must start first.
    low = submit(a, tmp_path, "low", {"funcname": "add", "args": [1, 1]})
    high = submit(a, tmp_path, "high", {"funcname": "add", "args": [2, 2], "priority": 5})
    only_c = submit(a, tmp_path, "only_c", {"funcname": "add", "args": [3, 3],
                                            "conditions": {"executortype": "py",
                                                           "executornames": ["c-py"]}})  # fmt: skip
    nobody = submit(a, tmp_path, "nobody", {"funcname": "add", "args": [0, 0], "maxwaittime": 1,
                                            "conditions": {"executortype": "gpu"}})  # fmt: skip
    wait_until("b to see the four", lambda: len(cli_json("ps", "--data-dir", str(b.dir))) == 4)
    ex.start(b)
    for pid in (low, high):
        done = cli("wait", pid, "--json", "--timeout", "60", "--data-dir", str(a.dir))
        assert json.loads(done.stdout)["state"] == "SUCCESS"
    got = {pid: cli_json("get", pid, "--data-dir", str(a.dir)) for pid in (low, high)}
    assert got[high]["starttime"] < got[low]["starttime"]
    # Only c's executor may run only_c: it waits until c's executor is there.
    assert cli_json("get", only_c, "--data-dir", str(a.dir))["state"] == "WAITING"
    ex.start(c)
    done = json.loads(cli("wait", only_c, "--json", "--timeout", "60",
                          "--data-dir", str(a.dir)).stdout)  # fmt: skip
    assert done["state"] == "SUCCESS" and done["executor"] == "c-py" and done["output"] == [6]
    # No gpu executor: past its maxwaittime the process closes FAILED, and every node's
    # view shows what the voters committed (their reason, not the expiring node's).
    late = cli("wait", nobody, "--json", "--timeout", "60", "--data-dir", str(a.dir), check=False)
    failed = json.loads(late.stdout)
    assert failed["state"] == "FAILED" and failed["errors"] == [REASON_WAITED]
