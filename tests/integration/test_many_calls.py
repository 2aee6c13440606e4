"""Many calls (issue 14): executors with slots (`--concurrency`), `Client.map`,
`submit_many` and `as_completed` between real daemons and executors, and an executor
SIGKILLed while it holds several leases."""

from __future__ import annotations

import pytest

from colonynode.core.errors import ColonyError
from colonynode.sdk import Client, ProcessFailed
from tests.integration.harness import Daemon, Executors, Gate, wait_until

pytestmark = pytest.mark.integration

FUNCTIONS = """
import socket
from colonynode.sdk import function

@function
def add(a, b):
    return a + b

@function
def boom(x):
    raise ValueError(f"no {x}")

@function
def gated(gate, tag):  # runs until the test opens the gate (harness.Gate)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(gate)
        s.recv(1)
    return [tag]
"""


def running_on(client: Client, executor: str) -> int:
    return sum(p["executor"] == executor for p in client.list("RUNNING"))


def start_gated(client: Client, gate: Gate, n: int, running: int, on: str) -> list[str]:
    """Submit `n` gated calls (args: the gate, their index); wait until `running` of
    them run on executor `on`. Their pids, in order."""
    specs = [{"funcname": "gated", "args": [gate.path, i], "maxretries": -1,
              "conditions": {"executortype": "py"}} for i in range(n)]  # fmt: skip
    pids = [p["processid"] for p in client.submit_many(specs)]
    wait_until(f"{running} running on {on}", lambda: running_on(client, on) == running,
               timeout_s=30)  # fmt: skip
    return pids


def test_an_executor_with_four_slots_runs_four_calls_at_once_and_no_more(
    setup: tuple[list[Daemon], Executors],
) -> None:
    (a, b, _), ex = setup
    ex.start(b, concurrency=4)
    with Gate() as gate, Client(a.dir) as client:
        pids = start_gated(client, gate, 5, running=4, on="b-py")
        assert len(client.list("WAITING")) == 1  # the fifth waits for a free slot
        gate.open()
        done = {p["processid"]: p for p in client.as_completed(pids, timeout_s=60)}
    assert [done[pid]["output"] for pid in pids] == [[i] for i in range(5)]
    assert {p["state"] for p in done.values()} == {"SUCCESS"}


def test_map_over_a_thousand_calls_yields_every_output_in_order(
    setup: tuple[list[Daemon], Executors],
) -> None:
    (a, b, c), ex = setup
    ex.start(b, concurrency=2)
    ex.start(c, concurrency=2)
    with Client(a.dir) as client:
        outputs = list(client.map("add", range(1000), range(1000, 2000), executortype="py",
                                  timeout_s=600))  # fmt: skip
        assert outputs == [[2 * i + 1000] for i in range(1000)]
        # A failed call raises ProcessFailed when map reaches it, after the ones before.
        results = client.map("add", [1, 2], [1], executortype="py")  # zip: the shortest
        assert list(results) == [[2]]
        mapped = client.map("boom", ["x", "y"], executortype="py")
        with pytest.raises(ProcessFailed, match="ValueError: no x") as failed:
            next(mapped)
        assert failed.value.process["spec"]["funcname"] == "boom"  # the whole process


def test_one_request_submits_and_waits_and_the_submitters_executor_claims_it_at_once(
    setup: tuple[list[Daemon], Executors],
) -> None:
    """`POST /v1/processes` with `wait_s` answers the closed process (what `Client.run`
    and `colonynode run --wait` use); a node whose own executor waits claims its own
    submission with the submission (the short path)."""
    (a, _, _), ex = setup
    ex.start(a)
    py = {"executortype": "py"}
    with Client(a.dir) as client:
        wait_until(
            "a's executor to wait for work",
            lambda: client.api.get("/v1/status")["scheduler"]["idle_slots"] == 1,
        )
        done = client.submit({"funcname": "add", "args": [2, 3], "conditions": py}, wait_s=30)
        assert done["state"] == "SUCCESS" and done["output"] == [5]
        assert done["executor"] == "a-py" and done["epoch"] == 1
        assert client.api.get("/v1/status")["scheduler"]["own_claims"] >= 1
        assert client.run("add", 4, 5, executortype="py")["output"] == [9]
        # Nobody serves this type: the same request answers it WAITING once wait_s ran out.
        waiting = client.submit({"funcname": "add", "conditions": {"executortype": "none"}},
                                wait_s=0.5)  # fmt: skip
        assert waiting["state"] == "WAITING"
        with pytest.raises(ColonyError, match="wait_s must be a number"):
            client.api.post("/v1/processes", {"spec": {"funcname": "add"}, "wait_s": "soon"})


def test_submit_many_refuses_a_bad_spec_and_submits_nothing(
    setup: tuple[list[Daemon], Executors],
) -> None:
    (a, _, _), _ = setup
    with Client(a.dir) as client:
        good = {"funcname": "add", "args": [1, 2], "conditions": {"executortype": "py"}}
        bad = {"funcname": "add", "conditions": {"executortype": "py"}, "maxretries": "x"}
        with pytest.raises(ColonyError, match=r"specs\[1\]"):
            client.api.post("/v1/processes/batch", {"specs": [good, bad]})
        with pytest.raises(ColonyError, match=r"1\.\.1000"):
            client.api.post("/v1/processes/batch", {"specs": [good] * 1001})
        assert client.list() == []
        procs = client.submit_many([good, good])
        assert len({p["processid"] for p in procs}) == 2
        assert {p["state"] for p in procs} == {"WAITING"}
        assert client.api.get("/v1/status")["name"] == "a"  # the node still serves


def test_an_executor_killed_while_it_holds_several_leases_loses_none_of_them(
    setup: tuple[list[Daemon], Executors],
) -> None:
    (a, b, c), ex = setup
    ex.start(b, concurrency=3)
    with Gate() as gate, Client(a.dir) as client:
        pids = start_gated(client, gate, 3, running=3, on="b-py")
        ex.procs["b"].kill()  # SIGKILL: no detach, its worker processes die with it
        ex.procs["b"].wait(timeout=10)
        ex.start(c, concurrency=3)
        gate.open()  # b's runs are gone: only c's can pass the gate now
        done = list(client.as_completed(pids, timeout_s=90))
    assert sorted(p["processid"] for p in done) == sorted(pids)  # each exactly once
    assert {(p["state"], p["executor"]) for p in done} == {("SUCCESS", "c-py")}
    assert all(p["epoch"] >= 2 for p in done)  # b's leases were fenced off, not reused
    assert sorted(p["output"][0] for p in done) == [0, 1, 2]
