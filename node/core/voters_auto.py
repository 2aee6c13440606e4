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
  §6), as for `voters set`. After a change the owner waits SETTLE_S before the next.

Only the owner's node signs rosters: while it is down, the voter set stays as it is
(the colony keeps committing while a majority of those voters lives), and the first
check after it comes back replaces the voters that died meanwhile. A dead voter is
therefore replaced within the grace period plus CHECK_S plus a handover, whenever
the owner's node is up. No clock is read here: NodeCore's `now_s`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.node.core.membership import VOTERS_MODE_KEY

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

__all__ = ["GRACE_S", "AutoVoters", "choose_voters"]

MODE_KEY, NEVER_KEY, GRACE_KEY = VOTERS_MODE_KEY, "never_vote", "voter_grace_s"
AUTO = "auto"
GRACE_S = 60.0  # a voter away longer is replaced
GRACE_S_MIN, GRACE_S_MAX = 1.0, 7 * 24 * 3600.0
CHECK_S = 1.0
SETTLE_S = 5.0  # after a change: let its handover begin before judging again
COUNTS = (5, 3, 1)


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
        self.counters = {"voter_changes": 0, "voter_change_failures": 0}
        self._armed = False

    def status(self) -> dict[str, Any]:
        roster = self.core.membership.roster
        auto, never, grace_s = settings_of(roster) if roster else (False, frozenset(), GRACE_S)
        return {"auto": auto, "never_vote": sorted(never), "grace_s": grace_s, **self.counters}

    def start(self, now_s: float) -> None:
        if not self._armed:
            self._armed = True
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
        core = self.core
        m = core.membership
        roster = m.roster
        if roster is None or not m.is_owner or now_s < self.settled_at + SETTLE_S:
            return
        auto, never, grace_s = settings_of(roster)
        if not auto:
            return
        self.connected(now_s, core.links.members_connected)  # a member never seen, too
        up = {core.node_id} | set(core.links.members_connected)
        away = {nid: now_s - since for nid, since in self.down_since.items()}
        members = [(x.node_id, x.name) for x in roster.members]
        chosen = choose_voters(members, roster.voters, up, away, never, grace_s)
        if not chosen or set(chosen) == set(roster.voters):
            return
        self.settled_at = now_s
        try:
            writes = m.set_voter_ids(chosen)
        except ColonyError:
            self.counters["voter_change_failures"] += 1
            return
        self.counters["voter_changes"] += 1
        core.links.publish_change(writes)
