"""Small cores and a scenario for the simulator's own tests (not registered)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from colonynode.core.effects import Effects
from colonynode.core.ids import NodeId
from colonynode.simulations.faults import PROFILES, FaultProfile
from colonynode.simulations.node import SyncPolicy, always_sync
from colonynode.simulations.scenario import Scenario
from colonynode.simulations.world import BOOT_SPREAD_S, World
from colonynode.storage.api import Store


class RecorderCore:
    """Records every input; sends, writes and wakes when a test tells it to."""

    def __init__(self, node_id: NodeId, store: Store, rng: random.Random) -> None:
        self.node_id = node_id
        self.store = store
        self.log: list[tuple[str, float, NodeId | None, Any]] = []
        self.boots = int(store.get("t", b"boots") or 0) + 1
        self.wake_every_s: float | None = None
        self.next_wake_s: float | None = None
        self._effects = Effects()
        self._effects.writes.append(("t", b"boots", self.boots))

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        self.log.append(("msg", now_s, sender, msg))

    def on_tick(self, now_s: float) -> None:
        self.log.append(("tick", now_s, None, None))
        if self.wake_every_s is not None:
            self.next_wake_s = now_s + self.wake_every_s
        elif self.next_wake_s is not None and self.next_wake_s <= now_s:
            self.next_wake_s = None  # that timer is done

    def take_effects(self) -> Effects:
        effects, self._effects = self._effects, Effects()
        effects.wake_at_s = self.next_wake_s
        return effects

    # what tests make it do (through SimNode.call, so it is a step)
    def send(self, dest: NodeId, msg: Any) -> None:
        self._effects.sends.append((dest, msg))

    def write(self, table: str, key: bytes, value: Any) -> None:
        self._effects.writes.append((table, key, value))

    def wake_at(self, local_s: float) -> None:
        self.next_wake_s = local_s

    def kinds(self) -> list[str]:
        return [entry[0] for entry in self.log]


class RecorderScenario(Scenario):
    name = "test-recorder"
    description = "RecorderCore nodes for the simulator's tests"

    def __init__(self, sync_policy: SyncPolicy = always_sync) -> None:
        super().__init__()
        self.sync_policy = sync_policy
        self.events: list[tuple[int, Any]] = []

    def build(self, world: World) -> None:
        world.add_nodes(RecorderCore, "test", sync_policy=self.sync_policy)


def booted_world(
    n: int = 3,
    *,
    seed: int = 1,
    profile: FaultProfile | None = None,
    sync_policy: SyncPolicy = always_sync,
    safety_s: float = 1000.0,
) -> World:
    """A world of RecorderCores, run until every node has booted (no faults by default)."""
    world = World(
        RecorderScenario(sync_policy),
        seed=seed,
        nodes=n,
        profile=profile or PROFILES["none"],
        safety_s=safety_s,
        liveness_s=0.0,
    )
    world.start()
    world.run_until(BOOT_SPREAD_S)
    assert all(node.alive for node in world.nodes)
    return world


def core(world: World, index: int) -> RecorderCore:
    c = world.nodes[index].core
    assert isinstance(c, RecorderCore)
    return c


def do(world: World, index: int, fn: Callable[[RecorderCore, float], None]) -> bool:
    """Run `fn(core, now)` as a step of node `index`, now."""
    return world.nodes[index].call(fn)
