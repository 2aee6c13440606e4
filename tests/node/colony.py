"""A colony of real NodeCores on the stepped network (simulations/stepped.py), for unit
tests of the node's decisions: an owner-signed roster, every node connected to every
other, one clock (global time `t`; wall-clock times are `T0 + t`)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from colonynode.consensus.certs import statement
from colonynode.core.envelope import Envelope
from colonynode.core.identity import Identity
from colonynode.core.process import parse_spec
from colonynode.core.roster import Member, Roster, sign_roster
from colonynode.node.core import Answer, NodeConfig, NodeCore
from colonynode.node.core import requests as rq
from colonynode.simulations.stepped import Drop, SteppedNet
from colonynode.storage.memory import MemoryStore

T0_NS = 1_800_000_000 * 10**9
STEP_S = 0.01


def identity(i: int) -> Identity:
    return Identity(bytes([i + 1]) * 32)


def roster_of(
    n: int, voters: int = 3, roles: Callable[[int], tuple[str, ...]] | None = None
) -> Envelope:
    ids = [identity(i) for i in range(n)]

    def default(i: int) -> tuple[str, ...]:
        return ("executor", "submitter") if i >= voters else ("submitter",)

    members = tuple(
        Member(ids[i].node_id, f"n{i}", tuple(sorted((roles or default)(i)))) for i in range(n)
    )
    roster = Roster("lab", ids[0].node_id, 1, members, tuple(x.node_id for x in ids[:voters]))
    return sign_roster(ids[0], roster)


class Colony:
    def __init__(self, n: int = 5, voters: int = 3, **config: Any) -> None:
        self.envelope = roster_of(n, voters)
        self.identities = [identity(i) for i in range(n)]
        self.config = NodeConfig(**{"dial": False, "colony": "lab", **config})
        ids = [x.node_id for x in self.identities]
        self.net: SteppedNet[NodeCore] = SteppedNet(ids, self._make)
        self.net.tick_all()
        self.connect_all()

    def _make(self, i: int, store: MemoryStore, incarnation: int) -> NodeCore:
        return NodeCore(
            self.identities[i],
            store,
            random.Random(f"{i}:{incarnation}"),
            unix_ns=lambda: T0_NS + int(self.net.t * 1e9),
            config=self.config,
            roster=self.envelope,
        )

    def core(self, i: int) -> NodeCore:
        return self.net.core(i)

    def connect_all(self) -> None:
        ids = [x.node_id for x in self.identities]
        for i in range(len(ids)):
            if self.net.is_up(i):
                peers = [p for j, p in enumerate(ids) if j != i and self.net.is_up(j)]
                self.net.call(i, lambda core, now, peers=peers: core.set_connected(now, peers))
        self.net.stabilize()

    def ask(self, i: int, req: Any) -> int:
        rid: int = self.net.call(i, lambda core, now: core.request(now, req))
        return rid

    def answer(self, i: int, rid: int) -> Answer | None:
        for a in self.net.events(i, Answer):
            if a.req == rid:
                return a
        return None

    def run_until(
        self, cond: Callable[[], bool], max_s: float = 30.0, *, drop: Drop | None = None
    ) -> None:
        """Deliver, then let time pass in small steps, until `cond` holds (`drop`: the
        messages lost on the way)."""
        end = self.net.t + max_s
        self.net.stabilize(drop=drop)
        while not cond():
            assert self.net.t < end, "the condition did not hold in time"
            self.net.advance(STEP_S)
            self.net.stabilize(drop=drop)

    def result(self, i: int, req: Any, max_s: float = 30.0) -> Any:
        """Ask node `i`, wait for the answer; its value (an error is raised)."""
        rid = self.ask(i, req)
        self.run_until(lambda: self.answer(i, rid) is not None, max_s)
        answer = self.answer(i, rid)
        assert answer is not None
        if answer.error is not None:
            raise answer.error
        return answer.value


def spec(**kw: Any) -> Any:
    body = {"funcname": "f", "conditions": {"executortype": "py"}, **kw}
    return parse_spec(body)


def submit(colony: Colony, node: int, **kw: Any) -> bytes:
    view = colony.result(node, rq.SubmitProcess(spec(**kw)))
    return bytes.fromhex(view["processid"])


def cert_of(pid: bytes, view: Any, voters: tuple[int, ...] = (0, 1)) -> Any:
    """A certificate of `view`'s result, signed by these voters (the colony's first
    nodes are its voters): what the voters give a claimer whose close committed."""
    message = statement(pid, view)
    return tuple((identity(v).node_id, identity(v).sign(message)) for v in voters)
