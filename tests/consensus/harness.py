"""A hand-stepped colony of `ConsensusCore`s for unit tests, over the stepped network
(simulations/stepped.py): messages wait in `inflight` until a test delivers them, one
global time drives every node's clock (rate 1 + drift per node), and every step persists
before it sends."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from colonynode.consensus import ClaimerConfig, ConsensusCore, Timing
from colonynode.consensus.certs import Sign
from colonynode.consensus.compaction import Pinned, Retention
from colonynode.consensus.voter import HasRole
from colonynode.core.ids import NodeId
from colonynode.simulations.stepped import InFlight, SteppedNet
from colonynode.storage.memory import MemoryStore

TIMING = Timing(drift=0.001, margin_s=0.05)


def nid(i: int) -> NodeId:
    return NodeId(bytes([i + 1]) * 32)


class Node:
    """Node i of the colony, as a view of the network: `up = False` unplugs it (no
    ticks, what arrives for it is lost), `up = True` plugs it back in."""

    __slots__ = ("i", "net")

    def __init__(self, net: SteppedNet[ConsensusCore], i: int) -> None:
        self.net = net
        self.i = i

    @property
    def node_id(self) -> NodeId:
        return self.net.ids[self.i]

    @property
    def store(self) -> MemoryStore:
        return self.net.stores[self.i]

    @property
    def core(self) -> ConsensusCore | None:
        return self.net.cores[self.i]

    @property
    def rate(self) -> float:
        return self.net.rates[self.i]

    @property
    def events(self) -> list[Any]:
        return self.net.node_events[self.i]

    @property
    def incarnation(self) -> int:
        return self.net.incarnations[self.i]

    @property
    def up(self) -> bool:
        return self.net.is_up(self.i)

    @up.setter
    def up(self, value: bool) -> None:
        if value:
            self.net.down.discard(self.i)
        else:
            self.net.down.add(self.i)


class Colony:
    """`voters` voter nodes (0..v-1) and `claimers` claimer nodes after them (with
    `config`; voters claim only when a test asks them to). `has_role` is the roster's
    membership check (default: every node has every role)."""

    def __init__(
        self,
        voters: int = 3,
        claimers: int = 2,
        *,
        config: ClaimerConfig | None = None,
        rates: dict[int, float] | None = None,
        planted_bug: str = "",
        has_role: HasRole | None = None,
        retention: Retention | None = None,
        unix_ns: Callable[[], int | None] = lambda: None,
        pinned: Pinned | None = None,
        sign_with: Callable[[int], Sign] | None = None,
    ) -> None:
        self.retention = retention
        self.unix_ns = unix_ns
        self.pinned = pinned
        self.sign_with = sign_with  # node i's signing key (None: voters sign nothing)
        self.has_role: HasRole = has_role or (lambda node, role: True)
        self.voter_ids = tuple(nid(i) for i in range(voters))
        self.config = config or ClaimerConfig(lease_s=2.0)
        self.planted_bug = planted_bug
        ids = [nid(i) for i in range(voters + claimers)]
        self.net = SteppedNet(ids, self._make, rates=rates)
        self.nodes = [Node(self.net, i) for i in range(len(ids))]

    def _make(self, i: int, store: MemoryStore, incarnation: int) -> ConsensusCore:
        return ConsensusCore(
            nid(i),
            store,
            random.Random(f"{i}:{incarnation}"),  # a new stream per incarnation
            voters=self.voter_ids,
            has_role=self.has_role,
            config=self.config if i >= len(self.voter_ids) else ClaimerConfig(lease_s=2.0),
            timing=TIMING,
            retention=self.retention,
            unix_ns=self.unix_ns,
            pinned=self.pinned,
            sign=None if self.sign_with is None else self.sign_with(i),
            planted_bug=self.planted_bug,
        )

    @property
    def t(self) -> float:
        return self.net.t

    @t.setter
    def t(self, value: float) -> None:
        self.net.t = value

    @property
    def inflight(self) -> list[InFlight]:
        """(src, dst, msg) waiting for delivery; tests reorder, filter and extend it."""
        return self.net.inflight

    @inflight.setter
    def inflight(self, value: list[InFlight]) -> None:
        self.net.inflight = value

    def index(self, node_id: NodeId) -> int:
        return self.net.index[node_id]

    def local(self, i: int) -> float:
        return self.net.local(i)

    def core(self, i: int) -> ConsensusCore:
        return self.net.core(i)

    def flush(self, i: int) -> None:
        self.net.flush(i)

    def call(self, i: int, fn: Any) -> Any:
        return self.net.call(i, fn)

    def tick(self, i: int) -> None:
        self.net.tick(i)

    def advance(self, dt_s: float, *, tick: bool = True) -> None:
        self.net.advance(dt_s, tick=tick)

    def deliver(self, *, drop: Any = None, rounds_max: int = 100) -> None:
        """Deliver everything in flight (and what it causes), in order. `drop(src, dst,
        msg)` True loses a message; messages to a down node are lost. With rounds_max=1,
        one round: what it caused stays in flight."""
        if rounds_max == 1:
            self.net.deliver_round(drop)
        else:
            self.net.deliver(drop=drop, rounds_max=rounds_max)

    def crash(self, i: int) -> None:
        self.net.crash(i)

    def restart(self, i: int) -> None:
        self.net.restart(i)

    def events(self, i: int, kind: type) -> list[Any]:
        return self.net.events(i, kind)
