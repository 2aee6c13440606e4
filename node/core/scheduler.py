"""The scheduler's decisions (part of NodeCore): which process each waiting executor of
this node gets, claimed through the lease quorum (DESIGN.md §5, §10).

An executor registers its advert and its slots, and each free slot asks `Assign` (a
long-poll). The executors of this node share one claim round: a batched claim with a
distinct process for each slot that waits, and, for executors whose runs are short, for
the processes they will want next (claimed ahead, held in their queue: executors.py),
all in one request (`core.scheduling.plan_claims`: ColonyOS matching and priority
order, rendezvous spreading among near-ties, the claim stagger of large colonies;
workflow steps only once every parent succeeded). Rounds run when a slot starts to
wait, when a process becomes claimable, when a claim is answered, and every `POLL_S`
while claims are wanted; never more often than every `ROUND_GAP_S`. Several rounds may
be in flight: a pid with a claim out is not planned again.

A refused claim backs its pid off (`REFUSED_BACKOFF_S`; a submission the voters do not
hold yet only `UNKNOWN_BACKOFF_S`); a claim that timed out earns no back-off, so the
urgent process keeps its place. Once a majority grants a lease a RUNNING record is
gossiped and the process goes to its executor's queue, from which a waiting slot takes
it at once (a grant whose executor went away is released at once, and a release is
gossiped too); the lease core renews the lease while it is held.

Every `SWEEP_S` the node expires the WAITING processes it submitted once their
maxwaittime ran out, fails the workflow steps it submitted whose parent failed, and
detaches the executors that fell silent for `EXECUTOR_SILENT_S` (their leases are
dropped: they expire at the voters and the processes are retried elsewhere).
Runs (heartbeats, logs, attributes, closes, cancels): runs.py; the closes this node
makes or announces itself (expiries, failed steps, settling): closing.py.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from colonynode.consensus import events as lev
from colonynode.consensus import requests as lrq
from colonynode.consensus.held import CLAIM_BATCH_MAX, LEASES_MAX
from colonynode.consensus.messages import LEASE_S_MAX, Cert, Reason
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.core.process import FunctionSpec, State, priority_time_ns
from colonynode.core.scheduling import (
    CLAIM_SPREAD,
    STAGGER_STEP_S,
    TIE_WINDOW_NS,
    WINDOW_MAX,
    ExecutorAdvert,
    Waiting,
    claim_delay_s,
    matches,
    plan_claims,
    ranked_claim_delay_s,
)
from colonynode.node.core.certs import to_item
from colonynode.node.core.closing import Closing
from colonynode.node.core.executors import EXECUTOR_SILENT_S, Executor, Ready, Slots, hold_s
from colonynode.node.core.processes import RUNNING_KIND, ProcessBook
from colonynode.node.core.requests import Planned, RunStopped

__all__ = ["EXECUTOR_SILENT_S", "LEASE_S", "Executor", "Scheduler", "SchedulerHost"]

log = logging.getLogger("colonynode.node.scheduler")

LEASES_HELD_MAX = LEASES_MAX - CLAIM_BATCH_MAX  # held, queued or claimed by its executors
POLL_S = 1.0  # claim rounds while executors wait, at least this often (besides events)
ROUND_GAP_S = 0.01  # at most this often (view changes come in bursts)
REFUSED_BACKOFF_S = 1.0  # a pid the voters refused is not tried again this soon
UNKNOWN_BACKOFF_S = 0.05  # ... unless they did not hold its submission yet
BACKOFF_MAX_S = 8.0  # the longest a refused pid waits (before jitter)
RETRY_FORGET_S = 30.0  # a pid not refused for this long starts its back-off afresh
REFUSALS_MAX = 100_000  # pids whose refusals are counted
LAPSE_MARGIN_S = 0.1  # a lease held elsewhere is asked about again this long after it may lapse
DELAYS_MAX = 100_000  # pids whose stagger here is remembered
QUIET_MAX_S = 8.0  # the longest a node waits between rounds while voters do not answer
LEASE_S = 10.0
SWEEP_S = 1.0  # how often this node looks for its processes past maxwaittime


class SchedulerHost(Protocol):
    """What the scheduler needs of NodeCore."""

    @property
    def now_s(self) -> float: ...

    def unix_ns(self) -> int: ...

    def lease(self, req: lrq.Request, on_event: Callable[[Any], None]) -> None: ...

    def holds(self, pid: bytes) -> bool: ...

    def publish(self, kind: str, body: Any) -> Any: ...

    def announce(self, kind: str, item: dict[str, Any]) -> None: ...

    def answer(self, req: int, value: Any = None, error: ColonyError | None = None) -> None: ...

    def at(self, at_s: float, fn: Callable[[float], None]) -> None: ...

    def emit(self, event: Any) -> None: ...

    def claimers(self) -> int: ...

    def claimer_ids(self) -> tuple[bytes, ...]: ...

    @property
    def node_id(self) -> NodeId: ...

    @property
    def rng(self) -> random.Random: ...


@dataclass(frozen=True, eq=False)
class OwnClaim:
    """A submission's own first claim, decided before its record is published."""

    ex: Executor
    waiting: tuple[Waiting, ...]  # what a round would have chosen among (for the checker)


class _Head:
    """How far a round must read the queue for one advert of `wants` waiting ones.
    `plan_claims` gives the k-th advert (after k - 1 taken) the first ready match, or,
    among near-ties (`TIE_WINDOW_NS` from the first it can take), the `CLAIM_SPREAD`
    first with the lowest stagger, of at most `WINDOW_MAX` matches. So reading ends
    for an advert once it saw `WINDOW_MAX` + wants ready matches; or once the queue is
    past the near-ties of its wants-th ready match (the first it can take is no later);
    or once it saw `CLAIM_SPREAD` + wants - 1 ready matches with no stagger (0 s, the
    lowest there is): whatever comes after them in the near-ties is sorted behind."""

    __slots__ = ("advert", "kth", "left", "limit_ns", "zeros")

    def __init__(self, advert: ExecutorAdvert, wants: int) -> None:
        self.advert = advert
        self.left = WINDOW_MAX + wants  # ready matches still to read
        self.kth = wants  # ready matches before the wants-th one's near-ties are known
        self.limit_ns: int | None = None
        self.zeros = CLAIM_SPREAD + wants - 1  # unstaggered ready matches still to read

    def seen(self, spec: FunctionSpec, pt_ns: int, delay_s: float) -> bool:
        """One more ready process in queue order; True once this advert has read enough."""
        if self.limit_ns is not None and pt_ns > self.limit_ns:
            return True
        if not matches(spec, self.advert):
            return False
        self.left -= 1
        self.kth -= 1
        if self.kth == 0:
            self.limit_ns = pt_ns + TIE_WINDOW_NS
        if delay_s == 0.0:
            self.zeros -= 1
        return self.left <= 0 or self.zeros <= 0


class Scheduler:
    def __init__(self, host: SchedulerHost, book: ProcessBook, *, lease_s: float = LEASE_S) -> None:
        self.host = host
        self.book = book
        self.lease_s = lease_s
        self.skip_until: dict[bytes, float] = {}  # the sweep's own expiries and failures
        self.retry_at: dict[bytes, float] = {}  # a refused pid is not claimed before
        self._refusals: dict[bytes, int] = {}  # refusals of a pid's claims so far
        self.started_ns: dict[bytes, int] = {}
        self.claiming: set[bytes] = set()  # pids with a claim out
        self._round_at: float | None = None
        self.last_round_s = float("-inf")
        self._timeouts = 0  # claims in a row no majority answered
        self.quiet_until_s = 0.0  # no claim round before this (voters out of reach)
        self._sweeping = False
        # pid -> (claimers, its claim stagger here, its re-claim stagger here)
        self._delays: dict[bytes, tuple[tuple[bytes, ...], int, float, float]] = {}  # steps
        self.claim_rtt_s = 0.0  # a moving average of this node's claim round trips
        self.counters: dict[str, int] = dict.fromkeys(
            ("executors_detached", "leases_dropped", "log_lines", "log_lines_dropped",
             "graph_failed", "claim_rounds", "claims_sent", "own_claims", "claimed_ahead",
             "ahead_given_back", "settled"), 0)  # fmt: skip
        self.closing = Closing(host, book, self.counters, self.started_ns)
        self.slots = Slots(host, book, self.counters, self.started_ns, self.retry_at,
                           on_want=self._round_soon)  # fmt: skip
        self.executors = self.slots.executors  # the same dict: by executor id

    def start(self, now_s: float) -> None:
        if not self._sweeping:
            self._sweeping = True
            self.host.at(now_s + SWEEP_S, self._sweep)

    # -- claim rounds ---------------------------------------------------------------------

    def wake(self, pid: bytes) -> None:
        """A process changed: if it is WAITING (new, or given back) and an executor
        wants one, run a claim round soon rather than at the next poll; if it runs
        elsewhere, once its holder's quiet time is over."""
        if not self.executors or not self.slots.wants_claims(self.refill_s):
            return
        state = self.book.state_of(pid)
        if state is State.WAITING:
            now = self.host.now_s
            ready_s = self.book.arrived_s(pid) + self._delay(pid)[0]
            held_s = self.book.busy_until_s(pid)  # left to its submitter's own claim
            if held_s is not None and ready_s < held_s < float("inf"):
                ready_s = held_s
            if ready_s > now:  # staggered here: a round once it is ready, not now
                self.host.at(ready_s, self._wake_round)
            else:
                self._round_soon(now)
        elif state is State.RUNNING:
            until_s = self.book.busy_until_s(pid)
            if until_s is not None and until_s > self.host.now_s:
                self.host.at(until_s, self._wake_round)

    def _wake_round(self, now_s: float) -> None:
        if self.slots.wants_claims(self.refill_s):
            self._round_soon(now_s)

    def _round_soon(self, now_s: float) -> None:
        at_s = max(now_s, self.last_round_s + ROUND_GAP_S, self.quiet_until_s)
        self._schedule_round(at_s)

    def _schedule_round(self, at_s: float) -> None:
        if self._round_at is not None and self._round_at <= at_s:
            return
        self._round_at = at_s
        self.host.at(at_s, self._on_round_timer)

    def _on_round_timer(self, now_s: float) -> None:
        if self._round_at is None or now_s < self._round_at:
            return  # superseded by an earlier round
        self._round_at = None
        self._round(now_s)
        if self.slots.wants_claims(self.refill_s):
            self._schedule_round(now_s + POLL_S)

    def _claimants(self) -> list[Executor]:
        """One entry a claim to make, in one request: first every slot that waits with
        nothing on its way (the executor waiting longest first), then the queues that
        run short."""
        rtt = self.refill_s
        execs = sorted(self.executors.values(), key=lambda ex: ex.idle_since_s())
        idle = [ex for ex in execs for _ in range(ex.idle())]
        ahead = [ex for ex in execs for _ in range(ex.wanted(rtt) - ex.idle())]
        room = LEASES_HELD_MAX - sum(ex.held() for ex in execs)
        return (idle + ahead)[: max(0, min(room, CLAIM_BATCH_MAX))]

    def _round(self, now_s: float) -> None:
        """Claim for every executor of this node that wants a process, in one request:
        each claim a distinct process, the slot waiting longest choosing first."""
        claimants = self._claimants()
        if not claimants:
            return
        self.last_round_s = now_s
        adverts = [ex.advert for ex in claimants]
        waiting = self.candidates(now_s, adverts)
        later = [w.ready_s for w in waiting if w.ready_s > now_s]
        if later:  # staggered: a round again once the first becomes ready here
            self._schedule_round(min(later))
        if len(later) == len(waiting):
            return
        plan = plan_claims(waiting, adverts, now_s)
        chosen = {pid: ex for pid, ex in zip(plan, claimants, strict=True) if pid is not None}
        self.host.emit(Planned(tuple(chosen), len(claimants), tuple(waiting), now_s))
        if not chosen:
            return
        for pid, ex in chosen.items():
            ex.claims += 1
            self.claiming.add(pid)
        self.counters["claim_rounds"] += 1
        self.counters["claims_sent"] += len(chosen)
        req = lrq.ClaimLeases(tuple(chosen), self.lease_s)
        self.host.lease(req, lambda ev: self._on_claim(ev, chosen[ev.pid], now_s))

    def candidates(
        self, now_s: float, adverts: Sequence[ExecutorAdvert] | None = None
    ) -> list[Waiting]:
        """What a claim round chooses among: the claimable processes of the view that
        are not backed off, not being claimed and not held here, with the time each
        becomes ready here (the claim stagger), in ColonyOS order. With `adverts` (the
        waiting executors', one a want), only the head of the queue: as far as
        `plan_claims` can look for each advert, so the round chooses as over the whole
        view (`_Head`)."""
        out = []
        heads = [_Head(a, len(adverts)) for a in dict.fromkeys(adverts)] if adverts else []
        for pid, spec, sub_ns, since_s, lapsed in self.book.waiting_in_order(now_s):
            retry_at = self.retry_at.get(pid)
            if retry_at is not None:
                if retry_at > now_s:
                    continue  # backed off: not a candidate (it holds nothing back)
                since_s = max(since_s, retry_at)  # the stagger starts again from here
            if self.skip_until.get(pid, 0.0) > now_s or pid in self.claiming:
                continue
            if self.host.holds(pid):
                continue
            first_s, again_s = self._delay(pid)
            delay_s = again_s if lapsed else first_s
            out.append(Waiting(pid, spec, sub_ns, since_s + delay_s, delay_s))
            if heads and since_s + delay_s <= now_s:
                pt = priority_time_ns(sub_ns, spec.priority)
                heads = [h for h in heads if not h.seen(spec, pt, delay_s)]
                if not heads:
                    break  # the rest of the queue cannot change the round's choice
        return out

    def own_want(self, spec: FunctionSpec, submitted_ns: int) -> OwnClaim | None:
        """The short path (docs/decisions.md): a slot of an executor of this node waits
        with nothing on its way and matches `spec`, and no ready process that an
        executor here matches comes before it in ColonyOS order. Then this node's own
        submission carries its first claim (`claim_own`), in the same frame to each
        voter, so the voters take WAITING and RUNNING at epoch 1 in one durable write,
        and no other node's round is needed."""
        now = self.host.now_s
        if now < self.quiet_until_s:
            return None  # the voters are out of reach from here: no claim goes out now
        idle = [ex for ex in self.executors.values() if ex.idle() and matches(spec, ex.advert)]
        if not idle:
            return None
        mine = priority_time_ns(submitted_ns, spec.priority)
        adverts = list(dict.fromkeys(ex.advert for ex in self.executors.values()))
        waiting = self.candidates(now, adverts)
        for w in waiting:
            if w.priority_time_ns > mine:
                break  # in order: nothing after this comes first
            if w.ready_s <= now and any(matches(w.spec, a) for a in adverts):
                return None  # an older ready process: the round's to claim
        return OwnClaim(min(idle, key=lambda ex: ex.idle_since_s()), tuple(waiting))

    def claim_own(self, own: OwnClaim, pid: bytes, spec: FunctionSpec, submitted_ns: int) -> None:
        """Claim this node's own submission `pid` (see `own_want`): called right after
        its Submit went out, so the Claim follows it to every voter in the same frame."""
        now = self.host.now_s
        ex = own.ex
        if ex.id not in self.executors or not ex.idle():
            return  # taken meanwhile (a batch's earlier submission): the normal path
        ex.claims += 1
        self.claiming.add(pid)
        self.last_round_s = now
        self.counters["claim_rounds"] += 1
        self.counters["claims_sent"] += 1
        self.counters["own_claims"] += 1
        candidates = (*own.waiting, Waiting(pid, spec, submitted_ns, now, 0.0))
        self.host.emit(Planned((pid,), 1, candidates, now, own=True))
        req = lrq.ClaimLeases((pid,), self.lease_s)
        self.host.lease(req, lambda ev: self._on_claim(ev, ex, now))

    @property
    def refill_s(self) -> float:
        """How long a claim takes to bring a process: a round's gap and a round trip
        (which a node that is its only voter does not see: its vote is in the same step,
        its commit after it)."""
        return self.claim_rtt_s + ROUND_GAP_S

    def _delay(self, pid: bytes) -> tuple[float, float]:
        """This node's claim stagger for `pid`, and its re-claim stagger. A step is at
        least `STAGGER_STEP_S` and two of this node's claim round trips: where the voters
        are far, the next nodes wait until a winner's news can come. The numbers of steps
        are remembered (hashes are the cost of a round over a long queue); the step,
        which follows the round trip, is applied on each call."""
        claimers = self.host.claimers()
        ids = self.host.claimer_ids()
        cached = self._delays.get(pid)
        if cached is None or cached[0] is not ids or cached[1] != claimers:
            if len(self._delays) >= DELAYS_MAX:
                self._delays.clear()
            key = bytes(self.host.node_id)
            first = ranked_claim_delay_s(pid, key, ids, step_s=1.0)
            if first is None:
                first = claim_delay_s(pid, key, claimers, step_s=1.0)
            again = claim_delay_s(pid, key, claimers, step_s=1.0, steps_max=None)
            cached = self._delays[pid] = (ids, claimers, first, again)
        step_s = max(STAGGER_STEP_S, round(2 * self.claim_rtt_s, 2))
        return cached[2] * step_s, cached[3] * self.lease_s / 4

    def _on_claim(self, event: Any, ex: Executor, sent_s: float) -> None:
        now = self.host.now_s
        pid = event.pid
        self.claiming.discard(pid)
        ex.claims -= 1
        ex.claim_done_s = now
        assert ex.claims >= 0, "a claim is answered once"
        if not isinstance(event, lev.Granted) and event.reason is None:
            # No majority answered: the voters are out of reach from here (a partition,
            # a pause). The pid keeps its place, but this node asks less often until
            # they answer again.
            self._timeouts += 1
            quiet_s = min(QUIET_MAX_S, POLL_S * 2 ** min(self._timeouts - 1, 6))
            self.quiet_until_s = now + quiet_s * self.host.rng.uniform(0.5, 1.5)
        else:
            self._timeouts = 0
            self.quiet_until_s = 0.0
            rtt_s = now - sent_s
            self.claim_rtt_s = (
                rtt_s if not self.claim_rtt_s else 0.8 * self.claim_rtt_s + 0.2 * rtt_s
            )
        if isinstance(event, lev.Granted):
            self._granted(now, ex, pid, event.epoch, event.cert)
        else:
            self._refused(now, pid, event.reason, event.retry_after_s)
        if self.slots.wants_claims(self.refill_s):
            self._round_soon(now)

    def _refused(self, now_s: float, pid: bytes, reason: Reason | None, left_s: float) -> None:
        """Back a refused pid off: a lease held elsewhere until it may have lapsed (the
        voters say how long it has left); anything else exponentially per refusal, with
        jitter, so nodes that dueled (a split vote) do not all try again at the same
        instant. Its next try is staggered again."""
        if reason is None:
            return  # no majority answered in time: claim it again, no back-off
        if reason is Reason.LEASE_HELD:  # held elsewhere: ask again once it may lapse
            backoff_s = min(max(left_s, 0.0), LEASE_S_MAX) + LAPSE_MARGIN_S  # a voter's word
        else:
            tries = self._refusals.get(pid, 0)
            if len(self._refusals) >= REFUSALS_MAX and pid not in self._refusals:
                self._refusals.clear()
            self._refusals[pid] = tries + 1
            early = reason in (Reason.UNKNOWN_PID, Reason.BUSY, Reason.NOT_ALLOWED)
            base_s = UNKNOWN_BACKOFF_S if early else REFUSED_BACKOFF_S
            backoff_s = min(BACKOFF_MAX_S, base_s * 2 ** min(tries, 10))
            backoff_s *= self.host.rng.uniform(0.5, 1.5)
        self.retry_at[pid] = now_s + backoff_s
        if self.slots.wants_claims(self.refill_s):
            self.host.at(now_s + backoff_s, self._wake_round)
        if reason in (Reason.UNKNOWN_PID, Reason.BUSY, Reason.NOT_ALLOWED, Reason.LEASE_HELD):
            return
        if reason in (Reason.RETRIES_SPENT, Reason.WAIT_TIME_SPENT):
            self.closing.expire(pid)
        elif reason == Reason.CLOSED:
            self.book.mark_closed_elsewhere(pid)
            self.closing.settle_later(pid)

    def _granted(self, now_s: float, ex: Executor, pid: bytes, epoch: int, cert: Cert) -> None:
        """Announce a granted process RUNNING (with the voters' certificate of the grant,
        without which no other node takes it) and queue it for its executor, whose
        waiting slot (if any) takes it at once. If the executor left meanwhile, release
        the lease at once; a grant for a process this node already knows closed (its
        cancel's record came first) is given back too."""
        state = self.book.state_of(pid)
        if ex.id not in self.executors or (state is not None and state.closed):
            self.host.lease(lrq.ReleaseLease(pid), _ignore)
            return
        start_ns = self.host.unix_ns()
        self.started_ns[pid] = start_ns
        self.host.announce(RUNNING_KIND, {"processid": pid.hex(), "epoch": epoch,
                                         "executor": ex.advert.name, "start_ns": start_ns,
                                         "lease_s": self.lease_s,
                                         "cert": to_item(cert)})  # fmt: skip
        ex.ready[pid] = Ready(epoch, now_s + hold_s(self.book.spec_of(pid)))
        self.slots.feed(ex)
        if pid in ex.ready:  # claimed ahead: no slot is free for it yet
            self.counters["claimed_ahead"] += 1
            until_s = ex.ready[pid].until_s
            self.host.at(until_s, lambda now_s: self.slots.ready_due(ex, pid, epoch))

    # -- leases ending, sweeps --------------------------------------------------------------

    def on_lease_ended(self, event: lev.LeaseEnded) -> None:
        """A lease of a run ended without its close: tell the executor to stop (or
        drop the process from its queue, where it has not started)."""
        if event.why == "closed":
            self.closing.settle_later(event.pid)
        if event.why not in ("lost", "closed"):
            return
        for ex in self.executors.values():
            got = ex.ready.get(event.pid)
            if got is not None and got.epoch == event.epoch:
                del ex.ready[event.pid]
            if ex.running.get(event.pid) == event.epoch:
                cancelled = self.book.state_of(event.pid) is State.CANCELLED
                why = "cancelled" if cancelled or event.why == "closed" else "lost"
                self.host.emit(RunStopped(ex.id, event.pid, why))

    def _sweep(self, now_s: float) -> None:
        """Once a second: expire this node's WAITING processes past maxwaittime (ColonyOS's
        wait deadline), fail its workflow steps whose parent failed, and detach silent
        executors."""
        self.host.at(now_s + SWEEP_S, self._sweep)
        now_ns = self.host.unix_ns()
        me = self.host.node_id
        for pid, spec, submitted_ns, _, _ in self.book.waiting(now_s):
            if spec.maxwaittime <= 0 or self.book.submitter_of(pid) != me:
                continue
            if now_ns - submitted_ns > spec.maxwaittime * 10**9:
                self.skip_until[pid] = now_s + REFUSED_BACKOFF_S
                self.closing.expire(pid)
        for pid, parent in self.book.blocked_by_failed_parent():
            if self.book.submitter_of(pid) == me and self.skip_until.get(pid, 0.0) <= now_s:
                self.skip_until[pid] = now_s + REFUSED_BACKOFF_S
                self.closing.fail_child(pid, parent)
        self.slots.detach_silent(now_s)
        for pid in [p for p, until in self.skip_until.items() if until <= now_s]:
            del self.skip_until[pid]
        for pid in [p for p, at_s in self.retry_at.items() if at_s < now_s - RETRY_FORGET_S]:
            del self.retry_at[pid]
            self._refusals.pop(pid, None)


def _ignore(event: Any) -> None:
    return None
