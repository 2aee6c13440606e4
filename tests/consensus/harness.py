"""A hand-stepped colony of `ConsensusCore`s for unit tests (no simulator, no network
model): messages wait in a list until a test delivers them, one global time drives every
node's clock (rate 1 + drift per node), and every step persists before it sends."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from colonynode.consensus import ClaimerConfig, ConsensusCore, Timing
from colonynode.consensus.voter import HasRole
from colonynode.core.ids import NodeId
from colonynode.storage.memory import MemoryStore

TIMING = Timing(drift=0.001, margin_s=0.05)


def nid(i: int) -> NodeId:
    return NodeId(bytes([i + 1]) * 32)


@dataclass
class Node:
    node_id: NodeId
    store: MemoryStore
    core: ConsensusCore | None
    rate: float = 1.0
    events: list[Any] = field(default_factory=list)
    up: bool = True
    incarnation: int = 0


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
    ) -> None:
        self.t = 0.0
        self.has_role: HasRole = has_role or (lambda node, role: True)
        self.voter_ids = tuple(nid(i) for i in range(voters))
        self.config = config or ClaimerConfig(lease_s=2.0)
        self.planted_bug = planted_bug
        self.nodes: list[Node] = []
        for i in range(voters + claimers):
            node = Node(nid(i), MemoryStore(), None, (rates or {}).get(i, 1.0))
            node.core = self._make(i, node)
            self.nodes.append(node)
        self.inflight: list[tuple[int, int, Any]] = []  # (src, dst, msg)

    def _make(self, i: int, node: Node) -> ConsensusCore:
        voters = self.voter_ids
        return ConsensusCore(
            node.node_id,
            node.store,
            random.Random(f"{i}:{node.incarnation}"),  # a new stream per incarnation
            voters=voters,
            has_role=self.has_role,
            config=self.config if i >= len(self.voter_ids) else ClaimerConfig(lease_s=2.0),
            timing=TIMING,
            planted_bug=self.planted_bug,
        )

    def index(self, node_id: NodeId) -> int:
        return next(i for i, n in enumerate(self.nodes) if n.node_id == node_id)

    def local(self, i: int) -> float:
        return self.t * self.nodes[i].rate

    def core(self, i: int) -> ConsensusCore:
        core = self.nodes[i].core
        assert core is not None
        return core

    def flush(self, i: int) -> None:
        node = self.nodes[i]
        effects = self.core(i).take_effects()
        node.store.apply(effects.writes, sync=True)  # persist before send
        for to, msg in effects.sends:
            self.inflight.append((i, self.index(to), msg))
        node.events.extend(effects.events)

    def call(self, i: int, fn: Any) -> Any:
        result = fn(self.core(i), self.local(i))
        self.flush(i)
        return result

    def tick(self, i: int) -> None:
        if self.nodes[i].up:
            self.core(i).on_tick(self.local(i))
            self.flush(i)

    def advance(self, dt_s: float, *, tick: bool = True) -> None:
        self.t += dt_s
        if tick:
            for i in range(len(self.nodes)):
                self.tick(i)

    def deliver(self, *, drop: Any = None, rounds_max: int = 100) -> None:
        """Deliver everything in flight (and what it causes), in order. `drop(src, dst,
        msg)` True loses a message; messages to a down node are lost."""
        for _ in range(rounds_max):
            if not self.inflight:
                return
            batch, self.inflight = self.inflight, []
            for src, dst, msg in batch:
                if not self.nodes[dst].up or (drop is not None and drop(src, dst, msg)):
                    continue
                self.core(dst).on_message(self.local(dst), self.nodes[src].node_id, msg)
                self.flush(dst)
        if rounds_max == 1:
            return  # one round asked for: what it caused stays in flight
        raise AssertionError("messages still in flight after rounds_max rounds")

    def crash(self, i: int) -> None:
        node = self.nodes[i]
        node.up = False
        node.core = None
        node.store.crash()

    def restart(self, i: int) -> None:
        node = self.nodes[i]
        node.up = True
        node.incarnation += 1
        node.core = self._make(i, node)
        self.tick(i)

    def events(self, i: int, kind: type) -> list[Any]:
        return [e for e in self.nodes[i].events if isinstance(e, kind)]
