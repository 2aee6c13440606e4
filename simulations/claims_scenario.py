"""Scenario ``claims``: the lease-register core (consensus/) under faults.

The first `voters` nodes are voters; the others are executors that schedule (scan a
voter, claim a batch, renew, close). A workload submits processes to random nodes; each
process's fate is drawn when it is made: it finishes after a while (then closes SUCCESS,
or with `fail_p` fails explicitly: FAILED, never retried), hangs (renewals stop at
maxexectime, the lease runs out, it is re-claimed until maxretries is spent, then any
node expires it FAILED) or its executor dies part-way (the lease runs out, a retry).
With `cancel_p` its submitter aborts it a while after submitting (uniform within
`cancel_within_s`, so it races the claims, renewals and closes): CANCELLED, or with
`cancel_failed_p` FAILED with an error (a workflow parent failed). A share
`cancel_foreign_p` of the aborts comes from another node instead, which the voters must
refuse (no node has the owner role here).

Checkers, over the simulator's global time:

- ``double-commits``: a process closed with two different results, each at a majority
  of voters (a holder's SUCCESS and a CANCELLED are two), or two nodes told that two
  different closes (a close, an expiry, an abort) committed;
- ``cancel-permissions``: an abort committed for a node that is not the submitter;
- ``overlapping-leases``: two holders whose valid-lease intervals overlap in global time
  (a claimer's interval runs from the step a majority granted it to its deadline, read
  on its own drifting clock and converted to global time, cut short when it closes,
  releases or drops the lease);
- ``lost-submissions`` (at the end): a submission acknowledged to its submitter that a
  majority of voters does not hold durably;
- liveness: after the heal (the world's random majority, plus every voter: crashed ones
  restart, paused ones resume), every acknowledged process is closed at a majority
  (SUCCESS, FAILED or CANCELLED).

`--param planted_bug=ignore_epochs` (voters grant and close whatever the epoch and the
lease), `skip_persist` (voters acknowledge without writing) and `abort_closed` (voters
let an abort overwrite a closed process) break the core on purpose: the tests show the
checkers catch them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from colonynode.consensus.claimer import ClaimerConfig
from colonynode.consensus.events import (
    Cancelled,
    ClaimFailed,
    Closed,
    Expired,
    Granted,
    LeaseEnded,
    Renewed,
    Submitted,
    VoterCommitted,
)
from colonynode.consensus.handover import VoterSet
from colonynode.consensus.lease import ConsensusCore
from colonynode.consensus.messages import Outcome, ProcessTerms, Reason, State
from colonynode.consensus.register import Timing, commit_key
from colonynode.consensus.requests import (
    CancelProcess,
    ChangeVoters,
    CloseProcess,
    DropLease,
    SubmitProcess,
)
from colonynode.consensus.voter import REGISTERS_TABLE
from colonynode.core.ids import NodeId
from colonynode.simulations.checkers import BaseChecker
from colonynode.simulations.engine import CALL
from colonynode.simulations.scenario import Metric, ParamValue, Scenario, register_scenario
from colonynode.simulations.workload import Fate, Job, Workload, WorkloadConfig
from colonynode.storage.api import Store
from colonynode.storage.memory import MemoryStore

if TYPE_CHECKING:
    import random

    from colonynode.simulations.node import SimNode
    from colonynode.simulations.world import World

__all__ = ["CancelChecker", "ClaimsScenario", "CommitChecker", "LeaseChecker", "pid_of"]

LATENCIES_MAX = 1_000_000


def pid_of(job_id: int) -> bytes:
    return b"p" + job_id.to_bytes(8, "big")


def job_of(pid: bytes) -> int:
    return int.from_bytes(pid[1:], "big")


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class LeaseChecker(BaseChecker):
    """Never two valid leases for one process at one instant of global time."""

    name = "overlapping-leases"

    def __init__(self) -> None:
        # pid -> (node, epoch, end of validity in global time)
        self.active: dict[bytes, tuple[int, int, float]] = {}
        self.overlaps = 0

    def after_step(self, world: World) -> list[str]:
        found: list[str] = []
        now_s = world.now_s
        for node, event in world.step_events:
            if isinstance(event, Granted | Renewed):
                end_s = world.nodes[node].clock.global_at(event.deadline_s)
                held = self.active.get(event.pid)
                if isinstance(event, Granted) and held is not None:
                    other, epoch, other_end_s = held
                    if (other, epoch) != (node, event.epoch) and other_end_s > now_s:
                        self.overlaps += 1
                        found.append(
                            f"process {event.pid.hex()}: node {node} got epoch {event.epoch} "
                            f"at {now_s:.6f} s while node {other} holds epoch {epoch} "
                            f"until {other_end_s:.6f} s"
                        )
                if isinstance(event, Granted) or (
                    held is not None and held[:2] == (node, event.epoch)
                ):
                    self.active[event.pid] = (node, event.epoch, end_s)
            elif isinstance(event, LeaseEnded):
                held = self.active.get(event.pid)
                if held is not None and held[:2] == (node, event.epoch):
                    self.active[event.pid] = (node, event.epoch, min(held[2], now_s))
        return found


class CommitChecker(BaseChecker):
    """At most one committed result per process: at the voters (a majority of some voter
    set holding the same closed register) and at the claimers (Closed/Expired that
    committed). Every voter set the run used counts (`add_config`)."""

    name = "double-commits"

    def __init__(self, voters: list[int]) -> None:
        self.configs: dict[int, list[int]] = {1: voters}  # version -> voter indexes
        # pid -> voter -> [(version, result)]: what it held closed while serving version
        self.closed_at: dict[bytes, dict[int, list[tuple[int, Any]]]] = {}
        self.committed: dict[bytes, Any] = {}  # pid -> result committed by a majority
        self.told: dict[bytes, tuple[Any, int]] = {}  # pid -> (claimer-side key, node)
        self.doubles: set[bytes] = set()

    def add_config(self, version: int, voters: list[int]) -> None:
        self.configs[version] = voters

    def after_step(self, world: World) -> list[str]:
        found: list[str] = []
        for node, event in world.step_events:
            if isinstance(event, VoterCommitted):
                found.extend(self._voter(node, event))
            elif isinstance(event, Closed | Expired | Cancelled) and event.committed:
                if isinstance(event, Closed):
                    key: Any = (event.outcome, event.epoch, node)
                elif isinstance(event, Cancelled):
                    key = ("aborted", event.state.name)
                else:
                    key = "expired"
                first = self.told.setdefault(event.pid, (key, node))
                if first[0] != key:
                    self.doubles.add(event.pid)
                    found.append(
                        f"process {event.pid.hex()}: node {first[1]} was told {first[0]} "
                        f"committed, node {node} was told {key}"
                    )
        return found

    def _voter(self, node: int, event: VoterCommitted) -> list[str]:
        by_voter = self.closed_at.setdefault(event.pid, {})
        by_voter.setdefault(node, []).append((event.version, commit_key(event.view)))
        majorities: list[Any] = []
        for version, config in self.configs.items():
            counts: list[tuple[Any, int]] = []
            for voter in config:
                # a voter re-announces every closed result when it starts serving a
                # version: what it held before counts for the version it served then
                held = [k for v, k in by_voter.get(voter, ()) if v == version]
                if not held:
                    continue
                for i, (k, n) in enumerate(counts):
                    if k == held[-1]:
                        counts[i] = (k, n + 1)
                        break
                else:
                    counts.append((held[-1], 1))
            for k, n in counts:
                if n >= len(config) // 2 + 1 and k not in majorities:
                    majorities.append(k)
        if majorities:
            self.committed.setdefault(event.pid, majorities[0])
        if len(majorities) > 1 and event.pid not in self.doubles:
            self.doubles.add(event.pid)
            return [f"process {event.pid.hex()} committed twice at a majority: {majorities}"]
        return []


class CancelChecker(BaseChecker):
    """Only a process's submitter (or an owner: no node is one here) may abort it."""

    name = "cancel-permissions"

    def __init__(self, submitter_of: dict[bytes, int]) -> None:
        self.submitter_of = submitter_of  # pid -> index of the node that submitted it

    def after_step(self, world: World) -> list[str]:
        found: list[str] = []
        for node, event in world.step_events:
            if isinstance(event, Cancelled) and event.committed:
                submitter = self.submitter_of.get(event.pid)
                if submitter != node:
                    found.append(
                        f"process {event.pid.hex()}: node {node} aborted it "
                        f"({event.state.name}), its submitter is node {submitter}"
                    )
        return found


def _no_owner(node: NodeId, role: str) -> bool:
    """The sim's roster: every node is a member with every role but owner."""
    return role != "owner"


@register_scenario
class ClaimsScenario(Scenario):
    name = "claims"
    description = "lease registers: claims, renewals and closes under faults, one commit each"
    rank = 5
    default_nodes = 7
    safety_s = 20.0
    liveness_s = 60.0
    params: ClassVar[dict[str, ParamValue]] = {
        "voters": 3,
        "lease_s": 2.0,
        "slots": 4,
        "jobs_per_node_s": 0.15,
        "job_mean_s": 0.8,
        "hang_p": 0.04,
        "die_p": 0.06,
        "fail_p": 0.1,
        "maxexectime_s": 4.0,
        "maxretries": 3,
        "unlimited_p": 0.3,  # share of well-behaved processes with maxretries -1
        "maxwaittime_p": 0.1,  # share of processes with a maxwaittime
        "maxwaittime_s": 15.0,
        "cancel_p": 0.05,  # share of processes their submitter aborts
        "cancel_within_s": 3.0,  # the abort comes uniform in this long after the submit
        "cancel_failed_p": 0.3,  # share of aborts that fail the process (else CANCELLED)
        "cancel_foreign_p": 0.1,  # share of aborts sent by another node (refused)
        "drift": 0.001,
        "margin_s": 0.05,
        "voter_change": "",  # grow (3 -> 5), shrink (5 -> 3), replace (a dead voter)
        "change_at_s": 8.0,
        "planted_bug": "",
    }
    main_series = "closes_per_s"
    headline = (
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
        self.voter_ids: tuple[NodeId, ...] = ()
        self.voter_indexes: list[int] = []
        self.jobs: dict[int, Job] = {}
        self.fails: set[int] = set()
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
        self.lost: list[bytes] = []
        self.workload: Workload | None = None
        self.rng: random.Random | None = None
        self.cancel_rng: random.Random | None = None
        self.timing = Timing()
        self.config = ClaimerConfig()
        self.vset = VoterSet(1, ())
        self.dead: set[int] = set()  # nodes that never come back (a replaced voter)

    # -- build --------------------------------------------------------------------------

    def build(self, world: World) -> None:
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
        self.voter_ids = tuple(world.ids[:v])
        self.voter_indexes = list(range(v))
        self.vset = VoterSet(1, self.voter_ids)
        self.timing = Timing(self.param_float("drift"), self.param_float("margin_s"))
        lease_s = self.param_float("lease_s")
        self.config = ClaimerConfig(lease_s=lease_s, slots=self.param_int("slots"))
        bug = self.param_str("planted_bug")
        timing = self.timing

        def make(config: ClaimerConfig) -> Any:
            def factory(node_id: NodeId, store: Store, rng: random.Random) -> ConsensusCore:
                return ConsensusCore(
                    node_id,
                    store,
                    rng,
                    voters=self.vset,  # the roster as it is now (a restart learns it)
                    has_role=_no_owner,
                    config=config,
                    timing=timing,
                    planted_bug=bug,
                )

            return factory

        world.add_nodes(make(ClaimerConfig(lease_s=lease_s)), "lease", count=v)
        world.add_nodes(make(self.config), "lease")
        if change:
            world.schedule(self.param_float("change_at_s"), self._change_voters)
        self.commits = CommitChecker(self.voter_indexes)
        world.add_checker(self.commits)
        world.add_checker(self.leases)
        world.add_checker(LostSubmissions(self))
        world.add_checker(CancelChecker(self.submitter_of))
        self.rng = world.rng_for("claims")
        self.cancel_rng = world.rng_for("cancels")  # its own stream: the rest is unchanged
        config = WorkloadConfig(
            rate_per_node_s=self.param_float("jobs_per_node_s"),
            duration_mean_s=self.param_float("job_mean_s"),
            hang_p=self.param_float("hang_p"),
            die_p=self.param_float("die_p"),
        )
        self.workload = Workload(world, config, world.rng_for("workload"), self._submit)
        self.workload.start()

    def _terms(self, job: Job, submitter: NodeId) -> ProcessTerms:
        rng = self.rng
        assert rng is not None
        maxretries = self.param_int("maxretries")
        exec_s = self.param_float("maxexectime_s")
        unlimited = job.fate is Fate.OK and rng.random() < self.param_float("unlimited_p")
        # unlimited retries only for runs that fit in maxexectime: another would run out
        # and be retried forever (as in ColonyOS)
        if unlimited and job.duration_s < exec_s / 2:
            maxretries = -1
        if job.fate is Fate.OK and rng.random() < self.param_float("fail_p"):
            self.fails.add(job.job_id)
        wait_s = 0.0
        if rng.random() < self.param_float("maxwaittime_p"):
            wait_s = self.param_float("maxwaittime_s")
        return ProcessTerms(
            pid=pid_of(job.job_id),
            submitter=submitter,
            priority=rng.randrange(-2, 3),
            seq=job.job_id,
            maxexectime_s=exec_s,
            maxwaittime_s=wait_s,
            maxretries=maxretries,
        )

    def _submit(self, world: World, job: Job) -> None:
        self.jobs[job.job_id] = job
        node = world.nodes[job.node]
        terms = self._terms(job, node.node_id)
        self.submitted += 1
        self.submitter_of[terms.pid] = job.node
        node.call(lambda core, now_s: core.request(now_s, SubmitProcess(terms)))
        self._maybe_cancel(world, job)

    def _maybe_cancel(self, world: World, job: Job) -> None:
        """With `cancel_p`, schedule an abort of the job by its submitter (or, with
        `cancel_foreign_p`, by another node: the voters must refuse it)."""
        rng = self.cancel_rng
        assert rng is not None
        if rng.random() >= self.param_float("cancel_p"):
            return
        at_s = world.now_s + rng.uniform(0.0, self.param_float("cancel_within_s"))
        failed = rng.random() < self.param_float("cancel_failed_p")
        state = State.FAILED if failed else State.CANCELLED
        errors = ("a workflow parent failed",) if failed else ("cancelled by its submitter",)
        sender = job.node
        if rng.random() < self.param_float("cancel_foreign_p"):
            sender = (job.node + rng.randrange(1, world.n)) % world.n
        pid = pid_of(job.job_id)

        def send(core: ConsensusCore, now_s: float) -> None:
            core.request(now_s, CancelProcess(pid, state, errors))
            self.cancels_sent += 1
            self.cancels_foreign += sender != job.node

        def at(w: World) -> None:
            w.nodes[sender].call(send)

        world.schedule(at_s, at)

    def _change_voters(self, world: World) -> None:
        """Roster v -> v+1 with a new voter set; it reaches every node within a second."""
        change = self.param_str("voter_change")
        if change == "grow":
            new = [0, 1, 2, 3, 4]
        elif change == "shrink":
            new = [0, 1, 2]
        else:  # replace: voter 0 dies for good, node 3 takes its place
            world.nodes[0].crash()
            self.dead.add(0)
            new = [1, 2, 3]
        ids = tuple(world.ids[i] for i in new)
        old = self.vset
        self.vset = VoterSet(old.version + 1, ids, old.voters)
        self.voter_ids = ids
        self.voter_indexes = new
        self.commits.add_config(self.vset.version, new)
        rng = world.rng_for("roster")
        vset = self.vset
        for node in world.nodes:
            delay_s = rng.uniform(0.0, 1.0)

            def deliver(w: World, n: SimNode[Any] = node) -> None:
                n.call(
                    lambda core, now_s: core.request(now_s, ChangeVoters(vset.version, vset.voters))
                )

            world.schedule(world.now_s + delay_s, deliver)

    # -- the simulated executors --------------------------------------------------------

    def _run(self, world: World, node: SimNode[Any], event: Granted) -> None:
        job = self.jobs.get(job_of(event.pid))
        rng = self.rng
        if job is None or rng is None or job.fate is Fate.HANG:
            return
        if job.fate is Fate.OK:
            at_s = world.now_s + job.duration_s
        else:
            at_s = world.now_s + rng.uniform(0.0, job.duration_s)
        incarnation = node.incarnation
        pid, epoch, failing = event.pid, event.epoch, job.job_id in self.fails
        died = job.fate is Fate.DIE

        def outcome(core: ConsensusCore, now_s: float) -> None:
            claimer = core.claimer
            lease = claimer.leases.get(pid)
            if (lease is None or lease.epoch != epoch) and claimer.lost_epoch(pid) != epoch:
                return  # this run's lease was closed, released or replaced
            if died:
                core.request(now_s, DropLease(pid))
            elif failing:
                core.request(
                    now_s, CloseProcess(pid, Outcome.FAILED, None, ("the function raised",))
                )
            else:
                core.request(now_s, CloseProcess(pid, Outcome.SUCCESS, f"out-{job_of(pid)}"))

        def finish(w: World) -> None:
            node.call(outcome, incarnation)

        world.queue.push(at_s, CALL, finish)

    def on_event(self, world: World, node: SimNode[Any], event: Any) -> None:
        if isinstance(event, Granted):
            self.granted += 1
            sent_s = event.deadline_s + self.timing.margin_s
            sent_s -= self.config.lease_s * (1.0 - self.timing.drift)
            if len(self.latencies_s) < LATENCIES_MAX:
                self.latencies_s.append(node.local_now() - sent_s)
            self._run(world, node, event)
        elif isinstance(event, Submitted):
            if event.acked:
                self.acked.add(event.pid)
            else:
                self.refused += 1
        elif isinstance(event, ClaimFailed):
            self.claim_failures += 1
        elif isinstance(event, Closed):
            if event.committed:
                self.closes += 1
            elif event.reason in (Reason.STALE_EPOCH, Reason.CLOSED, Reason.NOT_HOLDER):
                self.fenced += 1  # a late close by an ex-holder, refused
        elif isinstance(event, Expired) and event.committed:
            self.expired += 1
        elif isinstance(event, Cancelled):
            if event.committed:
                self.cancels_committed += 1
            else:
                self.cancels_refused += 1
        elif isinstance(event, LeaseEnded) and event.why == "lost":
            self.lost_leases += 1
        elif isinstance(event, LeaseEnded) and event.why == "closed":
            self.leases_ended_closed += 1

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

    def _unfinished(self) -> list[bytes]:
        return sorted(pid for pid in self.acked if pid not in self.commits.committed)

    def converged(self, world: World) -> bool:
        return not self._unfinished()

    def liveness_detail(self, world: World) -> str:
        left = self._unfinished()
        if not left:
            return ""
        job = self.jobs.get(job_of(left[0]))
        fate = "" if job is None else f" ({job.fate.value})"
        return f"{len(left)} acknowledged processes not closed, e.g. {left[0].hex()}{fate}"

    def lost_submissions(self, world: World) -> list[bytes]:
        """Acknowledged submissions no voter set holds durably at a majority (a sealed old
        voter keeps its registers: during a handover the old set still counts)."""
        lost: list[bytes] = []
        for pid in sorted(self.acked):
            held = set()
            for i in sorted({i for c in self.commits.configs.values() for i in c}):
                store = world.nodes[i].store
                assert isinstance(store, MemoryStore)
                if store.durable_get(REGISTERS_TABLE, pid) is not None:
                    held.add(i)
            configs = self.commits.configs.values()
            if not any(len(held.intersection(c)) >= len(c) // 2 + 1 for c in configs):
                lost.append(pid)
        return lost

    # -- figures ------------------------------------------------------------------------

    def size_of(self, msg: Any) -> int:
        return 96

    def metrics(self, world: World) -> dict[str, Metric]:
        latencies = sorted(self.latencies_s)
        return {
            "double_commits": len(self.commits.doubles),
            "overlapping_leases": self.leases.overlaps,
            "lost_submissions": len(self.lost_submissions(world)),
            "unfinished_after_liveness": len(self._unfinished()),
            "submissions": self.submitted,
            "submissions_acked": len(self.acked),
            "claims_committed": self.granted,
            "claims_failed": self.claim_failures,
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
            "claim_latency_p50_s": percentile(latencies, 0.50),
            "claim_latency_p99_s": percentile(latencies, 0.99),
        }

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


class LostSubmissions(BaseChecker):
    """At the end: every acknowledged submission is durable at a majority of voters."""

    name = "lost-submissions"

    def __init__(self, scenario: ClaimsScenario) -> None:
        self.scenario = scenario

    def at_end(self, world: World) -> list[str]:
        lost = self.scenario.lost_submissions(world)
        if not lost:
            return []
        return [f"{len(lost)} acknowledged submissions lost, e.g. {lost[0].hex()}"]
