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
        self._waiters: dict[tuple[str, bytes], list[tuple[trio.Event, list[Any]]]] = {}
        self.granted: dict[bytes, Granted] = {}  # leases this node holds now
        self._none_held = trio.Event()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.driver.run(task_status=task_status)

    # -- events -> waiters --------------------------------------------------------------

    def _events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, Submitted):
                self._resolve("submit", ev.pid, ev)
            elif isinstance(ev, Granted):
                self.granted[ev.pid] = ev
                self._resolve("claim", ev.pid, ev)
            elif isinstance(ev, ClaimFailed):
                self._resolve("claim", ev.pid, ev)
            elif isinstance(ev, Closed):
                self._resolve("close", ev.pid, ev)
            elif isinstance(ev, ReadResult):
                self._resolve("read", ev.pid, ev)
            elif isinstance(ev, Expired):
                self._resolve("expire", ev.pid, ev)
            elif isinstance(ev, Cancelled):
                self._resolve("cancel", ev.pid, ev)
            elif isinstance(ev, LeaseEnded):
                self.granted.pop(ev.pid, None)
                if not self.granted:
                    self._none_held.set()

    def _resolve(self, kind: str, pid: bytes, result: Any) -> None:
        for event, box in self._waiters.pop((kind, pid), ()):
            box.append(result)
            event.set()

    async def _await(self, kind: str, pid: bytes, start: Callable[[], Any]) -> Any:
        if len(self._waiters) >= WAITERS_MAX:
            raise ColonyError("too many lease requests in flight; try again")
        event, box = trio.Event(), list[Any]()
        self._waiters.setdefault((kind, pid), []).append((event, box))
        started = start()
        if started is False or started == 0:
            self._waiters.pop((kind, pid), None)
            raise ColonyError(f"the lease core refused to start a {kind} now (busy or invalid)")
        self.driver.kick()
        with trio.move_on_after(ANSWER_S):
            await event.wait()
        if not box:
            self._waiters.pop((kind, pid), None)
            raise LeaseTimeout(f"no answer to the {kind} of {pid.hex()} in {ANSWER_S:.0f} s")
        return box[0]

    # -- application calls --------------------------------------------------------------

    def now(self) -> float:
        return trio.current_time()

    def on_roster(self, version: int, voters: tuple[NodeId, ...]) -> None:
        """A roster arrived: if its voter set differs, hand over (seal-then-serve)."""
        if tuple(voters) != tuple(self.core.voters()):
            self.core.set_voters(self.now(), version, tuple(voters))
            self.driver.kick()

    async def submit(self, terms: ProcessTerms) -> Submitted:
        result: Submitted = await self._await(
            "submit", terms.pid, lambda: self.core.submit(self.now(), terms)
        )
        return result

    async def claim(self, pids: list[bytes], lease_s: float | None = None) -> list[Any]:
        """One batched claim; a Granted or ClaimFailed for each pid, in order. A pid the
        core does not send (this node holds it or claims it already, or the batch is
        full) fails at once with NOT_ALLOWED, and only this call's wait for it."""
        order = list(dict.fromkeys(pids))
        results: dict[bytes, Any] = {}
        mine: dict[bytes, tuple[trio.Event, list[Any]]] = {}
        for pid in order:
            if pid in self.granted or self.core.claiming(pid):
                results[pid] = ClaimFailed(pid, 0, Reason.NOT_ALLOWED)
                continue
            mine[pid] = (trio.Event(), [])
            self._waiters.setdefault(("claim", pid), []).append(mine[pid])
        self.core.claim(self.now(), list(mine), lease_s)
        self.driver.kick()
        for pid, entry in mine.items():
            if not self.core.claiming(pid):  # not sent: answer this call's wait only
                self._drop_waiter(("claim", pid), entry)
                entry[1].append(ClaimFailed(pid, 0, Reason.NOT_ALLOWED))
                entry[0].set()
        with trio.move_on_after(ANSWER_S):
            for event, _ in mine.values():
                await event.wait()
        for pid, entry in mine.items():
            if not entry[1]:
                self._drop_waiter(("claim", pid), entry)
            results[pid] = entry[1][0] if entry[1] else ClaimFailed(pid, 0, None)
        return [results[pid] for pid in pids]

    def _drop_waiter(self, key: tuple[str, bytes], entry: tuple[trio.Event, list[Any]]) -> None:
        waiters = self._waiters.get(key, [])
        if entry in waiters:
            waiters.remove(entry)
        if not waiters:
            self._waiters.pop(key, None)

    async def close(self, pid: bytes, outcome: Outcome, output: Any = None,
                    errors: tuple[str, ...] = ()) -> Closed:  # fmt: skip
        if pid not in self.granted:
            raise NotHolder(f"this node holds no lease on {pid.hex()}: only the holder closes")
        result: Closed = await self._await(
            "close", pid, lambda: self.core.close(self.now(), pid, outcome, output, errors)
        )
        return result

    async def expire(self, pid: bytes, epoch: int = 0) -> Expired:
        """Close FAILED a process whose retries or wait time ran out (any node may)."""
        result: Expired = await self._await(
            "expire", pid, lambda: self.core.expire(self.now(), pid, epoch)
        )
        return result

    async def cancel(
        self, pid: bytes, state: State = State.CANCELLED, errors: tuple[str, ...] = ()
    ) -> Cancelled:
        """Close a process CANCELLED (or FAILED: a workflow parent failed) at a majority of
        voters, whoever holds its lease (the voters check the sender is its submitter or
        the colony's owner)."""
        result: Cancelled = await self._await(
            "cancel", pid, lambda: self.core.cancel(self.now(), pid, state, errors)
        )
        return result

    def drop(self, pid: bytes) -> bool:
        """Stop renewing a lease without telling the voters (its executor vanished): it
        expires there and the process is retried elsewhere, counted as a retry."""
        dropped = self.core.drop(self.now(), pid)
        self.driver.kick()
        return dropped

    async def release(self, pid: bytes) -> bool:
        """Give a lease back at once (no retry counted)."""
        released = self.core.release(self.now(), pid)
        self.driver.kick()
        await trio.lowlevel.checkpoint()
        return released

    async def read(self, pid: bytes) -> ReadResult:
        result: ReadResult = await self._await("read", pid, lambda: self.core.read(self.now(), pid))
        return result

    async def release_all(self, timeout_s: float = 2.0) -> int:
        """Release every lease this node holds (clean shutdown), waiting up to timeout_s."""
        if not self.granted:
            return 0
        self._none_held = trio.Event()
        n = self.core.release_all(self.now())
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
