"""A node announces the processes that start, are given back or close in one step in one
gossip record per kind (node/core/processes.py), and every other node's view takes each
process of it; on the stepped network with real NodeCores."""

from __future__ import annotations

from typing import Any

from colonynode.core.process import State
from colonynode.core.scheduling import ExecutorAdvert
from colonynode.gossip.records import open_body
from colonynode.node.core import requests as rq
from colonynode.node.core.announce import RUNNING_DELAY_S
from colonynode.node.core.processes import (
    ANNOUNCE_ITEMS_MAX,
    CLOSED_KIND,
    RUNNING_KIND,
    ProcessBook,
)
from tests.node.colony import Colony, identity, submit


def records_of(colony: Colony, node: int, kind: str) -> list[Any]:
    """The bodies of node `node`'s own gossip records of `kind`, oldest first."""
    core = colony.core(node)
    me = core.node_id
    out = []
    for seq in range(1, core.gossip.digest().get(me, 0) + 1):
        env = core.gossip.record(me, seq)
        if env is not None and open_body(env).kind == kind:
            out.append(open_body(env).body)
    return out


def test_the_grants_of_one_claim_round_go_out_in_one_record_and_every_view_takes_each() -> None:
    colony = Colony(4)  # one executor node: no claim stagger, one round takes all three
    pids = [submit(colony, 0) for _ in range(3)]
    advert = ExecutorAdvert("e", "py", cpu_millis=10**9, mem_bytes=10**15)
    executor = colony.result(3, rq.RegisterExecutor(advert, slots=3))["executor_id"]
    assigns = [rq.Assign(executor, timeout_s=5) for _ in pids]
    rids = colony.net.call(3, lambda core, now: [core.request(now, a) for a in assigns])
    colony.run_until(lambda: all(colony.answer(3, rid) is not None for rid in rids))
    assert records_of(colony, 3, RUNNING_KIND) == []  # not before RUNNING_DELAY_S
    colony.run_until(lambda: all(
        colony.core(n).book.state_of(p).name == "RUNNING"  # type: ignore[union-attr]
        for n in range(4) for p in pids))  # fmt: skip
    running = records_of(colony, 3, RUNNING_KIND)
    assert len(running) == 1 and len(running[0]["processes"]) == 3  # one claim round
    for pid in pids:
        assert colony.core(0).book.get(pid)["executor"] == "e"  # type: ignore[index]


def test_a_run_closed_before_its_running_was_announced_is_announced_closed_only() -> None:
    colony = Colony(4)
    pid = submit(colony, 0)
    advert = ExecutorAdvert("e", "py", cpu_millis=10**9, mem_bytes=10**15)
    executor = colony.result(3, rq.RegisterExecutor(advert))["executor_id"]
    rid = colony.ask(3, rq.Assign(executor, timeout_s=5))
    granted_s = colony.net.t
    while colony.answer(3, rid) is None:  # the claim round and the grant, 1 ms a step
        colony.net.advance(0.001)
        colony.net.stabilize()
    assert colony.net.t - granted_s < RUNNING_DELAY_S / 2
    colony.ask(3, rq.CloseRun(executor, pid, True, [7]))
    colony.run_until(lambda: colony.core(0).book.state_of(pid).closed)  # type: ignore[union-attr]
    assert records_of(colony, 3, RUNNING_KIND) == []
    assert [b["processes"][0]["state"] for b in records_of(colony, 3, CLOSED_KIND)] == ["SUCCESS"]
    assert colony.core(3).announcements.counters["running_unannounced"] == 1


def test_the_closes_announced_in_one_step_go_out_in_one_record() -> None:
    colony = Colony(5)
    pids = [submit(colony, 0) for _ in range(2)]
    items = [{"processid": p.hex(), "state": "SUCCESS", "output": [i]} for i, p in enumerate(pids)]
    colony.net.call(3, lambda core, now: [core.announce(CLOSED_KIND, i) for i in items])
    colony.run_until(lambda: all(
        colony.core(n).book.state_of(p).closed  # type: ignore[union-attr]
        for n in range(5) for p in pids))  # fmt: skip
    assert records_of(colony, 3, CLOSED_KIND) == [{"processes": items}]
    assert [colony.core(1).book.get(p)["output"] for p in pids] == [[0], [1]]  # type: ignore[index]


def test_a_view_takes_a_single_record_and_a_batch_alike_and_bounds_a_batch() -> None:
    author = identity(3).node_id
    pids = [bytes([i]) * 16 for i in range(3)]
    book = ProcessBook()
    for pid in pids:
        book.on_record(author, "process", {
            "processid": pid.hex(), "submission_ns": 1,
            "spec": {"funcname": "f", "conditions": {"executortype": "py"}}})  # fmt: skip
    book.on_record(author, RUNNING_KIND, {"processid": pids[0].hex(), "epoch": 1}, 1.0)
    book.on_record(author, RUNNING_KIND, {"processes": [
        {"processid": pids[1].hex(), "epoch": 1}, {"processid": pids[2].hex(), "epoch": 2},
        "not an item", {"processid": "zz"}]}, 1.0)  # fmt: skip
    assert [book.state_of(p).name for p in pids] == ["RUNNING"] * 3  # type: ignore[union-attr]
    assert book.get(pids[2])["epoch"] == 2  # type: ignore[index]
    more = [bytes([9, i]) * 8 for i in range(ANNOUNCE_ITEMS_MAX + 10)]
    for pid in more:
        book.on_record(author, "process", {
            "processid": pid.hex(), "submission_ns": 1,
            "spec": {"funcname": "f", "conditions": {"executortype": "py"}}})  # fmt: skip
    closing = [{"processid": pid.hex(), "state": "SUCCESS"} for pid in more]
    book.on_record(author, CLOSED_KIND, {"processes": closing})  # more than a node sends
    assert len(book.list(State.SUCCESS, 1000)) == ANNOUNCE_ITEMS_MAX  # the rest is ignored
