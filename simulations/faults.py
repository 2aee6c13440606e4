"""The fault model: named profiles, seed-chosen profiles, and the injector of the safety phase.

A `FaultProfile` says how hostile the world is:

- the link model (latency, jitter, loss, duplication, reordering, bandwidth), applied to
  every frame (see network.py);
- the clock-rate drift bound, in ppm (every node's rate is within 1 ± bound);
- Poisson processes of faults during the safety phase, each with a mean time between
  events and a mean duration (both exponential): partitions (one at a time: isolate one
  node, split in two, or scatter into 3 groups), clogs (a link, or all links of a node),
  crashes (per node; the node restarts after a downtime, losing unsynced writes, and
  with `partial_flush` a random prefix of them survives), pauses (per node);
- `down_fraction_max`: never more than this fraction of nodes crashed or paused at once.

Named profiles: none, lossy, partitions, crashes, chaos. The profile `seed` is drawn from
the run's seed, VOPR style (swarm testing): each fault kind is switched on with
probability 1/2 and given random intensities, so a range of seeds explores many worlds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from colonynode.core.errors import ColonyError
from colonynode.simulations.engine import CALL
from colonynode.simulations.network import LinkModel

if TYPE_CHECKING:
    from colonynode.simulations.world import World

__all__ = [
    "PROFILES",
    "PROFILE_NAMES",
    "FaultInjector",
    "FaultProfile",
    "FaultStats",
    "resolve_profile",
    "seeded_profile",
]


@dataclass(frozen=True)
class FaultProfile:
    name: str
    link: LinkModel = field(default_factory=LinkModel)
    clock_drift_ppm: float = 100.0
    partition_every_s: float | None = None  # colony-wide mean time between partitions
    partition_s: float = 5.0
    clog_every_s: float | None = None  # colony-wide
    clog_s: float = 2.0
    crash_every_s: float | None = None  # per node mean time between crashes
    downtime_s: float = 3.0
    pause_every_s: float | None = None  # per node
    pause_s: float = 2.0
    down_fraction_max: float = 0.4
    partial_flush: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if isinstance(value, LinkModel) else value
        return out


_LOSSY_LINK = LinkModel(
    latency_min_s=0.002,
    latency_max_s=0.040,
    jitter_mean_s=0.010,
    loss_p=0.05,
    dup_p=0.02,
    reorder_p=0.05,
    reorder_window_s=0.100,
    bandwidth_bytes_per_s=1_000_000.0,
)

PROFILES: dict[str, FaultProfile] = {
    "none": FaultProfile("none", clock_drift_ppm=0.0),
    "lossy": FaultProfile("lossy", link=_LOSSY_LINK),
    "partitions": FaultProfile(
        "partitions",
        link=LinkModel(latency_min_s=0.002, latency_max_s=0.020, jitter_mean_s=0.002),
        partition_every_s=4.0,
        partition_s=3.0,
        clog_every_s=0.5,
        clog_s=2.0,
    ),
    "crashes": FaultProfile(
        "crashes",
        crash_every_s=20.0,
        downtime_s=3.0,
        pause_every_s=20.0,
        pause_s=2.0,
        partial_flush=True,
    ),
    "chaos": FaultProfile(
        "chaos",
        link=_LOSSY_LINK,
        clock_drift_ppm=200.0,
        partition_every_s=6.0,
        partition_s=3.0,
        clog_every_s=1.0,
        clog_s=2.0,
        crash_every_s=30.0,
        downtime_s=3.0,
        pause_every_s=30.0,
        pause_s=2.0,
        partial_flush=True,
    ),
}
PROFILE_NAMES = (*PROFILES, "seed")


def seeded_profile(seed: int) -> FaultProfile:
    """A profile drawn from the seed: each fault kind on with probability 1/2."""
    rng = random.Random(f"{seed}:profile")

    def on() -> bool:
        return rng.random() < 0.5

    lat_min = rng.uniform(0.0005, 0.01)
    link = LinkModel(
        latency_min_s=lat_min,
        latency_max_s=lat_min + rng.uniform(0.0, 0.05),
        jitter_mean_s=rng.uniform(0.0, 0.02),
        loss_p=rng.uniform(0.0, 0.15) if on() else 0.0,
        dup_p=rng.uniform(0.0, 0.05) if on() else 0.0,
        reorder_p=rng.uniform(0.0, 0.2) if on() else 0.0,
        reorder_window_s=rng.uniform(0.01, 0.2),
        bandwidth_bytes_per_s=rng.choice((100_000.0, 1_000_000.0, 10_000_000.0)) if on() else None,
    )
    return FaultProfile(
        "seed",
        link=link,
        clock_drift_ppm=rng.choice((0.0, 50.0, 200.0, 1000.0)),
        partition_every_s=rng.uniform(2.0, 20.0) if on() else None,
        partition_s=rng.uniform(0.5, 8.0),
        clog_every_s=rng.uniform(0.2, 5.0) if on() else None,
        clog_s=rng.uniform(0.1, 5.0),
        crash_every_s=rng.uniform(10.0, 120.0) if on() else None,
        downtime_s=rng.uniform(0.5, 10.0),
        pause_every_s=rng.uniform(10.0, 120.0) if on() else None,
        pause_s=rng.uniform(0.1, 5.0),
        down_fraction_max=rng.choice((0.1, 0.25, 0.49)),
        partial_flush=on(),
    )


def resolve_profile(name: str, seed: int) -> FaultProfile:
    """The profile called `name` (`seed`: drawn from the seed). ColonyError if unknown."""
    if name == "seed":
        return seeded_profile(seed)
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILE_NAMES)
        raise ColonyError(f"unknown fault profile {name!r}: choose one of {known}") from None


class FaultStats:
    __slots__ = ("clogs", "crashes", "partitions", "pauses", "skipped")

    def __init__(self) -> None:
        self.partitions = 0
        self.clogs = 0
        self.crashes = 0
        self.pauses = 0
        self.skipped = 0  # faults not injected to respect down_fraction_max

    def to_json(self) -> dict[str, int]:
        return {f"fault_{name}": int(getattr(self, name)) for name in self.__slots__}


class FaultInjector:
    """Injects the profile's faults while the world is in its safety phase."""

    def __init__(self, world: World, profile: FaultProfile, rng: random.Random) -> None:
        self.world = world
        self.profile = profile
        self.rng = rng
        self.stats = FaultStats()
        self.partition_until_s = 0.0

    def start(self) -> None:
        p = self.profile
        n = self.world.n
        if p.partition_every_s and n > 1:
            self._after(p.partition_every_s, self._partition)
        if p.clog_every_s and n > 1:
            self._after(p.clog_every_s, self._clog)
        if p.crash_every_s:
            self._after(p.crash_every_s / n, self._crash)
        if p.pause_every_s:
            self._after(p.pause_every_s / n, self._pause)

    # -- scheduling ---------------------------------------------------------------------

    def _after(self, mean_s: float, action: Any) -> None:
        world = self.world
        world.queue.push(world.now_s + self.rng.expovariate(1.0 / mean_s), CALL, action)

    def _active(self) -> bool:
        return self.world.phase == "safety"

    def _room_to_stop_one(self) -> bool:
        world = self.world
        return world.stopped + 1 <= self.profile.down_fraction_max * world.n

    # -- fault actions (each one a step of the world) ---------------------------------

    def _partition(self, world: World) -> None:
        if not self._active():
            return
        p = self.profile
        rng = self.rng
        n = world.n
        kind = rng.randrange(3)
        if kind == 0:  # isolate one node
            labels = [0] * n
            labels[rng.randrange(n)] = 1
        elif kind == 1:  # split in two at a random point of a random order
            order = list(range(n))
            rng.shuffle(order)
            cut = rng.randint(1, n - 1)
            labels = [0] * n
            for i in order[:cut]:
                labels[i] = 1
        else:  # scatter into up to 3 groups
            labels = [rng.randrange(3) for _ in range(n)]
        world.network.partition(labels)
        self.stats.partitions += 1
        duration_s = rng.expovariate(1.0 / p.partition_s)
        self.partition_until_s = world.now_s + duration_s
        world.queue.push(self.partition_until_s, CALL, self._heal)

    def _heal(self, world: World) -> None:
        if not self._active():
            return
        world.network.heal()
        assert self.profile.partition_every_s is not None
        self._after(self.profile.partition_every_s, self._partition)

    def _clog(self, world: World) -> None:
        if not self._active():
            return
        p = self.profile
        rng = self.rng
        until_s = world.now_s + rng.expovariate(1.0 / p.clog_s)
        links = world.network.links
        if links and rng.random() < 0.7:
            keys = list(links)
            key = keys[rng.randrange(len(keys))]
            world.network.clog_link(key // world.n, key % world.n, until_s)
        else:
            world.network.clog_node(rng.randrange(world.n), until_s)
        self.stats.clogs += 1
        assert p.clog_every_s is not None
        self._after(p.clog_every_s, self._clog)

    def _crash(self, world: World) -> None:
        if not self._active():
            return
        p = self.profile
        node = world.nodes[self.rng.randrange(world.n)]
        if node.alive and self._room_to_stop_one():
            node.crash()
            self.stats.crashes += 1
            world.step_node = node.index
            incarnation = node.incarnation
            world.queue.push(
                world.now_s + self.rng.expovariate(1.0 / p.downtime_s),
                CALL,
                lambda w: _restart_if(w, node.index, incarnation),
            )
        else:
            self.stats.skipped += 1
        assert p.crash_every_s is not None
        self._after(p.crash_every_s / world.n, self._crash)

    def _pause(self, world: World) -> None:
        if not self._active():
            return
        p = self.profile
        node = world.nodes[self.rng.randrange(world.n)]
        if node.alive and not node.paused and self._room_to_stop_one():
            node.pause()
            self.stats.pauses += 1
            world.step_node = node.index
            incarnation = node.incarnation
            world.queue.push(
                world.now_s + self.rng.expovariate(1.0 / p.pause_s),
                CALL,
                lambda w: _resume_if(w, node.index, incarnation),
            )
        else:
            self.stats.skipped += 1
        assert p.pause_every_s is not None
        self._after(p.pause_every_s / world.n, self._pause)


def _restart_if(world: World, index: int, incarnation: int) -> None:
    node = world.nodes[index]
    if not node.alive and node.incarnation == incarnation:
        node.restart()


def _resume_if(world: World, index: int, incarnation: int) -> None:
    node = world.nodes[index]
    if node.paused and node.incarnation == incarnation:
        node.resume()
