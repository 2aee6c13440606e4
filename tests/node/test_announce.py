"""A node announces the processes that start, are given back or close in one step in one
gossip record per kind (node/core/processes.py), and every other node's view takes each
process of it; on the stepped network with real NodeCores."""

from __future__ import annotations

from typing import Any

from colonynode.consensus.certs import statement
from colonynode.consensus.messages import RegisterView
from colonynode.core.process import State
from colonynode.core.scheduling import ExecutorAdvert
from colonynode.gossip.records import open_body
from colonynode.node.core import requests as rq
from colonynode.node.core.announce import RUNNING_DELAY_S
from colonynode.node.core.certs import certified_body
from colonynode.node.core.processes import (
    ANNOUNCE_ITEMS_MAX,
    CLOSED_KIND,
    RUNNING_KIND,
    ProcessBook,
)
from tests.node.colony import Colony, cert_of, identity, submit


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


HOLDER = identity(3).node_id


def run_by_3(pid: bytes, output: Any, state: State = State.SUCCESS) -> RegisterView:
    """The voters' register of a run node 3 held at epoch 1 and closed with `output`."""
    return RegisterView(pid, state, 1, HOLDER, 0, output)


def closing_item(pid: bytes, output: Any, cert: Any = None) -> dict[str, Any]:
    """A closing record's item of node 3's run, certified by a majority of the voters
    unless `cert` says otherwise."""
    cert = cert_of(pid, run_by_3(pid, output)) if cert is None else cert
    return {"processid": pid.hex(), "state": "SUCCESS", "output": output, "epoch": 1,
            "holder": bytes(HOLDER), "cert": [[bytes(v), sig] for v, sig in cert]}  # fmt: skip


def test_the_closes_announced_in_one_step_go_out_in_one_record() -> None:
    colony = Colony(5)
    pids = [submit(colony, 0) for _ in range(2)]
    items = [closing_item(p, [i]) for i, p in enumerate(pids)]
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


def test_a_close_without_a_voter_majoritys_certificate_is_refused_and_counted() -> None:
    """#18: a member that announces a result the voters never signed (no certificate,
    one voter's signature only, the signatures of another output or state, a
    non-voter's, a forged one) is refused by every other node and counted; the process
    stays as it was there (an item with good signatures of too few voters here is held:
    a newer roster may make them a majority). With a majority's, it is taken."""
    colony = Colony(5)
    pids = [submit(colony, 0) for _ in range(6)]
    signed = cert_of(pids[5], run_by_3(pids[5], ["z"]))
    forged = [
        {"processid": pids[0].hex(), "state": "SUCCESS", "output": ["made up"]},
        closing_item(pids[1], ["a"], cert_of(pids[1], run_by_3(pids[1], ["a"]), voters=(0,))),
        closing_item(pids[2], ["b"], cert_of(pids[2], run_by_3(pids[2], ["real"]))),
        closing_item(pids[3], ["c"], cert_of(pids[3], run_by_3(pids[3], ["c"], State.FAILED))),
        closing_item(pids[4], ["d"], cert_of(pids[4], run_by_3(pids[4], ["d"]), voters=(3, 4))),
        closing_item(pids[5], ["z"], (signed[0], (signed[1][0], b"\0" * 64))),
    ]
    colony.net.call(4, lambda core, now: [core.announce(CLOSED_KIND, i) for i in forged])
    colony.net.stabilize()
    for n in range(4):
        assert [colony.core(n).book.state_of(p).name for p in pids] == ["WAITING"] * 6  # type: ignore[union-attr]
        # (good signatures, too few or of nodes no roster here names as voters: held
        # until a newer roster makes them a majority of its set, or for good)
        assert colony.core(n).counters["closes_refused"] == 4
        assert list(colony.core(n).held_closes.items) == [pids[1], pids[4]]
    good = closing_item(pids[0], ["real"])
    colony.net.call(4, lambda core, now: core.announce(CLOSED_KIND, good))
    colony.run_until(lambda: all(colony.core(n).book.state_of(pids[0]) is State.SUCCESS
                                 for n in range(5)))  # fmt: skip


def test_a_running_record_without_the_voters_grant_is_refused_and_counted() -> None:
    """#18: a member that announces a process RUNNING under a lease the voters never
    granted it (no certificate, its own signature, one voter's, the grant of another
    epoch, or of another holder) is refused by every other node and counted: their
    views keep the process waiting, so they still claim it (a view leaves a RUNNING
    process to its holder for the lease the item names, here an hour). With a
    majority's signatures of its grant, it is taken."""
    colony = Colony(5)
    pids = [submit(colony, 0) for _ in range(6)]
    me = identity(4)

    def grant(pid: bytes, epoch: int = 7, holder: int = 4) -> RegisterView:
        return RegisterView(pid, State.RUNNING, epoch, identity(holder).node_id, 0)

    def item(pid: bytes, cert: Any) -> dict[str, Any]:
        return {"processid": pid.hex(), "epoch": 7, "executor": "x", "lease_s": 3600.0,
                "cert": [[bytes(v), sig] for v, sig in cert]}  # fmt: skip

    own = statement(pids[1], grant(pids[1]))
    forged = [
        {"processid": pids[0].hex(), "epoch": 7, "lease_s": 3600.0},
        item(pids[1], ((me.node_id, me.sign(own)),)),
        item(pids[2], cert_of(pids[2], grant(pids[2]), voters=(0,))),
        item(pids[3], cert_of(pids[3], grant(pids[3], epoch=6))),
        item(pids[4], cert_of(pids[4], grant(pids[4], holder=3))),
    ]
    colony.net.call(4, lambda core, now: [core.announce(RUNNING_KIND, i) for i in forged])
    colony.run_until(lambda: colony.core(0).counters["running_refused"] == 5)
    colony.net.stabilize()
    for n in range(4):
        assert [colony.core(n).book.state_of(p).name for p in pids] == ["WAITING"] * 6  # type: ignore[union-attr]
        assert colony.core(n).counters["running_refused"] == 5
    good = item(pids[5], cert_of(pids[5], grant(pids[5])))
    colony.net.call(4, lambda core, now: core.announce(RUNNING_KIND, good))
    colony.run_until(lambda: all(colony.core(n).book.state_of(pids[5]) is State.RUNNING
                                 for n in range(5)))  # fmt: skip
    assert all(colony.core(n).counters["running_refused"] == 5 for n in range(4))


def test_a_voter_counts_its_own_register_as_its_signature() -> None:
    """A node whose voter holds the very result (or grant) an item claims counts its own
    vote without a signature: one Ed25519 check less per item (#14). A certificate of
    one other voter's signature is then a majority at that voter, and not at a node
    that is no voter (it holds it: a newer roster may make that one signer a majority)."""
    colony = Colony(5)
    pid = submit(colony, 0)
    advert = ExecutorAdvert("e", "py", cpu_millis=10**9, mem_bytes=10**15)
    executor = colony.result(3, rq.RegisterExecutor(advert))["executor_id"]
    colony.result(3, rq.Assign(executor, timeout_s=5))
    colony.ask(3, rq.CloseRun(executor, pid, True, [7]))
    colony.run_until(lambda: all(colony.core(n).book.state_of(pid) is State.SUCCESS
                                 for n in range(5)))  # fmt: skip
    reg = colony.core(0).consensus.voter.register(pid)
    assert reg is not None and reg.state is State.SUCCESS
    committed = RegisterView(pid, reg.state, reg.epoch, reg.holder, 0, reg.output)
    one = cert_of(pid, committed, voters=(1,))
    item = {"processid": pid.hex(), "state": "SUCCESS", "output": [7], "epoch": reg.epoch,
            "holder": bytes(HOLDER), "cert": [[bytes(v), sig] for v, sig in one]}  # fmt: skip
    body = {"processes": [item]}
    at_voter = certified_body(colony.core(0), HOLDER, CLOSED_KIND, body)
    at_member = certified_body(colony.core(4), HOLDER, CLOSED_KIND, body)
    assert at_voter == body and at_member == {"processes": []}
    assert pid in colony.core(4).held_closes.items
