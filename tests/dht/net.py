"""A tiny hand-stepped network of DhtCores for unit tests, over the stepped network
(simulations/stepped.py): instant FIFO delivery, nodes that can be switched off (put in
`down`: their messages vanish, so queries time out), a shared clock."""

from __future__ import annotations

import random
from typing import Any

from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.dht.config import DhtConfig
from colonynode.dht.core import DhtCore
from colonynode.dht.messages import CODEC, PeerInfo
from colonynode.simulations.stepped import SteppedNet
from colonynode.storage.memory import MemoryStore

STEPS_MAX = 1_000_000


def identity(i: int) -> Identity:
    return Identity(i.to_bytes(32, "big"))


class Net:
    def __init__(
        self, n: int, config: DhtConfig | None = None, *, wire: bool = False, seed: int = 1
    ) -> None:
        self.config = config or DhtConfig.local()
        self.seed = seed
        self.identities = [identity(i + 1) for i in range(n)]
        self.wire = wire  # encode and decode every message with the codec
        self.net = SteppedNet(
            [x.node_id for x in self.identities],
            lambda i, store, incarnation: self.make(i, seed, store),
            wire=CODEC if wire else None,
            link=lambda src, dst: src not in self.down,  # a switched-off sender's too
        )
        # the network's own lists and sets, shared: tests read and change them
        self.ids = self.net.ids
        self.stores = self.net.stores
        self.cores = self.net.cores
        self.down = self.net.down
        self.index = self.net.index
        self.wakes = self.net.wake_at_s

    def make(self, i: int, seed: int = 1, store: MemoryStore | None = None) -> DhtCore:
        return DhtCore(
            self.identities[i].node_id,
            self.stores[i] if store is None else store,
            random.Random(f"{seed}:{i}"),
            self.config,
            identity=self.identities[i],
            addrs=(f"/ip4/10.0.0.{i}/tcp/4001",),
        )

    @property
    def now_s(self) -> float:
        return self.net.t

    @property
    def delivered(self) -> int:
        return self.net.delivered

    @property
    def events(self) -> list[tuple[int, Any]]:
        """(node, event), node by node."""
        return [(i, e) for i, events in enumerate(self.net.node_events) for e in events]

    @property
    def queue(self) -> list[tuple[NodeId, NodeId, Any]]:
        """(src, dst, msg) in flight."""
        return [(self.ids[s], self.ids[d], m) for s, d, m in self.net.inflight]

    def info(self, i: int) -> PeerInfo:
        return PeerInfo(self.ids[i], (f"/ip4/10.0.0.{i}/tcp/4001",))

    def flush(self, i: int) -> None:
        self.net.flush(i)

    def call(self, i: int, fn: Any) -> Any:
        result = self.net.call(i, fn)
        self.run()
        return result

    def run(self) -> None:
        """Deliver every message (and what it causes) at the current instant."""
        self.net.stabilize(STEPS_MAX)

    def tick_all(self) -> None:
        self.net.tick_all()
        self.run()

    def advance(self, seconds: float, step_s: float = 0.1) -> None:
        """Let time pass, ticking every node each `step_s`."""
        end = self.now_s + seconds
        while self.now_s < end - 1e-9:
            self.net.t = min(end, self.now_s + step_s)
            self.tick_all()

    def join_all(self) -> None:
        """Boot every node (node 0 first) and bootstrap each through node 0."""
        self.tick_all()
        for i in range(1, len(self.cores)):
            self.call(i, lambda core, now_s: core.bootstrap(now_s, [self.info(0)]))
        self.advance(2.0)

    def results(self, kind: type, i: int | None = None) -> list[Any]:
        if i is not None:
            return self.net.events(i, kind)
        return [e for _, e in self.events if isinstance(e, kind)]

    def restart(self, i: int) -> None:
        """A crash (unsynced writes lost) and a new core from the store, ticked."""
        self.net.restart(i)
        self.run()
