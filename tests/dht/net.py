"""A tiny hand-stepped network of DhtCores for unit tests: instant FIFO delivery, nodes
that can be switched off (their messages vanish, so queries time out), a shared clock."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.dht.config import DhtConfig
from colonynode.dht.core import DhtCore
from colonynode.dht.messages import CODEC, PeerInfo
from colonynode.storage.memory import MemoryStore

STEPS_MAX = 1_000_000


def identity(i: int) -> Identity:
    return Identity(i.to_bytes(32, "big"))


class Net:
    def __init__(
        self, n: int, config: DhtConfig | None = None, *, wire: bool = False, seed: int = 1
    ) -> None:
        self.config = config or DhtConfig.local()
        self.now_s = 0.0
        self.identities = [identity(i + 1) for i in range(n)]
        self.ids = [x.node_id for x in self.identities]
        self.stores = [MemoryStore() for _ in range(n)]
        self.cores = [self.make(i, seed) for i in range(n)]
        self.down: set[int] = set()
        self.index = {nid: i for i, nid in enumerate(self.ids)}
        self.queue: deque[tuple[NodeId, NodeId, Any]] = deque()
        self.events: list[tuple[int, Any]] = []
        self.wakes: list[float | None] = [None] * n
        self.wire = wire  # encode and decode every message with the codec
        self.delivered = 0

    def make(self, i: int, seed: int = 1) -> DhtCore:
        return DhtCore(
            self.identities[i].node_id,
            self.stores[i],
            random.Random(f"{seed}:{i}"),
            self.config,
            identity=self.identities[i],
            addrs=(f"/ip4/10.0.0.{i}/tcp/4001",),
        )

    def info(self, i: int) -> PeerInfo:
        return PeerInfo(self.ids[i], (f"/ip4/10.0.0.{i}/tcp/4001",))

    def flush(self, i: int) -> None:
        effects = self.cores[i].take_effects()
        if effects.writes:
            self.stores[i].apply(effects.writes)
        for dest, msg in effects.sends:
            self.queue.append((self.ids[i], dest, msg))
        for event in effects.events:
            self.events.append((i, event))
        self.wakes[i] = effects.wake_at_s

    def call(self, i: int, fn: Any) -> Any:
        result = fn(self.cores[i], self.now_s)
        self.flush(i)
        self.run()
        return result

    def run(self) -> None:
        """Deliver every message (and what it causes) at the current instant."""
        for _ in range(STEPS_MAX):
            if not self.queue:
                return
            src, dst, msg = self.queue.popleft()
            j = self.index[dst]
            if j in self.down or self.index[src] in self.down:
                continue
            if self.wire:
                [msg] = CODEC.decode_batch(CODEC.encode_batch([msg]))
            self.delivered += 1
            self.cores[j].on_message(self.now_s, src, msg)
            self.flush(j)
        raise AssertionError("the network never went quiet")

    def tick_all(self) -> None:
        for i, core in enumerate(self.cores):
            if i not in self.down:
                core.on_tick(self.now_s)
                self.flush(i)
        self.run()

    def advance(self, seconds: float, step_s: float = 0.1) -> None:
        """Let time pass, ticking every node each `step_s`."""
        end = self.now_s + seconds
        while self.now_s < end - 1e-9:
            self.now_s = min(end, self.now_s + step_s)
            self.tick_all()

    def join_all(self) -> None:
        """Boot every node (node 0 first) and bootstrap each through node 0."""
        self.tick_all()
        for i in range(1, len(self.cores)):
            self.call(i, lambda core, now_s: core.bootstrap(now_s, [self.info(0)]))
        self.advance(2.0)

    def results(self, kind: type, i: int | None = None) -> list[Any]:
        return [e for j, e in self.events if isinstance(e, kind) and (i is None or j == i)]

    def restart(self, i: int) -> None:
        self.stores[i].crash(None)
        self.cores[i] = self.make(i)
        self.down.discard(i)
        self.cores[i].on_tick(self.now_s)
        self.flush(i)
        self.run()
