"""Whom a node keeps links to (part of NodeCore's links, colony.py; issue 19): a bounded
set, not every member.

- **The voters**, always: every claim, close and submission goes to them.
- **A random sample of PEERS_WANTED other members**, for gossip: each node's sample is
  its own random draw, so the links form a random graph of degree about twice that,
  connected with overwhelming probability; gossip (GossipSub over those links, and its
  digest exchanges) reaches every member through it. A sampled member that cannot be
  reached within SAMPLE_PATIENCE_S, or whose link ended without this node closing it (it
  went, or closed it being full), is set aside for BACKOFF_S and another is drawn, if
  there is another to draw (in a small colony it stays, and is dialled again).
- **The owner's node under voters auto** also keeps the first CANDIDATES_MAX eligible
  members (roster order, never-vote members left out, those set aside skipped): auto
  chooses voters among the members up, which is to say linked to the owner's node. And
  those candidates want the owner's node back (each can tell it is one from the roster),
  so neither side closes what the other wants.
- **Whoever the DHT or ColonyFS needs**: a lookup dials the peers it asks (dht/core.py
  `Dial`), a transfer the holders of its chunks; such links last until pruned.

Pruning: a node that is no voter closes links to members that are neither voters nor
wanted once it has more than LINKS_MAX of them (others dialled it: their samples, their
lookups), the oldest first, down to LINKS_MAX; a link younger than LINK_GRACE_S is left
alone (a lookup or a transfer that just dialled is using it). So a node that is no voter
has at most (its voters) + LINKS_MAX links older than the grace. A voter keeps every
link (every member that claims must reach it): in a colony of n members a voter has
n - 1 links. In a colony of up to PEERS_WANTED + its voters + 1 members every member is
in every sample: a full mesh, as before. No I/O, no clock.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from colonynode.core.ids import NodeId

__all__ = [
    "BACKOFF_S",
    "CANDIDATES_MAX",
    "LINKS_MAX",
    "LINK_GRACE_S",
    "PEERS_WANTED",
    "SAMPLE_PATIENCE_S",
    "PeerSet",
]

PEERS_WANTED = 6  # members sampled for gossip, besides the voters
LINKS_MAX = 16  # a node that is no voter prunes its links to members that are no voters
LINK_GRACE_S = 10.0  # ... but not one younger than this
CANDIDATES_MAX = 8  # eligible members the owner's node keeps under voters auto
SAMPLE_PATIENCE_S = 15.0  # a sampled member not linked after this long is replaced
BACKOFF_S = 60.0  # a member set aside is not sampled again for this long
BACKOFF_MAX = 4096  # members set aside remembered


class PeerSet:
    """The sample, the members set aside, and the set wanted from them."""

    def __init__(self, me: NodeId, rng: random.Random, peers_wanted: int = PEERS_WANTED) -> None:
        self.me = me
        self.rng = rng
        self.peers_wanted = peers_wanted
        self.sample: dict[NodeId, float] = {}  # member -> when it was drawn
        self.backoff: dict[NodeId, float] = {}  # member -> not before this time
        self._lost: set[NodeId] = set()  # sampled members whose link ended
        self.replaced = 0  # sampled members set aside (unreachable, or their link ended)

    def wanted(
        self,
        now_s: float,
        members: Sequence[NodeId],
        voters: Collection[NodeId],
        connected: Collection[NodeId],
        candidates: Sequence[NodeId] = (),
    ) -> set[NodeId]:
        """The members to be linked to now (`members`: the roster's, in order;
        `candidates`: the owner's eligible members, in order)."""
        member_set = set(members)
        for nid in [n for n in self.sample if n not in member_set or n in voters]:
            del self.sample[nid]  # (a voter is wanted anyway: its slot goes to another)
        lost, self._lost = self._lost, set()
        for nid, since_s in sorted(self.sample.items()):
            late = nid not in connected and now_s - since_s > SAMPLE_PATIENCE_S
            if (late or nid in lost) and self._pool(now_s, members, voters):
                self.set_aside(now_s, nid)
            elif late:
                self.sample[nid] = now_s  # none to draw instead: patience again
        self._refill(now_s, members, voters)
        wanted = set(voters) | set(self.sample)
        wanted |= set([c for c in candidates if not self._away(now_s, c)][:CANDIDATES_MAX])
        wanted.discard(self.me)
        return wanted

    def _refill(self, now_s: float, members: Sequence[NodeId], voters: Collection[NodeId]) -> None:
        missing = self.peers_wanted - len(self.sample)
        if missing <= 0:
            return
        pool = self._pool(now_s, members, voters)
        for nid in self.rng.sample(pool, min(missing, len(pool))):
            self.sample[nid] = now_s

    def _pool(
        self, now_s: float, members: Sequence[NodeId], voters: Collection[NodeId]
    ) -> list[NodeId]:
        """The members that may be drawn now."""
        return [n for n in members if n != self.me and n not in voters
                and n not in self.sample and not self._away(now_s, n)]  # fmt: skip

    def _away(self, now_s: float, nid: NodeId) -> bool:
        until_s = self.backoff.get(nid)
        if until_s is not None and until_s <= now_s:
            del self.backoff[nid]
            return False
        return until_s is not None

    def set_aside(self, now_s: float, nid: NodeId) -> None:
        """A sampled member could not be kept: another is drawn in its place."""
        if self.sample.pop(nid, None) is not None:
            self.replaced += 1
        if len(self.backoff) >= BACKOFF_MAX:
            del self.backoff[next(iter(self.backoff))]
        self.backoff[nid] = now_s + BACKOFF_S

    def lost(self, gone: Collection[NodeId], closed_here: Collection[NodeId]) -> None:
        """Links that ended: a sampled member's, not closed by this node, is set aside
        at the next `wanted` (if another can be drawn)."""
        self._lost |= {n for n in gone if n in self.sample and n not in closed_here}

    def prune(
        self,
        now_s: float,
        linked: dict[NodeId, float],
        voters: Collection[NodeId],
        wanted: Collection[NodeId],
        links_max: int = LINKS_MAX,
    ) -> list[NodeId]:
        """The links to close (`linked`: member -> since when, oldest first): past
        `links_max` links to members that are no voters, unwanted ones older than the
        grace, the oldest first."""
        others = [n for n in linked if n not in voters]
        extra = len(others) - links_max
        if extra <= 0:
            return []
        old = [n for n in others if n not in wanted and now_s - linked[n] >= LINK_GRACE_S]
        return old[:extra]
