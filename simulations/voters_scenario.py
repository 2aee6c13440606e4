"""Scenario ``voters``: voters that manage themselves (issue 19), on real NodeCores.

The claims scenario's colony, workload and checkers (safety as always: double commits,
overlapping leases, lost submissions, cancels, scheduling, liveness), with the roster in
auto mode and the colony changing under it. At 0.5 s the owner's node is asked
`AutoVoters` (as `colonynode voters auto --never NAME --grace-s S`): one random founding
member never votes, a voter away longer than `voter_grace_s` is replaced. Then, one
every `churn_every_s` in a seed-shuffled order, while the voter set is whole:

- ``join``: one of the last `joins` nodes before the owner, outside the colony until
  now, joins through the daemon's path (CreateInvite and Admit at the owner's node,
  Joined at the joiner); then its executor attaches;
- ``kill``: a voter (never the owner's node) stops for good;
- ``blip``: a voter is down for less than half the grace period, then restarts: it
  must keep its seat;
- ``leave``: the owner removes a member (RemoveMember), which then stops for good.

Every node connects to every other (the daemon's mesh today). The fault profile's
crashes, pauses, partitions and clogs run as usual on top.

Checker ``voter-strength`` (VoterStrength), from the world's truth every TICK_S:
the set is *whole* when every voter of the owner's roster is up, the set has as many
voters as auto mode wants from the eligible members that are up (5, 3 or 1), and a
majority of it serves its version. A set that is not whole for longer than
`restore_bound_s` (the grace period, plus CHECK_S and the scenario's PEER_REFRESH_S
for noticing, plus SETTLE_S after a previous change, plus HANDOVER_S_MAX) is a
violation: in particular never fewer than a majority of live voters for longer. The
clock only runs while that promise applies: the owner's node up and not paused, no
partition, no clog touching the owner or a voter, and during a handover a majority of
the previous voters up (the seal needs them; DESIGN.md §6). It also checks that a
voter up for longer than the grace period with no partition meanwhile is never
replaced while the set does not shrink, and that a never-vote member is never chosen.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, ClassVar

from colonynode.core.roster import Member, Roster, sign_roster
from colonynode.node.core import Answer
from colonynode.node.core import requests as rq
from colonynode.node.core.messages import JoinRequest
from colonynode.node.core.voters_auto import CHECK_S, COUNTS, SETTLE_S, settings_of
from colonynode.simulations.checkers import BaseChecker
from colonynode.simulations.claims_scenario import PEER_REFRESH_S, ClaimsScenario, percentile
from colonynode.simulations.scenario import Metric, ParamValue, register_scenario

if TYPE_CHECKING:
    from colonynode.simulations.world import World

__all__ = ["VoterStrength", "VotersScenario"]

TICK_S = 0.25
HANDOVER_S_MAX = 5.0  # seal a majority of the old voters, hand over, serve (measured: ~0.1)
AUTO_AT_S = 0.5
CHURN_FROM_S = 4.0
RETRY_S = 1.0
INVITE_TTL_S = 600.0


@register_scenario
class VotersScenario(ClaimsScenario):
    name = "voters"
    description = "voters auto under joins, leaves and voter deaths (claims' checkers too)"
    rank = 6
    default_nodes = 9
    safety_s = 45.0
    liveness_s = 60.0
    params: ClassVar[dict[str, ParamValue]] = {
        **ClaimsScenario.params,
        "voter_grace_s": 3.0,
        "joins": 2,
        "kills": 2,
        "blips": 2,
        "leaves": 1,
        "churn_every_s": 5.0,
    }
    headline: ClassVar[tuple[str, ...]] = (
        *ClaimsScenario.headline,
        "voter_changes",
        "restore_max_s",
    )

    def __init__(self, params: dict[str, ParamValue] | None = None) -> None:
        super().__init__(params)
        self.joiners: list[int] = []
        self.joined: set[int] = set()
        self.plan: list[str] = []
        self.done: dict[str, int] = {"join": 0, "kill": 0, "blip": 0, "leave": 0}
        self.never = ""
        self.churn_rng = random.Random(0)
        self.strength = VoterStrength(self, 0.0)

    # -- build --------------------------------------------------------------------------

    def _check(self, world: World) -> int:
        if self.param_str("voter_change"):
            raise ValueError("the voters scenario changes the voters itself (no voter_change)")
        joins = self.param_int("joins")
        if world.n < joins + 5:
            raise ValueError(f"voters needs at least joins + 5 = {joins + 5} nodes")
        return super()._check(world)

    def _roster(self, world: World, v: int) -> Any:
        n = world.n
        self.owner = n - 1
        self.joiners = list(range(n - 1 - self.param_int("joins"), n - 1))
        self.outsiders = set(self.joiners)
        members = tuple(
            Member(world.ids[i], f"n{i}", ("submitter",) if i < v else ("executor", "submitter"))
            for i in range(n)
            if i not in self.outsiders
        )
        roster = Roster(
            "sim", world.ids[self.owner], 1, members, tuple(world.ids[:v]), voters_since=1
        )  # as `colonynode init` signs it
        return sign_roster(self.identities[self.owner], roster)

    def roster_of(self, index: int) -> Any:
        return None if index in self.joiners else self.roster_env  # a joiner has none yet

    def _connect(self, world: World) -> list[list[int]]:
        return [[j for j in range(world.n) if j != i] for i in range(world.n)]

    def build(self, world: World) -> None:
        super().build(world)
        rng = world.rng_for("churn")
        founders = [i for i in range(world.n - 1) if i not in self.joiners]
        self.never = f"n{rng.choice(founders)}"
        counts = {"join": len(self.joiners), "kill": self.param_int("kills"),
                  "blip": self.param_int("blips"), "leave": self.param_int("leaves")}  # fmt: skip
        self.plan = [action for action, n in counts.items() for _ in range(n)]
        rng.shuffle(self.plan)
        self.churn_rng = rng
        grace_s = self.param_float("voter_grace_s")
        # noticed (grace, a check, a connection refresh), a change after the last one
        # (SETTLE_S), a grace for a frozen process to settle first, the handover
        bound_s = 2 * grace_s + CHECK_S + PEER_REFRESH_S + SETTLE_S + HANDOVER_S_MAX
        self.strength = VoterStrength(self, bound_s)
        world.add_checker(self.strength)
        world.schedule(AUTO_AT_S, self._go_auto)
        world.schedule(CHURN_FROM_S, self._churn)

    def _booted(self, world: World, index: int) -> None:
        self.strength.booted(world, index)
        if index in self.joiners and index not in self.joined:
            self._tell_peers(world, index)  # connected, not yet a member: no executor
            return
        super()._booted(world, index)

    def _go_auto(self, world: World) -> None:
        req = rq.AutoVoters((self.never,), self.param_float("voter_grace_s"))

        def done(answer: Answer) -> None:
            if answer.error is not None:
                world.schedule(world.now_s + RETRY_S, self._go_auto)

        if not self.ask(world, self.owner, req, done):
            world.schedule(world.now_s + RETRY_S, self._go_auto)

    # -- churn --------------------------------------------------------------------------

    def _churn(self, world: World) -> None:
        if not self.plan or world.phase != "safety":
            return
        if not self.strength.whole(world):  # one change at a time, on a whole set
            world.schedule(world.now_s + RETRY_S, self._churn)
            return
        action = self.plan.pop(0)
        if not getattr(self, f"_{action}")(world):
            self.plan.insert(0, action)  # no one to do it to now: later
            world.schedule(world.now_s + RETRY_S, self._churn)
            return
        self.done[action] += 1
        world.schedule(world.now_s + self.param_float("churn_every_s"), self._churn)

    def _voters_up(self, world: World) -> list[int]:
        return [i for i in self.voter_indexes if i != self.owner and world.nodes[i].alive]

    def _kill(self, world: World) -> bool:
        up = self._voters_up(world)
        if not up:
            return False
        victim = self.churn_rng.choice(up)
        world.nodes[victim].crash()
        self.dead.add(victim)
        return True

    def _blip(self, world: World) -> bool:
        up = self._voters_up(world)
        if not up:
            return False
        node = world.nodes[self.churn_rng.choice(up)]
        node.crash()
        incarnation = node.incarnation
        down_s = self.churn_rng.uniform(0.2, 0.5 * self.param_float("voter_grace_s"))

        def back(w: World) -> None:
            if not node.alive and node.incarnation == incarnation:
                node.restart()

        world.schedule(world.now_s + down_s, back)
        return True

    def _leave(self, world: World) -> bool:
        keep = {self.owner, *self.outsiders, *self.voter_indexes}  # (a voter: refused)
        members = [i for i in range(world.n) if i not in keep and world.nodes[i].alive]
        if not members:
            return False
        leaver = self.churn_rng.choice(members)

        def removed(answer: Answer) -> None:
            if answer.error is None:
                self.outsiders.add(leaver)
                self.dead.add(leaver)
                world.nodes[leaver].crash()  # it leaves: stops for good

        return self.ask(world, self.owner, rq.RemoveMember(f"n{leaver}"), removed)

    def _join(self, world: World) -> bool:
        waiting = [i for i in self.joiners if i not in self.joined and world.nodes[i].alive]
        if not waiting:
            return False
        joiner = waiting[0]

        def invited(answer: Answer) -> None:
            if answer.error is None:
                join = JoinRequest(str(answer.value), f"n{joiner}", ())
                self.ask(world, self.owner, rq.Admit(world.ids[joiner], join), admitted)

        def admitted(answer: Answer) -> None:
            if answer.error is None:
                self.ask(world, joiner, rq.Joined(answer.value), joined)

        def joined(answer: Answer) -> None:
            if answer.error is None and joiner not in self.joined:
                self.joined.add(joiner)
                self.outsiders.discard(joiner)
                assert self.executors is not None
                self.executors.start(joiner)

        roles = ("executor", "submitter")
        return self.ask(world, self.owner, rq.CreateInvite(roles, INVITE_TTL_S), invited)

    # -- liveness and figures -----------------------------------------------------------

    def converged(self, world: World) -> bool:
        return super().converged(world) and self.strength.whole(world)

    def liveness_detail(self, world: World) -> str:
        detail = super().liveness_detail(world)
        if detail or self.strength.whole(world):
            return detail
        return f"the voter set is not whole: {self.strength.why}"

    def metrics(self, world: World) -> dict[str, Metric]:
        s = self.strength
        restores = sorted(s.restores_s)
        handovers = sorted(s.handovers_s)
        return {
            **super().metrics(world),
            "voter_changes": s.changes,
            "joins": self.done["join"], "kills": self.done["kill"],
            "blips": self.done["blip"], "leaves": self.done["leave"],
            "churn_left": len(self.plan),
            "restore_max_s": max(restores, default=0.0),
            "restore_p50_s": percentile(restores, 0.5),
            "handover_p50_s": percentile(handovers, 0.5),
            "handover_max_s": max(handovers, default=0.0),
            "strength_bound_s": s.bound_s,
            "final_voters": len(s.voters),
        }  # fmt: skip


class VoterStrength(BaseChecker):
    """The voter set is whole again within `bound_s` whenever the promise applies; a
    live voter is not swapped out; a never-vote member never votes (module docstring)."""

    name = "voter-strength"

    def __init__(self, scenario: VotersScenario, bound_s: float) -> None:
        self.sc = scenario
        self.bound_s = bound_s
        self.next_s = 0.0
        self.version = 0  # the voter-set version last seen at the owner
        self.voters: list[int] = []
        self.previous: list[int] = []
        self.changed_s = -math.inf
        self.up_since: dict[int, float] = {}
        self.down_at: dict[int, float] = {}  # since when each node is away (ticks)
        self.partitioned_s = -math.inf  # last tick a partition was seen
        self.broken_since: float | None = None
        self.alive_sig: tuple[bool, ...] = ()
        self.changed_alive_s = 0.0  # the last time a node came up or went down
        self.reported = False
        self.changes = 0
        self.restores_s: list[float] = []
        self.handovers_s: list[float] = []
        self.handover_from: float | None = None
        self.why = ""

    def booted(self, world: World, index: int) -> None:
        self.up_since[index] = world.now_s

    def after_step(self, world: World) -> list[str]:
        found = self._roster_changes(world)
        if world.now_s >= self.next_s:
            self.next_s = world.now_s + TICK_S
            found += self._tick(world)
        return found

    def _owner_roster(self, world: World) -> Roster | None:
        owner = world.nodes[self.sc.owner]
        if not owner.alive or owner.core is None:
            return None
        roster: Roster | None = owner.core.membership.roster
        return roster

    def _roster_changes(self, world: World) -> list[str]:
        """A new voter set signed at the owner's node: the commit checker learns it; it
        must not drop a live voter for nothing, nor seat a never-vote member."""
        roster = self._owner_roster(world)
        if roster is None or roster.voter_set_version() == self.version:
            return []
        index = world.network.index_of
        new = [index[v] for v in roster.voters]
        old, self.version = self.voters, roster.voter_set_version()
        if set(new) == set(old):
            self.voters = new
            return []
        self.previous, self.voters, self.changed_s = old, new, world.now_s
        self.changes += 1
        self.handover_from = world.now_s
        self.sc.voter_indexes = new
        self.sc.commits.add_config(self.version, new)
        auto, never, grace_s = settings_of(roster)
        if not auto:
            return []
        found = [f"roster v{roster.version} seats n{i}, marked never to vote"
                 for i in new if f"n{i}" in never]  # fmt: skip
        calm_s = world.now_s - grace_s - CHECK_S - PEER_REFRESH_S
        if len(new) >= len(old) and self.partitioned_s < calm_s:
            eligible = {index[m.node_id] for m in roster.members if m.name not in never}
            for i in old:
                if i not in new and i in eligible:
                    found += self._dropped(world, roster.version, i, grace_s, calm_s)
        return found

    def _dropped(self, world: World, version: int, i: int, grace_s: float,
                 calm_s: float) -> list[str]:  # fmt: skip
        """Voter n`i`, still an eligible member, is out of roster `version`: it must
        have been down (or cut off) a grace period."""
        if world.nodes[i].alive:
            if self.up_since.get(i, math.inf) < calm_s:
                return [f"roster v{version} dropped voter n{i}, up since "
                        f"{self.up_since[i]:.2f} s"]  # fmt: skip
            return []
        down_s = world.now_s - self.down_at.get(i, -math.inf)
        if down_s < grace_s - 2 * TICK_S and self.partitioned_s < world.now_s - grace_s:
            return [f"roster v{version} dropped voter n{i}, down only {down_s:.2f} s"]
        return []

    def whole(self, world: World) -> bool:
        """Is the set whole now (every voter up, as many as wanted, a majority serving),
        whether or not the promise applies?"""
        return self._state(world, promise=False) is True

    def _state(self, world: World, promise: bool = True) -> bool | None:
        """True: whole; False: not whole (while the promise applies, with `promise`);
        None: it does not apply now (sets `why`)."""
        sc, net, nodes = self.sc, world.network, world.nodes
        roster = self._owner_roster(world)
        if roster is None or nodes[sc.owner].paused:
            self.why = "the owner's node is down"
            return None
        auto, never, _ = settings_of(roster)
        if not auto:
            return True  # pinned: nothing is promised
        if net.partitioned and promise:
            self.partitioned_s = world.now_s
            self.why = "a partition"
            return None
        index = net.index_of
        voters = [index[v] for v in roster.voters]
        version, majority = roster.voter_set_version(), roster.majority()
        serving = [i for i in voters if _serving(nodes[i].core) == version]
        if len(serving) >= majority and self.handover_from is not None:
            self.handovers_s.append(world.now_s - self.handover_from)
            self.handover_from = None
        if promise and self._clogged(world, {sc.owner, *voters}):
            self.why = "a clog on the owner or a voter"
            return None
        previous_up = sum(nodes[i].alive for i in self.previous)
        if promise and len(serving) < majority and 0 < len(self.previous) > 2 * previous_up:
            self.why = "a majority of the previous voters is down (the handover waits)"
            return None
        up = [i for i in (index[m.node_id] for m in roster.members if m.name not in never)
              if nodes[i].alive]  # fmt: skip
        want = next((k for k in COUNTS if k <= len(up)), 1)
        down = [i for i in voters if not nodes[i].alive]
        if down or len(voters) != want or len(serving) < majority:
            self.why = (f"{len(voters)} voters, {len(down)} down, {len(serving)} serving "
                        f"v{version}, {want} wanted")  # fmt: skip
            return False
        self.why = ""
        return True

    def _clogged(self, world: World, nodes: set[int]) -> bool:
        net, now_s = world.network, world.now_s
        if any(net.node_clog_until_s[i] > now_s for i in nodes):
            return True
        n = world.n
        return any(link.clog_until_s > now_s and (key // n in nodes or key % n in nodes)
                   for key, link in net.links.items())  # fmt: skip

    def _tick(self, world: World) -> list[str]:
        now_s = world.now_s
        sig = tuple(node.alive for node in world.nodes)
        was = self.alive_sig
        if sig != self.alive_sig:
            self.alive_sig, self.changed_alive_s = sig, now_s
        for i, alive in enumerate(sig):  # away since: a restart the owner's node had
            if alive and was and not was[i]:  # no refresh to see does not end it
                self.up_since[i] = now_s  # (restarted: up from now, booted or not yet)
            if not alive:
                self.down_at.setdefault(i, now_s)
            elif now_s - self.up_since.get(i, now_s) > PEER_REFRESH_S + TICK_S:
                self.down_at.pop(i, None)
        state = self._state(world)
        if state is None or state is True:
            if state is True and self.broken_since is not None:
                self.restores_s.append(now_s - self.broken_since)
            self.broken_since, self.reported = None, False
            return []
        if self.broken_since is None:
            self.broken_since = now_s
        since_s = max(self.broken_since, self.changed_alive_s)  # each change restarts it
        if now_s - since_s > self.bound_s and not self.reported:
            self.reported = True
            return [f"the voter set is not whole for {now_s - since_s:.2f} s since the last "
                    f"node came or went (bound {self.bound_s:.2f} s): {self.why}"]  # fmt: skip
        return []


def _serving(core: Any) -> int:
    """The voter-set version a node's voter serves (0: down, or none)."""
    return 0 if core is None else int(core.consensus.voter.serving)
