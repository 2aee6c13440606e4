"""The node's scheduler: hands WAITING processes to the executors attached to this node
(DESIGN.md §5, §10), through the lease quorum.

An executor (a `colonynode executor run` process, or any program using the API) registers
its advert and long-polls `assign`. The scheduler picks candidates from the node's gossip
view (ColonyOS matching and priority order, rendezvous spreading: `core.scheduling`;
workflow processes only once every parent succeeded), claims one through the voters and,
once a majority granted the lease, gives it to the executor; the claimer core renews the
lease while it is held. `close` commits the result under the lease's epoch (exactly
once) and announces it by gossip.

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

from colonynode.consensus.events import Granted
from colonynode.consensus.messages import Outcome, Reason
from colonynode.consensus.messages import State as RegisterState
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.process import State
from colonynode.core.scheduling import ExecutorAdvert, Waiting, choose_claims
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
POLL_S = 0.25
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
        self.counters: dict[str, int] = dict.fromkeys(
            ("executors_detached", "leases_dropped", "log_lines", "log_lines_dropped",
             "graph_failed"), 0)  # fmt: skip

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

    def _detach_silent(self, now: float) -> None:
        for ex in list(self.executors.values()):
            if now - ex.last_heard_s <= EXECUTOR_SILENT_S:
                continue
            del self.executors[ex.id]
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
        """A process for this executor, claimed for it, or None after `timeout_s`."""
        ex = self._executor(executor_id)
        deadline = trio.current_time() + min(max(timeout_s, 0.0), ASSIGN_WAIT_MAX_S)
        while True:
            now = trio.current_time()
            ex.last_heard_s = now
            waiting = [
                Waiting(pid, spec, sub_ns)
                for pid, spec, sub_ns in self.book.waiting(now)
                if self._skip_until.get(pid, 0.0) <= now
            ]
            for pid in choose_claims(waiting, ex.advert, 1):
                got = await self._claim(ex, pid)
                if got is not None:
                    return got
            if trio.current_time() >= deadline or ex.id not in self.executors:
                return None
            await trio.sleep(POLL_S)

    async def _claim(self, ex: Executor, pid: bytes) -> dict[str, Any] | None:
        now = trio.current_time()
        [result] = await self.leases.claim([pid], LEASE_S)
        if not isinstance(result, Granted):
            reason = getattr(result, "reason", None)
            self._skip_until[pid] = now + REFUSED_BACKOFF_S
            if reason in (Reason.RETRIES_SPENT, Reason.WAIT_TIME_SPENT):
                await self._expire(pid, reason)
            elif reason == Reason.CLOSED:
                self.book.mark_closed_elsewhere(pid)
            return None
        if ex.id not in self.executors:  # detached while the claim was out: give it back
            await self.leases.release(pid)
            return None
        ex.running[pid] = result.epoch
        start_ns = time.time_ns()
        self._started_ns[pid] = start_ns
        self.book.mark_running(pid, now + LEASE_S, result.epoch, ex.advert.name, start_ns)
        self.publish(RUNNING_KIND, {"processid": pid.hex(), "epoch": result.epoch,
                                    "executor": ex.advert.name, "start_ns": start_ns})  # fmt: skip
        view = self.book.get(pid)
        assert view is not None
        return {**view, "epoch": result.epoch, "state": State.RUNNING.name}

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
