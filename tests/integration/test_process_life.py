"""A process's life between real daemons, through the CLI and the SDK (issue 9): logs and
attributes from any node, `logs --follow`, cancel (waiting and running), workflows (a
DAG whose children take their parents' outputs; a failed parent fails the graph), and an
executor that dies while its node lives on."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from colonynode.sdk import Client, ProcessFailed
from tests.integration.harness import (
    CLI,
    Daemon,
    Executors,
    cli,
    cli_json,
    pid_alive,
    state_of,
    wait_until,
)

pytestmark = pytest.mark.integration

FUNCTIONS = """
import os
import time
from colonynode.sdk import function, log, set_attribute

@function
def add(*xs):
    return sum(xs)

@function
def chatty(n, pause_s=0.05):  # the workload: a function that prints as it goes
    for i in range(n):
        print("line", i)
        time.sleep(pause_s)
    log("done after", n)
    set_attribute("lines", str(n))
    return n

@function
def gated(gate, tick_s=0.1):  # runs until the test creates the file `gate`: no race with a clock
    with open(gate + ".pid", "w") as f:  # who runs it (the executor's worker process)
        f.write(str(os.getpid()))
    i = 0
    while not os.path.exists(gate):
        print("tick", i)
        i += 1
        time.sleep(tick_s)
    return "opened"

@function
def boom():
    raise RuntimeError("parent broke")
"""


def submit_run(d: Daemon, *args: str) -> str:
    return cli("run", *args, "--executortype", "py", "--data-dir", str(d.dir)).stdout.strip()


def test_logs_and_attributes_reach_every_node_and_follow_ends_at_close(
    setup: tuple[list[Daemon], Executors],
) -> None:
    (a, b, c), ex = setup
    ex.start(b)
    pid = submit_run(a, "chatty", "30")
    wait_until("c to hear of it", lambda: state_of(c, pid))
    # Followed from c, a node that neither submitted nor ran it: every line, in order,
    # and the command returns by itself once the process is closed.
    follow = cli("logs", pid, "--follow", "--data-dir", str(c.dir), timeout_s=60)
    lines = follow.stdout.splitlines()
    assert lines == [f"[b-py] line {i}" for i in range(30)] + ["[b-py] done after 30"]
    assert state_of(c, pid) == "SUCCESS"
    # a hears b's records on a stream of its own: it may be a moment behind c.
    wait_until("a to see it closed", lambda: state_of(a, pid) == "SUCCESS")

    def logs_on_a() -> list[str]:
        return cli("logs", pid, "--json", "--data-dir", str(a.dir)).stdout.splitlines()

    wait_until("a to hold every line", lambda: len(logs_on_a()) >= 31)
    again = [json.loads(x) for x in logs_on_a()]
    assert [x["message"] for x in again] == [f"line {i}" for i in range(30)] + ["done after 30"]
    # One run wrote them all: the one that committed (its epoch, whatever claims before it
    # were refused).
    committed = cli_json("get", pid, "--consistent", "--data-dir", str(a.dir))
    assert committed["consistent"]["committed"]
    assert {x["executor"] for x in again} == {"b-py"}
    assert {x["epoch"] for x in again} == {committed["epoch"]}
    got = cli_json("get", pid, "--data-dir", str(a.dir))
    assert [(x["key"], x["value"]) for x in got["attributes"]] == [("lines", "30")]
    assert b.status()["scheduler"]["log_lines"] == 31
    unknown = cli("logs", "ab" * 16, "--data-dir", str(a.dir), check=False)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no process")


def test_cancel_a_waiting_and_a_running_process(
    setup: tuple[list[Daemon], Executors], tmp_path: Path
) -> None:
    (a, b, c), ex = setup
    # Waiting: no executor of its type exists.
    spec = tmp_path / "gpu.json"
    spec.write_text(json.dumps({"funcname": "add", "conditions": {"executortype": "gpu"}}))
    waiting = cli("submit", str(spec), "--data-dir", str(b.dir)).stdout.strip()
    wait_until("c to hear of it", lambda: cli("get", waiting, "--data-dir", str(c.dir),
                                              check=False).returncode == 0)  # fmt: skip
    refused = cli("cancel", waiting, "--data-dir", str(c.dir), check=False)  # not b, not owner
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: only the node that submitted {waiting} (b) or the colony owner's node may"
        " cancel it"
    )
    assert cli("cancel", waiting, "--data-dir", str(b.dir)).stdout.strip() == f"cancelled {waiting}"
    done = cli("wait", waiting, "--json", "--data-dir", str(c.dir), check=False)
    assert done.returncode == 1 and json.loads(done.stdout)["state"] == "CANCELLED"
    assert json.loads(done.stdout)["errors"] == ["cancelled by b"]
    twice = cli("cancel", waiting, "--data-dir", str(b.dir), check=False)
    assert twice.returncode == 1 and "it is CANCELLED" in twice.stderr

    # Running: the owner cancels; the executor is told to stop, its result never commits.
    ex.start(c)
    running = submit_run(b, "gated", str(tmp_path / "never"))  # runs until cancelled
    wait_until("c to run it", lambda: state_of(c, running) == "RUNNING")
    wait_until("a first log line", lambda: cli("logs", running, "--data-dir", str(a.dir))
               .stdout.strip())  # fmt: skip
    assert cli("cancel", running, "--data-dir", str(a.dir)).stdout.strip() == (
        f"cancelled {running}"
    )
    wait_until("c's executor to stop it", lambda: "was cancelled" in ex.log(c))
    assert f"process {running}: its function was stopped" in ex.log(c)
    worker = int((tmp_path / "never.pid").read_text())
    wait_until("the cancelled function's worker process to be gone", lambda: not pid_alive(worker))
    majority = cli_json("get", running, "--consistent", "--data-dir", str(b.dir))
    assert majority["state"] == "CANCELLED" and majority["consistent"]["committed"]
    assert majority["output"] == [] and majority["errors"] == ["cancelled by a"]
    # The executor serves the next process (it did not wait for the abandoned call).
    assert cli("run", "add", "2", "3", "--executortype", "py", "--wait", "--data-dir",
               str(a.dir)).stdout.strip() == "[5]"  # fmt: skip


def test_a_workflow_passes_outputs_down_and_a_failed_parent_fails_the_graph(
    setup: tuple[list[Daemon], Executors],
) -> None:
    (a, b, c), ex = setup
    ex.start(b)
    ex.start(c)
    py = {"executortype": "py"}
    with Client(a.dir) as colony:
        graph = colony.submit_workflow([
            {"nodename": "x", "funcname": "add", "args": [1, 2], "conditions": py},
            {"nodename": "y", "funcname": "add", "args": [10, 20], "conditions": py},
            {"nodename": "sum", "funcname": "add", "args": [100],
             "conditions": {**py, "dependencies": ["x", "y"]}},
        ])  # fmt: skip
        x, y, total = (p["processid"] for p in graph["processes"])
        for parent in (x, y):  # a's view holds the parents' closes (the child's input)
            assert colony.wait(parent, timeout_s=60)["state"] == "SUCCESS"
        done = colony.wait(total, timeout_s=60)
        assert done["state"] == "SUCCESS" and done["output"] == [133]  # add(100, 3, 30)
        assert done["input"] == [3, 30] and done["parents"] == [x, y]
        assert colony.get(x)["children"] == [total]
        assert {p["processid"] for p in colony.list(processgraphid=graph["processgraphid"])} == {
            x, y, total}  # fmt: skip
        # The child only started once both parents had ended.
        ends = [colony.get(p)["endtime"] for p in (x, y)]
        assert done["starttime"] > max(ends)

        broken = colony.submit_workflow([
            {"nodename": "bad", "funcname": "boom", "conditions": py},
            {"nodename": "child", "funcname": "add", "conditions": {**py, "dependencies": ["bad"]}},
            {"nodename": "grandchild", "funcname": "add",
             "conditions": {**py, "dependencies": ["child"]}},
        ])  # fmt: skip
        bad, child, grandchild = (p["processid"] for p in broken["processes"])
        assert colony.wait(bad)["errors"] == ["RuntimeError: parent broke"]
        failed = colony.wait(grandchild, timeout_s=30)
        assert failed["state"] == "FAILED" and failed["starttime"] is None
        assert colony.get(child)["errors"] == [f"parent bad ({bad}) closed FAILED"]
        assert failed["errors"] == [f"parent child ({child}) closed FAILED"]
        with pytest.raises(ProcessFailed, match="RuntimeError: parent broke"):
            colony.run("boom", executortype="py")
        # A bad workflow is refused before anything is sent, naming the step.
        bad_file = a.dir.parent / "cycle.json"
        bad_file.write_text(json.dumps({"functionspecs": [
            {"nodename": "p", "funcname": "add", "conditions": {"dependencies": ["q"]}},
            {"nodename": "q", "funcname": "add", "conditions": {"dependencies": ["p"]}},
        ]}))  # fmt: skip
        result = cli("submit", str(bad_file), "--data-dir", str(a.dir), check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == "error: workflow: dependencies form a cycle through p, q"


def test_an_executor_killed_while_its_node_lives_is_detached_and_retried_elsewhere(
    setup: tuple[list[Daemon], Executors], tmp_path: Path
) -> None:
    (a, b, c), ex = setup
    ex.start(b)
    gate = tmp_path / "gate"
    pid = cli("run", "gated", str(gate), "--maxretries", "1", "--executortype", "py",
              "--data-dir", str(a.dir)).stdout.strip()  # fmt: skip
    wait_until("b to run it", lambda: state_of(a, pid) == "RUNNING")
    ex.procs["b"].send_signal(signal.SIGKILL)  # the executor dies; daemon b stays up
    ex.procs["b"].wait(timeout=10)
    gate.touch()  # the run that takes over finishes
    ex.start(c)
    done = cli("wait", pid, "--timeout", "90", "--json", "--data-dir", str(a.dir), check=False)
    assert done.returncode == 0, done.stderr
    proc = json.loads(done.stdout)
    # The epoch is a fencing token (every claim attempt takes a higher one), not a run count.
    assert proc["executor"] == "c-py" and proc["epoch"] >= 2 and proc["output"] == ["opened"]
    assert "detached" in b.log()
    counters = b.status()["scheduler"]
    assert counters["executors_detached"] == 1 and counters["leases_dropped"] == 1
    majority = cli_json("get", pid, "--consistent", "--data-dir", str(b.dir))
    assert majority["retries"] == 1 and majority["state"] == "SUCCESS"


def test_submit_wait_prints_the_result(
    setup: tuple[list[Daemon], Executors], tmp_path: Path
) -> None:
    (a, _, c), ex = setup
    ex.start(c)
    spec = tmp_path / "add.json"
    spec.write_text(
        json.dumps({"funcname": "add", "args": [4, 5], "conditions": {"executortype": "py"}})
    )
    out = subprocess.run([CLI, "submit", str(spec), "--wait", "--data-dir", str(a.dir)],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "[9]"


def test_an_executor_stopped_with_sigterm_gives_its_process_back_at_once(
    setup: tuple[list[Daemon], Executors], tmp_path: Path
) -> None:
    (a, b, c), ex = setup
    ex.start(b)
    gate = tmp_path / "gate"
    pid = cli("run", "gated", str(gate), "--maxretries", "0", "--executortype", "py",
              "--data-dir", str(a.dir)).stdout.strip()  # fmt: skip
    wait_until("b to run it", lambda: state_of(a, pid) == "RUNNING")
    ex.procs["b"].terminate()
    assert ex.procs["b"].wait(timeout=20) == 0
    gate.touch()
    assert f"released 1 processes: {pid}" in ex.log(b)
    # Released, not dropped: no retry is counted, so with maxretries 0 it still runs.
    ex.start(c)
    done = cli_json("wait", pid, "--timeout", "60", "--data-dir", str(a.dir))
    assert done["state"] == "SUCCESS" and done["executor"] == "c-py"
    majority = cli_json("get", pid, "--consistent", "--data-dir", str(c.dir))
    assert majority["retries"] == 0 and majority["state"] == "SUCCESS"
