"""Crons on real NodeCores (the stepped network): every tick fires once, whichever
members fire it, while members crash; a colony down for many ticks fires once."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from colonynode.consensus.events import Registered
from colonynode.core.errors import ValidationError
from colonynode.core.scheduling import ExecutorAdvert
from colonynode.node.core import NotFound
from colonynode.node.core import requests as rq
from colonynode.node.core.processes import PROCESSES_MAX
from tests.node.colony import Colony

PY = ExecutorAdvert("e", "py", cpu_millis=10**9, mem_bytes=10**15)
ONE_STEP = {"functionspecs": [{"nodename": "tick", "funcname": "f",
                               "conditions": {"executortype": "py"}}]}  # fmt: skip


def add(colony: Colony, node: int = 0, **body: Any) -> dict[str, Any]:
    got: dict[str, Any] = colony.result(
        node, rq.AddCron({"name": "c", "workflowspec": ONE_STEP, **body})
    )
    return got


def tick_processes(colony: Colony, node: int, cronid: str) -> list[dict[str, Any]]:
    """The node's view of the cron's processes (one a tick for a one-step workflow)."""
    return colony.core(node).book.list(
        None, PROCESSES_MAX, match=lambda e: e.get("cronid") == cronid
    )


def test_an_interval_cron_fires_every_interval_once_though_every_member_may_fire() -> None:
    colony = Colony(5)
    cron = add(colony, interval=2)
    assert cron["interval"] == 2 and cron["nextrun"] is not None
    created_ns = colony.core(0).crons.get(bytes.fromhex(cron["cronid"])).created_ns
    colony.run_until(lambda: len(tick_processes(colony, 4, cron["cronid"])) >= 5, max_s=30)
    colony.net.advance(0.9)  # past the last tick's turns, short of the next tick
    colony.net.stabilize()
    now_ns = colony.core(0).unix_ns()
    due = [created_ns + k * 2 * 10**9 for k in range(1, 100)]
    due = [t for t in due if t <= now_ns]
    for node in range(5):  # every due tick fired, none twice, and every node knows
        fired = sorted(colony.core(node).crons.get(bytes.fromhex(cron["cronid"])).fired)
        assert fired == due, f"node {node}"
    # the first member in each tick's order fired it; the others heard and left it
    assert sum(colony.core(n).crons.counters["fired"] for n in range(5)) == len(due)
    got = colony.result(2, rq.GetCron(bytes.fromhex(cron["cronid"])))
    assert got["lastrun"] is not None and got["prevprocessgraphid"] is not None


def test_members_racing_on_a_tick_make_one_graph_and_the_voters_answer_every_one() -> None:
    colony = Colony(5)
    cron = add(colony, interval=3600)
    cronid = bytes.fromhex(cron["cronid"])
    asks = [(node, colony.ask(node, rq.RunCron(cronid))) for node in (1, 3, 4)]  # one instant
    colony.run_until(lambda: all(colony.answer(n, r) for n, r in asks))
    answers = [colony.answer(n, r) for n, r in asks]
    assert all(a is not None and a.error is None for a in answers), answers
    graphs = {a.value["processgraphid"] for a in answers if a is not None}
    assert len(graphs) == 1, "three members fired one tick: one graph"
    pid = bytes.fromhex(answers[0].value["processes"][0]["processid"]) if answers[0] else b""
    submitters = set()
    for i in range(3):  # one register a voter, whichever member's submission it took
        reg = colony.core(i).consensus.voter.registers.get(pid)
        assert reg is not None and reg.terms.tick
        submitters.add(reg.terms.submitter)
        assert sum(1 for e in colony.net.events(i, Registered) if e.terms.pid == pid) == 1
    assert {colony.core(n).book.get(pid)["processid"] for n in range(5)} == {pid.hex()}


def test_a_tick_keeps_firing_with_members_down_and_a_long_outage_fires_once() -> None:
    colony = Colony(5)
    cron = add(colony, interval=2)
    cronid = cron["cronid"]
    colony.run_until(lambda: len(tick_processes(colony, 4, cronid)) >= 2, max_s=10)
    colony.net.crash(4)  # a member, then a voter: a majority of voters lives
    colony.net.crash(2)
    before = len(tick_processes(colony, 3, cronid))
    colony.run_until(lambda: len(tick_processes(colony, 3, cronid)) >= before + 3, max_s=15)
    for i in (0, 1, 3):  # the whole colony goes down for 30 ticks
        colony.net.crash(i)
    colony.net.advance(60.0)
    for i in range(5):
        colony.net.restart(i)
    colony.connect_all()
    held = len(tick_processes(colony, 3, cronid))
    colony.run_until(lambda: len(tick_processes(colony, 3, cronid)) > held, max_s=10)
    colony.net.advance(1.0)
    colony.net.stabilize()
    new = len(tick_processes(colony, 3, cronid)) - held
    assert new == 1, f"{new} ticks fired for one outage (once on return expected)"


def test_wait_for_previous_leaves_a_tick_unfired_while_its_graph_runs() -> None:
    colony = Colony(5)
    cron = add(colony, interval=2, waitforprevprocessgraph=True)
    cronid = cron["cronid"]
    colony.run_until(lambda: len(tick_processes(colony, 3, cronid)) == 1, max_s=10)
    colony.net.advance(10.0)  # five more ticks are due; nobody runs the first graph
    colony.net.stabilize()
    assert len(tick_processes(colony, 3, cronid)) == 1
    assert colony.core(3).crons.counters["skipped_previous_running"] > 0
    executor = colony.result(3, rq.RegisterExecutor(PY))["executor_id"]
    first = colony.result(3, rq.Assign(executor, timeout_s=5))
    colony.result(3, rq.CloseRun(executor, bytes.fromhex(first["processid"]), True, [7]))
    colony.run_until(lambda: len(tick_processes(colony, 3, cronid)) == 2, max_s=5)
    second = max(tick_processes(colony, 3, cronid), key=lambda v: v["submissiontime"])
    assert second["input"] == [7], "the previous graph's output is the new root's input"


def test_a_removed_cron_stops_firing_on_every_node() -> None:
    colony = Colony(5)
    cron = add(colony, interval=2)
    cronid = bytes.fromhex(cron["cronid"])
    colony.run_until(lambda: len(tick_processes(colony, 4, cron["cronid"])) >= 1, max_s=10)
    colony.result(3, rq.RemoveCron(cronid))
    colony.net.stabilize()
    held = [len(tick_processes(colony, n, cron["cronid"])) for n in range(5)]
    colony.net.advance(10.0)
    colony.net.stabilize()
    assert [len(tick_processes(colony, n, cron["cronid"])) for n in range(5)] == held
    with pytest.raises(NotFound):
        colony.result(1, rq.GetCron(cronid))
    assert colony.result(1, rq.ListCrons()) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"interval": 0}, "interval"),
        ({"cronexpression": "* * * * *"}, "cronexpression"),
        ({"cronexpression": "0 * * * * *", "random": True}, "random"),
        ({"interval": 5, "workflowspec": {"functionspecs": []}}, "workflow.functionspecs"),
        ({"interval": 5, "bogus": 1}, "cron.bogus"),
    ],
)
def test_a_bad_cron_is_refused_with_the_field_named(body: dict[str, Any], field: str) -> None:
    colony = Colony(3)
    with pytest.raises(ValidationError, match=field):
        add(colony, **body)
    assert colony.result(0, rq.ListCrons()) == []


def test_a_seconds_first_expression_fires_on_its_seconds_and_random_once_within_each() -> None:
    colony = Colony(5)
    every3 = add(colony, cronexpression="0/3 * * * * *")
    rand = add(colony, node=3, interval=4, random=True)
    colony.run_until(lambda: len(tick_processes(colony, 1, every3["cronid"])) >= 4, max_s=30)
    colony.run_until(lambda: len(tick_processes(colony, 1, rand["cronid"])) >= 4, max_s=30)
    ticks = sorted(colony.core(1).crons.get(bytes.fromhex(every3["cronid"])).fired)
    assert all(t % (3 * 10**9) == 0 for t in ticks), "off the expression's seconds"
    assert all(b - a == 3 * 10**9 for a, b in itertools.pairwise(ticks)), "a tick was skipped"
    cron = colony.core(1).crons.get(bytes.fromhex(rand["cronid"]))
    slots = [(t - cron.created_ns) // (4 * 10**9) for t in sorted(cron.fired)]
    assert slots == list(range(slots[0], slots[0] + len(slots))), "one tick an interval"
    offsets = {(t - cron.created_ns) % (4 * 10**9) for t in cron.fired}
    assert len(offsets) == len(cron.fired) and 0 not in offsets, "a moment within each"


def test_a_tick_record_that_comes_before_its_cron_counts_as_fired() -> None:
    colony = Colony(3)
    cron = add(colony, interval=3600)
    node = colony.core(0)
    cronid = bytes.fromhex(cron["cronid"])
    definition = node.crons.get(cronid).body
    fresh = type(node.crons)(node)  # a node that hears the tick first (gossip order)
    tick = {"cronid": cron["cronid"], "tick_ns": 5, "processgraphid": "ab" * 16}
    fresh.on_process(tick, b"p" * 16)
    fresh.on_record(None, "cron", definition)
    assert fresh.get(cronid).fired == {5: ("ab" * 16, (b"p" * 16,))}
