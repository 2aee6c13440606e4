"""The world: nodes, network, faults and checkers on one event queue, run in two phases.

A run (`World.run` = `start()`, `run_until(end)`, `finish()`; tests step a world with
`run_until` themselves):

1. `scenario.build(world)` makes the nodes and checkers; nodes boot at random instants of
   the first `BOOT_SPREAD_S`;
2. **safety phase** `[0, safety_s)`: the fault injector runs the profile's faults and the
   scenario's workload runs; every checker runs after every step;
3. **liveness phase** `[safety_s, safety_s + liveness_s]`: no new faults; a random
   majority (`world.core_nodes`; every node where `scenario.heal_all`, as gossip's
   promise is to every node) is healed: its crashed nodes restart, its paused nodes
   resume, every partition and clog is lifted, and links among the core lose their loss,
   duplication and reordering. The run ends as soon as `scenario.converged(world)` holds
   (probed every `PROBE_S`); if it never does, that is a violation of checker
   ``liveness``;
4. `at_end` of every checker.

A step is one event of the queue: a frame delivered, a timer, a call into a node (boot,
restart, workload, executor), a fault. Book-keeping events (samples, probes, the release
of a clog) are not steps. A violation stops the run at the step that found it unless
`stop_on_violation` is False.

Randomness: one integer seed. Every stream is its own `random.Random(f"{seed}:{name}")`
(string seeds hash with SHA-512, independent of PYTHONHASHSEED), so adding draws to one
stream (say, the workload) leaves the others (network, faults) unchanged.
"""

from __future__ import annotations

import heapq
import os
import random
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from colonynode.core.effects import ProtocolCore
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.simulations.checkers import Checker, NetworkSanity, Violation
from colonynode.simulations.engine import CALL, DELIVER, INTERNAL, TICK, EventQueue, make_clocks
from colonynode.simulations.faults import FaultInjector, FaultProfile
from colonynode.simulations.network import SimNetwork
from colonynode.simulations.node import CoreFactory, SimNode, SyncPolicy, always_sync
from colonynode.simulations.scenario import Metric, Scenario
from colonynode.storage.api import Store
from colonynode.storage.memory import MemoryStore

__all__ = ["BOOT_SPREAD_S", "NODES_MAX", "PROBE_S", "SAMPLE_S", "World"]

C = TypeVar("C", bound=ProtocolCore)

BOOT_SPREAD_S = 1.0  # nodes boot at uniform instants of the first second
SAMPLE_S = 1.0  # the scenario's figures are sampled once per simulated second
PROBE_S = 0.1  # liveness: how often `converged` is asked
VIOLATIONS_MAX = 100  # with stop_on_violation False, keep at most this many
NODES_MAX = 100_000


class World:
    """One simulated colony for one seed."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int,
        nodes: int,
        profile: FaultProfile,
        safety_s: float | None = None,
        liveness_s: float | None = None,
        stop_on_violation: bool = True,
    ) -> None:
        if not 1 <= nodes <= NODES_MAX:
            raise ColonyError(f"a simulation has 1 to {NODES_MAX} nodes, not {nodes}")
        self.scenario = scenario
        self.seed = seed
        self.n = nodes
        self.profile = profile
        self.safety_s = scenario.safety_s if safety_s is None else safety_s
        self.liveness_s = scenario.liveness_s if liveness_s is None else liveness_s
        if self.safety_s < 0 or self.liveness_s < 0:
            raise ColonyError("phase durations are not negative")
        self.stop_on_violation = stop_on_violation
        self.queue = EventQueue()
        id_rng = self.rng_for("ids")
        ids = [scenario.make_node_id(id_rng, i) for i in range(nodes)]
        self.network = SimNetwork(
            self.queue, ids, profile.link, self.rng_for("network"), size_of=scenario.size_of
        )
        self.clocks = make_clocks(self.rng_for("clocks"), nodes, profile.clock_drift_ppm)
        self.store_rng = self.rng_for("store")
        self.partial_flush = profile.partial_flush
        self.nodes: list[SimNode[Any]] = []
        self.checkers: list[Checker] = [NetworkSanity()]
        self.violations: list[Violation] = []
        self.step = 0
        self.step_node = -1
        self.step_events: list[tuple[int, Any]] = []
        self.phase = "safety"
        self.core_nodes: list[int] = []
        self.converged_s: float | None = None
        self.stopped = 0  # nodes crashed or paused right now
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.sample_interval_s = SAMPLE_S  # since the previous sample: rates divide by it
        self.faults = FaultInjector(self, profile, self.rng_for("faults"))
        self.halted_by_violation = False
        self._halt = False
        self._started = False
        self._probes = 0
        self._end_s = self.safety_s + self.liveness_s

    # -- what scenarios and checkers read -------------------------------------------------

    @property
    def now_s(self) -> float:
        return self.queue.now_s

    @property
    def ids(self) -> list[NodeId]:
        return self.network.ids

    @property
    def step_frame(self) -> tuple[int, int, str, Any] | None:
        """The frame delivered in this step: (src, dst, channel, msgs), or None."""
        return self.network.delivering

    def rng_for(self, name: str) -> random.Random:
        """A new random stream of this run named `name` (make each one once)."""
        return random.Random(f"{self.seed}:{name}")

    def node_of(self, node_id: NodeId) -> SimNode[Any]:
        return self.nodes[self.network.index_of[node_id]]

    # -- what scenarios build with ------------------------------------------------------

    def add_nodes(
        self,
        core_factory: CoreFactory[C],
        channel: str,
        *,
        count: int | None = None,
        store_factory: Callable[[], Store] = MemoryStore,
        channel_of: Callable[[Any], str] | None = None,
        sync_policy: SyncPolicy = always_sync,
    ) -> list[SimNode[C]]:
        """Make the next `count` nodes (all the rest by default), each with its own store.

        `core_factory(node_id, store, rng)` builds a node's core at boot and at every
        restart, from what its store holds; `rng` is the node's own stream.
        """
        start = len(self.nodes)
        count = self.n - start if count is None else count
        if count < 0 or start + count > self.n:
            raise ValueError(f"the world has {self.n} nodes; {start} exist, {count} asked")
        made: list[SimNode[C]] = []
        for i in range(start, start + count):
            node = SimNode(
                self,
                i,
                self.network.ids[i],
                store_factory(),
                self.clocks[i],
                self.network.view(i),
                core_factory,
                self.rng_for(f"node:{i}"),
                channel,
                channel_of=channel_of,
                sync_policy=sync_policy,
            )
            made.append(node)
        self.nodes.extend(made)
        return made

    def add_checker(self, checker: Checker) -> None:
        self.checkers.append(checker)

    def schedule(self, at_s: float, fn: Callable[[World], None]) -> None:
        """Run `fn(world)` as a step at simulated time `at_s`."""
        self.queue.push(at_s, CALL, fn)

    def publish(self, node: SimNode[Any], events: list[Any]) -> None:
        """A node's core published events (SimNode.flush calls this)."""
        index = node.index
        on_event = self.scenario.on_event
        for event in events:
            self.step_events.append((index, event))
            on_event(self, node, event)

    # -- running ------------------------------------------------------------------------

    def run(self) -> None:
        """The whole run: start, both phases, the end checks."""
        self.start()
        self.run_until(self._end_s)
        self.finish()

    def start(self) -> None:
        """Build the scenario and schedule the boots, the faults and the phases."""
        if self._started:
            raise RuntimeError("a world starts once")
        self._started = True
        self.scenario.build(self)
        if len(self.nodes) != self.n:
            raise ColonyError(f"scenario built {len(self.nodes)} of {self.n} nodes")
        boot_rng = self.rng_for("boot")
        for node in self.nodes:
            self.queue.push(boot_rng.uniform(0.0, BOOT_SPREAD_S), CALL, _Boot(node))
        self.faults.start()
        self.queue.push(0.0, INTERNAL, _sample)
        if self.liveness_s > 0:
            self.queue.push(self.safety_s, CALL, _begin_liveness)

    def run_until(self, end_s: float) -> bool:
        """Run steps up to simulated time `end_s`; False once the run has halted
        (a violation with stop_on_violation, or convergence in the liveness phase)."""
        if not self._started:
            self.start()
        self._loop(min(end_s, self._end_s))
        if not self._halt and self.queue.now_s < end_s:
            self.queue.now_s = min(end_s, self._end_s)
        return not self._halt

    @property
    def halted(self) -> bool:
        return self._halt

    def finish(self) -> None:
        """The last sample, the liveness verdict and every checker's `at_end`."""
        self._take_sample()
        if self.halted_by_violation:
            return
        if self.liveness_s > 0 and self.converged_s is None:
            detail = self.scenario.liveness_detail(self)
            self._record(
                "liveness",
                [
                    f"not converged {self.liveness_s:g} s after healing a majority of "
                    f"{len(self.core_nodes)} nodes" + (f": {detail}" if detail else "")
                ],
            )
        for checker in self.checkers:
            found = checker.at_end(self)
            if found:
                self._record(checker.name, found)

    def _loop(self, end_s: float) -> None:
        try:
            self._steps(end_s)
        except Exception as exc:
            # A core's assertion (or any exception) in a step is a finding like a broken
            # checker: recorded with its step, so the seed replays it. It always halts.
            self._record("exception", [_describe(exc, self.step_node)])
            self._halt = True
            self.halted_by_violation = True

    def _steps(self, end_s: float) -> None:
        queue = self.queue
        heap = queue.heap
        network = self.network
        nodes = self.nodes
        checkers = self.checkers
        events = self.step_events
        pop = heapq.heappop
        while heap and not self._halt:
            if heap[0][0] > end_s:
                break
            at_s, _, kind, a, b = pop(heap)
            queue.now_s = at_s
            if kind == INTERNAL:
                a(self)
                continue
            if kind == TICK:
                node = nodes[a]
                if b != node.timer_gen:
                    continue  # a cancelled timer: not a step
            self.step += 1
            self.step_node = -1
            network.delivering = None
            if events:
                events.clear()
            if kind == DELIVER:
                network.deliver(a, b)
            elif kind == TICK:
                node.on_timer(b)
            else:
                a(self)
            for checker in checkers:
                found = checker.after_step(self)
                if found:
                    self._record(checker.name, found)

    def violation(self, checker: str, message: str) -> None:
        """Record a broken rule found outside a checker (the engine's own guards)."""
        self._record(checker, [message])

    def _record(self, checker: str, messages: list[str]) -> None:
        for message in messages:
            if len(self.violations) < VIOLATIONS_MAX:
                self.violations.append(Violation(checker, message, self.step, self.now_s))
        if self.stop_on_violation:
            self._halt = True
            self.halted_by_violation = True

    def _take_sample(self) -> None:
        last_s = self.samples[-1][0] if self.samples else None
        if last_s is not None and self.now_s - last_s < 1e-9:
            return
        self.sample_interval_s = SAMPLE_S if last_s is None else self.now_s - last_s
        figures = {"nodes_up": float(self.n - self.stopped)}
        figures.update(self.scenario.sample(self))
        self.samples.append((self.now_s, figures))

    def _probe(self) -> None:
        if self.scenario.converged(self):
            self.converged_s = self.now_s
            self._halt = True
            return
        self._probes += 1
        at_s = self.safety_s + self._probes * PROBE_S  # no drift from adding 0.1s up
        if at_s <= self._end_s:
            self.queue.push(at_s, INTERNAL, _probe)

    def begin_liveness(self) -> None:
        """Stop injecting faults and heal a random majority (see the module docstring)."""
        self.phase = "liveness"
        rng = self.rng_for("liveness")
        heal = self.n if self.scenario.heal_all else self.n // 2 + 1
        self.core_nodes = sorted(rng.sample(range(self.n), heal))
        self.network.heal()
        self.network.unclog_all()
        self.network.set_clean(self.core_nodes)
        for i in self.core_nodes:
            node = self.nodes[i]
            if node.booted and not node.alive:
                self.queue.push(self.now_s, CALL, _Restart(node))
            elif node.paused:
                self.queue.push(self.now_s, CALL, _Resume(node))
        self.scenario.on_liveness(self)
        self.queue.push(self.now_s, INTERNAL, _probe)

    # -- results ------------------------------------------------------------------------

    def metrics(self) -> dict[str, Metric]:
        """Engine figures (steps, network, faults, hosts) and the scenario's figures."""
        out: dict[str, Metric] = {"steps": self.step, "events": self.queue.seq}
        totals: dict[str, int] = {}
        for node in self.nodes:
            stats = node.stats
            for name in stats.__slots__:
                totals[name] = totals.get(name, 0) + int(getattr(stats, name))
        out.update({f"node_{name}": value for name, value in totals.items()})
        out.update(self.network.stats.to_json())
        out.update(self.faults.stats.to_json())
        out["nodes_up_at_end"] = sum(1 for node in self.nodes if node.alive)
        out["converged_after_s"] = (
            None if self.converged_s is None else self.converged_s - self.safety_s
        )
        out.update(self.scenario.metrics(self))
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}


class _Boot:
    __slots__ = ("node",)

    def __init__(self, node: SimNode[Any]) -> None:
        self.node = node

    def __call__(self, world: World) -> None:
        if not self.node.booted:
            self.node.boot()


class _Restart(_Boot):
    def __call__(self, world: World) -> None:
        self.node.restart()


class _Resume(_Boot):
    def __call__(self, world: World) -> None:
        self.node.resume()


def _describe(exc: Exception, node: int) -> str:
    """One line: the exception, where it was raised, and the node that was stepping."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = f" at {os.path.basename(last.filename)}:{last.lineno} in {last.name}"
    who = f" (node {node})" if node >= 0 else ""
    return f"{type(exc).__name__}: {exc}{where}{who}"


def _sample(world: World) -> None:
    world._take_sample()
    world.queue.push((round(world.now_s / SAMPLE_S) + 1) * SAMPLE_S, INTERNAL, _sample)


def _probe(world: World) -> None:
    world._probe()


def _begin_liveness(world: World) -> None:
    world.begin_liveness()
