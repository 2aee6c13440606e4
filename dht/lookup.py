"""The iterative Kademlia lookup (DESIGN.md §8): α queries in flight, closest first.

A lookup for a target key starts from the closest contacts of our table and keeps a list
of candidates sorted by XOR distance to the target. It queries the closest candidates it
has not asked yet, at most `alpha` at a time; every answer adds the closer peers it names;
a query unanswered after the timeout counts as failed (the core times it). It ends when
the `k` closest candidates that did not fail have all answered, when none is left to
ask, or at its deadline.

Hops: every candidate has a depth: 0 for the contacts the lookup started from, and one
more than the peer whose answer first named it. The depth of the closest peer found is
the number of *sequential query rounds until the closest node was found* (0 when our own
table already held it), the figure the `dht` scenario reports as `lookup_hops_*`.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable

from colonynode.core.ids import NodeId
from colonynode.dht.routing import key_of

__all__ = ["ANSWERED", "ASKED", "FAILED", "NEW", "Candidate", "Lookup"]

NEW, ASKED, ANSWERED, FAILED = 0, 1, 2, 3


class Candidate:
    __slots__ = ("addrs", "depth", "distance", "node_id", "state")

    def __init__(self, node_id: NodeId, distance: int, depth: int, addrs: tuple[str, ...]):
        self.node_id = node_id
        self.distance = distance
        self.depth = depth
        self.addrs = addrs
        self.state = NEW


class Lookup:
    """One lookup's state; the core sends the queries and feeds back answers."""

    def __init__(
        self,
        self_id: NodeId,
        target: int,
        *,
        k: int,
        alpha: int,
        deadline_s: float,
        candidates_max: int,
    ) -> None:
        self.self_id = self_id
        self.target = target
        self.k = k
        self.alpha = alpha
        self.deadline_s = deadline_s
        self.candidates_max = candidates_max
        self.candidates: dict[NodeId, Candidate] = {}
        self.ranked: list[tuple[int, NodeId]] = []  # (distance, id), closest first
        self.in_flight = 0
        self.queries = 0
        self.answers = 0
        self.failures = 0
        self.expired = False

    # -- feeding it -----------------------------------------------------------------------

    def add(self, peers: Iterable[tuple[NodeId, tuple[str, ...]]], depth: int) -> None:
        """Peers named by an answer at `depth - 1` (or our own contacts, at depth 0)."""
        for node_id, addrs in peers:
            if node_id == self.self_id:
                continue
            held = self.candidates.get(node_id)
            if held is not None:
                if depth < held.depth:
                    held.depth = depth
                if addrs and not held.addrs:
                    held.addrs = addrs
                continue
            distance = key_of(node_id) ^ self.target
            if len(self.ranked) >= self.candidates_max:
                worst_distance, worst = self.ranked[-1]
                if distance >= worst_distance or self.candidates[worst].state == ASKED:
                    continue
                self.ranked.pop()
                del self.candidates[worst]
            self.candidates[node_id] = Candidate(node_id, distance, depth, addrs)
            insort(self.ranked, (distance, node_id))

    def next_queries(self) -> list[Candidate]:
        """Candidates to ask now (marked ASKED): the closest NEW ones among the k closest
        that have not failed, while fewer than alpha queries are in flight."""
        out: list[Candidate] = []
        if self.expired:
            return out
        seen = 0
        for _, node_id in self.ranked:
            if self.in_flight >= self.alpha or seen >= self.k:
                break
            c = self.candidates[node_id]
            if c.state == FAILED:
                continue
            seen += 1
            if c.state == NEW:
                c.state = ASKED
                self.in_flight += 1
                self.queries += 1
                out.append(c)
        return out

    def answered(self, node_id: NodeId, peers: Iterable[tuple[NodeId, tuple[str, ...]]]) -> bool:
        """An answer from a peer we asked; False if we did not ask it (ignored)."""
        c = self.candidates.get(node_id)
        if c is None or c.state != ASKED:
            return False
        c.state = ANSWERED
        self.in_flight -= 1
        self.answers += 1
        self.add(peers, c.depth + 1)
        return True

    def failed(self, node_id: NodeId) -> None:
        c = self.candidates.get(node_id)
        if c is None or c.state != ASKED:
            return
        c.state = FAILED
        self.in_flight -= 1
        self.failures += 1

    # -- reading it -----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The k closest live candidates have all answered, or nothing is left to do."""
        if self.expired:
            return True
        seen = 0
        for _, node_id in self.ranked:
            c = self.candidates[node_id]
            if c.state == FAILED:
                continue
            if c.state != ANSWERED:
                return False
            seen += 1
            if seen >= self.k:
                return True
        return self.in_flight == 0

    def closest(self, n: int | None = None) -> list[Candidate]:
        """The closest candidates that answered, closest first."""
        n = self.k if n is None else n
        out: list[Candidate] = []
        for _, node_id in self.ranked:
            c = self.candidates[node_id]
            if c.state == ANSWERED:
                out.append(c)
                if len(out) >= n:
                    break
        return out

    @property
    def hops(self) -> int | None:
        """Query rounds until the closest peer found was named (None: nobody answered)."""
        best = self.closest(1)
        return best[0].depth if best else None
