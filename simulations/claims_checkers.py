"""The claims scenario's checkers (claims_scenario.py), over the simulator's global time.

- ``double-commits``: a process closed with two different results, each at a majority
  of voters (a holder's SUCCESS and a CANCELLED are two), or two nodes told that two
  different closes (a close, an expiry, an abort) committed;
- ``cancel-permissions``: an abort committed for a node that is neither the process's
  submitter nor the colony's owner;
- ``overlapping-leases``: two holders whose valid-lease intervals overlap in global time
  (a claimer's interval runs from the step a majority granted it to its deadline, read
  on its own drifting clock and converted to global time, cut short when it closes,
  releases or drops the lease);
- ``lost-submissions`` (at the end): a submission acknowledged to its submitter that a
  majority of voters does not hold durably;
- ``dropped-taken-again``: a voter took a Submit of a process (a new register) after a
  voter had dropped it closed (consensus/compaction.py): it could run again (a cron
  tick fired late, a submission retransmitted past the horizon);
- ``scheduling``: a claim round of a node's NodeCore left a ready process that its
  waiting executors match ahead (by more than the near-tie window) of one it chose, or
  left an executor waiting while a ready process it matches was not chosen; or a node
  with executors waiting and ready processes ran no claim round for longer than a round
  (`POLL_S`) and its slack (after a wait its scheduler chose because no majority of
  voters answered its claims).
"""

from __future__ import annotations

from collections.abc import Set
from typing import TYPE_CHECKING, Any

from colonynode.consensus.events import (
    Cancelled,
    Closed,
    Compacted,
    Expired,
    Granted,
    LeaseEnded,
    Registered,
    Renewed,
    VoterCommitted,
)
from colonynode.consensus.held import CLAIM_BATCH_MAX
from colonynode.consensus.register import commit_key
from colonynode.consensus.voter import REGISTERS_TABLE
from colonynode.core.scheduling import TIE_WINDOW_NS, matches
from colonynode.node.core.requests import Planned
from colonynode.node.core.scheduler import POLL_S, ROUND_GAP_S
from colonynode.simulations.checkers import BaseChecker
from colonynode.storage.memory import MemoryStore

if TYPE_CHECKING:
    from colonynode.simulations.world import World

__all__ = [
    "CancelChecker",
    "CommitChecker",
    "LeaseChecker",
    "LostSubmissions",
    "SchedulingChecker",
    "lost_submissions",
]

IDLE_SLACK_S = 0.1  # a round may start this much later than POLL_S after the last
IDLE_EVERY_S = 0.5  # how often the idle check looks at every node


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
    """Only a process's submitter (or the colony's owner) may abort it."""

    name = "cancel-permissions"

    def __init__(self, submitter_of: dict[bytes, int], owner: int) -> None:
        self.submitter_of = submitter_of  # pid -> index of the node that submitted it
        self.owner = owner

    def after_step(self, world: World) -> list[str]:
        found: list[str] = []
        for node, event in world.step_events:
            if isinstance(event, Cancelled) and event.committed:
                submitter = self.submitter_of.get(event.pid)
                if submitter != node and node != self.owner:
                    found.append(
                        f"process {event.pid.hex()}: node {node} aborted it "
                        f"({event.state.name}), its submitter is node {submitter}"
                    )
        return found


def lost_submissions(
    world: World, acked: set[bytes], commits: CommitChecker, compacted: Set[bytes] = frozenset()
) -> list[bytes]:
    """Acknowledged submissions no voter set holds durably at a majority (a sealed old
    voter keeps its registers: during a handover the old set still counts), and none
    dropped as closed everywhere (consensus/compaction.py)."""
    lost: list[bytes] = []
    voters = sorted({i for c in commits.configs.values() for i in c})
    for pid in sorted(acked - compacted):
        held = set()
        for i in voters:
            store = world.nodes[i].store
            assert isinstance(store, MemoryStore)
            if store.durable_get(REGISTERS_TABLE, pid) is not None:
                held.add(i)
        configs = commits.configs.values()
        if not any(len(held.intersection(c)) >= len(c) // 2 + 1 for c in configs):
            lost.append(pid)
    return lost


class LostSubmissions(BaseChecker):
    """At the end: every acknowledged submission is durable at a majority of voters."""

    name = "lost-submissions"

    def __init__(self, acked: set[bytes], commits: CommitChecker) -> None:
        self.acked = acked
        self.commits = commits
        self.compacted: set[bytes] = set()  # dropped by a voter once closed everywhere

    def after_step(self, world: World) -> list[str]:
        for _, event in world.step_events:
            if isinstance(event, Compacted):
                self.compacted.update(event.pids)
        return []

    def at_end(self, world: World) -> list[str]:
        lost = lost_submissions(world, self.acked, self.commits, self.compacted)
        if not lost:
            return []
        return [f"{len(lost)} acknowledged submissions lost, e.g. {lost[0].hex()}"]


class DroppedTakenAgain(BaseChecker):
    """No voter of the set that dropped a process, or of a later one, takes a Submit of
    it: every voter of the set promised and raised its horizon (or the tick's series
    horizon) before the drop, and a new voter takes the horizons with its handover. (A
    voter of an older set still serving it, cut off from its change, may: no majority
    of that sealed set can take it with it.)"""

    name = "dropped-taken-again"

    def __init__(self) -> None:
        self.dropped: dict[bytes, tuple[int, int]] = {}  # pid -> (voter, version) of a drop
        self.taken_again = 0

    def after_step(self, world: World) -> list[str]:
        found: list[str] = []
        for node, event in world.step_events:
            if isinstance(event, Compacted):
                for pid in event.pids:
                    self.dropped.setdefault(pid, (node, event.version))
            elif isinstance(event, Registered) and event.terms.pid in self.dropped:
                pid = event.terms.pid
                dropper, version = self.dropped[pid]
                core = world.nodes[node].core
                if core is not None and core.consensus.voter.serving < version:
                    continue
                self.taken_again += 1
                found.append(f"process {pid.hex()}: voter {node} took its Submit after "
                             f"voter {dropper} dropped it")  # fmt: skip
        return found


class SchedulingChecker(BaseChecker):
    """The claim rounds of every node's NodeCore keep ColonyOS's order and leave no
    executor idle while a process it matches is ready (see the module docstring). It
    reads each node's scheduler: what it checks is the node's decision given the view
    the node had; that views converge is the liveness checker's business."""

    name = "scheduling"

    def __init__(self) -> None:
        self.rounds = 0
        self.own_claims = 0  # rounds that were a submission's own first claim
        self.next_idle_s = 0.0

    def after_step(self, world: World) -> list[str]:
        found: list[str] = []
        for node, event in world.step_events:
            if isinstance(event, Planned):
                self.rounds += bool(event.chosen)
                self.own_claims += event.own
                found.extend(self._round(world, node, event))
        if world.now_s >= self.next_idle_s:
            self.next_idle_s = world.now_s + IDLE_EVERY_S
            found.extend(self._idle(world))
        return found

    def _round(self, world: World, node: int, event: Planned) -> list[str]:
        """Check one round's choice against the candidates it chose among."""
        core = world.nodes[node].core
        if core is None:
            return []
        adverts = [ex.advert for ex in core.scheduler.executors.values()]
        now_s = event.at_s
        chosen = set(event.chosen)
        matching = [w for w in event.candidates if any(matches(w.spec, a) for a in adverts)]
        ready = {w.pid: w for w in matching if w.ready_s <= now_s}
        if not chosen <= set(ready):
            return [f"node {node} claimed a process that was not a ready candidate"]
        worst = max((ready[p].priority_time_ns for p in chosen), default=None)
        # The stagger: a process not ready here yet holds back what is behind it by more
        # than the near-tie window (core/scheduling.py); an executor may wait for it.
        held_back = min((w.priority_time_ns for w in matching if w.ready_s > now_s), default=None)
        for w in ready.values():
            if w.pid in chosen:
                continue
            if worst is not None and w.priority_time_ns + TIE_WINDOW_NS < worst:
                return [
                    f"node {node} claimed a process of priority time {worst} while"
                    f" {w.pid.hex()} ({w.priority_time_ns}) was ready and matched"
                ]
            behind = held_back is not None and w.priority_time_ns > held_back + TIE_WINDOW_NS
            if len(chosen) < min(event.waiting, CLAIM_BATCH_MAX) and not behind:
                return [
                    f"node {node} left {event.waiting - len(chosen)} executors waiting"
                    f" while {w.pid.hex()} was ready and matched"
                ]
        return []

    def _idle(self, world: World) -> list[str]:
        found: list[str] = []
        for i, sim in enumerate(world.nodes):
            core = sim.core
            if core is None or not sim.alive or sim.paused:
                continue
            if world.now_s - sim.woke_s <= POLL_S + ROUND_GAP_S + IDLE_SLACK_S:
                continue  # it has just woken up: its overdue timers are running
            sched = core.scheduler
            if not sched.slots.idle_wants():
                continue
            now_s = sim.local_now()
            # A node whose claims no majority answered waits a while (it knows the
            # voters are out of reach): the bound runs from the end of that wait.
            since_s = max(sched.last_round_s, sched.quiet_until_s)
            if now_s - since_s <= POLL_S + ROUND_GAP_S + IDLE_SLACK_S:
                continue
            idle_s = sched.slots.idle_since_s()
            if idle_s is None or now_s - idle_s <= POLL_S + ROUND_GAP_S + IDLE_SLACK_S:
                continue
            if any(w.ready_s <= now_s for w in sched.candidates(now_s)):
                found.append(
                    f"node {i}: executors waited {now_s - sched.last_round_s:.3f} s with no"
                    " claim round while a ready process waited"
                )
        return found
