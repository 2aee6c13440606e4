"""Kademlia in the daemon: DhtCore over /colony/<name>/dht/1 (DESIGN.md §8).

`DhtService` runs the core with a `CoreDriver`, answers awaiting callers from the core's
result events (by request id), and dials the peers the core asks for (`Dial`). The
node finds members it has no address for through their signed `/peer/<id>` records.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import trio

from colonynode.core.errors import ColonyError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.dht import CODEC, DhtCore, Dial, FileRevision, GetResult, PeerInfo, PeerRecord
from colonynode.node.driver import CoreDriver
from colonynode.node.p2p import Channel, DialError, P2PTransport, full_addr
from colonynode.storage._trio import StoreWriter
from colonynode.storage.api import Store

__all__ = ["DhtService"]

log = logging.getLogger(__name__)

ANSWER_S = 30.0
WAITERS_MAX = 10_000
DIALS_IN_FLIGHT_MAX = 8


class DhtService:
    def __init__(
        self,
        identity: Identity,
        store: Store,
        transport: P2PTransport,
        writer: StoreWriter,
        colony: str,
        nursery: trio.Nursery,
        *,
        is_member: Callable[[NodeId], bool],
        may_write: Callable[[NodeId, str], bool],
    ) -> None:
        self.transport = transport
        self.colony = colony
        self._nursery = nursery
        self.core = DhtCore(
            identity.node_id,
            store,
            random.Random(secrets.randbits(64)),
            identity=identity,
            is_member=is_member,
            may_write=may_write,
        )
        transport.add_channel(Channel("dht", f"/colony/{colony}/dht/1", CODEC))
        self.driver = CoreDriver(self.core, "dht", transport, writer, on_events=self._events)
        self._waiters: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._dialing: set[NodeId] = set()
        self.found_addrs = 0  # peer addresses learned from /peer/ records

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.driver.run(task_status=task_status)

    def _events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, Dial):
                self._dial(ev.node_id, ev.addrs)
                continue
            req_id = getattr(ev, "req_id", None)
            if req_id is None:
                continue
            waiter = self._waiters.pop(req_id, None)
            if waiter is not None:
                waiter[1].append(ev)
                waiter[0].set()

    def _dial(self, nid: NodeId, addrs: Sequence[str]) -> None:
        if not addrs or nid in self._dialing or len(self._dialing) >= DIALS_IN_FLIGHT_MAX:
            return
        self._dialing.add(nid)
        self._nursery.start_soon(self._dial_task, nid, tuple(addrs))

    async def _dial_task(self, nid: NodeId, addrs: tuple[str, ...]) -> None:
        try:
            for addr in addrs[:2]:
                full = full_addr(addr, nid)
                try:
                    await self.transport.connect(full)
                    return
                except DialError as exc:
                    log.debug("dial %s for the DHT: %s", full, exc)
        finally:
            self._dialing.discard(nid)

    async def _await(self, start: Callable[[], int]) -> Any:
        if len(self._waiters) >= WAITERS_MAX:
            raise ColonyError("too many DHT requests in flight; try again")
        req_id = start()
        event, box = trio.Event(), list[Any]()
        self._waiters[req_id] = (event, box)
        self.driver.kick()
        with trio.move_on_after(ANSWER_S):
            await event.wait()
        if not box:
            self._waiters.pop(req_id, None)
            raise ColonyError(f"the DHT did not answer in {ANSWER_S:.0f} s")
        return box[0]

    def now(self) -> float:
        return trio.current_time()

    # -- calls --------------------------------------------------------------------------

    def connected(
        self, peers: Sequence[NodeId], addrs_of: Callable[[NodeId], tuple[str, ...]]
    ) -> None:
        now = self.now()
        for p in peers:
            self.core.peer_seen(now, p, addrs_of(p))
        self.core.set_peers(now, peers)
        if peers and not self.core.joined and self.core.join_op is None:
            self.core.bootstrap(now, [PeerInfo(p, addrs_of(p)) for p in peers])
        self.driver.kick()

    def start(self, addrs: Sequence[str], seeds: Sequence[tuple[NodeId, tuple[str, ...]]]) -> None:
        """Publish our /peer/ record and join through the peers we know."""
        now = self.now()
        self.core.set_addrs(now, addrs)
        if seeds:
            self.core.bootstrap(now, [PeerInfo(n, a) for n, a in seeds])
        self.driver.kick()

    async def find_peer(self, nid: NodeId) -> tuple[str, ...]:
        result: GetResult = await self._await(lambda: self.core.find_peer(self.now(), nid))
        if isinstance(result.value, PeerRecord):
            self.found_addrs += 1
            return tuple(result.value.addrs)
        return ()

    async def fs_put(self, label: str, name: str, revision: FileRevision) -> Any:
        return await self._await(
            lambda: self.core.fs_add_revision(self.now(), self.colony, label, name, revision)
        )

    async def fs_get(self, label: str, name: str) -> GetResult:
        result: GetResult = await self._await(
            lambda: self.core.fs_get(self.now(), self.colony, label, name)
        )
        return result
