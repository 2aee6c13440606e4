"""The two example scenarios over the trivial cores of ping.py.

``ping``: every node pings a fixed random set of `fanout` peers, one per `interval_s`,
round robin. Checkers: every echo delivered answers a ping its sender really received
(same nonce, same pair of nodes); no frame crosses a partition (the network checker).
Liveness: after the heal, every core node hears an echo from every core peer it pings.

``echo-crash``: the same pings on `CounterCore`, plus a workload of jobs run by simulated
executors (some hang, some die), with durable counters. Echo counts are written lazily
(a crash can lose them); accepting and finishing a job is made durable before it is
published. Checkers: a durable counter never goes backwards, and a core never holds less
than its store; a job finishes at most once, and only if it was accepted. Liveness: after
the heal, every job a core node accepted has finished.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from colonynode.core.effects import Effects
from colonynode.core.ids import NodeId
from colonynode.simulations.checkers import BaseChecker
from colonynode.simulations.ping import (
    CounterCore,
    Echo,
    EchoReceived,
    JobAccepted,
    JobFinished,
    Ping,
    PingCore,
    PingTimedOut,
    RunJob,
    StrayEcho,
)
from colonynode.simulations.scenario import Metric, ParamValue, Scenario, register_scenario
from colonynode.simulations.workload import Job, SimExecutor, Workload, WorkloadConfig
from colonynode.storage.api import Store
from colonynode.storage.memory import MemoryStore

if TYPE_CHECKING:
    import random

    from colonynode.simulations.node import SimNode
    from colonynode.simulations.world import World

__all__ = ["EchoCrashScenario", "EchoMatchesPing", "PingScenario"]

RTT_SAMPLES_MAX = 1_000_000


def pick_peers(world: World, fanout: int) -> list[list[NodeId]]:
    """Each node's fixed peers: `fanout` distinct others, drawn from the seed."""
    rng = world.rng_for("peers")
    n = world.n
    k = min(fanout, n - 1)
    ids = world.ids
    out: list[list[NodeId]] = []
    for i in range(n):
        picks = rng.sample(range(n - 1), k)
        out.append([ids[j + 1 if j >= i else j] for j in picks])
    return out


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]


class EchoMatchesPing(BaseChecker):
    """An echo from B to A carries the nonce of a ping A sent and B processed."""

    name = "echo-matches-ping"

    def __init__(self) -> None:
        self.pings: set[tuple[int, int, int]] = set()  # (pinger, pinged, nonce)

    def after_step(self, world: World) -> list[str]:
        frame = world.step_frame
        if frame is None or world.step_node < 0:
            return []
        src, dst, _, msgs = frame
        found: list[str] = []
        for msg in msgs:
            if isinstance(msg, Ping):
                self.pings.add((src, dst, msg.nonce))
            elif isinstance(msg, Echo) and (dst, src, msg.nonce) not in self.pings:
                found.append(
                    f"node {src} echoed nonce {msg.nonce} to node {dst}, "
                    f"which never sent it a ping with that nonce"
                )
        return found


class _PairLiveness:
    """After the heal: has every core node heard from every core peer it pings?"""

    def __init__(self) -> None:
        self.waiting: set[tuple[int, int]] = set()

    def start(self, world: World, peers: list[list[NodeId]]) -> None:
        core = set(world.core_nodes)
        index_of = world.network.index_of
        self.waiting = {
            (i, index_of[p]) for i in world.core_nodes for p in peers[i] if index_of[p] in core
        }

    def heard(self, node: int, peer: int) -> None:
        self.waiting.discard((node, peer))

    def detail(self) -> str:
        if not self.waiting:
            return ""
        node, peer = min(self.waiting)
        return f"{len(self.waiting)} core pairs silent, e.g. node {node} never heard node {peer}"


@register_scenario
class PingScenario(Scenario):
    name = "ping"
    description = "nodes ping fixed peers and check echoes: reachability and RTT under faults"
    rank = 1
    default_nodes = 50
    safety_s = 20.0
    liveness_s = 30.0
    params: ClassVar[dict[str, ParamValue]] = {
        "fanout": 5,
        "interval_s": 1.0,
        "timeout_s": 2.0,
        "planted_bug": "",
    }
    main_series = "echoes_per_s"
    headline = ("echoes", "ping_timeouts", "rtt_p50_ms", "rtt_p99_ms")

    def __init__(self, params: dict[str, ParamValue] | None = None) -> None:
        super().__init__(params)
        self.echoes = 0
        self.timeouts = 0
        self.stray = 0
        self.rtts_s: list[float] = []
        self.echoes_at_sample = 0
        self.liveness = _PairLiveness()
        self.peers: list[list[NodeId]] = []

    def build(self, world: World) -> None:
        self.peers = pick_peers(world, self.param_int("fanout"))
        peers_of = dict(zip(world.ids, self.peers, strict=True))
        interval_s = self.param_float("interval_s")
        timeout_s = self.param_float("timeout_s")
        bug = self.param_str("planted_bug")

        def make_core(node_id: NodeId, store: Store, rng: random.Random) -> PingCore:
            return PingCore(
                node_id,
                peers_of[node_id],
                rng,
                interval_s=interval_s,
                timeout_s=timeout_s,
                planted_bug=bug,
            )

        world.add_nodes(make_core, "ping")
        world.add_checker(EchoMatchesPing())

    def size_of(self, msg: Any) -> int:
        return 16

    def on_event(self, world: World, node: SimNode[Any], event: Any) -> None:
        if isinstance(event, EchoReceived):
            self.echoes += 1
            if len(self.rtts_s) < RTT_SAMPLES_MAX:
                self.rtts_s.append(event.rtt_s)
            if world.phase == "liveness":
                self.liveness.heard(node.index, world.network.index_of[event.peer])
        elif isinstance(event, PingTimedOut):
            self.timeouts += 1
        elif isinstance(event, StrayEcho):
            self.stray += 1

    def on_liveness(self, world: World) -> None:
        self.liveness.start(world, self.peers)

    def converged(self, world: World) -> bool:
        return not self.liveness.waiting

    def liveness_detail(self, world: World) -> str:
        return self.liveness.detail()

    def metrics(self, world: World) -> dict[str, Metric]:
        rtts = sorted(self.rtts_s)
        answered = self.echoes + self.timeouts

        def ms(value: float | None) -> float | None:
            return None if value is None else value * 1000.0

        return {
            "echoes": self.echoes,
            "ping_timeouts": self.timeouts,
            "stray_echoes": self.stray,
            "echo_ratio": self.echoes / answered if answered else None,
            "rtt_p50_ms": ms(percentile(rtts, 0.50)),
            "rtt_p99_ms": ms(percentile(rtts, 0.99)),
            "rtt_max_ms": ms(rtts[-1] if rtts else None),
        }

    def sample(self, world: World) -> dict[str, float]:
        rate = (self.echoes - self.echoes_at_sample) / world.sample_interval_s
        self.echoes_at_sample = self.echoes
        return {"echoes_per_s": rate}


class DurableCounters(BaseChecker):
    """A node's durable counters never go backwards (across crashes and restarts too),
    and its core never counts less than its store holds."""

    name = "durable-counters"
    COUNTERS = (b"echoes", b"jobs")

    def __init__(self, n: int) -> None:
        self.last: list[list[int]] = [[0, 0] for _ in range(n)]

    def after_step(self, world: World) -> list[str]:
        i = world.step_node
        if i < 0:
            return []
        node = world.nodes[i]
        store = node.store
        assert isinstance(store, MemoryStore)
        found: list[str] = []
        last = self.last[i]
        core = node.core
        for k, name in enumerate(self.COUNTERS):
            value = int(store.durable_get("counters", name) or 0)
            if value < last[k]:
                found.append(
                    f"node {i}: durable counter {name.decode()} went back from {last[k]} to {value}"
                )
            last[k] = value
            if isinstance(core, CounterCore):
                held = core.echoes if k == 0 else core.jobs_done
                if held < value:
                    found.append(
                        f"node {i}: core counts {held} {name.decode()}, its store holds {value}"
                    )
        return found


class JobsFinishOnce(BaseChecker):
    """A job finishes at most once, and only after a node accepted it."""

    name = "jobs-finish-once"

    def __init__(self) -> None:
        self.accepted: dict[int, int] = {}  # job -> node
        self.finished: dict[int, str] = {}  # job -> outcome

    def after_step(self, world: World) -> list[str]:
        found: list[str] = []
        for index, event in world.step_events:
            if isinstance(event, JobAccepted):
                self.accepted.setdefault(event.job_id, index)
            elif isinstance(event, JobFinished):
                job = event.job_id
                if job not in self.accepted:
                    found.append(f"node {index} finished job {job}, which nobody accepted")
                elif job in self.finished:
                    found.append(
                        f"node {index} finished job {job} twice: "
                        f"{self.finished[job]}, then {event.outcome}"
                    )
                self.finished[job] = event.outcome
        return found


def _sync_when_published(effects: Effects) -> bool:
    """Persist before send, and before acknowledging; echo counts alone may wait."""
    return bool(effects.sends) or any(
        isinstance(e, (JobAccepted, JobFinished)) for e in effects.events
    )


@register_scenario
class EchoCrashScenario(Scenario):
    name = "echo-crash"
    description = "pings plus jobs on simulated executors, durable counters through crashes"
    rank = 2
    default_nodes = 50
    safety_s = 20.0
    liveness_s = 30.0
    params: ClassVar[dict[str, ParamValue]] = {
        "fanout": 3,
        "interval_s": 1.0,
        "timeout_s": 2.0,
        "job_timeout_s": 5.0,
        "jobs_per_node_s": 0.05,
        "job_mean_s": 1.0,
        "hang_p": 0.05,
        "die_p": 0.05,
        "planted_bug": "",
    }
    main_series = "jobs_finished_per_s"
    headline = ("jobs_accepted", "jobs_finished", "jobs_lost", "echoes")

    def __init__(self, params: dict[str, ParamValue] | None = None) -> None:
        super().__init__(params)
        self.submitted = 0
        self.lost = 0
        self.accepted: dict[int, int] = {}  # job -> node
        self.finished: dict[str, int] = {"ok": 0, "died": 0, "timeout": 0}
        self.done: set[int] = set()
        self.runs = 0
        self.echoes = 0
        self.finished_at_sample = 0
        self.waiting: set[int] = set()  # liveness: jobs of core nodes not finished
        self.deaf: set[int] = set()  # liveness: core nodes with a core peer, no echo yet
        self.peers: list[list[NodeId]] = []
        self.core: set[int] = set()
        self.workload: Workload | None = None
        self.executor: SimExecutor | None = None

    def build(self, world: World) -> None:
        self.peers = peers = pick_peers(world, self.param_int("fanout"))
        peers_of = dict(zip(world.ids, peers, strict=True))
        interval_s = self.param_float("interval_s")
        timeout_s = self.param_float("timeout_s")
        job_timeout_s = self.param_float("job_timeout_s")
        bug = self.param_str("planted_bug")

        def make_core(node_id: NodeId, store: Store, rng: random.Random) -> CounterCore:
            return CounterCore(
                node_id,
                peers_of[node_id],
                store,
                rng,
                interval_s=interval_s,
                timeout_s=timeout_s,
                job_timeout_s=job_timeout_s,
                planted_bug=bug,
            )

        world.add_nodes(make_core, "echo", sync_policy=_sync_when_published)
        world.add_checker(DurableCounters(world.n))
        world.add_checker(JobsFinishOnce())
        config = WorkloadConfig(
            rate_per_node_s=self.param_float("jobs_per_node_s"),
            duration_mean_s=self.param_float("job_mean_s"),
            hang_p=self.param_float("hang_p"),
            die_p=self.param_float("die_p"),
        )
        self.workload = Workload(world, config, world.rng_for("workload"), self._submit)
        self.executor = SimExecutor(world, world.rng_for("executor"), _job_done)
        self.workload.start()

    def _submit(self, world: World, job: Job) -> None:
        self.submitted += 1
        node = world.nodes[job.node]
        if not node.call(lambda core, now_s: core.submit(now_s, job.job_id)):
            self.lost += 1

    def on_event(self, world: World, node: SimNode[Any], event: Any) -> None:
        if isinstance(event, EchoReceived):
            self.echoes += 1
            if self.deaf and world.network.index_of[event.peer] in self.core:
                self.deaf.discard(node.index)
        elif isinstance(event, RunJob):
            assert self.executor is not None and self.workload is not None
            self.runs += 1
            self.executor.start(node, self.workload.jobs[event.job_id])
        elif isinstance(event, JobAccepted):
            self.accepted[event.job_id] = node.index
        elif isinstance(event, JobFinished):
            self.finished[event.outcome] = self.finished.get(event.outcome, 0) + 1
            self.done.add(event.job_id)
            self.waiting.discard(event.job_id)

    def on_liveness(self, world: World) -> None:
        core = self.core = set(world.core_nodes)
        self.waiting = {
            job for job, node in self.accepted.items() if node in core and job not in self.done
        }
        index_of = world.network.index_of
        self.deaf = {i for i in world.core_nodes if any(index_of[p] in core for p in self.peers[i])}

    def converged(self, world: World) -> bool:
        return not self.waiting and not self.deaf

    def liveness_detail(self, world: World) -> str:
        missing = []
        if self.waiting:
            job = min(self.waiting)
            missing.append(
                f"{len(self.waiting)} accepted jobs never finished, "
                f"e.g. job {job} on node {self.accepted[job]}"
            )
        if self.deaf:
            missing.append(
                f"{len(self.deaf)} core nodes heard no core peer, e.g. node {min(self.deaf)}"
            )
        return "; ".join(missing)

    def metrics(self, world: World) -> dict[str, Metric]:
        return {
            "jobs_submitted": self.submitted,
            "jobs_lost": self.lost,
            "jobs_accepted": len(self.accepted),
            "jobs_finished": len(self.done),
            "jobs_ok": self.finished["ok"],
            "jobs_died": self.finished["died"],
            "jobs_timeout": self.finished["timeout"],
            "job_runs": self.runs,
            "echoes": self.echoes,
        }

    def sample(self, world: World) -> dict[str, float]:
        finished = len(self.done)
        rate = (finished - self.finished_at_sample) / world.sample_interval_s
        self.finished_at_sample = finished
        return {"jobs_finished_per_s": rate}


def _job_done(core: CounterCore, now_s: float, job: Job, outcome: str) -> None:
    core.job_done(now_s, job.job_id, outcome)
