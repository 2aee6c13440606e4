"""The node's scheduler: hands WAITING processes to the executors attached to this node
(DESIGN.md §5, §10), through the lease quorum.

An executor (a `colonynode executor run` process, or any program using the API) registers
its advert and long-polls `assign`. The scheduler picks candidates from the node's gossip
view (ColonyOS matching and priority order, rendezvous spreading: `core.scheduling`),
claims one through the voters and, once a majority granted the lease, gives it to the
executor; the claimer core renews the lease while it is held. `close` commits the result
under the lease's epoch (exactly once) and announces it by gossip. A process whose
retries or wait time ran out is expired (closed FAILED) by whichever node meets it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from colonynode.consensus.events import Granted
from colonynode.consensus.messages import Outcome, Reason
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.process import State
from colonynode.core.scheduling import ExecutorAdvert, Waiting, choose_claims
from colonynode.node.leases import LeaseService, NotHolder
from colonynode.node.processes import CLOSED_KIND, RUNNING_KIND, ProcessBook

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

EXECUTORS_MAX = 256
ASSIGN_WAIT_MAX_S = 60.0
POLL_S = 0.25
REFUSED_BACKOFF_S = 1.0  # a pid the voters refused is not tried again this soon
LEASE_S = 10.0
SWEEP_S = 1.0  # how often this node looks for its processes past maxwaittime


@dataclass
class Executor:
    id: str
    advert: ExecutorAdvert
    running: dict[bytes, int]  # pid -> epoch


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

    async def sweep(self, is_mine: Callable[[bytes], bool]) -> None:
        """Expire the WAITING processes this node submitted once their maxwaittime ran out
        (ColonyOS's wait deadline): the voters close them FAILED if they agree."""
        while True:
            await trio.sleep(SWEEP_S)
            now_ns = time.time_ns()
            for pid, spec, submitted_ns in self.book.waiting(trio.current_time()):
                if spec.maxwaittime <= 0 or not is_mine(pid):
                    continue
                if now_ns - submitted_ns > spec.maxwaittime * 10**9:
                    self._skip_until[pid] = trio.current_time() + REFUSED_BACKOFF_S
                    await self._expire(pid, Reason.WAIT_TIME_SPENT)

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
        ex = Executor(secrets.token_hex(8), advert, {})
        self.executors[ex.id] = ex
        log.info("executor %s (%s) attached: %s", name, etype, ", ".join(functions) or "any")
        return {"executor_id": ex.id, "name": name}

    def _executor(self, executor_id: str) -> Executor:
        ex = self.executors.get(executor_id)
        if ex is None:
            raise ColonyError(f"no executor {executor_id} is attached to this node")
        return ex

    async def assign(self, executor_id: str, timeout_s: float) -> dict[str, Any] | None:
        """A process for this executor, claimed for it, or None after `timeout_s`."""
        ex = self._executor(executor_id)
        deadline = trio.current_time() + min(max(timeout_s, 0.0), ASSIGN_WAIT_MAX_S)
        while True:
            now = trio.current_time()
            waiting = [
                Waiting(pid, spec, sub_ns)
                for pid, spec, sub_ns in self.book.waiting(now)
                if self._skip_until.get(pid, 0.0) <= now
            ]
            for pid in choose_claims(waiting, ex.advert, 1):
                got = await self._claim(ex, pid)
                if got is not None:
                    return got
            if trio.current_time() >= deadline:
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
        ex.running[pid] = result.epoch
        start_ns = time.time_ns()
        self._started_ns[pid] = start_ns
        self.book.mark_running(pid, now + LEASE_S, result.epoch, ex.advert.name, start_ns)
        self.publish(RUNNING_KIND, {"processid": pid.hex(), "epoch": result.epoch,
                                    "executor": ex.advert.name, "start_ns": start_ns})  # fmt: skip
        view = self.book.get(pid)
        assert view is not None
        return {**view, "epoch": result.epoch, "state": State.RUNNING.name}

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
        body = {"processid": pid.hex(), "state": state.name, "output": output or [],
                "errors": errors, "epoch": epoch, "executor": executor,
                "start_ns": self._started_ns.pop(pid, None), "end_ns": time.time_ns()}  # fmt: skip
        self.book.on_record(None, CLOSED_KIND, body)
        self.publish(CLOSED_KIND, body)

    async def close(self, executor_id: str, pid: bytes, success: bool, output: Any,
                    errors: list[str]) -> dict[str, Any]:  # fmt: skip
        ex = self._executor(executor_id)
        if pid not in ex.running:
            raise NotHolder(f"executor {ex.advert.name} does not run process {pid.hex()}")
        epoch = ex.running.pop(pid)
        outcome = Outcome.SUCCESS if success else Outcome.FAILED
        try:
            closed = await self.leases.close(pid, outcome, output, tuple(errors))
        except NotHolder:
            raise NotHolder(
                f"the lease on {pid.hex()} was lost (maxexectime or a pause): result refused"
            ) from None
        if closed.committed:
            state = State.SUCCESS if success else State.FAILED
            self._announce_close(pid, state, output, errors, epoch, ex.advert.name)
        reason = None if closed.reason is None else Reason(closed.reason).name
        return {"processid": pid.hex(), "committed": closed.committed, "reason": reason}
