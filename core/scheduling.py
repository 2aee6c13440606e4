"""Which executor may run which process, and in what order (DESIGN.md §5, COLONYOS.md).

Pure functions over the local, eventually consistent view an executor has of the waiting
processes. The lease quorum (consensus/) decides who actually runs a process; these only
choose what to claim:

- matching: executortype equal; executornames empty, ``*`` or naming the executor;
  location equal or unset; cpu and mem requested within the executor's free capacity;
- order: ColonyOS's priority time, lowest first (each priority point is a day of age);
- spreading: among near-ties at the head of the queue (priority times within a second),
  each executor prefers its own by a rendezvous hash of (pid, executor), so executors
  that see the same burst claim different processes instead of dueling for its head;
  outside a tie the order is strict;
- batching: the executors of one node that wait at the same time get one process each
  out of one claim round (`plan_claims`), claimed in one request to the voters.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from colonynode.core.process import FunctionSpec, priority_time_ns

__all__ = [
    "ExecutorAdvert",
    "Waiting",
    "choose_claims",
    "matches",
    "plan_claims",
    "rendezvous_score",
]

WINDOW_MAX = 256  # candidates considered per claim round
TIE_WINDOW_NS = 10**9  # priority times this close count as a tie (shared by rendezvous)


@dataclass(frozen=True, slots=True)
class ExecutorAdvert:
    """What an executor offers (gossiped by its node)."""

    name: str
    executortype: str
    locationname: str = ""
    cpu_millis: int = 0  # free capacity; 0 = not declared (matches requests of 0 only)
    mem_bytes: int = 0
    functions: tuple[str, ...] = ()  # empty: any function name


@dataclass(frozen=True, slots=True)
class Waiting:
    """A WAITING process as the scheduler sees it."""

    pid: bytes
    spec: FunctionSpec
    submission_ns: int

    @property
    def priority_time_ns(self) -> int:
        return priority_time_ns(self.submission_ns, self.spec.priority)


def matches(spec: FunctionSpec, advert: ExecutorAdvert) -> bool:
    c = spec.conditions
    if c.executortype != advert.executortype:
        return False
    names = c.executornames
    if names and "*" not in names and advert.name not in names:
        return False
    if c.locationname and c.locationname != advert.locationname:
        return False
    if advert.functions and spec.funcname not in advert.functions:
        return False
    return spec.cpu_millis <= advert.cpu_millis and spec.mem_bytes <= advert.mem_bytes


def rendezvous_score(pid: bytes, executor: str) -> int:
    """Highest-random-weight score of (pid, executor): stable, and spread evenly."""
    digest = hashlib.blake2b(pid + b"\0" + executor.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def choose_claims(
    waiting: Iterable[Waiting], advert: ExecutorAdvert, want: int, *, spread: int = 4
) -> list[bytes]:
    """Up to `want` pids to claim, in priority order.

    Strict ColonyOS order, except among near-ties: processes whose priority time is within
    `TIE_WINDOW_NS` of the head's (a burst submitted in the same second at the same
    priority) are shared out by rendezvous hash, up to `want * spread` of them, so
    executors that see the same queue claim different processes instead of dueling.
    """
    if want <= 0:
        return []
    window = min(WINDOW_MAX, want * max(1, spread))
    ordered = heapq.nsmallest(
        window,
        (w for w in waiting if matches(w.spec, advert)),
        key=lambda w: (w.priority_time_ns, w.pid),
    )
    if not ordered:
        return []
    limit = ordered[0].priority_time_ns + TIE_WINDOW_NS
    ties = [w for w in ordered if w.priority_time_ns <= limit]
    if len(ties) <= want:
        chosen = ordered[:want]
    else:
        chosen = heapq.nlargest(want, ties, key=lambda w: rendezvous_score(w.pid, advert.name))
    return [w.pid for w in sorted(chosen, key=lambda w: (w.priority_time_ns, w.pid))]


def plan_claims(waiting: Iterable[Waiting], adverts: list[ExecutorAdvert]) -> list[bytes | None]:
    """One claim round for executors waiting on one node: a distinct pid for each advert
    (or None), in the order given, which is the order they began to wait (the longest
    waiting chooses first). Each choice is `choose_claims(..., 1)` over what is left."""
    pool = [w for w in waiting if any(matches(w.spec, a) for a in adverts)]
    taken: set[bytes] = set()
    plan: list[bytes | None] = []
    for advert in adverts:
        left = (w for w in pool if w.pid not in taken)
        got = choose_claims(left, advert, 1)
        plan.append(got[0] if got else None)
        taken.update(got)
    return plan
