"""A tiny hand-stepped colony of GossipCores for unit tests, over the stepped network
(simulations/stepped.py): instant FIFO delivery, no loss unless a test says so, one
shared clock the test advances."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.gossip import Accepted, GossipConfig, GossipCore
from colonynode.simulations.stepped import SteppedNet
from colonynode.storage.memory import MemoryStore

STEPS_MAX = 100_000  # deliveries in one settle(): a loop that never settles is a bug


def identity(i: int) -> Identity:
    return Identity(bytes([i + 1]) * 32)


class Colony:
    """`connect(a, b)` False: a and b are not peers, and nothing gets from a to b.
    `drop(src, dst, msg)` True (set it at any time) loses a message. `crash(i)` loses
    the node's core; `restart(i)` builds a new one from its store."""

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
        self.connect = connect
        self.drop: Callable[[int, int, Any], bool] = lambda src, dst, msg: False
        self.net = SteppedNet(
            [ident.node_id for ident in self.ids],
            lambda i, store, incarnation: self.make_core(i, store),
            link=lambda src, dst: self.connect(src, dst),
        )
        # the network's own lists and sets, shared: tests read and change them
        self.stores = self.net.stores
        self.cores = self.net.cores
        self.index = self.net.index
        self.events = self.net.node_events
        self.sent = self.net.sent  # (src, dst, msg), every message sent
        self.down = self.net.down
        self.wake_s = self.net.wake_at_s
        for i in range(n):
            self.net.tick(i)
            self._set_peers(i)
        self.settle()

    def make_core(self, i: int, store: MemoryStore | None = None) -> GossipCore:
        return GossipCore(
            self.ids[i],
            self.stores[i] if store is None else store,
            random.Random(i),
            self.config,
            is_member=self.members.__contains__,
        )

    @property
    def now_s(self) -> float:
        return self.net.t

    def node_id(self, i: int) -> NodeId:
        return self.ids[i].node_id

    def peers_of(self, i: int) -> list[NodeId]:
        return [
            self.node_id(j)
            for j in range(len(self.cores))
            if j != i and j not in self.down and self.connect(i, j)
        ]

    def _set_peers(self, i: int) -> None:
        self.net.call(i, lambda core, now_s: core.set_peers(now_s, self.peers_of(i)))

    def set_all_peers(self) -> None:
        for i in range(len(self.cores)):
            if i not in self.down:
                self._set_peers(i)

    def settle(self) -> None:
        """Deliver every message until no core has anything left to send."""
        self.net.flush_all()  # what tests made cores do by hand
        self.net.stabilize(STEPS_MAX, drop=self.drop)

    def tick_all(self, until_s: float, step_s: float = 0.1) -> None:
        """Advance time to `until_s`, ticking every core every `step_s`, settling each time."""
        while self.now_s + step_s <= until_s + 1e-9:
            self.net.advance(step_s)
            self.settle()

    def publish(self, i: int, body: Any, kind: str = "note") -> Any:
        env = self.net.call(i, lambda core, now_s: core.publish(now_s, kind, body))
        self.settle()
        return env

    def accepted(self, i: int) -> list[Accepted]:
        return self.net.events(i, Accepted)

    def crash(self, i: int) -> None:
        self.net.crash(i)

    def restart(self, i: int) -> None:
        self.net.restart(i)
        self.set_all_peers()
        self.settle()

    def sent_to(self, dst: int, kind: type) -> list[Any]:
        return [m for s, d, m in self.sent if d == dst and isinstance(m, kind)]
