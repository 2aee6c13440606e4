"""Generators on real NodeCores (the stepped network): every `trigger` packed args make
one workflow with those args in pack order; an arg is used once though members race for
it, and none is lost when the member that took a batch dies before submitting it."""

from __future__ import annotations

from typing import Any

import pytest

from colonynode.consensus import ProcessTerms, Reason
from colonynode.consensus import requests as lrq
from colonynode.consensus.compaction import Retention
from colonynode.core.errors import ValidationError
from colonynode.node.core import NotFound
from colonynode.node.core import requests as rq
from colonynode.node.core.generator_defs import Batch, batch_id
from colonynode.node.core.processes import PROCESSES_MAX
from tests.node.colony import Colony

STEP = {"functionspecs": [{"nodename": "work", "funcname": "f", "args": ["replaced"],
                           "kwargs": {"k": "cleared"},
                           "conditions": {"executortype": "py"}}]}  # fmt: skip


def add(colony: Colony, node: int = 0, **body: Any) -> bytes:
    got = colony.result(node, rq.AddGenerator({"name": "g", "workflowspec": STEP, **body}))
    return bytes.fromhex(got["generatorid"])


def pack(colony: Colony, node: int, gid: bytes, arg: str) -> None:
    colony.result(node, rq.PackGenerator(gid, arg))
    colony.net.advance(0.001)  # pack order is the packing node's clock


def batches(colony: Colony, node: int, gid: bytes) -> list[list[Any]]:
    """The args of each workflow the generator started, oldest first (node's view)."""
    mine = colony.core(node).book.list(
        None, PROCESSES_MAX, match=lambda e: e.get("generatorid") == gid.hex()
    )
    for v in mine:
        assert v["spec"]["kwargs"] == {}, "a root's kwargs are cleared"
    return [v["spec"]["args"] for v in sorted(mine, key=lambda v: v["submissiontime"])]


def test_every_trigger_args_make_one_workflow_with_them_in_pack_order() -> None:
    colony = Colony(5)
    gid = add(colony, trigger=3)
    for i in range(7):
        pack(colony, i % 5, gid, f"a{i}")
    colony.run_until(lambda: len(batches(colony, 4, gid)) == 2, max_s=10)
    colony.net.advance(5.0)
    colony.net.stabilize()
    assert batches(colony, 4, gid) == [["a0", "a1", "a2"], ["a3", "a4", "a5"]]
    got = colony.result(2, rq.GetGenerator(gid))
    assert got["queued"] == 1 and got["used"] == 6 and len(got["processgraphids"]) == 2
    pack(colony, 3, gid, "a7")
    pack(colony, 1, gid, "a8")
    colony.run_until(lambda: len(batches(colony, 0, gid)) == 3, max_s=10)
    assert batches(colony, 0, gid)[2] == ["a6", "a7", "a8"]


def test_a_queue_older_than_the_timeout_fires_with_what_it_has() -> None:
    colony = Colony(5)
    gid = add(colony, trigger=5, timeout=3)
    pack(colony, 1, gid, "x")
    pack(colony, 2, gid, "y")
    colony.net.advance(2.0)
    colony.net.stabilize()
    assert batches(colony, 0, gid) == []
    colony.run_until(lambda: len(batches(colony, 0, gid)) == 1, max_s=5)
    assert batches(colony, 0, gid) == [["x", "y"]]


def test_members_racing_for_one_batch_use_each_arg_once() -> None:
    colony = Colony(5)
    gid = add(colony, trigger=2)
    held = [colony.core(n).generators for n in range(5)]
    for g in held:  # nobody fires on its own: the test makes them race
        g.started = False
    for i in range(6):
        pack(colony, i % 5, gid, f"r{i}")
    colony.net.stabilize()
    # The two members that may take batches (claims need the executor role) take
    # overlapping ones in the same instant: node 4 has not heard of r0 yet, so it asks
    # for r1 r2 while node 3 asks for r0 r1.
    for arg in colony.core(4).generators.get(gid).open_args()[:1]:
        arg.unknown_until_s = colony.net.t + 0.5
    for n in (3, 4):
        colony.net.call(n, lambda core, now: core.generators._take(core.generators.get(gid)))
    for g in held:
        g.started = True
    colony.net.call(1, lambda core, now: core.generators.replan())
    colony.run_until(lambda: sum(map(len, batches(colony, 2, gid))) == 6, max_s=30)
    colony.net.advance(3.0)
    colony.net.stabilize()
    used = [a for b in batches(colony, 2, gid) for a in b]
    assert sorted(used) == [f"r{i}" for i in range(6)], used
    assert held[3].counters["batches_partial"] + held[4].counters["batches_partial"] >= 1, (
        "the race was not run"
    )


def test_a_batch_whose_taker_died_before_submitting_is_submitted_by_another() -> None:
    colony = Colony(5)
    gid = add(colony, trigger=2)
    taker = 3
    gens = [colony.core(n).generators for n in range(5)]
    for n, g in enumerate(gens):
        g.started = n == taker  # only the taker fires
    colony.core(taker).generators.submit = lambda *a, **kw: None  # type: ignore[method-assign]
    pack(colony, 0, gid, "p")
    pack(colony, 1, gid, "q")
    taker_gen = colony.core(taker).generators
    colony.run_until(lambda: taker_gen.counters["batches"] == 1, max_s=10)
    colony.net.crash(taker)  # the args are closed as its batch's; no workflow was sent
    assert batches(colony, 0, gid) == []
    for n in (0, 1, 2, 4):
        gens[n].started = True
        colony.net.call(n, lambda core, now: core.generators.replan())
    colony.run_until(lambda: batches(colony, 0, gid) == [["p", "q"]], max_s=20)
    assert sum(gens[n].counters["batches_recovered"] for n in (0, 1, 2, 4)) >= 1


def test_members_that_saw_different_args_for_one_batch_all_submit_the_decided_set() -> None:
    """A batch's taker and a recoverer can see different sets of its closes (one may
    commit late, by repair): the batch's decision register settles one set, and every
    submission of the batch, whoever sends it, carries that set."""
    colony = Colony(5)
    gid = add(colony, trigger=2)
    for n in range(5):
        colony.core(n).generators.started = False  # the test makes them propose
    pack(colony, 0, gid, "p")
    pack(colony, 1, gid, "q")
    colony.net.stabilize()
    ids = tuple(a.argid for a in colony.core(3).generators.get(gid).open_args())
    graph = batch_id(gid, ids)
    at_ns = colony.core(3).unix_ns()
    for n, proposed in ((3, ids), (4, ids[:1])):  # the two members that take batches
        batch = Batch(graph, proposed, at_ns, ("work",))
        colony.net.call(n, lambda core, now, batch=batch: core.generators._decide(
            core.generators.get(gid), batch, 3, taker=False))  # fmt: skip
    colony.run_until(lambda: all(batches(colony, n, gid) for n in range(5)), max_s=20)
    colony.net.advance(3.0)
    colony.net.stabilize()
    seen = {tuple(b) for n in range(5) for b in batches(colony, n, gid)}
    assert len(seen) == 1 and seen <= {("p", "q"), ("p",)}, seen
    args = [a for n in range(5) for a in colony.core(n).generators.get(gid).args.values()]
    uses = {(a.value, a.batch) for a in args if a.batch is not None}
    assert uses == {(v, graph.hex()) for v in next(iter(seen))}, uses


def test_a_removed_generator_takes_no_more_args_and_bad_ones_are_refused() -> None:
    colony = Colony(3)
    gid = add(colony, trigger=2)
    colony.result(1, rq.RemoveGenerator(gid))
    colony.net.stabilize()
    with pytest.raises(NotFound):
        colony.result(2, rq.PackGenerator(gid, "late"))
    assert colony.result(0, rq.ListGenerators()) == []
    for body, field in (({"trigger": 0}, "trigger"), ({"trigger": 2, "timeout": 0}, "timeout"),
                        ({"trigger": 2, "workflowspec": {}}, "workflow")):  # fmt: skip
        with pytest.raises(ValidationError, match=field):
            colony.result(0, rq.AddGenerator({"name": "g", "workflowspec": STEP, **body}))


def test_an_arg_that_comes_before_its_generator_is_kept_for_it() -> None:
    colony = Colony(3)
    gid = add(colony, trigger=2)
    node = colony.core(0)
    definition = node.generators.get(gid).body
    fresh = type(node.generators)(node)  # a node that hears the arg first (gossip order)
    arg = {"generatorid": gid.hex(), "argid": "ab" * 16, "arg": "early", "packed_ns": 1}
    fresh.on_record(None, "generator-arg", arg)
    assert gid not in fresh.generators
    fresh.on_record(None, "generator", definition)
    assert [a.value for a in fresh.get(gid).open_args()] == ["early"]


def test_an_arg_that_was_published_but_never_held_is_left_out_for_good() -> None:
    """Found by the claims scenario with compaction (chaos seed 46): two args whose
    packer died after publishing them but before a majority held them were drawn into
    every batch in turn (each left out only 10 s at a time), so no batch was ever whole
    and an acknowledged arg was never used. Once such an arg is older than any
    submission's timeout, it is left out for good."""
    from colonynode.consensus import messages as lm
    from colonynode.node.core.generators import NEVER_HELD_S

    colony = Colony(5)
    gid = add(colony, trigger=2)
    colony.ask(3, rq.PackGenerator(gid, "ghost"))  # no voter ever hears of it
    colony.run_until(lambda: colony.net.t > NEVER_HELD_S + 1, max_s=NEVER_HELD_S + 5,
                     drop=lambda s, d, m: isinstance(m, lm.Submit))  # fmt: skip
    pack(colony, 1, gid, "a1")
    pack(colony, 2, gid, "a2")
    colony.run_until(lambda: len(batches(colony, 4, gid)) == 1, max_s=30)
    assert batches(colony, 4, gid) == [["a1", "a2"]]
    never = sum(colony.core(i).generators.counters["args_never_held"] for i in range(5))
    assert never >= 1


SHORT = Retention(retention_s=3.0, pressed_s=3.0)


def generator_registers(colony: Colony, voter: int, gid: bytes) -> dict[str, int]:
    """What a voter holds of a generator, by kind: its packed args, its batches'
    decisions and the steps of its batches' workflows."""
    regs = colony.core(voter).consensus.voter.registers.values()
    mine = [r for r in regs if r.terms.series == gid]
    return {"args": sum(not r.terms.tick for r in mine),
            "decisions": sum(r.terms.tick == r.pid for r in mine),
            "steps": sum(bool(r.terms.tick) and r.terms.tick != r.pid for r in mine)}  # fmt: skip


def let_pass(colony: Colony, seconds: float) -> None:
    for _ in range(int(seconds)):
        colony.net.advance(1.0)
        colony.net.stabilize()


def test_a_generators_args_and_decisions_are_compacted_once_its_workflows_are_held() -> None:
    """#19, bounded state: a packed arg and a batch's decision are registers of the
    generator's series; once the batch's workflow is held they go after the retention,
    and a late Submit of a dropped arg is refused COMPACTED (its series' horizon)."""
    colony = Colony(5, retention=SHORT)
    gid = add(colony, trigger=2)
    for i in range(6):
        pack(colony, i % 5, gid, f"c{i}")
    colony.run_until(lambda: len(batches(colony, 0, gid)) == 3, max_s=20)
    assert generator_registers(colony, 0, gid) == {"args": 6, "decisions": 3, "steps": 3}
    let_pass(colony, 4 * SHORT.retention_s)
    for v in range(3):  # the voters; the steps wait for an executor: open, kept
        assert generator_registers(colony, v, gid) == {"args": 0, "decisions": 0, "steps": 3}
        assert colony.core(v).consensus.voter.compaction.series[gid] > 0
    assert batches(colony, 0, gid) == [["c0", "c1"], ["c2", "c3"], ["c4", "c5"]]
    core = colony.core(1)
    used = sorted(core.generators.get(gid).args.values(), key=lambda a: a.packed_ns)[0]
    terms = ProcessTerms(used.argid, core.node_id, seq=used.packed_ns, maxretries=-1,
                         series=gid)  # fmt: skip
    late: list[Any] = []
    colony.net.call(1, lambda core, now: core.lease(lrq.SubmitProcess(terms), late.append))
    colony.run_until(lambda: bool(late))
    assert not late[0].acked and late[0].reason is Reason.COMPACTED


def test_a_batch_whose_taker_died_is_recovered_many_retentions_later() -> None:
    """The args of a batch whose taker died after closing them, before its workflow
    was held, are pinned (consensus/compaction.py "Pins"): kept past any retention, and
    the later registers of the generator with them, so the batch is recovered whenever
    a member comes to take it, and only then is it all compacted."""
    colony = Colony(5, retention=SHORT)
    gid = add(colony, trigger=2)
    taker = 3
    gens = [colony.core(n).generators for n in range(5)]
    for n, g in enumerate(gens):
        g.started = n == taker
    colony.core(taker).generators.submit = lambda *a, **kw: None  # type: ignore[method-assign]
    pack(colony, 0, gid, "p")
    pack(colony, 1, gid, "q")
    colony.run_until(lambda: gens[taker].counters["batches"] == 1, max_s=10)
    colony.net.crash(taker)
    let_pass(colony, 10 * SHORT.retention_s)
    for v in range(3):
        assert generator_registers(colony, v, gid) == {"args": 2, "decisions": 1, "steps": 0}
    assert batches(colony, 0, gid) == []
    for n in (0, 1, 2, 4):
        gens[n].started = True
        colony.net.call(n, lambda core, now: core.generators.replan())
    colony.run_until(lambda: batches(colony, 0, gid) == [["p", "q"]], max_s=20)
    let_pass(colony, 4 * SHORT.retention_s)
    for v in range(3):
        assert generator_registers(colony, v, gid) == {"args": 0, "decisions": 0, "steps": 1}
