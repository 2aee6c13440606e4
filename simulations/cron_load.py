"""Crons in the claims scenario (param `crons` > 0): NodeCores fire every tick under the
seed's faults, and the checks DESIGN.md §11 asks of them.

Each cron has a one-step workflow (an always-succeeding simulated job) on an interval.
Safety: every tick a node holds fired is a moment of the cron's schedule (so nodes agree
on what a tick is), and each tick's process commits at most once (the claims scenario's
CommitChecker, which sees every register). Liveness: once the colony is healed, every
tick due after the healing (plus a settling time) fires, and every node that is up knows
it fired; the run is not converged before CRON_TICKS_AFTER_HEAL of them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from colonynode.node.core import Answer
from colonynode.node.core import requests as rq
from colonynode.node.core.processes import PROCESSES_MAX
from colonynode.simulations.checkers import BaseChecker
from colonynode.simulations.sim_executors import EXECUTORTYPE
from colonynode.simulations.workload import Fate, Job

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore
    from colonynode.simulations.claims_scenario import ClaimsScenario
    from colonynode.simulations.world import World

__all__ = ["CronLoad"]

ADD_AT_S = 0.5
ADD_RETRY_S = 5.0  # an add not answered by then is asked of the next node
SETTLE_S = 3.0  # after healing: a voter's restart, gossip's repair
CRON_TICKS_AFTER_HEAL = 3
JOB_BASE = -1_000_000  # job ids of the crons' steps (the workload's are >= 0)
GEN_TRIGGER = 3
GEN_JOB = JOB_BASE - 999  # the simulated job a batch runs (its args: this, as text)
GEN_TIMEOUT_S = 2.0
PACK_EVERY_S = 0.5


def _views(node: Any, key: str) -> list[dict[str, Any]]:
    """The node's view of the processes a cron or a generator started (`key`)."""
    if node.core is None:
        return []
    return list(node.core.book.list(None, PROCESSES_MAX, match=lambda e: bool(e.get(key))))


def add_until_answered(
    scenario: ClaimsScenario, world: World, req: Any, key: str, into: list[bytes], node: int = 0
) -> None:
    """Ask `node` to add a definition; ask the next node if no answer came in ADD_RETRY_S
    (it was down, or crashed before it answered). The first id answered goes `into`."""
    done = [False]

    def added(answer: Answer) -> None:
        if answer.error is None and not done[0]:
            done[0] = True
            into.append(bytes.fromhex(answer.value[key]))

    def ask(w: World, at: int) -> None:
        if done[0]:
            return
        scenario.ask(w, at % w.n, req, added)
        w.schedule(w.now_s + ADD_RETRY_S, lambda w2: ask(w2, at + 1))

    ask(world, node)


class CronLoad(BaseChecker):
    name = "cron-ticks"

    def __init__(
        self, scenario: ClaimsScenario, count: int, interval_s: int, generators: int = 0
    ) -> None:
        self.scenario = scenario
        self.count = count
        self.interval_s = interval_s
        self.gens = GeneratorLoad(scenario, generators)
        self.cronids: list[bytes] = []
        self.asked = 0
        self.heal_ns: int | None = None
        self.off_schedule: list[tuple[bytes, int]] = []

    def start(self, world: World) -> None:
        self.gens.start(world)
        for k in range(self.count):
            job = Job(JOB_BASE - k, 0, 0.0, Fate.OK, 0.2)
            self.scenario.jobs[job.job_id] = job
            world.schedule(ADD_AT_S, functools.partial(self._add, k=k))

    def _add(self, world: World, k: int) -> None:
        body = {"name": f"sim-{k}", "interval": self.interval_s, "workflowspec": {
            "functionspecs": [{"nodename": "tick", "funcname": "sim", "args": [JOB_BASE - k],
                               "conditions": {"executortype": EXECUTORTYPE}}]}}  # fmt: skip
        add_until_answered(self.scenario, world, rq.AddCron(body), "cronid", self.cronids, k)

    def on_liveness(self, world: World, t0_ns: int) -> None:
        self.heal_ns = t0_ns + int(world.now_s * 1e9)

    # -- what the nodes hold ------------------------------------------------------------

    def _crons(self, world: World) -> dict[bytes, Any]:
        """cron id -> a definition some live node holds (they are all the same)."""
        out: dict[bytes, Any] = {}
        for node in world.nodes:
            if node.core is not None and node.alive:
                for cid in self.cronids:
                    cron = node.core.crons.crons.get(cid)
                    if cron is not None:
                        out.setdefault(cid, cron)
        return out

    def at_end(self, world: World) -> list[str]:
        """Every fired tick any node holds is a moment of its cron's schedule."""
        self.off_schedule = []
        for node in world.nodes:
            if node.core is None:
                continue
            for cid in self.cronids:
                cron = node.core.crons.crons.get(cid)
                for tick in () if cron is None else cron.fired:
                    step = self.interval_s * 10**9
                    if tick <= cron.created_ns or (tick - cron.created_ns) % step:
                        self.off_schedule.append((cid, tick))
        found = [f"cron {cid.hex()[:8]}: a graph for {tick}, no tick of its schedule"
                 for cid, tick in self.off_schedule[:3]]  # fmt: skip
        return found + self._graphs_a_tick(world) + self.gens.used_twice(world)

    def _graphs_a_tick(self, world: World) -> list[str]:
        """One graph a tick: the processes any node holds for a cron's tick (their
        submission time) all belong to one process graph."""
        graphs: dict[tuple[str, str], set[str]] = {}
        for node in world.nodes:
            for view in _views(node, "cronid"):
                key = (view["cronid"], view["submissiontime"])
                graphs.setdefault(key, set()).add(view["processgraphid"])
        return [f"cron {cid[:8]}: {len(g)} graphs for the tick at {at}"
                for (cid, at), g in sorted(graphs.items()) if len(g) > 1][:3]  # fmt: skip

    def missing(self, world: World, now_ns: int) -> str:
        """What keeps the crons from being converged ("" when nothing)."""
        if why := self.gens.missing(world):
            return why
        if len(self.cronids) < self.count:
            return f"{self.count - len(self.cronids)} crons not added"
        if self.heal_ns is None:
            return "not healed"
        start_ns = self.heal_ns + int(SETTLE_S * 1e9)
        step = self.interval_s * 10**9
        for cid, cron in self._crons(world).items():
            due = [t for t in range(cron.created_ns + step, now_ns - step, step) if t > start_ns]
            if len(due) < CRON_TICKS_AFTER_HEAL:
                return f"cron {cid.hex()[:8]}: {len(due)} ticks due since the healing"
            for node in world.nodes:
                if node.core is None or not node.alive or node.paused:
                    continue
                held = node.core.crons.crons.get(cid)
                if held is None:
                    return f"node {node.index} does not hold cron {cid.hex()[:8]}"
                for t in due:
                    if t not in held.fired and t >= min(held.fired, default=t):
                        return f"node {node.index}: tick {t} of cron {cid.hex()[:8]} not fired"
        if len(self._crons(world)) < self.count:
            return "a cron is held by no live node"
        return ""

    def metrics(self, world: World) -> dict[str, int]:
        ticks = sum(len(c.fired) for c in self._crons(world).values())
        cores = [n.core for n in world.nodes if n.core is not None]
        fired = sum(c.crons.counters["fired"] for c in cores)
        late = sum(c.crons.counters["compacted"] for c in cores)  # refused: a series horizon
        off = len(self.off_schedule)
        return {"cron_ticks_fired": ticks, "cron_firings": fired, "cron_firings_compacted": late,
                "cron_ticks_off_schedule": off, **self.gens.metrics(cores)}  # fmt: skip


class GeneratorLoad:
    """Generators (param `generators` > 0): args packed on random nodes through the
    safety phase; every acknowledged arg must be used by exactly one batch's workflow."""

    def __init__(self, scenario: ClaimsScenario, count: int) -> None:
        self.scenario = scenario
        self.count = count
        self.gids: list[bytes] = []
        self.acked: set[str] = set()  # arg ids a majority acknowledged
        self.packs = 0

    def start(self, world: World) -> None:
        if not self.count:
            return
        job = Job(GEN_JOB, 0, 0.0, Fate.OK, 0.2)  # each batch's root gets it as args
        self.scenario.jobs[job.job_id] = job
        for k in range(self.count):
            world.schedule(ADD_AT_S, functools.partial(self._add, k=k))
        world.schedule(ADD_AT_S + 2.0, self._pack)

    def _add(self, world: World, k: int) -> None:
        body = {"name": f"gen-{k}", "trigger": GEN_TRIGGER, "timeout": GEN_TIMEOUT_S,
                "workflowspec": {"functionspecs": [{"nodename": "batch", "funcname": "sim",
                                 "args": [GEN_JOB],
                                 "conditions": {"executortype": EXECUTORTYPE}}]}}  # fmt: skip
        add_until_answered(self.scenario, world, rq.AddGenerator(body), "generatorid", self.gids, k)

    def _pack(self, world: World) -> None:
        if world.now_s < world.safety_s - 1.0:
            world.schedule(world.now_s + PACK_EVERY_S, self._pack)
        if not self.gids:
            return
        rng = self.scenario.rng
        gid = self.gids[rng.randrange(len(self.gids))]
        self.packs += 1
        job = Job(GEN_JOB - self.packs, 0, 0.0, Fate.OK, 0.2)  # a distinct arg each pack
        self.scenario.jobs[job.job_id] = job

        def packed(answer: Answer) -> None:
            if answer.error is None:
                self.acked.add(str(answer.value["argid"]))

        self.scenario.ask(world, rng.randrange(world.n),
                          rq.PackGenerator(gid, str(job.job_id)), packed)  # fmt: skip

    def _uses(self, world: World) -> dict[str, set[str]]:
        """arg id -> the batches any node's view says used it."""
        uses: dict[str, set[str]] = {}
        for node in world.nodes:
            for gen in () if node.core is None else node.core.generators.generators.values():
                for arg in gen.args.values():
                    if arg.batch is not None:
                        uses.setdefault(arg.argid.hex(), set()).add(arg.batch)
        return uses

    def missing(self, world: World) -> str:
        if len(self.gids) < self.count:
            return f"{self.count - len(self.gids)} generators not added"
        uses = self._uses(world)
        for argid in sorted(self.acked):
            if argid not in uses:
                return f"packed arg {argid[:8]} (acknowledged) used by no batch"
        return ""

    def used_twice(self, world: World) -> list[str]:
        found = [f"packed arg {a[:8]} used by {len(g)} batches" for a, g in
                 sorted(self._uses(world).items()) if len(g) > 1][:3]  # fmt: skip
        return found + self._out_of_order(world)

    def _out_of_order(self, world: World) -> list[str]:
        """A batch's args are in pack order (the packing nodes' clocks, as the nodes
        order them): every root of every batch any node holds."""
        packed_ns: dict[str, int] = {}  # an arg's value (distinct here) -> when packed
        for node in world.nodes:
            for gen in () if node.core is None else node.core.generators.generators.values():
                for arg in gen.args.values():
                    packed_ns[arg.value] = arg.packed_ns
        found = []
        for node in world.nodes:
            for view in _views(node, "generatorid"):
                if view["parents"]:
                    continue
                times = [packed_ns.get(str(a), -1) for a in view["spec"]["args"]]
                if times != sorted(times):
                    found.append(f"batch {view['processgraphid'][:8]}: args out of pack order")
        return found[:3]

    def metrics(self, cores: list[NodeCore]) -> dict[str, int]:
        """... the most registers of the generators one voter holds at the end, and
        how many generators some voter compacted (its series has a horizon there)."""
        if not self.count:
            return {}
        gids = set(self.gids)
        held = max((sum(r.terms.series in gids for r in c.consensus.voter.registers.values())
                    for c in cores), default=0)  # fmt: skip
        compacted = {s for c in cores for s in c.consensus.voter.compaction.series} & gids
        return {"generator_args_packed": self.packs, "generator_args_acked": len(self.acked),
                "generator_registers_held": held,
                "generators_compacted": len(compacted)}  # fmt: skip
