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
  out of one claim round (`plan_claims`), claimed in one request to the voters;
- staggering: in a colony with many executor nodes, every node hears of a new process
  at about the same time. Each node leaves it to others first for `claim_delay_s`, a
  number of 20 ms steps drawn from a rendezvous hash of (pid, node), so about
  `STAGGER_FANOUT` nodes try in each step instead of all of them at once; the first
  that wins announces it RUNNING and the others never try. A node whose executors are
  busy does not claim, so the first idle node in this order does, after about as many
  steps as there are busy nodes before it over `STAGGER_FANOUT`. No node waits more
  than `STAGGER_STEPS_MAX` steps. In colonies of at most `RANKED_CLAIMERS_MAX` executor
  nodes the order is exact (`ranked_claim_delay_s`): one node a step, by rank. A process
  not yet ready for this node holds back every process behind it by more than the
  near-tie window, so staggering never breaks the order.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from colonynode.core.process import FunctionSpec, priority_time_ns

__all__ = [
    "CLAIM_SPREAD",
    "RANKED_CLAIMERS_MAX",
    "STAGGER_FANOUT",
    "STAGGER_STEPS_MAX",
    "STAGGER_STEP_S",
    "TIE_WINDOW_NS",
    "ExecutorAdvert",
    "Waiting",
    "choose_claims",
    "claim_delay_s",
    "matches",
    "plan_claims",
    "ranked_claim_delay_s",
    "rendezvous_score",
]

WINDOW_MAX = 256  # candidates considered per claim round
TIE_WINDOW_NS = 10**9  # priority times this close count as a tie (shared by rendezvous)
CLAIM_SPREAD = 4  # near-ties of the earliest turns one claim is shared out among, a want
STAGGER_STEP_S = 0.02  # one step of the claim stagger (about a claim and a gossip hop)
STAGGER_FANOUT = 2  # executor nodes expected to try a new process in each step
STAGGER_STEPS_MAX = 100  # the longest a node leaves a new process to others: 2 s
RANKED_CLAIMERS_MAX = 32  # executor nodes up to which the stagger goes by exact rank


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
    ready_s: float = 0.0  # this node may claim it from then on (`claim_delay_s`)
    delay_s: float = 0.0  # this node's stagger for it: lower is this node's turn sooner

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
    if c.cpu and spec.cpu_millis > advert.cpu_millis:  # parsed only when asked for
        return False
    return not c.mem or spec.mem_bytes <= advert.mem_bytes


def rendezvous_score(pid: bytes, executor: str) -> int:
    """Highest-random-weight score of (pid, executor): stable, and spread evenly."""
    digest = hashlib.blake2b(pid + b"\0" + executor.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def claim_delay_s(
    pid: bytes,
    node: bytes,
    claimers: int,
    *,
    step_s: float = STAGGER_STEP_S,
    steps_max: int | None = STAGGER_STEPS_MAX,
) -> float:
    """How long a node that hears of process `pid` leaves it to other nodes first, in a
    colony of `claimers` executor nodes (0 in small colonies). A process whose holder
    went quiet is re-claimed in longer steps with no cap (`steps_max` None): about
    `STAGGER_FANOUT` nodes ask per step, however many executor nodes there are, so a
    process whose holder is merely busy is not asked about by every idle node."""
    if claimers <= STAGGER_FANOUT:
        return 0.0
    share = _stagger_score(pid, node) / 2.0**64  # uniform in [0, 1)
    steps = int(share * claimers / STAGGER_FANOUT)
    if steps_max is not None:
        steps = min(steps, steps_max)
    return steps * step_s


def ranked_claim_delay_s(
    pid: bytes,
    node: bytes,
    claimers: Sequence[bytes],
    *,
    step_s: float = STAGGER_STEP_S,
) -> float | None:
    """The claim stagger of a small colony (at most `RANKED_CLAIMERS_MAX` executor
    nodes, `claimers` their ids, this `node` among them): the nodes in rendezvous order
    of (pid, node), one a step, so the first of them claims alone and the next only if
    it heard no winner a step later. (A uniform draw, as in large colonies, has three of
    three nodes try at once often enough to split three voters one-one-one: nobody wins
    and everyone backs off.) None when the colony is larger or `node` is not among them."""
    if len(claimers) > RANKED_CLAIMERS_MAX or node not in claimers:
        return None
    mine = _stagger_score(pid, node)
    rank = sum(1 for other in claimers if _stagger_score(pid, other) > mine)
    return min(rank, STAGGER_STEPS_MAX) * step_s


def _stagger_score(pid: bytes, node: bytes) -> int:
    digest = hashlib.blake2b(pid + b"\1" + node, digest_size=8).digest()
    return int.from_bytes(digest, "big")


def choose_claims(
    waiting: Iterable[Waiting],
    advert: ExecutorAdvert,
    want: int,
    *,
    spread: int = CLAIM_SPREAD,
    now_s: float | None = None,
) -> list[bytes]:
    """Up to `want` pids to claim, in priority order.

    Strict ColonyOS order, except among near-ties: processes whose priority time is within
    `TIE_WINDOW_NS` of the head's (a burst submitted in the same second at the same
    priority) are shared out: first those of this node's earliest stagger turn
    (`delay_s`: the processes this node ranks first for), then by rendezvous hash of
    (pid, executor), so nodes and executors that see the same queue claim different
    processes instead of dueling for its head: the first `want * spread` of the ties of
    the earliest turns. (By rendezvous alone, three nodes with a slot each picked the
    same one of the four at the head about half the time.)
    With `now_s`, a process not ready yet (`ready_s`, the stagger) is not taken, and
    neither is anything behind it by more than the near-tie window.
    """
    if want <= 0:
        return []
    matching = (w for w in waiting if matches(w.spec, advert))
    return _choose(matching, advert.name, want, spread, now_s, {})


def _choose(
    matching: Iterable[Waiting],
    name: str,
    want: int,
    spread: int,
    now_s: float | None,
    scores: dict[bytes, int],
) -> list[bytes]:
    """`choose_claims` over processes that match the executor `name` (`scores`: its
    rendezvous scores by pid, kept across the calls of one round)."""
    share = want * max(1, spread)
    if now_s is not None:
        listed = list(matching)
        blocked = min((w.priority_time_ns for w in listed if w.ready_s > now_s), default=None)
        if blocked is not None:
            bound = blocked + TIE_WINDOW_NS
            listed = [w for w in listed if w.ready_s <= now_s and w.priority_time_ns <= bound]
        matching = listed
    ordered = heapq.nsmallest(WINDOW_MAX, matching, key=lambda w: (w.priority_time_ns, w.pid))
    if not ordered:
        return []
    ties = _ties(ordered)
    if len(ties) <= want:
        chosen = ordered[:want]
    else:
        chosen = heapq.nsmallest(want, _by_turn(ties, share), key=_scorer(name, scores))
    return [w.pid for w in sorted(chosen, key=lambda w: (w.priority_time_ns, w.pid))]


def _ties(ordered: list[Waiting]) -> list[Waiting]:
    """The near-ties at the head of a queue in ColonyOS order."""
    limit = ordered[0].priority_time_ns + TIE_WINDOW_NS
    return [w for w in ordered if w.priority_time_ns <= limit]


def _by_turn(ties: list[Waiting], share: int) -> list[Waiting]:
    """The first `share` near-ties by this node's stagger turn (stable: in priority
    order within a turn)."""
    return sorted(ties, key=lambda w: w.delay_s)[:share]


def _scorer(name: str, scores: dict[bytes, int]) -> Callable[[Waiting], tuple[float, int]]:
    """An executor's preference among near-ties: its node's earliest turn, then the
    highest rendezvous score (cached in `scores`)."""

    def score(w: Waiting) -> tuple[float, int]:
        got = scores.get(w.pid)
        if got is None:
            got = scores[w.pid] = -rendezvous_score(w.pid, name)
        return (w.delay_s, got)

    return score


def plan_claims(
    waiting: Iterable[Waiting], adverts: list[ExecutorAdvert], now_s: float | None = None
) -> list[bytes | None]:
    """One claim round for executors waiting on one node: a distinct pid for each advert
    (or None), in the order given, which is the order they began to wait (the longest
    waiting chooses first). Each choice is `choose_claims(..., 1)` over what is left."""
    waiting = list(waiting)
    heads = {a: _eligible(waiting, a, now_s) for a in dict.fromkeys(adverts)}
    scores: dict[ExecutorAdvert, dict[bytes, int]] = {a: {} for a in heads}
    taken: set[bytes] = set()
    plan: list[bytes | None] = []
    for advert in adverts:  # an advert waiting several times sees its matches once
        pid = _first_choice(heads[advert], taken, advert.name, scores[advert])
        plan.append(pid)
        if pid is not None:
            taken.add(pid)
    return plan


def _eligible(waiting: list[Waiting], advert: ExecutorAdvert, now_s: float | None) -> list[Waiting]:
    """What `advert` may take, in ColonyOS order (as `_choose` filters it: ready, and not
    behind a process not ready yet by more than the near-tie window). A round takes
    only ready processes, so this does not change as the round's choices are made."""
    listed = [w for w in waiting if matches(w.spec, advert)]
    if now_s is not None:
        blocked = min((w.priority_time_ns for w in listed if w.ready_s > now_s), default=None)
        if blocked is not None:
            bound = blocked + TIE_WINDOW_NS
            listed = [w for w in listed if w.ready_s <= now_s and w.priority_time_ns <= bound]
    listed.sort(key=lambda w: (w.priority_time_ns, w.pid))
    return listed


def _first_choice(
    eligible: list[Waiting], taken: set[bytes], name: str, scores: dict[bytes, int]
) -> bytes | None:
    """`_choose(..., want=1)` over `eligible` (sorted) less `taken`."""
    ordered: list[Waiting] = []
    for w in eligible:
        if w.pid not in taken:
            ordered.append(w)
            if len(ordered) >= WINDOW_MAX:
                break
    if not ordered:
        return None
    ties = _ties(ordered)
    if len(ties) <= 1:
        return ordered[0].pid
    return min(_by_turn(ties, CLAIM_SPREAD), key=_scorer(name, scores)).pid
