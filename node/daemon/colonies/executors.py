"""The ColonyOS executors a node's gateway serves (docs/colonies-api.md).

An approved Colonies executor that calls this node's gateway is attached to the node as
one of its executors (named and typed as in the roster), at its first call and again
whenever the node detached it: its `assign` is the node's `assign`, its close the node's
close, under the same leases. A pycolonies executor calls nothing while it runs a
process, where the node's executors heartbeat every few seconds: the gateway heartbeats
for it while the run is within its `maxexectime` and the executor was heard from within
ColonyOS's 600 s. Past its `maxexectime` that run's lease is dropped: the voters let it
expire and the process is retried elsewhere, a retry counted, as ColonyOS returns a
process past its exec deadline to WAITING. Entries of executors the roster dropped, or
quiet past 600 s with nothing running, are forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from colonynode.consensus import requests as lrq
from colonynode.core.errors import ColonyError
from colonynode.core.roster import ColoniesKey
from colonynode.core.scheduling import ExecutorAdvert
from colonynode.node.core import UnknownExecutor
from colonynode.node.core import requests as rq

if TYPE_CHECKING:
    from colonynode.node.daemon.run import Node

__all__ = ["GatewayExecutors"]

log = logging.getLogger("colonynode.colonies")

SILENT_S = 600.0  # ColonyOS removes an executor not heard from this long
HEARTBEAT_S = 3.0  # the node detaches an executor silent for 15 s
RUN_S_MAX = 600.0  # a run without maxexectime is heartbeaten while the executor is heard
EXECUTORS_MAX = 1024  # the roster's cap on Colonies keys
FUNCTIONS_MAX = 256  # functions an executor registers here
RUNS_MAX = 256  # runs of one executor the gateway keeps
SLOTS = 4  # assigns of one ColonyOS executor that may wait at once (a threaded one)


@dataclass
class Run:
    deadline_s: float
    output: list[Any] | None = None  # setoutputmsg's, for a close that brings none


@dataclass
class Attached:
    key: ColoniesKey
    executor_id: str | None = None
    last_call_s: float = 0.0
    runs: dict[bytes, Run] = field(default_factory=dict)
    functions: dict[str, int] = field(default_factory=dict)  # name -> times added
    registering: trio.Lock = field(default_factory=trio.Lock)  # one registration at once


class GatewayExecutors:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.by_key: dict[str, Attached] = {}
        self.counters = {"attached": 0, "runs_expired": 0}

    def attached(self, key: ColoniesKey) -> Attached:
        att = self.by_key.get(key.key_id)
        if att is None or att.key != key:
            if att is None and len(self.by_key) >= EXECUTORS_MAX:
                raise ColonyError("this gateway serves too many executors")
            att = self.by_key[key.key_id] = Attached(key)
        return att

    def forget_name(self, name: str) -> None:
        """A removed executor: what this gateway kept of it goes (its node executor is
        detached by the node once silent)."""
        for key_id in [k for k, att in self.by_key.items() if att.key.name == name]:
            del self.by_key[key_id]

    def add_function(self, key: ColoniesKey, funcname: str) -> int:
        """Register a function of the executor here (ColonyOS counts how often)."""
        att = self.attached(key)
        if funcname not in att.functions and len(att.functions) >= FUNCTIONS_MAX:
            raise ColonyError(f"an executor registers at most {FUNCTIONS_MAX} functions")
        att.functions[funcname] = att.functions.get(funcname, 0) + 1
        return att.functions[funcname]

    def functions(self) -> dict[str, dict[str, int]]:
        return {k: dict(att.functions) for k, att in self.by_key.items() if att.functions}

    async def call(self, key: ColoniesKey, make: Callable[[str], Any]) -> Any:
        """`make(executor_id)`'s answer, the executor attached first (again after the
        node detached it)."""
        att = self.attached(key)
        att.last_call_s = trio.current_time()
        for attempt in (0, 1):
            async with att.registering:  # two calls at once register it once
                if att.executor_id is None:
                    advert = ExecutorAdvert(key.name, key.executortype)
                    answer = await self.node.call(rq.RegisterExecutor(advert, slots=SLOTS))
                    att.executor_id = answer["executor_id"]
                    self.counters["attached"] += 1
            eid = att.executor_id
            try:
                return await self.node.call(make(eid))
            except UnknownExecutor:
                att.executor_id = None
                att.runs.clear()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def started(self, key: ColoniesKey, pid: bytes, maxexectime_s: float) -> None:
        att = self.attached(key)
        limit_s = maxexectime_s if maxexectime_s > 0 else RUN_S_MAX
        if len(att.runs) >= RUNS_MAX:
            att.runs.pop(next(iter(att.runs)))
        att.runs[pid] = Run(trio.current_time() + limit_s)

    def run(self, key: ColoniesKey, pid: bytes) -> Run | None:
        att = self.by_key.get(key.key_id)
        return att.runs.get(pid) if att is not None else None

    def ended(self, key: ColoniesKey, pid: bytes) -> None:
        att = self.by_key.get(key.key_id)
        if att is not None:
            att.runs.pop(pid, None)

    async def keep_alive(self) -> None:
        """Heartbeat for the executors that run something, as long as they may; forget
        the ones the roster dropped or that went quiet with nothing running."""
        while True:
            await trio.sleep(HEARTBEAT_S)  # a period, not a wait for convergence
            for att in list(self.by_key.values()):
                try:
                    if att.runs and att.executor_id is not None:
                        await self._beat(att)
                except ColonyError as exc:  # (NoAnswer, a full node): next period
                    log.warning("Colonies executor %s: heartbeat failed: %s", att.key.name, exc)
            self._evict()

    def _evict(self) -> None:
        roster = self.node.core.membership.roster
        now_s = trio.current_time()
        for key_id, att in list(self.by_key.items()):
            gone = roster is None or roster.colonies_key(key_id) != att.key
            if gone or (not att.runs and now_s - att.last_call_s > SILENT_S):
                del self.by_key[key_id]

    async def _beat(self, att: Attached) -> None:
        now_s = trio.current_time()
        eid = att.executor_id
        assert eid is not None
        expired = [pid for pid, run in att.runs.items() if now_s > run.deadline_s]
        if now_s - att.last_call_s > SILENT_S:
            expired = list(att.runs)
        for pid in expired:  # past its maxexectime: its lease goes, its process is retried
            del att.runs[pid]
            self.counters["runs_expired"] += 1
            log.info("Colonies executor %s: process %s past its maxexectime: lease dropped",
                     att.key.name, pid.hex())  # fmt: skip
            await self.node.call(rq.Lease(lrq.DropLease(pid)))
        if not att.runs:
            return
        try:
            answer = await self.node.call(rq.Heartbeat(eid))
        except UnknownExecutor:
            att.executor_id = None
            att.runs.clear()
            return
        for pid_hex, state in answer["processes"].items():
            if state != "held":
                att.runs.pop(bytes.fromhex(pid_hex), None)
