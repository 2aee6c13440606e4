"""Voters that manage themselves (part of NodeCore; issue 19): `colonynode voters auto`.

The roster's settings say how the voters are chosen: ``"voters": "auto"`` (set by
`voters auto`), or pinned (`voters set`, and colonies from before). Under auto, the
owner's node checks every CHECK_S:

- a voter is *dead* once it has been away (not connected to the owner's node) longer
  than the grace period (``"voter_grace_s"``, GRACE_S by default), or is no longer an
  eligible member (gone from the roster, or named in ``"never_vote"``: a laptop that
  sleeps);
- the others are kept; the eligible members that are up (connected, or the owner's node
  itself) are the candidates; the set is the largest of 5, 3, 1 that the kept voters
  and the candidates fill, the kept ones first (a voter is never swapped for a
  candidate while it lives), the candidates by name;
- a new set is signed as roster v+1 and reaches every node like any roster; the lease
  core then seals a majority of the old voters and hands their registers over (DESIGN.md
  §6), as for `voters set`. After a change the owner waits SETTLE_S before the next,
  and never signs a change before a majority of the current set serves it (`served`:
  a set whose handover never finished holds nothing to hand on; the voters' answers to
  a read say what each serves). `voters set` waits for the same, up to SERVED_WAIT_S.

Only the owner's node signs rosters: while it is down, the voter set stays as it is
(the colony keeps committing while a majority of those voters lives); once it is back,
a voter still away after a grace period counted from then is replaced. A check that
runs more than STALL_S after the one before (the owner's node was stopped, or its
laptop slept) judges nothing and gives every member away a fresh grace: who is
connected is stale then, and part of their time away was its own. So a dead voter is
replaced within the grace period plus CHECK_S, SETTLE_S and a handover of its death or
of the owner's node's return, whichever is later, unless a process is frozen at the
voters (docs/consensus.md): the changes wait for it. No clock is read here: NodeCore's
`now_s`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from colonynode.consensus import requests as lrq
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.node.core.membership import VOTERS_MODE_KEY

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

__all__ = ["GRACE_S", "AutoVoters", "choose_voters", "when_served"]

MODE_KEY, NEVER_KEY, GRACE_KEY = VOTERS_MODE_KEY, "never_vote", "voter_grace_s"
AUTO = "auto"
GRACE_S = 60.0  # a voter away longer is replaced
GRACE_S_MIN, GRACE_S_MAX = 1.0, 7 * 24 * 3600.0
CHECK_S = 1.0
STALL_S = 3 * CHECK_S  # a check this late: this node was stopped (see `_check`)
SETTLE_S = 2.0  # after a change: let its handover begin before judging again
COUNTS = (5, 3, 1)
SERVED_WAIT_S = 15.0  # `voters set` waits this long for the last change to be served
SERVED_POLL_S = 0.25
PROBE_PID = bytes(16)  # a read of no process: its answers say what each voter serves


def choose_voters(
    members: Sequence[tuple[NodeId, str]],
    voters: Sequence[NodeId],
    up: Collection[NodeId],
    away_s: dict[NodeId, float],
    never: Collection[str],
    grace_s: float,
) -> tuple[NodeId, ...]:
    """The voter set auto mode wants (see the module's docstring): `members` (id, name)
    in roster order, `up` the members up now, `away_s` how long each member not up has
    been away."""
    eligible = {nid for nid, name in members if name not in never}
    gone = {v for v in voters if v not in up and away_s.get(v, math.inf) > grace_s}
    dead = gone | {v for v in voters if v not in eligible}
    keep = [v for v in voters if v not in dead]
    names = {nid: name for nid, name in members}
    candidates = sorted((nid for nid in eligible if nid in up and nid not in keep),
                        key=lambda nid: names[nid])  # fmt: skip
    pool = len(keep) + len(candidates)
    n = next((k for k in COUNTS if k <= pool), 1)
    if len(keep) > n:  # fewer members to vote than voters: keep those up, in order
        keep = sorted(keep, key=lambda v: (v not in up, voters.index(v)))[:n]
    chosen = (*keep, *candidates[: n - len(keep)])
    assert len(chosen) in COUNTS or not chosen, chosen
    return chosen


def settings_of(roster: Any) -> tuple[bool, frozenset[str], float]:
    """(auto?, names that never vote, grace seconds) of a roster's settings."""
    s = roster.settings or {}
    never = s.get(NEVER_KEY) or []
    grace = s.get(GRACE_KEY, GRACE_S)
    ok = isinstance(never, list) and all(isinstance(x, str) for x in never)
    grace_s = float(grace) if isinstance(grace, int | float) and grace >= GRACE_S_MIN else GRACE_S
    return s.get(MODE_KEY) == AUTO, frozenset(never if ok else ()), grace_s


class AutoVoters:
    """The owner's node's loop, and how long each member has been away from it."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.down_since: dict[NodeId, float] = {}
        self.settled_at = -math.inf
        self.counters = {
            "voter_changes": 0,
            "voter_change_failures": 0,
            "changes_waited": 0,
            "stalls": 0,
        }
        self._armed = False
        self.checked_s = -math.inf
        self.frozen_since_s = math.inf  # since when a wanted change waits on a frozen one

    def status(self) -> dict[str, Any]:
        roster = self.core.membership.roster
        auto, never, grace_s = settings_of(roster) if roster else (False, frozenset(), GRACE_S)
        return {"auto": auto, "never_vote": sorted(never), "grace_s": grace_s, **self.counters}

    def start(self, now_s: float) -> None:
        if not self._armed:
            self._armed = True
            self.checked_s = now_s
            self.core.at(now_s + CHECK_S, self._check)

    def connected(self, now_s: float, peers: Collection[NodeId]) -> None:
        """Who is up changed: note since when each member is away (the owner's node,
        under auto: the others never decide)."""
        m_ = self.core.membership
        roster = m_.roster
        if roster is None or not m_.is_owner or not settings_of(roster)[0]:
            return
        for m in roster.members:
            if m.node_id == self.core.node_id or m.node_id in peers:
                self.down_since.pop(m.node_id, None)
            else:
                self.down_since.setdefault(m.node_id, now_s)

    def _check(self, now_s: float) -> None:
        self.core.at(now_s + CHECK_S, self._check)
        stalled = now_s - self.checked_s > STALL_S
        self.checked_s = now_s
        if stalled:  # paused, or a laptop that slept: what it knows of the others is
            # stale, and their time away is partly its own; a fresh grace for all
            self.down_since = dict.fromkeys(self.down_since, now_s)
            self.counters["stalls"] += 1
            return
        core = self.core
        m = core.membership
        roster = m.roster
        if roster is None or not m.is_owner:
            return
        auto, never, grace_s = settings_of(roster)
        bug = core.config.planted_bug  # the simulator's checkers' tests only
        if not auto or bug == "voters_stuck":
            return
        if bug == "voters_no_grace":
            grace_s = 0.0
        if not core.consensus.served():
            probe(core)  # until the last change is served: so the next need not wait
        if now_s < self.settled_at + SETTLE_S:
            return
        self.connected(now_s, core.links.members_connected)  # a member never seen, too
        up = {core.node_id} | set(core.links.members_connected)
        away = {nid: now_s - since for nid, since in self.down_since.items()}
        members = [(x.node_id, x.name) for x in roster.members]
        chosen = choose_voters(members, roster.voters, up, away, never, grace_s)
        if not chosen or set(chosen) == set(roster.voters):
            self.frozen_since_s = math.inf
            return
        if not core.consensus.served() and bug != "voters_unserved":  # the last
            self.counters["changes_waited"] += 1  # change's handover is not done
            return
        if core.consensus.frozen_at_voters():  # give the old voters a grace to settle it
            self.frozen_since_s = min(self.frozen_since_s, now_s)
            if now_s - self.frozen_since_s < grace_s:
                self.counters["changes_waited"] += 1
                probe(core)  # (settled meanwhile?)
                return
        self.frozen_since_s = math.inf
        self.settled_at = now_s
        try:
            writes = m.set_voter_ids(chosen)
        except ColonyError:
            self.counters["voter_change_failures"] += 1
            return
        self.counters["voter_changes"] += 1
        core.links.publish_change(writes)


def probe(core: NodeCore) -> None:
    """Ask the newest voters what they serve: their answers to a read of no process
    say (consensus/lease.py `served`)."""
    core.lease(lrq.ReadRegister(PROBE_PID), lambda _event: None)


def when_served(core: NodeCore, go: Callable[[], None], timed_out: Callable[[], None]) -> None:
    """`go()` once a majority of the newest voter set serves it (now, if it does), else
    `timed_out()` after SERVED_WAIT_S."""
    if core.consensus.served():
        go()
        return
    deadline_s = core.now_s + SERVED_WAIT_S

    def check(now_s: float) -> None:
        if core.consensus.served():
            go()
        elif now_s >= deadline_s:
            timed_out()
        else:
            probe(core)
            core.at(now_s + SERVED_POLL_S, check)

    probe(core)
    core.at(core.now_s + SERVED_POLL_S, check)
