"""The node's scheduler: hands WAITING processes to the executors attached to this node
(DESIGN.md §5, §10), through the lease quorum.

An executor (a `colonynode executor run` process, or any program using the API) registers
its advert and long-polls `assign`. The scheduler picks candidates from the node's gossip
view (ColonyOS matching and priority order, rendezvous spreading: `core.scheduling`;
workflow processes only once every parent succeeded) and claims through the voters; the
executors that wait at the same time share one claim round, a batched claim with a
distinct process for each (`claim_rounds`). Once a majority granted a lease, the process
goes to its executor; the claimer core renews the lease while it is held. `close`
commits the result under the lease's epoch (exactly once) and announces it by gossip.

While a function runs, its executor sends heartbeats (and log lines): each answer says
whether the node still holds the lease. A lease lost (maxexectime, a pause, a newer
claim elsewhere) or a process cancelled tells the executor to stop. An executor that
falls silent for `EXECUTOR_SILENT_S` is detached and the leases it ran are dropped: they
expire at the voters and the processes are retried elsewhere (ColonyOS counts that as a
retry). A process whose retries or wait time ran out is expired (closed FAILED) by the
node that submitted it or that meets it, and a workflow process whose parent failed is
failed by the node that submitted it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from colonynode.consensus.claimer import CLAIM_BATCH_MAX
from colonynode.consensus.events import Granted
from colonynode.consensus.messages import Outcome, Reason
from colonynode.consensus.messages import State as RegisterState
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.process import State
from colonynode.core.scheduling import ExecutorAdvert, Waiting, plan_claims
from colonynode.node.leases import LeaseService, NotHolder
from colonynode.node.processes import (
    ATTRIBUTE_KIND,
    CLOSED_KIND,
    LOG_KIND,
    RUNNING_KIND,
    ProcessBook,
)

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

EXECUTORS_MAX = 256
ASSIGN_WAIT_MAX_S = 60.0
POLL_S = 0.25  # claim rounds while executors wait, at least this often
ROUND_GAP_S = 0.01  # at most this often (view changes come in bursts)
REFUSED_BACKOFF_S = 1.0  # a pid the voters refused is not tried again this soon
LEASE_S = 10.0
SWEEP_S = 1.0  # how often this node looks for its processes past maxwaittime
EXECUTOR_SILENT_S = 15.0  # an executor not heard from this long is detached (assign polls 10 s)
LOG_BATCH_LINES_MAX = 256  # lines per log call (one gossip record)
LOG_LINE_CHARS_MAX = 4096  # longer lines are cut
LOG_LINES_PER_PROCESS_MAX = 10_000  # lines a node publishes for one process run
ATTRIBUTE_VALUE_CHARS_MAX = 16_384
KEY_CHARS_MAX = 256


@dataclass
class Executor:
    id: str
    advert: ExecutorAdvert
    running: dict[bytes, int]  # pid -> epoch
    last_heard_s: float = 0.0
    log_lines: dict[bytes, int] = field(default_factory=dict)  # pid -> lines published


@dataclass(eq=False)
class _Want:
    """An executor's `assign` call, waiting for a claim round to give it a process."""

    ex: Executor
    answered: trio.Event = field(default_factory=trio.Event)  # a process, or detached
    process: dict[str, Any] | None = None
    claim_out: trio.Event | None = None  # set once the claim made for it is answered
    open: bool = True  # False once the call returned (or went away)

    def close(self) -> None:
        self.open = False
        self.answered.set()


class Scheduler:
    def __init__(
        self,
        book: ProcessBook,
        leases: LeaseService,
        publish: Callable[[str, dict[str, Any]], None],
        node_name: Callable[[], str],
    ) -> None:
        self.book = book
        self.leases = leases
        self.publish = publish
        self.node_name = node_name
        self.executors: dict[str, Executor] = {}
        self._skip_until: dict[bytes, float] = {}
        self._started_ns: dict[bytes, int] = {}
        self._wants: list[_Want] = []  # assign calls waiting, oldest first
        self._round_wanted = trio.Event()
        self.counters: dict[str, int] = dict.fromkeys(
            ("executors_detached", "leases_dropped", "log_lines", "log_lines_dropped",
             "graph_failed", "claim_rounds", "claims_sent"), 0)  # fmt: skip

    # -- periodic work --------------------------------------------------------------------

    async def sweep(self, is_mine: Callable[[bytes], bool]) -> None:
        """Once a second: expire the WAITING processes this node submitted once their
        maxwaittime ran out (ColonyOS's wait deadline), fail the workflow processes it
        submitted whose parent failed, and detach executors that fell silent."""
        while True:
            await trio.sleep(SWEEP_S)
            now = trio.current_time()
            now_ns = time.time_ns()
            for pid, spec, submitted_ns in self.book.waiting(now):
                if spec.maxwaittime <= 0 or not is_mine(pid):
                    continue
                if now_ns - submitted_ns > spec.maxwaittime * 10**9:
                    self._skip_until[pid] = now + REFUSED_BACKOFF_S
                    await self._expire(pid, Reason.WAIT_TIME_SPENT)
            for pid, parent in self.book.blocked_by_failed_parent():
                if is_mine(pid) and self._skip_until.get(pid, 0.0) <= now:
                    self._skip_until[pid] = now + REFUSED_BACKOFF_S
                    await self._fail_child(pid, parent)
            self._detach_silent(trio.current_time())

    def _drop_wants(self, ex: Executor) -> None:
        for want in self._wants:
            if want.ex is ex:
                want.close()

    def _detach_silent(self, now: float) -> None:
        polling = {w.ex.id for w in self._wants}  # an executor in `assign` is not silent
        for ex in list(self.executors.values()):
            if ex.id in polling or now - ex.last_heard_s <= EXECUTOR_SILENT_S:
                continue
            del self.executors[ex.id]
            self._drop_wants(ex)
            self.counters["executors_detached"] += 1
            for pid in ex.running:
                if self.leases.drop(pid):
                    self.counters["leases_dropped"] += 1
            log.warning("executor %s silent for %.0f s: detached, %d leases dropped",
                        ex.advert.name, now - ex.last_heard_s, len(ex.running))  # fmt: skip

    async def _fail_child(self, pid: bytes, parent: bytes) -> None:
        parent_view = self.book.get(parent)
        name = parent_view["spec"]["nodename"] if parent_view else parent.hex()
        state = parent_view["state"] if parent_view else "FAILED"
        errors = [f"parent {name} ({parent.hex()}) closed {state}"]
        try:
            done = await self.leases.cancel(pid, RegisterState.FAILED, tuple(errors))
        except ColonyError:
            return
        if done.committed:
            self.counters["graph_failed"] += 1
            self._announce_close(pid, State.FAILED, None, errors, 0, None)

    # -- executors ------------------------------------------------------------------------

    def register(self, body: dict[str, Any]) -> dict[str, Any]:
        if len(self.executors) >= EXECUTORS_MAX:
            raise ColonyError(f"this node already serves {EXECUTORS_MAX} executors")
        name, etype = str(body.get("name", "")), str(body.get("executortype", ""))
        if not name or not etype:
            raise ValidationError("an executor needs a name and an executortype")
        functions = tuple(str(f) for f in body.get("functions", ()))
        advert = ExecutorAdvert(
            name=name,
            executortype=etype,
            locationname=str(body.get("locationname", "")),
            cpu_millis=int(body.get("cpu_millis", 10**9)),
            mem_bytes=int(body.get("mem_bytes", 10**15)),
            functions=functions,
        )
        ex = Executor(secrets.token_hex(8), advert, {}, last_heard_s=trio.current_time())
        self.executors[ex.id] = ex
        log.info("executor %s (%s) attached: %s", name, etype, ", ".join(functions) or "any")
        return {"executor_id": ex.id, "name": name, "silent_s_max": EXECUTOR_SILENT_S}

    async def detach(self, executor_id: str) -> dict[str, Any]:
        """An executor leaves cleanly: the leases it holds are released (the processes
        are WAITING again at once, no retry counted) and it is forgotten."""
        ex = self._executor(executor_id)
        del self.executors[ex.id]
        self._drop_wants(ex)
        released = [pid for pid in ex.running if await self.leases.release(pid)]
        log.info("executor %s detached: %d leases released", ex.advert.name, len(released))
        return {"executor_id": ex.id, "released": [pid.hex() for pid in released]}

    def _executor(self, executor_id: str) -> Executor:
        ex = self.executors.get(executor_id)
        if ex is None:
            raise ColonyError(
                f"no executor {executor_id} is attached to this node (detached after"
                f" {EXECUTOR_SILENT_S:.0f} s of silence, or the node restarted): register again"
            )
        ex.last_heard_s = trio.current_time()
        return ex

    def _held(self, ex: Executor, pid: bytes) -> bool:
        """Does the node still hold the lease of a process this executor runs? Not once
        gossip says the process was closed (cancelled) elsewhere: the lease is dropped
        then, before the voters refuse its next renewal."""
        if pid not in ex.running or pid not in self.leases.granted:
            return False
        state = self.book.state_of(pid)
        if state is not None and state.closed:
            self.leases.drop(pid)
            return False
        return True

    def heartbeat(self, executor_id: str) -> dict[str, Any]:
        """The executor is alive; for each process it runs: `held`, `lost` or `cancelled`
        (the last two: stop, the result will not be committed)."""
        ex = self._executor(executor_id)
        out: dict[str, str] = {}
        for pid in list(ex.running):
            if self._held(ex, pid):
                out[pid.hex()] = "held"
                continue
            out[pid.hex()] = "cancelled" if self.book.state_of(pid) is State.CANCELLED else "lost"
            del ex.running[pid]
            ex.log_lines.pop(pid, None)
        return {"processes": out}

    async def assign(self, executor_id: str, timeout_s: float) -> dict[str, Any] | None:
        """A process for this executor, claimed for it, or None after `timeout_s`.

        The executor joins the node's next claim round (`claim_rounds`); a claim that is
        out when the time is up is waited for (it ends within the leases' answer time)."""
        ex = self._executor(executor_id)
        deadline = trio.current_time() + min(max(timeout_s, 0.0), ASSIGN_WAIT_MAX_S)
        want = _Want(ex)
        self._wants.append(want)
        self._round_wanted.set()
        try:
            with trio.move_on_at(deadline):
                await want.answered.wait()
            if want.claim_out is not None:
                await want.claim_out.wait()  # a grant that came after all still counts
            return want.process
        finally:
            want.open = False
            self._wants.remove(want)
            ex.last_heard_s = trio.current_time()

    async def claim_rounds(self) -> None:
        """Claim for every executor of this node that waits, in one request per round:
        each gets a distinct process (`plan_claims`), the one waiting longest chooses
        first. A round runs when an executor starts waiting, when the process view
        changes, and every `POLL_S` while any executor waits."""
        while True:
            with trio.move_on_after(POLL_S):
                await self._round_wanted.wait()
            self._round_wanted = trio.Event()
            wants = [w for w in self._wants if w.open and w.ex.id in self.executors]
            wants = wants[:CLAIM_BATCH_MAX]  # one Claim request; the rest wait for the next
            if wants:
                await self._claim_round(wants)
                await trio.sleep(ROUND_GAP_S)

    def wake(self, pid: bytes) -> None:
        """A process changed: if it is WAITING (new, or given back) and an executor
        waits, run a claim round now rather than at the next poll."""
        if self._wants and self.book.state_of(pid) is State.WAITING:
            self._round_wanted.set()

    async def _claim_round(self, wants: list[_Want]) -> None:
        now = trio.current_time()
        waiting = [
            Waiting(pid, spec, sub_ns)
            for pid, spec, sub_ns in self.book.waiting(now)
            if self._skip_until.get(pid, 0.0) <= now
        ]
        plan = plan_claims(waiting, [w.ex.advert for w in wants])
        chosen = {pid: w for pid, w in zip(plan, wants, strict=True) if pid is not None}
        if not chosen:
            return
        claim_out = trio.Event()
        for want in chosen.values():
            want.claim_out = claim_out
        self.counters["claim_rounds"] += 1
        self.counters["claims_sent"] += len(chosen)
        try:
            results = await self.leases.claim(list(chosen), LEASE_S)
            await self._answer(chosen, results, now)
        finally:
            for want in chosen.values():
                want.claim_out = None
            claim_out.set()

    async def _answer(self, chosen: dict[bytes, _Want], results: list[Any], now: float) -> None:
        for (pid, want), result in zip(chosen.items(), results, strict=True):
            if isinstance(result, Granted):
                await self._hand(want, pid, result.epoch)
                continue  # a refused one waits for the next round
            reason = getattr(result, "reason", None)
            if reason is None:
                continue  # no majority answered in time: claim it again, no backoff
            self._skip_until[pid] = now + REFUSED_BACKOFF_S
            if reason in (Reason.RETRIES_SPENT, Reason.WAIT_TIME_SPENT):
                await self._expire(pid, reason)
            elif reason == Reason.CLOSED:
                self.book.mark_closed_elsewhere(pid)

    async def _hand(self, want: _Want, pid: bytes, epoch: int) -> None:
        """Give a granted process to the executor that waited for it; if it left
        meanwhile (detached, or its call went away), release the lease at once."""
        ex = want.ex
        if not want.open or ex.id not in self.executors:
            await self.leases.release(pid)
            return
        now = trio.current_time()
        ex.running[pid] = epoch
        start_ns = time.time_ns()
        self._started_ns[pid] = start_ns
        self.book.mark_running(pid, now + LEASE_S, epoch, ex.advert.name, start_ns)
        self.publish(RUNNING_KIND, {"processid": pid.hex(), "epoch": epoch,
                                    "executor": ex.advert.name, "start_ns": start_ns})  # fmt: skip
        view = self.book.get(pid)
        assert view is not None
        want.process = {**view, "epoch": epoch, "state": State.RUNNING.name}
        want.answered.set()

    def log_lines(self, executor_id: str, pid: bytes, lines: Any) -> dict[str, Any]:
        """Publish a batch of the executor's log lines for a process it holds."""
        ex = self._executor(executor_id)
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            raise ValidationError("lines must be a list of strings")
        if len(lines) > LOG_BATCH_LINES_MAX:
            raise ValidationError(f"at most {LOG_BATCH_LINES_MAX} lines per call")
        held = self._held(ex, pid)
        if not held:
            return {"accepted": 0, "held": False}
        sent = ex.log_lines.get(pid, 0)
        room = max(0, LOG_LINES_PER_PROCESS_MAX - sent)
        kept = [line[:LOG_LINE_CHARS_MAX] for line in lines[:room]]
        self.counters["log_lines_dropped"] += len(lines) - len(kept)
        if kept:
            ex.log_lines[pid] = sent + len(kept)
            self.counters["log_lines"] += len(kept)
            self.publish(LOG_KIND, {"processid": pid.hex(), "epoch": ex.running[pid],
                                    "executor": ex.advert.name, "time_ns": time.time_ns(),
                                    "lines": kept})  # fmt: skip
        return {"accepted": len(kept), "held": True}

    def add_attribute(self, executor_id: str, pid: bytes, body: dict[str, Any]) -> dict[str, Any]:
        """A ColonyOS attribute on a process the executor holds (only the holder may)."""
        ex = self._executor(executor_id)
        key, value = body.get("key"), body.get("value")
        if not isinstance(key, str) or not 0 < len(key) <= KEY_CHARS_MAX:
            raise ValidationError(f"key must be a string of 1..{KEY_CHARS_MAX} characters")
        if not isinstance(value, str) or len(value) > ATTRIBUTE_VALUE_CHARS_MAX:
            raise ValidationError(f"value must be a string of at most {ATTRIBUTE_VALUE_CHARS_MAX}")
        kind = str(body.get("attributetype", "OUT")).upper()
        if kind not in ("IN", "OUT", "ERR", "ENV"):
            raise ValidationError("attributetype must be IN, OUT, ERR or ENV")
        if not self._held(ex, pid):
            raise NotHolder(f"executor {ex.advert.name} does not hold process {pid.hex()}")
        self.publish(ATTRIBUTE_KIND, {"processid": pid.hex(), "epoch": ex.running[pid],
                                      "key": key, "value": value,
                                      "attributetype": kind})  # fmt: skip
        return {"processid": pid.hex(), "key": key}

    # -- closing --------------------------------------------------------------------------

    async def _expire(self, pid: bytes, reason: Reason) -> None:
        try:
            expired = await self.leases.expire(pid)
        except ColonyError:
            return
        if expired.committed:
            why = "retries spent" if reason == Reason.RETRIES_SPENT else "waited past maxwaittime"
            self._announce_close(pid, State.FAILED, None, [why], 0, None)

    def _announce_close(self, pid: bytes, state: State, output: Any, errors: list[str],
                        epoch: int, executor: str | None) -> None:  # fmt: skip
        """Announce a committed outcome. A close by the voters alone (an expiry, a cancel)
        has no epoch or executor of its own: the last run's stay as they were."""
        body: dict[str, Any] = {"processid": pid.hex(), "state": state.name,
                                "output": output or [], "errors": errors,
                                "end_ns": time.time_ns()}  # fmt: skip
        started = self._started_ns.pop(pid, None)
        for key, value in (("epoch", epoch), ("executor", executor), ("start_ns", started)):
            if value:
                body[key] = value
        self.book.on_record(None, CLOSED_KIND, body)
        self.publish(CLOSED_KIND, body)

    async def cancel(self, pid: bytes, by: str) -> dict[str, Any]:
        """Close a process CANCELLED through the voters (its holder's lease is revoked)."""
        errors = [f"cancelled by {by}"]
        done = await self.leases.cancel(pid, RegisterState.CANCELLED, tuple(errors))
        if done.committed:
            self._announce_close(pid, State.CANCELLED, None, errors, 0, None)
        elif done.reason == Reason.CLOSED:
            self.book.mark_closed_elsewhere(pid)
        reason = None if done.reason is None else Reason(done.reason).name
        return {"processid": pid.hex(), "cancelled": done.committed, "reason": reason}

    async def close(self, executor_id: str, pid: bytes, success: bool, output: Any,
                    errors: list[str]) -> dict[str, Any]:  # fmt: skip
        ex = self._executor(executor_id)
        if pid not in ex.running:
            raise NotHolder(f"executor {ex.advert.name} does not run process {pid.hex()}")
        epoch = ex.running.pop(pid)
        ex.log_lines.pop(pid, None)
        outcome = Outcome.SUCCESS if success else Outcome.FAILED
        try:
            closed = await self.leases.close(pid, outcome, output, tuple(errors))
        except NotHolder:
            raise NotHolder(
                f"the lease on {pid.hex()} was lost (maxexectime, a pause or a cancel):"
                " result refused"
            ) from None
        if closed.committed:
            state = State.SUCCESS if success else State.FAILED
            self._announce_close(pid, state, output, errors, epoch, ex.advert.name)
        reason = None if closed.reason is None else Reason(closed.reason).name
        known = self.book.state_of(pid)  # refused as CLOSED: this says by what, once heard
        return {"processid": pid.hex(), "committed": closed.committed, "reason": reason,
                "state": None if known is None else known.name}  # fmt: skip
