"""Scenario ``claims``: real NodeCores (node/core/) running processes under faults.

Every node runs the NodeCore the daemon runs: gossip, the DHT, the lease quorum, the
process view and the scheduler. The first `voters` nodes are the voters; every other
node has the executor role and one simulated executor with `slots` slots
(sim_executors.py), attached through the same requests as `colonynode executor run`
(RegisterExecutor, Assign, CloseRun, Heartbeat, Detach). The last node is the colony's
owner (it signs the roster and its voter-set changes). Nodes connect to `degree` random
others, and are told every second which of their connections are up and on their side
of a partition, as the daemon's connection events would.

A workload submits ColonyOS function specs to random nodes (SubmitProcess). Each job's
fate is drawn when it is made: it finishes after a while (SUCCESS, or with `fail_p` an
explicit fail: FAILED, never retried), hangs (its lease is not renewed past
maxexectime, it runs out, the process is claimed again until maxretries is spent, then
expired FAILED) or its executor dies part-way (its node drops the lease: a retry). With
`cancel_p` its submitter aborts it a while after submitting (uniform within
`cancel_within_s`, so it races the claims, renewals and closes): CANCELLED through
NodeCore, or with `cancel_failed_p` FAILED by a raw lease abort (a workflow parent
failed). A share `cancel_foreign_p` of the aborts comes from another node (never the
owner), which the voters must refuse.

Checkers (claims_checkers.py): double-commits, cancel-permissions, overlapping-leases,
lost-submissions, scheduling (ColonyOS priority order and no idle executor, per claim
round), and liveness: after the heal every acknowledged process is closed at a majority
and every node that is up shows it closed as the voters committed it.

`--param planted_bug=ignore_epochs` (voters grant and close whatever the epoch and the
lease), `skip_persist` (voters acknowledge without writing) and `abort_closed` (voters
let an abort overwrite a closed process) break the core on purpose: the tests show the
checkers catch them.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, ClassVar

from colonynode.consensus import events as lev
from colonynode.consensus import requests as lrq
from colonynode.consensus.claimer import ClaimerConfig
from colonynode.consensus.compaction import RETENTION_S, Retention
from colonynode.consensus.messages import Reason
from colonynode.consensus.register import Timing
from colonynode.core.effects import ProtocolCore
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.core.process import State, parse_spec
from colonynode.core.roster import Member, Roster, sign_roster
from colonynode.gossip.config import GossipConfig
from colonynode.node.core import Answer, NodeConfig, NodeCore, channel_of
from colonynode.node.core import requests as rq
from colonynode.simulations.claims_checkers import (
    CancelChecker,
    CommitChecker,
    DroppedTakenAgain,
    LeaseChecker,
    LostSubmissions,
    SchedulingChecker,
    lost_submissions,
)
from colonynode.simulations.cron_load import CronLoad
from colonynode.simulations.forger import Forger
from colonynode.simulations.gossip_scenario import VerifyMemo
from colonynode.simulations.memos import OpenMemo, SpecMemo
from colonynode.simulations.network import random_links
from colonynode.simulations.node import as_asked
from colonynode.simulations.scenario import Metric, ParamValue, Scenario, register_scenario
from colonynode.simulations.sim_executors import EXECUTORTYPE, SimExecutors
from colonynode.simulations.voter_change import change_voters
from colonynode.simulations.workload import Fate, Job, Workload, WorkloadConfig
from colonynode.storage.api import Store

if TYPE_CHECKING:
    from colonynode.simulations.node import SimNode
    from colonynode.simulations.world import World

__all__ = ["ClaimsScenario", "percentile"]

LATENCIES_MAX = 1_000_000
PEER_REFRESH_S = 1.0
T0_NS = 1_800_000_000 * 10**9  # the simulated wall clock at global time 0


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@register_scenario
class ClaimsScenario(Scenario):
    name = "claims"
    description = "NodeCores running processes: claims, renewals, closes under faults"
    rank = 5
    default_nodes = 7
    safety_s = 20.0
    liveness_s = 60.0
    params: ClassVar[dict[str, ParamValue]] = {
        "voters": 3,
        "lease_s": 2.0,
        "slots": 4,
        "degree": 10,
        "jobs_per_node_s": 0.15,
        "jobs_per_s_max": 0.0,  # the colony's rate cap; 0: 1 + 50/nodes (docs/simulator.md)
        "job_mean_s": 0.8,
        "hang_p": 0.04,
        "die_p": 0.06,
        "fail_p": 0.1,
        "maxexectime_s": 4,
        "maxretries": 3,
        "unlimited_p": 0.3,  # share of well-behaved processes with maxretries -1
        "maxwaittime_p": 0.1,  # share of processes with a maxwaittime
        "maxwaittime_s": 15,
        "cancel_p": 0.05,  # share of processes their submitter aborts
        "cancel_within_s": 3.0,  # the abort comes uniform in this long after the submit
        "cancel_failed_p": 0.3,  # share of aborts that fail the process (else CANCELLED)
        "cancel_foreign_p": 0.1,  # share of aborts sent by another node (refused)
        "drift": 0.001,
        "margin_s": 0.05,
        "voter_change": "",  # grow (3 -> 5), shrink (5 -> 3), replace (a dead voter)
        "change_at_s": 8.0,
        "planted_bug": "",
        "crons": 0,  # crons on an interval, fired by the NodeCores (simulations/cron_load.py)
        "cron_interval_s": 2,
        "generators": 0,  # generators with args packed through the safety phase
        "retention_s": 0.0,  # voters drop closed registers this long after (0: 600 s)
        "forgers": 0,  # 1: the last node also publishes forged closing records (forger.py)
    }
    main_series = "closes_per_s"
    headline: ClassVar[tuple[str, ...]] = (
        "double_commits",
        "overlapping_leases",
        "lost_submissions",
        "unfinished_after_liveness",
        "claims_committed",
        "cancels_committed",
        "claim_latency_p50_s",
    )

    def __init__(self, params: dict[str, ParamValue] | None = None) -> None:
        super().__init__(params)
        self.identities: list[Identity] = []
        self.voter_indexes: list[int] = []
        self.first_voters = 0
        self.owner = 0
        self.jobs: dict[int, Job] = {}
        self.fails: set[int] = set()
        self.pid_job: dict[bytes, int] = {}
        self.job_pid: dict[int, bytes] = {}
        self.submitted = 0
        self.acked: set[bytes] = set()
        self.refused = 0
        self.granted = 0
        self.claim_failures = 0
        self.fenced = 0
        self.closes = 0
        self.expired = 0
        self.lost_leases = 0
        self.submitter_of: dict[bytes, int] = {}
        self.cancels_sent = 0
        self.cancels_foreign = 0
        self.cancels_committed = 0
        self.cancels_refused = 0
        self.leases_ended_closed = 0
        self.latencies_s: list[float] = []
        self.closes_at_sample = 0
        self.commits = CommitChecker([])
        self.leases = LeaseChecker()
        self.scheduling = SchedulingChecker()
        self.workload: Workload | None = None
        self.rng = random.Random(0)
        self.cancel_rng = random.Random(0)
        self.timing = Timing()
        self.memo = VerifyMemo()
        self.open_memo = OpenMemo()
        self.spec_memo = SpecMemo()
        self.dead: set[int] = set()  # nodes that never come back (a replaced voter)
        self.outsiders: set[int] = set()  # nodes not in the colony (not joined, or removed)
        self.links: list[list[int]] = []
        self.given: list[Any] = []
        self.roster_env: Any = None
        self.executors: SimExecutors | None = None
        self._asks: dict[tuple[int, int, int], Any] = {}  # (node, incarnation, req) -> cb
        self.crons: CronLoad | None = None
        self.forger: Forger | None = None

    # -- build --------------------------------------------------------------------------

    def make_node_id(self, rng: random.Random, index: int) -> NodeId:
        identity = Identity(rng.randbytes(32))
        self.identities.append(identity)
        return identity.node_id

    def _check(self, world: World) -> int:
        v = self.param_int("voters")
        change = self.param_str("voter_change")
        if change == "shrink":
            v = 5
        if v not in (1, 3, 5) or v >= world.n:
            raise ValueError("claims needs 1, 3 or 5 voters and at least one executor")
        if change and change not in ("grow", "shrink", "replace"):
            raise ValueError("voter_change is grow, shrink or replace")
        if change and world.n < 6:
            raise ValueError("a voter-set change needs at least 6 nodes")
        return v

    def _roster(self, world: World, v: int) -> Any:
        n = world.n
        self.owner = n - 1
        members = tuple(
            Member(world.ids[i], f"n{i}", ("submitter",) if i < v else ("executor", "submitter"))
            for i in range(n)
        )
        roster = Roster("sim", world.ids[self.owner], 1, members, tuple(world.ids[:v]))
        return sign_roster(self.identities[self.owner], roster)

    def build(self, world: World) -> None:
        v = self._check(world)
        self.voter_indexes = list(range(v))
        self.first_voters = v
        self.timing = Timing(self.param_float("drift"), self.param_float("margin_s"))
        self.roster_env = self._roster(world, v)
        lease_s = self.param_float("lease_s")
        config = NodeConfig(
            colony="sim",
            gossip=GossipConfig.lan(),
            claimer=ClaimerConfig(lease_s=lease_s),
            timing=self.timing,
            dial=False,
            lease_s=lease_s,
            retention=Retention.of(self.param_float("retention_s") or RETENTION_S),
            planted_bug=self.param_str("planted_bug"),
        )
        identity_of = {x.node_id: x for x in self.identities}
        self.executors = SimExecutors(self, world, self.param_int("slots"))

        def factory(node_id: NodeId, store: Store, rng: random.Random) -> ProtocolCore:
            index = world.network.index_of[node_id]
            core = NodeCore(
                identity_of[node_id],
                store,
                rng,
                unix_ns=lambda: T0_NS + int(world.now_s * 1e9),
                config=config,
                roster=self.roster_of(index),
                verify=self.memo,
                open_record=self.open_memo,
                parse_spec=self.spec_memo,
            )
            world.schedule(world.now_s, lambda w: self._booted(w, index))
            return core

        world.add_nodes(factory, "lease", channel_of=channel_of, sync_policy=as_asked)
        for node in world.nodes:
            for channel in ("gossip", "dht", "roster"):
                node.listen(channel)
        self.links = self._connect(world)
        self.given = [None] * world.n
        if self.param_str("voter_change"):
            world.schedule(self.param_float("change_at_s"), lambda w: change_voters(self, w))
        self.commits = CommitChecker(self.voter_indexes)
        for checker in (self.commits, self.leases, self.scheduling):
            world.add_checker(checker)
        self.lost = LostSubmissions(self.acked, self.commits)
        world.add_checker(self.lost)
        self.dropped = DroppedTakenAgain()
        world.add_checker(self.dropped)
        world.add_checker(CancelChecker(self.submitter_of, self.owner))
        self.rng = world.rng_for("claims")
        self.cancel_rng = world.rng_for("cancels")  # its own stream: the rest is unchanged
        cap_s = self.param_float("jobs_per_s_max") or 1.0 + 50.0 / world.n
        rate = min(self.param_float("jobs_per_node_s"), cap_s / world.n)
        workload = WorkloadConfig(
            rate_per_node_s=rate,
            duration_mean_s=self.param_float("job_mean_s"),
            hang_p=self.param_float("hang_p"),
            die_p=self.param_float("die_p"),
        )
        self.workload = Workload(world, workload, world.rng_for("workload"), self._submit)
        self.workload.start()
        if self.param_int("crons") > 0 or self.param_int("generators") > 0:
            every_s, generators = self.param_int("cron_interval_s"), self.param_int("generators")
            self.crons = CronLoad(self, self.param_int("crons"), every_s, generators)
            self.crons.start(world)
            world.add_checker(self.crons)
        if self.param_int("forgers") > 0:
            self.forger = Forger(world.n - 1, world.rng_for("forger"))
            self.forger.start(world)
            self.outsiders.add(world.n - 1)  # (its own view takes what it publishes)
        world.schedule(PEER_REFRESH_S, self._refresh_peers)

    def roster_of(self, index: int) -> Any:
        """The roster node `index`'s core starts from (its store's, if newer)."""
        return self.roster_env

    def _connect(self, world: World) -> list[list[int]]:
        return random_links(world.rng_for("peers"), world.n, self.param_int("degree"))

    def _booted(self, world: World, index: int) -> None:
        self.given[index] = None
        self._tell_peers(world, index)
        if index >= self.first_voters:  # nodes with the executor role
            assert self.executors is not None
            self.executors.start(index)

    def _refresh_peers(self, world: World) -> None:
        world.schedule(world.now_s + PEER_REFRESH_S, self._refresh_peers)
        for i in range(world.n):
            self._tell_peers(world, i)

    def _tell_peers(self, world: World, i: int) -> None:
        """Tell node i which of its connections are up and on its side of a partition."""
        node = world.nodes[i]
        if not node.alive:
            return
        net = world.network
        up, labels, ids = net.up, net.labels, net.ids
        label = labels[i]
        live = tuple(ids[j] for j in self.links[i] if up[j] and labels[j] == label)
        given = (node.incarnation, live)
        if self.given[i] != given:
            self.given[i] = given
            node.call(lambda core, now_s: core.set_connected(now_s, live))

    # -- asking a node ------------------------------------------------------------------

    def ask(self, world: World, index: int, req: Any, then: Any = None) -> bool:
        """Send request `req` to node `index` as a step of it; `then(answer)` once the
        answer comes (dropped if the node crashes first). False: the node is down."""
        node = world.nodes[index]
        incarnation = node.incarnation

        def call(core: NodeCore, now_s: float) -> None:
            rid = core.request(now_s, req)
            if then is not None:
                self._asks[(index, incarnation, rid)] = then

        return node.call(call)

    # -- workload -----------------------------------------------------------------------

    def _spec(self, job: Job) -> Any:
        rng = self.rng
        maxretries = self.param_int("maxretries")
        exec_s = self.param_int("maxexectime_s")
        unlimited = job.fate is Fate.OK and rng.random() < self.param_float("unlimited_p")
        # unlimited retries only for runs that fit in maxexectime: another would run out
        # and be retried forever (as in ColonyOS)
        if unlimited and job.duration_s < exec_s / 2:
            maxretries = -1
        if job.fate is Fate.OK and rng.random() < self.param_float("fail_p"):
            self.fails.add(job.job_id)
        wait_s = 0
        if rng.random() < self.param_float("maxwaittime_p"):
            wait_s = self.param_int("maxwaittime_s")
        return parse_spec({
            "funcname": "sim", "args": [job.job_id], "priority": rng.randrange(-2, 3),
            "maxexectime": exec_s, "maxwaittime": wait_s, "maxretries": maxretries,
            "conditions": {"executortype": EXECUTORTYPE},
        })  # fmt: skip

    def _submit(self, world: World, job: Job) -> None:
        self.jobs[job.job_id] = job
        self.submitted += 1
        spec = self._spec(job)

        def acked(answer: Answer) -> None:
            if answer.error is not None:
                self.refused += 1
                return
            pid = bytes.fromhex(answer.value["processid"])
            self.acked.add(pid)
            self.pid_job[pid] = job.job_id
            self.job_pid[job.job_id] = pid
            self.submitter_of[pid] = job.node
            self._maybe_cancel(world, job, pid)

        self.ask(world, job.node, rq.SubmitProcess(spec), acked)

    def _maybe_cancel(self, world: World, job: Job, pid: bytes) -> None:
        """With `cancel_p`, an abort of the job by its submitter (or, with
        `cancel_foreign_p`, by another node that is not the owner: refused)."""
        rng = self.cancel_rng
        if rng.random() >= self.param_float("cancel_p"):
            return
        at_s = world.now_s + rng.uniform(0.0, self.param_float("cancel_within_s"))
        failed = rng.random() < self.param_float("cancel_failed_p")
        sender = job.node
        if rng.random() < self.param_float("cancel_foreign_p"):
            others = [i for i in range(world.n) if i not in (job.node, self.owner)]
            sender = others[rng.randrange(len(others))]
        foreign = sender != job.node
        if failed or foreign:
            state = State.FAILED if failed else State.CANCELLED
            errors = ("a workflow parent failed",) if failed else ("cancelled by a stranger",)
            req: Any = rq.Lease(lrq.CancelProcess(pid, state, errors))
        else:
            req = rq.CancelProcess(pid)

        def at(w: World) -> None:
            if self.ask(w, sender, req):
                self.cancels_sent += 1
                self.cancels_foreign += foreign

        world.schedule(at_s, at)

    # -- events -------------------------------------------------------------------------

    def on_event(self, world: World, node: SimNode[Any], event: Any) -> None:
        kind = type(event)
        if kind is Answer:
            then = self._asks.pop((node.index, node.incarnation, event.req), None)
            if then is not None:
                then(event)
        elif kind is rq.RunStopped:
            assert self.executors is not None
            self.executors.stopped(node.index, event)
        elif kind is lev.Granted:
            self.granted += 1
            sent_s = event.deadline_s + self.timing.margin_s
            sent_s -= self.param_float("lease_s") * (1.0 - self.timing.drift)
            if len(self.latencies_s) < LATENCIES_MAX:
                self.latencies_s.append(node.local_now() - sent_s)
        elif kind is lev.ClaimFailed:
            self.claim_failures += 1
        elif kind is lev.Closed:
            if event.committed:
                self.closes += 1
        elif kind is lev.Expired and event.committed:
            self.expired += 1
        elif kind is lev.Cancelled:
            if event.committed:
                self.cancels_committed += 1
            else:
                self.cancels_refused += 1
        elif kind is lev.LeaseEnded:
            if event.why == "lost":
                self.lost_leases += 1
            elif event.why == "closed":
                self.leases_ended_closed += 1

    def fenced_close(self, answer: Answer) -> None:
        """A CloseRun answer: count a late close by an ex-holder that was refused."""
        refused = answer.error is not None or not answer.value.get("committed")
        if refused:
            reason = None if answer.error is not None else answer.value.get("reason")
            if answer.error is not None or reason in (
                Reason.STALE_EPOCH.name,
                Reason.CLOSED.name,
                Reason.NOT_HOLDER.name,
            ):
                self.fenced += 1

    # -- liveness -----------------------------------------------------------------------

    def on_liveness(self, world: World) -> None:
        """Heal every voter too: crashed ones restart, paused ones resume, their links
        are clean."""
        for i in self.voter_indexes:
            node = world.nodes[i]
            if i in self.dead:
                continue
            if (node.booted and not node.alive) or node.paused:
                world.schedule(world.now_s, _Heal(node))
        world.network.set_clean(sorted({*world.core_nodes, *self.voter_indexes}))
        if self.crons is not None:
            self.crons.on_liveness(world, T0_NS)

    def _unfinished(self) -> list[bytes]:
        return sorted(pid for pid in self.acked if pid not in self.commits.committed)

    def _unseen(self, world: World) -> tuple[int, bytes] | None:
        """A node that is up and whose view of an acknowledged process is not the
        result the voters committed (or None)."""
        for i, node in enumerate(world.nodes):
            core = node.core
            if core is None or not node.alive or node.paused or i in self.outsiders:
                continue
            for pid in sorted(self.acked):
                key = self.commits.committed.get(pid)
                state = core.book.state_of(pid)
                if state is None or key is None or state is not State(key[0]):
                    return i, pid
        return None

    def converged(self, world: World) -> bool:
        if self.crons is not None and self.crons.missing(world, self._now_ns(world)):
            return False
        return not self._unfinished() and self._unseen(world) is None

    def _now_ns(self, world: World) -> int:
        return T0_NS + int(world.now_s * 1e9)

    def liveness_detail(self, world: World) -> str:
        left = self._unfinished()
        if left:
            job = self.jobs.get(self.pid_job.get(left[0], -1))
            fate = "" if job is None else f" ({job.fate.value})"
            return f"{len(left)} acknowledged processes not closed, e.g. {left[0].hex()}{fate}"
        if self.crons is not None and (why := self.crons.missing(world, self._now_ns(world))):
            return why
        unseen = self._unseen(world)
        if unseen is not None:
            i, pid = unseen
            view = world.nodes[i].core.book.state_of(pid)  # type: ignore[union-attr]
            return f"node {i} shows {pid.hex()} {view} while the voters closed it"
        return ""

    # -- figures ------------------------------------------------------------------------

    def size_of(self, msg: Any) -> int:
        return 96

    def _certs(self, world: World) -> dict[str, Metric]:
        """Closing and RUNNING items forged, and those the nodes refused or hold."""
        cores = [n.core for n in world.nodes if n.core is not None]
        forger = self.forger
        return {"closes_forged": 0 if forger is None else forger.forged,
                "running_forged": 0 if forger is None else forger.running_forged,
                "closes_refused": sum(c.counters.get("closes_refused", 0) for c in cores),
                "running_refused": sum(c.counters.get("running_refused", 0) for c in cores),
                "closes_held": sum(len(c.held_closes.items) for c in cores)}  # fmt: skip

    def metrics(self, world: World) -> dict[str, Metric]:
        latencies = sorted(self.latencies_s)
        assert self.executors is not None
        return {
            "double_commits": len(self.commits.doubles),
            "overlapping_leases": self.leases.overlaps,
            "lost_submissions": len(
                lost_submissions(world, self.acked, self.commits, self.lost.compacted)
            ),
            "unfinished_after_liveness": len(self._unfinished()),
            "compacted": len(self.lost.compacted),  # processes some voter dropped closed
            "dropped_taken_again": self.dropped.taken_again,
            **self._certs(world),
            "submissions": self.submitted,
            "submissions_acked": len(self.acked),
            "claims_committed": self.granted,
            "claims_failed": self.claim_failures,
            "claim_rounds": self.scheduling.rounds,
            "own_claims": self.scheduling.own_claims,
            # processes claimed ahead of a free slot, and given back unstarted (counted
            # by the NodeCores up at the end: a crash forgets its own)
            "claimed_ahead": self._sched_count(world, "claimed_ahead"),
            "ahead_given_back": self._sched_count(world, "ahead_given_back"),
            "closes_committed": self.closes,
            "expired_committed": self.expired,
            "cancels_sent": self.cancels_sent,
            "cancels_foreign": self.cancels_foreign,
            "cancels_committed": self.cancels_committed,
            "cancels_refused": self.cancels_refused,
            "cancelled_at_majority": sum(
                1
                for key in self.commits.committed.values()
                if key is not None and key[0] is State.CANCELLED
            ),
            "leases_ended_closed": self.leases_ended_closed,
            "closed_at_majority": len(self.commits.committed),
            "fenced_closes": self.fenced,
            "leases_lost": self.lost_leases,
            "runs_started": self.executors.started,
            "claim_latency_p50_s": percentile(latencies, 0.50),
            "claim_latency_p99_s": percentile(latencies, 0.99),
            **(self.crons.metrics(world) if self.crons is not None else {}),
        }

    def _sched_count(self, world: World, name: str) -> int:
        return sum(n.core.scheduler.counters[name] for n in world.nodes if n.core is not None)

    def sample(self, world: World) -> dict[str, float]:
        done = len(self.commits.committed)
        rate = (done - self.closes_at_sample) / world.sample_interval_s
        self.closes_at_sample = done
        return {"closes_per_s": rate}


class _Heal:
    """Restart a crashed node or resume a paused one, as a step."""

    __slots__ = ("node",)

    def __init__(self, node: SimNode[Any]) -> None:
        self.node = node

    def __call__(self, world: World) -> None:
        if self.node.paused:
            self.node.resume()
        elif not self.node.alive:
            self.node.restart()
