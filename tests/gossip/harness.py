"""A tiny hand-stepped colony of GossipCores for unit tests: instant delivery, no loss
unless a test says so, one shared clock the test advances."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from colonynode.core.effects import Effects
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.gossip import Accepted, GossipConfig, GossipCore
from colonynode.storage.memory import MemoryStore

STEPS_MAX = 100_000  # deliveries in one settle(): a loop that never settles is a bug


def identity(i: int) -> Identity:
    return Identity(bytes([i + 1]) * 32)


class Colony:
    def __init__(
        self,
        n: int,
        config: GossipConfig | None = None,
        *,
        connect: Callable[[int, int], bool] = lambda a, b: True,
        members: Iterable[int] | None = None,
    ) -> None:
        self.config = config or GossipConfig.lan()
        self.ids: list[Identity] = [identity(i) for i in range(n)]
        member_ids = range(n) if members is None else members
        self.members: set[NodeId] = {self.ids[i].node_id for i in member_ids}
        self.stores = [MemoryStore() for _ in range(n)]
        self.cores: list[GossipCore] = [self.make_core(i) for i in range(n)]
        self.index = {ident.node_id: i for i, ident in enumerate(self.ids)}
        self.connect = connect
        self.now_s = 0.0
        self.events: list[list[Any]] = [[] for _ in range(n)]
        self.sent: list[tuple[int, int, Any]] = []  # (src, dst, msg), every message
        self.drop: Callable[[int, int, Any], bool] = lambda src, dst, msg: False
        self.down: set[int] = set()
        self.wake_s: list[float | None] = [None] * n
        for i in range(n):
            self.cores[i].on_tick(self.now_s)
        self.set_all_peers()
        self.settle()

    def make_core(self, i: int) -> GossipCore:
        return GossipCore(
            self.ids[i],
            self.stores[i],
            random.Random(i),
            self.config,
            is_member=self.members.__contains__,
        )

    def node_id(self, i: int) -> NodeId:
        return self.ids[i].node_id

    def peers_of(self, i: int) -> list[NodeId]:
        return [
            self.node_id(j)
            for j in range(len(self.cores))
            if j != i and j not in self.down and self.connect(i, j)
        ]

    def set_all_peers(self) -> None:
        for i, core in enumerate(self.cores):
            if i not in self.down:
                core.set_peers(self.now_s, self.peers_of(i))

    def settle(self) -> None:
        """Deliver every message until no core has anything left to send."""
        queue: list[tuple[int, int, Any]] = []
        for i in range(len(self.cores)):
            queue.extend(self._effects(i))
        steps = 0
        while queue:
            steps += 1
            assert steps < STEPS_MAX, "the colony never settles"
            src, dst, msg = queue.pop(0)
            self.sent.append((src, dst, msg))
            if dst in self.down or self.drop(src, dst, msg):
                continue
            self.cores[dst].on_message(self.now_s, self.node_id(src), msg)
            queue.extend(self._effects(dst))

    def _effects(self, i: int) -> list[tuple[int, int, Any]]:
        if i in self.down:
            return []
        effects: Effects = self.cores[i].take_effects()
        if effects.writes:
            self.stores[i].apply(effects.writes)
        self.events[i].extend(effects.events)
        self.wake_s[i] = effects.wake_at_s
        return [(i, self.index[dest], msg) for dest, msg in effects.sends]

    def tick_all(self, until_s: float, step_s: float = 0.1) -> None:
        """Advance time to `until_s`, ticking every core every `step_s`, settling each time."""
        while self.now_s + step_s <= until_s + 1e-9:
            self.now_s += step_s
            for i, core in enumerate(self.cores):
                if i not in self.down:
                    core.on_tick(self.now_s)
            self.settle()

    def publish(self, i: int, body: Any, kind: str = "note") -> Any:
        env = self.cores[i].publish(self.now_s, kind, body)
        self.settle()
        return env

    def accepted(self, i: int) -> list[Accepted]:
        return [e for e in self.events[i] if isinstance(e, Accepted)]

    def crash(self, i: int) -> None:
        self.down.add(i)

    def restart(self, i: int) -> None:
        self.down.discard(i)
        self.cores[i] = self.make_core(i)
        self.cores[i].on_tick(self.now_s)
        self.set_all_peers()
        self.settle()

    def sent_to(self, dst: int, kind: type) -> list[Any]:
        return [m for s, d, m in self.sent if d == dst and isinstance(m, kind)]
