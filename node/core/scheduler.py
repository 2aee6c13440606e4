"""The scheduler's decisions (part of NodeCore): which process each waiting executor of
this node gets, claimed through the lease quorum (DESIGN.md §5, §10).

An executor registers its advert and asks `Assign` (a long-poll). The executors of this
node that wait at the same time share one claim round: a batched claim with a distinct
process for each (`core.scheduling.plan_claims`: ColonyOS matching and priority order,
rendezvous spreading among near-ties, the claim stagger of large colonies; workflow
steps only once every parent succeeded). Rounds run when an executor starts to wait,
when a process becomes claimable, when a claim is answered, and every `POLL_S` while
an executor waits; never more often than every `ROUND_GAP_S`. Several rounds may be in
flight: a waiting executor or a pid with a claim out is not planned again.

A refused claim backs its pid off (`REFUSED_BACKOFF_S`; a submission the voters do not
hold yet only `UNKNOWN_BACKOFF_S`); a claim that timed out earns no back-off, so the
urgent process keeps its place. Once a majority grants a lease the process goes to its
executor (a grant whose executor went away is released at once) and a RUNNING record is
gossiped; the lease core renews the lease while it is held.

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
from dataclasses import dataclass, field
from typing import Any, Protocol

from colonynode.consensus import events as lev
from colonynode.consensus import requests as lrq
from colonynode.consensus.held import CLAIM_BATCH_MAX
from colonynode.consensus.messages import Reason
from colonynode.core.errors import ColonyError, ValidationError
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
from colonynode.node.core.closing import Closing
from colonynode.node.core.processes import RUNNING_KIND, ProcessBook
from colonynode.node.core.requests import Assign, Planned, RegisterExecutor, RunStopped

__all__ = ["EXECUTOR_SILENT_S", "LEASE_S", "Executor", "Scheduler", "SchedulerHost"]

log = logging.getLogger("colonynode.node.scheduler")

EXECUTORS_MAX = 256
SLOTS_MAX = 1024  # processes one executor may run at once
ASSIGN_WAIT_MAX_S = 60.0
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
EXECUTOR_SILENT_S = 15.0  # an executor not heard from this long is detached (assign polls 10 s)


class SchedulerHost(Protocol):
    """What the scheduler needs of NodeCore."""

    @property
    def now_s(self) -> float: ...

    def unix_ns(self) -> int: ...

    def lease(self, req: lrq.Request, on_event: Callable[[Any], None]) -> None: ...

    def holds(self, pid: bytes) -> bool: ...

    def publish(self, kind: str, body: Any) -> Any: ...

    def answer(self, req: int, value: Any = None, error: ColonyError | None = None) -> None: ...

    def at(self, at_s: float, fn: Callable[[float], None]) -> None: ...

    def emit(self, event: Any) -> None: ...

    def claimers(self) -> int: ...

    def claimer_ids(self) -> tuple[bytes, ...]: ...

    @property
    def node_id(self) -> NodeId: ...

    @property
    def rng(self) -> random.Random: ...


@dataclass(eq=False)
class Executor:
    id: str
    advert: ExecutorAdvert
    slots: int
    running: dict[bytes, int]  # pid -> epoch
    last_heard_s: float = 0.0
    log_lines: dict[bytes, int] = field(default_factory=dict)  # pid -> lines published


@dataclass(eq=False)
class _Want:
    """An executor's `Assign`, waiting for a claim round to give it a process."""

    req: int
    ex: Executor
    since_s: float  # idle since: when it began to wait, or its last claim ended
    deadline_s: float
    claim: bytes | None = None  # the pid claimed for it, while the claim is out
    open: bool = True  # False once answered, or once its caller went away
    expired: bool = False  # its deadline passed while a claim was out


@dataclass(frozen=True, eq=False)
class OwnClaim:
    """A submission's own first claim, decided before its record is published."""

    want: _Want
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
        self.executors: dict[str, Executor] = {}
        self.skip_until: dict[bytes, float] = {}  # the sweep's own expiries and failures
        self.retry_at: dict[bytes, float] = {}  # a refused pid is not claimed before
        self._refusals: dict[bytes, int] = {}  # refusals of a pid's claims so far
        self.started_ns: dict[bytes, int] = {}
        self.wants: list[_Want] = []  # Assign calls waiting, oldest first
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
             "graph_failed", "claim_rounds", "claims_sent", "own_claims",
             "settled"), 0)  # fmt: skip
        self.closing = Closing(host, book, self.counters, self.started_ns)

    def start(self, now_s: float) -> None:
        if not self._sweeping:
            self._sweeping = True
            self.host.at(now_s + SWEEP_S, self._sweep)

    # -- executors ------------------------------------------------------------------------

    def register(self, req_id: int, req: RegisterExecutor) -> None:
        advert = req.advert
        if len(self.executors) >= EXECUTORS_MAX:
            raise ColonyError(f"this node already serves {EXECUTORS_MAX} executors")
        if not advert.name or not advert.executortype:
            raise ValidationError("an executor needs a name and an executortype")
        if not 1 <= req.slots <= SLOTS_MAX:
            raise ValidationError(f"an executor has 1..{SLOTS_MAX} slots")
        ex = Executor(self.host.rng.randbytes(8).hex(), advert, req.slots, {}, self.host.now_s)
        self.executors[ex.id] = ex
        log.info("executor %s (%s) attached: %s", advert.name, advert.executortype,
                 ", ".join(advert.functions) or "any")  # fmt: skip
        self.host.answer(
            req_id, {"executor_id": ex.id, "name": advert.name, "silent_s_max": EXECUTOR_SILENT_S}
        )

    def executor(self, executor_id: str) -> Executor:
        ex = self.executors.get(executor_id)
        if ex is None:
            raise ColonyError(
                f"no executor {executor_id} is attached to this node (detached after"
                f" {EXECUTOR_SILENT_S:.0f} s of silence, or the node restarted): register again"
            )
        ex.last_heard_s = self.host.now_s
        return ex

    def assign(self, req_id: int, req: Assign) -> None:
        ex = self.executor(req.executor_id)
        waiting = sum(1 for w in self.wants if w.ex is ex and w.open)
        if waiting >= ex.slots:
            raise ColonyError(f"executor {ex.advert.name} already waits for {ex.slots} processes")
        now = self.host.now_s
        deadline = now + min(max(req.timeout_s, 0.0), ASSIGN_WAIT_MAX_S)
        want = _Want(req_id, ex, now, deadline)
        self.wants.append(want)
        self.host.at(deadline, lambda now_s: self._want_due(want))
        self._round_soon(now)

    def forget(self, req_id: int) -> bool:
        """The caller of an Assign went away: a grant that still comes is released."""
        for want in self.wants:
            if want.req == req_id and want.open:
                want.open = False
                if want.claim is None:
                    self.wants.remove(want)
                return True
        return False

    def detach(self, ex: Executor, release: bool) -> list[bytes]:
        """Forget an executor: its leases are released (`release`) or dropped."""
        del self.executors[ex.id]
        for want in [w for w in self.wants if w.ex is ex]:
            self._answer_want(want, None)
        held = [pid for pid in ex.running if self.host.holds(pid)]
        for pid in held:
            self.host.lease(lrq.ReleaseLease(pid) if release else lrq.DropLease(pid), _ignore)
        if release:
            log.info("executor %s detached: %d leases released", ex.advert.name, len(held))
        else:
            self.counters["leases_dropped"] += len(held)
        return held

    def _answer_want(self, want: _Want, process: dict[str, Any] | None) -> None:
        if want.open:
            self.host.answer(want.req, process)
        want.open = False
        if want in self.wants:
            self.wants.remove(want)

    def _want_due(self, want: _Want) -> None:
        if not want.open:
            return
        if want.claim is not None:
            want.expired = True  # a grant that comes after all still counts
            return
        self._answer_want(want, None)

    # -- claim rounds ---------------------------------------------------------------------

    def wake(self, pid: bytes) -> None:
        """A process changed: if it is WAITING (new, or given back) and an executor
        waits, run a claim round soon rather than at the next poll; if it runs
        elsewhere, once its holder's quiet time is over."""
        if not self.wants:
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
        if self.idle_wants():
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
        if any(w.open and w.claim is None for w in self.wants):
            self._schedule_round(now_s + POLL_S)

    def _round(self, now_s: float) -> None:
        """Claim for every executor of this node that waits, in one request: each gets a
        distinct process, the one waiting longest chooses first."""
        wants = [w for w in self.wants if w.open and w.claim is None]
        wants = wants[:CLAIM_BATCH_MAX]  # one Claim request; the rest wait for the next
        if not wants:
            return
        self.last_round_s = now_s
        waiting = self.candidates(now_s, [w.ex.advert for w in wants])
        later = [w.ready_s for w in waiting if w.ready_s > now_s]
        if later:  # staggered: a round again once the first becomes ready here
            self._schedule_round(min(later))
        if len(later) == len(waiting):
            return
        plan = plan_claims(waiting, [w.ex.advert for w in wants], now_s)
        chosen = {pid: w for pid, w in zip(plan, wants, strict=True) if pid is not None}
        self.host.emit(Planned(tuple(chosen), len(wants), tuple(waiting), now_s))
        if not chosen:
            return
        for pid, want in chosen.items():
            want.claim = pid
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
        """The short path (docs/decisions.md): an executor of this node waits with no
        claim out and matches `spec`, and no ready process that an executor here matches
        comes before it in ColonyOS order. Then this node's own submission carries its
        first claim (`claim_own`), in the same frame to each voter, so the voters take
        WAITING and RUNNING at epoch 1 in one durable write, and no other node's round
        is needed."""
        now = self.host.now_s
        if now < self.quiet_until_s:
            return None  # the voters are out of reach from here: no claim goes out now
        idle = [w for w in self.wants if w.open and w.claim is None and matches(spec, w.ex.advert)]
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
        return OwnClaim(idle[0], tuple(waiting))

    def claim_own(self, own: OwnClaim, pid: bytes, spec: FunctionSpec, submitted_ns: int) -> None:
        """Claim this node's own submission `pid` (see `own_want`): called right after
        its Submit went out, so the Claim follows it to every voter in the same frame."""
        now = self.host.now_s
        want = own.want
        if not want.open or want.claim is not None:
            return  # taken meanwhile (a batch's earlier submission): the normal path
        want.claim = pid
        self.claiming.add(pid)
        self.last_round_s = now
        self.counters["claim_rounds"] += 1
        self.counters["claims_sent"] += 1
        self.counters["own_claims"] += 1
        candidates = (*own.waiting, Waiting(pid, spec, submitted_ns, now, 0.0))
        self.host.emit(Planned((pid,), 1, candidates, now, own=True))
        req = lrq.ClaimLeases((pid,), self.lease_s)
        self.host.lease(req, lambda ev: self._on_claim(ev, want, now))

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

    def idle_wants(self) -> int:
        """Assign calls waiting with no claim out for them."""
        return sum(1 for w in self.wants if w.open and w.claim is None)

    def _on_claim(self, event: Any, want: _Want, sent_s: float) -> None:
        now = self.host.now_s
        pid = event.pid
        self.claiming.discard(pid)
        want.claim = None
        want.since_s = now
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
            self._hand(now, want, pid, event.epoch)
        else:
            self._refused(now, pid, event.reason, event.retry_after_s)
            if want.expired or not want.open:
                self._answer_want(want, None)
        if self.wants:
            self._round_soon(now)

    def _refused(self, now_s: float, pid: bytes, reason: Reason | None, left_s: float) -> None:
        """Back a refused pid off: a lease held elsewhere until it may have lapsed (the
        voters say how long it has left); anything else exponentially per refusal, with
        jitter, so nodes that dueled (a split vote) do not all try again at the same
        instant. Its next try is staggered again."""
        if reason is None:
            return  # no majority answered in time: claim it again, no back-off
        if reason is Reason.LEASE_HELD:  # held elsewhere: ask again once it may lapse
            backoff_s = left_s + LAPSE_MARGIN_S
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
        if self.wants:
            self.host.at(now_s + backoff_s, self._wake_round)
        if reason in (Reason.UNKNOWN_PID, Reason.BUSY, Reason.NOT_ALLOWED, Reason.LEASE_HELD):
            return
        if reason in (Reason.RETRIES_SPENT, Reason.WAIT_TIME_SPENT):
            self.closing.expire(pid)
        elif reason == Reason.CLOSED:
            self.book.mark_closed_elsewhere(pid)
            self.closing.settle_later(pid)

    def _hand(self, now_s: float, want: _Want, pid: bytes, epoch: int) -> None:
        """Give a granted process to the executor that waited for it; if it left
        meanwhile (detached, or its call went away), release the lease at once. A grant
        for a process this node already knows closed (its cancel's record came first)
        is given back too, and the executor waits on."""
        ex = want.ex
        if not want.open or ex.id not in self.executors:
            self.host.lease(lrq.ReleaseLease(pid), _ignore)
            if want in self.wants:
                self.wants.remove(want)
            return
        state = self.book.state_of(pid)
        if state is not None and state.closed:
            self.host.lease(lrq.ReleaseLease(pid), _ignore)
            if want.expired:
                self._answer_want(want, None)
            return
        ex.running[pid] = epoch
        start_ns = self.host.unix_ns()
        self.started_ns[pid] = start_ns
        self.book.mark_running(pid, now_s + self.lease_s, epoch, ex.advert.name, start_ns)
        self.host.publish(RUNNING_KIND, {"processid": pid.hex(), "epoch": epoch,
                                         "executor": ex.advert.name, "start_ns": start_ns,
                                         "lease_s": self.lease_s})  # fmt: skip
        view = self.book.get(pid)
        assert view is not None, "a granted process is in the view"
        self._answer_want(want, {**view, "epoch": epoch, "state": State.RUNNING.name})

    # -- leases ending, sweeps --------------------------------------------------------------

    def on_lease_ended(self, event: lev.LeaseEnded) -> None:
        """A lease of a run ended without its close: tell the executor to stop."""
        if event.why == "closed":
            self.closing.settle_later(event.pid)
        if event.why not in ("lost", "closed"):
            return
        for ex in self.executors.values():
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
        self._detach_silent(now_s)
        for pid in [p for p, until in self.skip_until.items() if until <= now_s]:
            del self.skip_until[pid]
        for pid in [p for p, at_s in self.retry_at.items() if at_s < now_s - RETRY_FORGET_S]:
            del self.retry_at[pid]
            self._refusals.pop(pid, None)

    def _detach_silent(self, now_s: float) -> None:
        polling = {w.ex.id for w in self.wants if w.open}  # an executor in Assign is not silent
        for ex in list(self.executors.values()):
            if ex.id in polling or now_s - ex.last_heard_s <= EXECUTOR_SILENT_S:
                continue
            dropped = self.detach(ex, release=False)
            self.counters["executors_detached"] += 1
            log.warning("executor %s silent for %.0f s: detached, %d leases dropped",
                        ex.advert.name, now_s - ex.last_heard_s, len(dropped))  # fmt: skip


def _ignore(event: Any) -> None:
    return None
