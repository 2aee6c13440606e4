"""The lease quorum in the daemon: ConsensusCore over /colony/<name>/lease/1 (DESIGN.md §6).

`LeaseService` runs the core with a `CoreDriver` and turns its events into answers for
awaiting callers (the local API, and the scheduler of the end-to-end issue): `submit`
returns once a majority holds the process durably, `claim` once a majority granted or
refused each lease, `close` once the result is committed or fenced out, `read` once a
majority answered.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable
from typing import Any

import trio

from colonynode.consensus.claimer import ClaimerConfig
from colonynode.consensus.events import (
    Cancelled,
    ClaimFailed,
    Closed,
    Expired,
    Granted,
    LeaseEnded,
    ReadResult,
    Submitted,
)
from colonynode.consensus.handover import VoterSet
from colonynode.consensus.lease import ConsensusCore
from colonynode.consensus.messages import CODEC, Outcome, ProcessTerms, Reason, State
from colonynode.consensus.requests import (
    CancelProcess,
    ChangeVoters,
    ClaimLeases,
    CloseProcess,
    DropLease,
    ExpireProcess,
    ReadRegister,
    ReleaseAll,
    ReleaseLease,
    SubmitProcess,
)
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.node.driver import CoreDriver
from colonynode.node.p2p import Channel, P2PTransport
from colonynode.storage._trio import StoreWriter
from colonynode.storage.api import Store

__all__ = ["LeaseService", "LeaseTimeout", "NotHolder", "result_json", "view_json"]

log = logging.getLogger(__name__)

WAITERS_MAX = 100_000
ANSWER_S = 35.0  # longer than the core's own op timeout: the core always answers first


class LeaseTimeout(ColonyError):
    pass


class NotHolder(ColonyError):
    pass


class LeaseService:
    def __init__(
        self,
        node_id: NodeId,
        store: Store,
        transport: P2PTransport,
        writer: StoreWriter,
        colony: str,
        *,
        voters: VoterSet,
        has_role: Callable[[NodeId, str], bool],
        config: ClaimerConfig | None = None,
    ) -> None:
        self.core = ConsensusCore(
            node_id,
            store,
            random.Random(secrets.randbits(64)),
            voters=voters,
            has_role=has_role,
            config=config,
        )
        transport.add_channel(Channel("lease", f"/colony/{colony}/lease/1", CODEC))
        self.driver = CoreDriver(self.core, "lease", transport, writer, on_events=self._events)
        # request id -> (answered, the events so far, how many answer it)
        self._waiters: dict[int, tuple[trio.Event, list[Any], int]] = {}
        self.granted: dict[bytes, Granted] = {}  # leases this node holds now
        self._none_held = trio.Event()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.driver.run(task_status=task_status)

    # -- events -> waiters --------------------------------------------------------------

    def _events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, Granted):
                self.granted[ev.pid] = ev
            elif isinstance(ev, LeaseEnded):
                self.granted.pop(ev.pid, None)
                if not self.granted:
                    self._none_held.set()
            for req_id in getattr(ev, "reqs", ()):
                waiter = self._waiters.get(req_id)
                if waiter is not None:
                    waiter[1].append(ev)
                    if len(waiter[1]) >= waiter[2]:
                        del self._waiters[req_id]
                        waiter[0].set()

    async def _await(self, req: Any, answers: int = 1) -> list[Any]:
        """Start `req` on the core; its first `answers` events (one per pid of a claim)."""
        if len(self._waiters) >= WAITERS_MAX:
            raise ColonyError("too many lease requests in flight; try again")
        event, box = trio.Event(), list[Any]()
        req_id = self.core.request(self.now(), req)
        self._waiters[req_id] = (event, box, answers)
        self.driver.kick()
        with trio.move_on_after(ANSWER_S):
            await event.wait()
        if not event.is_set():
            self._waiters.pop(req_id, None)
            raise LeaseTimeout(f"no answer to {type(req).__name__} in {ANSWER_S:.0f} s")
        return box

    # -- application calls --------------------------------------------------------------

    def now(self) -> float:
        return trio.current_time()

    def on_roster(self, version: int, voters: tuple[NodeId, ...]) -> None:
        """A roster arrived: if its voter set differs, hand over (seal-then-serve)."""
        if tuple(voters) != tuple(self.core.voters()):
            self.core.request(self.now(), ChangeVoters(version, tuple(voters)))
            self.driver.kick()

    async def submit(self, terms: ProcessTerms) -> Submitted:
        (result,) = await self._await(SubmitProcess(terms))
        return result  # type: ignore[no-any-return]

    async def claim(self, pids: list[bytes], lease_s: float | None = None) -> list[Any]:
        """One batched claim; a Granted or ClaimFailed for each pid, in order (a pid the
        core does not send fails at once: NOT_ALLOWED or BUSY)."""
        order = tuple(dict.fromkeys(pids))
        try:
            got = await self._await(ClaimLeases(order, lease_s), answers=len(order))
        except LeaseTimeout:
            got = []
        by_pid = {ev.pid: ev for ev in got}
        return [by_pid.get(pid, ClaimFailed(pid, 0, None)) for pid in pids]

    async def close(self, pid: bytes, outcome: Outcome, output: Any = None,
                    errors: tuple[str, ...] = ()) -> Closed:  # fmt: skip
        if pid not in self.granted:
            raise NotHolder(f"this node holds no lease on {pid.hex()}: only the holder closes")
        (result,) = await self._await(CloseProcess(pid, outcome, output, errors))
        return result  # type: ignore[no-any-return]

    async def expire(self, pid: bytes, epoch: int = 0) -> Expired:
        """Close FAILED a process whose retries or wait time ran out (any node may)."""
        (result,) = await self._await(ExpireProcess(pid, epoch))
        return result  # type: ignore[no-any-return]

    async def cancel(
        self, pid: bytes, state: State = State.CANCELLED, errors: tuple[str, ...] = ()
    ) -> Cancelled:
        """Close a process CANCELLED (or FAILED: a workflow parent failed) at a majority of
        voters, whoever holds its lease (the voters check the sender is its submitter or
        the colony's owner)."""
        (result,) = await self._await(CancelProcess(pid, state, errors))
        return result  # type: ignore[no-any-return]

    def drop(self, pid: bytes) -> bool:
        """Stop renewing a lease without telling the voters (its executor vanished): it
        expires there and the process is retried elsewhere, counted as a retry."""
        held = pid in self.core.claimer.leases
        self.core.request(self.now(), DropLease(pid))
        self.driver.kick()
        return held

    async def release(self, pid: bytes) -> bool:
        """Give a lease back at once (no retry counted)."""
        held = pid in self.core.claimer.leases
        self.core.request(self.now(), ReleaseLease(pid))
        self.driver.kick()
        await trio.lowlevel.checkpoint()
        return held

    async def read(self, pid: bytes) -> ReadResult:
        (result,) = await self._await(ReadRegister(pid))
        return result  # type: ignore[no-any-return]

    async def release_all(self, timeout_s: float = 2.0) -> int:
        """Release every lease this node holds (clean shutdown), waiting up to timeout_s."""
        if not self.granted:
            return 0
        self._none_held = trio.Event()
        n = len(self.core.claimer.leases)
        self.core.request(self.now(), ReleaseAll())
        self.driver.kick()
        with trio.move_on_after(timeout_s):
            await self._none_held.wait()
        return n


def view_json(view: Any) -> dict[str, Any] | None:
    """A RegisterView as JSON data (None stays None)."""
    if view is None:
        return None
    from colonynode.core.ids import peer_id_str

    return {
        "pid": view.pid.hex(),
        "state": view.state.name,
        "epoch": view.epoch,
        "holder": None if view.holder is None else peer_id_str(view.holder),
        "retries": view.retries,
        "output": view.output,
        "errors": list(view.errors),
    }


def result_json(result: Any) -> dict[str, Any]:
    """An event answering a lease call, as JSON data."""
    out: dict[str, Any] = {"pid": result.pid.hex(), "event": type(result).__name__}
    for name in ("acked", "epoch", "committed", "answered"):
        if hasattr(result, name):
            out[name] = getattr(result, name)
    if isinstance(result, Granted):
        out["granted"] = True
        out["lease_left_s"] = round(result.deadline_s - trio.current_time(), 3)
    if isinstance(result, ClaimFailed):
        out["granted"] = False
    reason = getattr(result, "reason", None)
    if hasattr(result, "reason"):
        out["reason"] = None if reason is None else Reason(reason).name
    if isinstance(result, ReadResult):
        out["view"] = view_json(result.view)
    return out
