"""The executors attached to a node: their slots, their waiting `Assign` calls, and the
processes claimed ahead for them (`Slots`, part of NodeCore's scheduler, DESIGN.md §10;
the scheduler's claim rounds fill the queues, scheduler.py).

An executor declares `slots`, how many processes it runs at once; each free slot asks
with an `Assign` long-poll. The scheduler claims for the slots that wait, and, when the
executor's runs are short, *ahead* of them: granted processes wait in the executor's
queue (`ready`), so a slot that frees takes its next process from the queue at once
instead of after a claim's round trip to the voters, and claims (and the closes that
follow them) reach the voters in batches.

How far ahead: what the executor finishes while a claim is out, twice over,

    ahead = ⌊AHEAD_COVER · slots · refill_s / run_s⌋, at most AHEAD_MAX,

with `run_s` a moving average of its runs (as the executor reports them, else from the
hand-over to the close) and `refill_s` the time a claim takes (the node's claim round trip
and the gap between its rounds: `Scheduler.refill_s`). A new executor, and one whose runs
take longer than AHEAD_COVER claim round trips a slot, claims for its waiting slots only.

A granted process waits in the queue at most `hold_s` (READY_HOLD_S, or a tenth of its
maxexectime if that is shorter: the voters count maxexectime from the grant); past it
the lease is given back (no retry counted) and the executor's estimate of its runs is
doubled (once a hold), so it claims less far ahead.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from colonynode.consensus import requests as lrq
from colonynode.consensus.held import CLAIM_BATCH_MAX
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.process import FunctionSpec, State
from colonynode.core.scheduling import ExecutorAdvert
from colonynode.node.core.errors import UnknownExecutor
from colonynode.node.core.processes import RELEASED_KIND, ProcessBook
from colonynode.node.core.requests import Assign, RegisterExecutor

__all__ = [
    "AHEAD_COVER",
    "AHEAD_MAX",
    "EXECUTOR_SILENT_S",
    "READY_HOLD_S",
    "Executor",
    "Ready",
    "Slots",
    "Want",
    "hold_s",
]

log = logging.getLogger("colonynode.node.scheduler")

EXECUTORS_MAX = 256
SLOTS_MAX = 1024  # processes one executor may run at once
ASSIGN_WAIT_MAX_S = 60.0
EXECUTOR_SILENT_S = 15.0  # an executor not heard from this long is detached (assign polls 10 s)
GIVEN_BACK_S = 1.0  # a process given back from a queue is left to other nodes this long

AHEAD_COVER = 2.0  # claim round trips of runs the queue covers
AHEAD_MAX = 32  # processes claimed ahead for one executor, at most
READY_HOLD_S = 1.0  # the longest a granted process waits in an executor's queue
RUN_AVERAGE = 0.2  # weight of the newest run in `run_s`
assert AHEAD_MAX <= CLAIM_BATCH_MAX


def hold_s(spec: FunctionSpec) -> float:
    """How long a process claimed ahead may wait for a free slot."""
    if spec.maxexectime > 0:
        return min(READY_HOLD_S, spec.maxexectime / 10)
    return READY_HOLD_S


@dataclass(eq=False, slots=True)
class Want:
    """A slot's `Assign`, waiting for a process."""

    req: int
    ex: Executor
    since_s: float  # when it began to wait
    deadline_s: float
    open: bool = True  # False once answered, or once its caller went away


@dataclass(frozen=True, slots=True)
class Ready:
    """A process granted for an executor, waiting in its queue for a free slot."""

    epoch: int
    until_s: float  # given back if no slot took it by then


@dataclass(eq=False)
class Executor:
    id: str
    advert: ExecutorAdvert
    slots: int
    running: dict[bytes, int] = field(default_factory=dict)  # pid -> epoch: handed to it
    last_heard_s: float = 0.0
    log_lines: dict[bytes, int] = field(default_factory=dict)  # pid -> lines published
    wants: list[Want] = field(default_factory=list)  # its slots' Assign calls, oldest first
    ready: dict[bytes, Ready] = field(default_factory=dict)  # granted ahead, oldest first
    claims: int = 0  # claims out for it
    claim_done_s: float = 0.0  # when its last claim was answered
    run_s: float = 0.0  # moving average of its runs' times (0: none yet)
    handed_s: dict[bytes, float] = field(default_factory=dict)  # pid -> when a slot got it
    slowed_s: float = float("-inf")  # when `run_s` was last doubled

    def ahead(self, refill_s: float) -> int:
        """How many processes to hold granted beyond its waiting slots."""
        if self.run_s <= 0.0 or refill_s <= 0.0:
            return 0
        return min(AHEAD_MAX, int(AHEAD_COVER * self.slots * refill_s / self.run_s))

    def idle(self) -> int:
        """Slots that wait with nothing granted or claimed for them."""
        return max(0, len(self.wants) - len(self.ready) - self.claims)

    def wanted(self, refill_s: float) -> int:
        """Claims to make for it now: for its idle slots, and to fill its queue up, once
        the queue is down to half (a refill is one claim round, not one a process)."""
        ahead = self.ahead(refill_s)
        have = len(self.ready) + self.claims
        if self.idle() == 0 and have - len(self.wants) > ahead // 2:
            return 0
        return max(0, len(self.wants) + ahead - have)

    def idle_since_s(self) -> float:
        """Since when its longest-waiting idle slot has had no claim out for it."""
        return max(self.wants[0].since_s, self.claim_done_s) if self.wants else 0.0

    def finish(
        self, pid: bytes, now_s: float, elapsed_s: float | None = None, *, closed: bool = False
    ) -> int | None:
        """A run of `pid` ended: its epoch, if it ran here. A close (`closed`) teaches
        `run_s` how long runs take: `elapsed_s` as the executor measured it, else the
        time since the hand-over (and never more than that)."""
        epoch = self.running.pop(pid, None)
        self.log_lines.pop(pid, None)
        handed_s = self.handed_s.pop(pid, None)
        if closed and handed_s is not None:
            took_s = now_s - handed_s
            self.ran(took_s if elapsed_s is None else min(max(elapsed_s, 0.0), took_s))
        return epoch

    def slower(self, now_s: float) -> None:
        """Its queue waited a hold out: take its runs for twice as long, once a hold
        (a whole queue given back together doubles it once, not once a process)."""
        if now_s - self.slowed_s >= READY_HOLD_S:
            self.slowed_s = now_s
            self.run_s *= 2

    def ran(self, took_s: float) -> None:
        took_s = max(took_s, 1e-4)
        if self.run_s <= 0.0:
            self.run_s = took_s
        else:
            self.run_s += RUN_AVERAGE * (took_s - self.run_s)

    def held(self) -> int:
        """Processes it holds or is about to: running, queued, claimed."""
        return len(self.running) + len(self.ready) + self.claims


class SlotsHost(Protocol):
    """What the executors' bookkeeping needs of NodeCore (a part of SchedulerHost)."""

    @property
    def now_s(self) -> float: ...

    @property
    def rng(self) -> random.Random: ...

    def answer(self, req: int, value: Any = None, error: ColonyError | None = None) -> None: ...

    def at(self, at_s: float, fn: Callable[[float], None]) -> None: ...

    def lease(self, req: lrq.Request, on_event: Callable[[Any], None]) -> None: ...

    def holds(self, pid: bytes) -> bool: ...

    def announce(self, kind: str, item: dict[str, Any]) -> None: ...


class Slots:
    """The executors attached to this node and their slots' `Assign` calls: what a slot
    is handed, the queue of what was claimed ahead, detaching (the scheduler claims)."""

    def __init__(
        self,
        host: SlotsHost,
        book: ProcessBook,
        counters: dict[str, int],
        started_ns: dict[bytes, int],
        retry_at: dict[bytes, float],
        on_want: Callable[[float], None],
    ) -> None:
        self.host = host
        self.book = book
        self.counters = counters  # the scheduler's
        self.started_ns = started_ns  # pid -> when its run here started (the scheduler's)
        self.retry_at = retry_at  # a pid not claimed here before (the scheduler's back-off)
        self.on_want = on_want  # a slot waits with nothing on its way: a claim round soon
        self.executors: dict[str, Executor] = {}
        self._wants: dict[int, Want] = {}  # Assign calls waiting, by request id

    def register(self, req_id: int, req: RegisterExecutor) -> None:
        advert = req.advert
        if len(self.executors) >= EXECUTORS_MAX:
            raise ColonyError(f"this node already serves {EXECUTORS_MAX} executors")
        if not advert.name or not advert.executortype:
            raise ValidationError("an executor needs a name and an executortype")
        if not 1 <= req.slots <= SLOTS_MAX:
            raise ValidationError(f"an executor has 1..{SLOTS_MAX} slots")
        ex = Executor(self.host.rng.randbytes(8).hex(), advert, req.slots,
                      last_heard_s=self.host.now_s)  # fmt: skip
        self.executors[ex.id] = ex
        log.info("executor %s (%s) attached: %s", advert.name, advert.executortype,
                 ", ".join(advert.functions) or "any")  # fmt: skip
        self.host.answer(
            req_id, {"executor_id": ex.id, "name": advert.name, "silent_s_max": EXECUTOR_SILENT_S}
        )

    def executor(self, executor_id: str) -> Executor:
        ex = self.executors.get(executor_id)
        if ex is None:
            raise UnknownExecutor(
                f"no executor {executor_id} is attached to this node (detached after"
                f" {EXECUTOR_SILENT_S:.0f} s of silence, or the node restarted): register again"
            )
        ex.last_heard_s = self.host.now_s
        return ex

    def assign(self, req_id: int, req: Assign) -> None:
        """A slot of the executor asks for a process: one from its queue at once, else
        the next claim granted for it, else None at the deadline."""
        ex = self.executor(req.executor_id)
        if len(ex.wants) >= ex.slots:
            raise ColonyError(f"executor {ex.advert.name} already waits for {ex.slots} processes")
        now = self.host.now_s
        deadline = now + min(max(req.timeout_s, 0.0), ASSIGN_WAIT_MAX_S)
        want = Want(req_id, ex, now, deadline)
        ex.wants.append(want)
        self._wants[req_id] = want
        self.feed(ex)
        if want.open:
            self.host.at(deadline, lambda now_s: self._want_due(want))
            self.on_want(now)

    def forget(self, req_id: int) -> bool:
        """The caller of an Assign went away. What was claimed for it stays in its
        executor's queue for the next slot that asks (given back past its hold)."""
        want = self._wants.get(req_id)
        if want is None:
            return False
        self._close_want(want)
        return True

    def detach(self, ex: Executor, release: bool) -> list[bytes]:
        """Forget an executor: its leases are released (`release`) or dropped; what
        waited in its queue is given back either way (it never started)."""
        del self.executors[ex.id]
        for want in list(ex.wants):
            self._answer_want(want, None)
        for pid in list(ex.ready):
            self._give_back(ex, pid)
        held = [pid for pid in ex.running if self.host.holds(pid)]
        for pid in held:
            self.host.lease(lrq.ReleaseLease(pid) if release else lrq.DropLease(pid), _ignore)
        if release:
            for pid in held:
                self.announce_release(pid, ex.running[pid])
            log.info("executor %s detached: %d leases released", ex.advert.name, len(held))
        else:
            self.counters["leases_dropped"] += len(held)
        return held

    def _close_want(self, want: Want) -> None:
        want.open = False
        self._wants.pop(want.req, None)
        if want in want.ex.wants:
            want.ex.wants.remove(want)

    def _answer_want(self, want: Want, process: dict[str, Any] | None) -> None:
        if want.open:
            self.host.answer(want.req, process)
        self._close_want(want)

    def _want_due(self, want: Want) -> None:
        if want.open:
            self._answer_want(want, None)

    def feed(self, ex: Executor) -> None:
        """Hand queued processes to the slots that wait: the slot waiting longest gets
        the first queued process in ColonyOS order. One whose lease ended or that
        closed meanwhile (a cancel) is dropped."""
        while ex.wants and ex.ready:
            pid = min(ex.ready, key=self.book.order_key)
            epoch = ex.ready.pop(pid).epoch
            state = self.book.state_of(pid)
            if not self.host.holds(pid) or (state is not None and state.closed):
                if self.host.holds(pid):
                    self.host.lease(lrq.ReleaseLease(pid), _ignore)
                continue
            view = self.book.get(pid)
            assert view is not None, "a granted process is in the view"
            ex.running[pid] = epoch
            ex.handed_s[pid] = self.host.now_s
            self._answer_want(ex.wants[0], {**view, "epoch": epoch, "state": State.RUNNING.name})

    def ready_due(self, ex: Executor, pid: bytes, epoch: int) -> None:
        """A process claimed ahead waited its hold out: no slot freed in time (the
        executor's runs got longer). Give it back, and claim less far ahead."""
        got = ex.ready.get(pid)
        if got is None or got.epoch != epoch:
            return
        self._give_back(ex, pid)
        self.counters["ahead_given_back"] += 1
        ex.slower(self.host.now_s)
        self.retry_at[pid] = self.host.now_s + GIVEN_BACK_S  # others first

    def _give_back(self, ex: Executor, pid: bytes) -> None:
        """Release a queued process (it never started; no retry is counted)."""
        got = ex.ready.pop(pid)
        if self.host.holds(pid):
            self.host.lease(lrq.ReleaseLease(pid), _ignore)
            self.announce_release(pid, got.epoch)

    def announce_release(self, pid: bytes, epoch: int) -> None:
        """Tell the colony that `pid` waits again (its RUNNING record said otherwise)."""
        self.started_ns.pop(pid, None)
        self.host.announce(RELEASED_KIND, {"processid": pid.hex(), "epoch": epoch})

    def wants_claims(self, refill_s: float) -> bool:
        """Is there an executor here that wants a claim (a slot, or its queue)?"""
        return any(ex.wanted(refill_s) for ex in self.executors.values())

    def idle_wants(self) -> int:
        """Slots waiting with nothing granted or claimed for them."""
        return sum(ex.idle() for ex in self.executors.values())

    def idle_since_s(self) -> float | None:
        """Since when the most recently idle of the slots that wait with nothing on
        their way has waited (None: none waits so)."""
        times = [ex.idle_since_s() for ex in self.executors.values() if ex.idle()]
        return max(times) if times else None

    def detach_silent(self, now_s: float) -> None:
        for ex in list(self.executors.values()):
            if ex.wants or now_s - ex.last_heard_s <= EXECUTOR_SILENT_S:
                continue
            dropped = self.detach(ex, release=False)
            self.counters["executors_detached"] += 1
            log.warning("executor %s silent for %.0f s: detached, %d leases dropped",
                        ex.advert.name, now_s - ex.last_heard_s, len(dropped))  # fmt: skip


def _ignore(event: Any) -> None:
    return None
