"""The ``fs`` scenario's node: `FsChunkCore`, a sans-IO model of the daemon's chunk
service (node/daemon/fs/: the chunk store, `files.upload`, `files.download`,
`repair.Repair`), whose decisions are NodeCore's own `placement` and `plan_repair`
(node/core/fs.py); and `_GoneCore`, what a killed node runs if anything restarts it.

Its store, upload, repair and download, and how a request is resent and fails, are
described in fs_scenario.py.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from colonynode.core.effects import BEFORE_ALL, LAZY, Effects
from colonynode.core.ids import NodeId
from colonynode.node.core.fs import CHUNK_BYTES, REPLICAS, placement, plan_repair
from colonynode.simulations._fs_messages import (
    ACK_COPIES,
    BATCH_CHUNKS,
    CONNECTION_CHECK_S,
    IDS_A_PASS,
    IDS_MAX,
    TABLE,
    Booted,
    Chunks,
    ChunksDurable,
    ChunksStored,
    FetchChunks,
    FlushChunks,
    Flushed,
    FsSimConfig,
    HasChunks,
    Holding,
    PutDone,
    ReadDone,
    RepairPassDone,
    SharedFs,
    StoreChunks,
    Stored,
)
from colonynode.storage.api import Store

__all__ = ["FsChunkCore"]


# -- the core -------------------------------------------------------------------------------


@dataclass(slots=True)
class _PutOp:
    key: int
    ids: list[bytes]
    need: int
    waiting: int
    copies: dict[bytes, int] = field(default_factory=dict)


@dataclass(slots=True)
class _ReadOp:
    key: int
    deadline_s: float
    left: int
    failed: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class _Fetch:
    cid: bytes
    missing: set[NodeId] = field(default_factory=set)  # answered "missing"
    timeouts: dict[NodeId, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Pass:
    asks: list[tuple[NodeId, list[bytes]]]
    at: int = 0
    copies: int = 0
    failures: int = 0


Answer = Callable[[float, Any], None]  # (now_s, answer or None when the deadline passed)


@dataclass(slots=True)
class _Call:
    """A request in flight: sent again (same id) when unanswered, while the peer is
    connected, up to `resends` times; then its answer is None."""

    peer: NodeId
    msg: Any
    wait_s: float
    resends: int
    then: Answer


class FsChunkCore:
    """One node's chunk service: the server side of Store/Flush/Has/Fetch, the client side
    of upload, repair and download. `peers()` lists the members this node is connected
    to and `connected(m)` asks about one, as the daemon's transport would say."""

    def __init__(self, node_id: NodeId, store: Store, shared: SharedFs, config: FsSimConfig,
                 peers: Callable[[], list[NodeId]],
                 connected: Callable[[NodeId], bool]) -> None:  # fmt: skip
        self.me = node_id
        self.shared = shared
        self.cfg = config
        self.peers = peers
        self.connected = connected
        self.held: dict[bytes, None] = {bytes(k): None for k, _ in store.scan(TABLE)}
        self.unflushed: dict[bytes, None] = {}
        self.calls: dict[int, _Call] = {}
        self.deadlines: list[tuple[float, int]] = []
        self.next_req = 1
        self.seen: dict[NodeId, float] = {}
        self.started_s: float | None = None
        self.next_pass_s = math.inf
        self.passing: _Pass | None = None
        self.check_s = 0.0  # next look for requests to peers that went away
        self.cursor = 0
        self.sync = False
        self.fx = Effects(durability=LAZY)
        self.fx.events.append(Booted(tuple(self.held)))

    # -- the core contract ----------------------------------------------------------------

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        self.seen[sender] = now_s
        _HANDLERS[type(msg)](self, now_s, sender, msg)

    def on_tick(self, now_s: float) -> None:
        if self.started_s is None:
            self.started_s = now_s
            self.next_pass_s = now_s + self.cfg.repair_s  # repair.run: sleep, then a pass
        if self.calls and now_s >= self.check_s:
            self._drop_broken(now_s)
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now_s:
            _, req = heapq.heappop(deadlines)
            call = self.calls.get(req)
            if call is None:
                continue
            if call.resends > 0 and self.connected(call.peer):
                call.resends -= 1
                heapq.heappush(deadlines, (now_s + call.wait_s, req))
                self.fx.sends.append((call.peer, call.msg))
            else:
                del self.calls[req]
                call.then(now_s, None)
        if self.passing is None and now_s >= self.next_pass_s:
            self._start_pass(now_s)

    def take_effects(self) -> Effects:
        fx, self.fx = self.fx, Effects(durability=LAZY)
        if self.sync:  # a Flush: everything written so far is durable before the answer
            fx.durability = BEFORE_ALL
            self.sync = False
        deadlines = self.deadlines
        while deadlines and deadlines[0][1] not in self.calls:
            heapq.heappop(deadlines)  # answered in time
        wake = deadlines[0][0] if deadlines else math.inf
        if self.calls:
            wake = min(wake, self.check_s)
        if self.passing is None:
            wake = min(wake, self.next_pass_s)
        fx.wake_at_s = None if wake == math.inf else wake
        return fx

    def _drop_broken(self, now_s: float) -> None:
        """Fail the requests to peers no longer connected: a stream breaks when its
        connection does (a crash, a partition), without waiting for a deadline."""
        self.check_s = now_s + CONNECTION_CHECK_S
        for req, call in list(self.calls.items()):
            if req in self.calls and not self.connected(call.peer):
                del self.calls[req]
                call.then(now_s, None)

    # -- the server side (transfer.serve_chunks) ------------------------------------------

    def _keep(self, ids: Sequence[bytes]) -> None:
        new = [c for c in ids if c not in self.held]
        for cid in new:
            self.held[cid] = None
            self.unflushed[cid] = None
            self.fx.writes.append((TABLE, cid, 1))
        if new:
            self.fx.events.append(ChunksStored(tuple(new)))

    def _flush(self) -> None:
        self.sync = True
        if self.unflushed:
            self.fx.events.append(ChunksDurable(tuple(self.unflushed)))
            self.unflushed = {}

    def _on_store(self, now_s: float, sender: NodeId, msg: StoreChunks) -> None:
        self._keep(msg.ids)
        self.fx.sends.append((sender, Stored(msg.req, msg.ids)))

    def _on_flush(self, now_s: float, sender: NodeId, msg: FlushChunks) -> None:
        self._flush()
        self.fx.sends.append((sender, Flushed(msg.req)))

    def _on_has(self, now_s: float, sender: NodeId, msg: HasChunks) -> None:
        held = self.held
        self.fx.sends.append((sender, Holding(msg.req, tuple(c for c in msg.ids if c in held))))

    def _on_fetch(self, now_s: float, sender: NodeId, msg: FetchChunks) -> None:
        held = self.held
        found = tuple(c for c in msg.ids if c in held)
        missing = tuple(c for c in msg.ids if c not in held)
        self.fx.sends.append((sender, Chunks(msg.req, found, missing)))

    def _on_answer(self, now_s: float, sender: NodeId, msg: Any) -> None:
        call = self.calls.get(msg.req)
        if call is not None and call.peer == sender:  # a late or duplicated answer: dropped
            del self.calls[msg.req]
            call.then(now_s, msg)

    # -- requests -------------------------------------------------------------------------

    def _ask(self, now_s: float, peer: NodeId, make: Callable[[int], Any], chunks: int,
             then: Answer, resends: int | None = None) -> None:  # fmt: skip
        req = self.next_req
        self.next_req += 1
        cfg = self.cfg
        wait_s = cfg.rpc_timeout_s + chunks * CHUNK_BYTES / cfg.link_bytes_per_s
        msg = make(req)
        self.calls[req] = _Call(peer, msg, wait_s, cfg.resends if resends is None else resends,
                                then)  # fmt: skip
        heapq.heappush(self.deadlines, (now_s + wait_s, req))
        self.fx.sends.append((peer, msg))

    def _push(self, now_s: float, peer: NodeId, ids: list[bytes],
              done: Callable[[float, bool], None], at: int = 0) -> None:  # fmt: skip
        """Store `ids` on `peer` in batches, one request at a time, then Flush."""
        if at < len(ids):
            batch = tuple(ids[at : at + BATCH_CHUNKS])

            def stored(now: float, answer: Any) -> None:
                if answer is None:
                    done(now, False)
                else:
                    self._push(now, peer, ids, done, at + BATCH_CHUNKS)

            self._ask(now_s, peer, lambda r: StoreChunks(r, batch), len(batch), stored)
        else:
            self._ask(now_s, peer, FlushChunks, 0, lambda now, a: done(now, a is not None))

    def _placement(self, cid: bytes, among: list[NodeId], among_set: set[NodeId],
                   n: int) -> list[NodeId]:  # fmt: skip
        if self.cfg.exact_placement:
            return placement(cid, among, n)
        return placement(cid, self.shared.prefix(cid, among_set), n)

    # -- upload (files.upload) ------------------------------------------------------------

    def put(self, now_s: float, key: int, ids: Sequence[bytes]) -> None:
        up = [m for m in self.shared.members if m == self.me or self.connected(m)]
        up_set = set(up)
        r = min(REPLICAS, len(up))
        targets: dict[NodeId, list[bytes]] = {}
        for cid in ids:
            for peer in self._placement(cid, up, up_set, r):
                targets.setdefault(peer, []).append(cid)
        op = _PutOp(key, list(ids), min(ACK_COPIES, len(up)), len(targets))
        for peer, chunk_ids in targets.items():
            if peer == self.me:
                self._keep(chunk_ids)
                self._flush()
                self._put_peer_done(op, chunk_ids, True)
            else:
                self._push(now_s, peer, chunk_ids, self._put_peer(op, chunk_ids))

    def _put_peer(self, op: _PutOp, ids: list[bytes]) -> Callable[[float, bool], None]:
        return lambda now_s, ok: self._put_peer_done(op, ids, ok)

    def _put_peer_done(self, op: _PutOp, ids: list[bytes], ok: bool) -> None:
        if ok:
            for cid in ids:
                op.copies[cid] = op.copies.get(cid, 0) + 1
        op.waiting -= 1
        if op.waiting == 0:
            ok_all = all(op.copies.get(c, 0) >= op.need for c in op.ids)
            self.fx.events.append(PutDone(op.key, ok_all))

    # -- repair (repair.Repair.run_pass) --------------------------------------------------

    def _start_pass(self, now_s: float) -> None:
        connected = self.peers()
        conn = set(connected)
        seen = self.seen
        for p in connected:
            seen[p] = now_s
        live = self.shared.live()
        todo = [c for c in self.held if c in live]
        if len(todo) > IDS_A_PASS:
            start = self.cursor % len(todo)
            todo = (todo[start:] + todo[:start])[:IDS_A_PASS]
            self.cursor = start + IDS_A_PASS
        members, me, grace_s = self.shared.members, self.me, self.cfg.grace_s
        started_s = self.started_s if self.started_s is not None else now_s
        if self.cfg.planted_bug == "ignore_alive":
            alive = members
        else:
            since_s = now_s - grace_s  # repair.alive: connected, or seen within grace_s
            alive = [m for m in members
                     if m == me or m in conn or seen.get(m, started_s) > since_s]  # fmt: skip
        alive_set = set(alive)
        asks: dict[NodeId, list[bytes]] = {}
        exact = self.cfg.exact_placement
        for cid in todo:
            among = alive if exact else self.shared.prefix(cid, alive_set)
            for peer in plan_repair(cid, me, among, ()):
                if peer in conn:
                    asks.setdefault(peer, []).append(cid)
        self.passing = _Pass(list(asks.items()))
        self._repair_next(now_s)

    def _repair_next(self, now_s: float) -> None:
        p = self.passing
        assert p is not None
        if p.at == len(p.asks):
            self.fx.events.append(RepairPassDone(len(p.asks), p.copies, p.failures))
            self.passing = None
            self.next_pass_s = now_s + self.cfg.repair_s
            return
        self._repair_has(now_s, p, set(), 0)

    def _repair_has(self, now_s: float, p: _Pass, holding: set[bytes], at: int) -> None:
        peer, ids = p.asks[p.at]
        if at < len(ids):
            batch = tuple(ids[at : at + IDS_MAX])

            def has(now: float, answer: Any) -> None:
                if answer is None:
                    self._repair_peer_done(now, p, False, 0)
                else:
                    self._repair_has(now, p, holding | set(answer.ids), at + IDS_MAX)

            self._ask(now_s, peer, lambda r: HasChunks(r, batch), 0, has)
            return
        missing = [c for c in ids if c not in holding]
        if self.cfg.planted_bug == "skip_copy" or not missing:
            self._repair_peer_done(now_s, p, True, 0)
            return
        self._push(now_s, peer, missing,
                   lambda now, ok: self._repair_peer_done(now, p, ok, len(missing)))  # fmt: skip

    def _repair_peer_done(self, now_s: float, p: _Pass, ok: bool, copies: int) -> None:
        if ok:
            p.copies += copies
        else:
            p.failures += 1
        p.at += 1
        self._repair_next(now_s)

    # -- download (files.download) --------------------------------------------------------

    def read(self, now_s: float, key: int, ids: Sequence[bytes]) -> None:
        wanted = list(dict.fromkeys(ids))
        op = _ReadOp(key, now_s + self.cfg.read_deadline_s, len(wanted))
        for cid in wanted:
            if cid in self.held:
                self._fetched(op, cid, True)
            else:
                self._fetch(now_s, op, _Fetch(cid))

    def _fetch(self, now_s: float, op: _ReadOp, f: _Fetch) -> None:
        peer = self._next_holder(f) if now_s < op.deadline_s else None
        if peer is None:
            self._fetched(op, f.cid, False)
            return

        def answer(now: float, got: Any) -> None:
            if got is not None and f.cid in got.ids:
                self._fetched(op, f.cid, True)
                return
            if got is None:
                f.timeouts[peer] = f.timeouts.get(peer, 0) + 1
            else:
                f.missing.add(peer)
            self._fetch(now, op, f)

        # no resend: the walk itself comes back to a member that did not answer
        self._ask(now_s, peer, lambda r: FetchChunks(r, (f.cid,)), 1, answer, resends=0)

    def _next_holder(self, f: _Fetch) -> NodeId | None:
        """The connected member first in placement order among those asked least often
        (never one that answered "missing")."""
        ranked = self.shared.rank(f.cid)
        if self.cfg.planted_bug == "read_first_only":
            first = ranked[0]
            tried = first in f.missing or first in f.timeouts
            return None if first == self.me or tried else first
        best: NodeId | None = None
        best_tries = math.inf
        for m in ranked:
            if m == self.me or m in f.missing or not self.connected(m):
                continue
            tries = f.timeouts.get(m, 0)
            if tries < best_tries:
                best, best_tries = m, tries
                if tries == 0:
                    break
        return best

    def _fetched(self, op: _ReadOp, cid: bytes, ok: bool) -> None:
        if not ok:
            op.failed.append(cid)
        op.left -= 1
        if op.left == 0:
            self.fx.events.append(ReadDone(op.key, tuple(op.failed)))


_HANDLERS: dict[type, Callable[[FsChunkCore, float, NodeId, Any], None]] = {
    StoreChunks: FsChunkCore._on_store,
    FlushChunks: FsChunkCore._on_flush,
    HasChunks: FsChunkCore._on_has,
    FetchChunks: FsChunkCore._on_fetch,
    Stored: FsChunkCore._on_answer,
    Flushed: FsChunkCore._on_answer,
    Holding: FsChunkCore._on_answer,
    Chunks: FsChunkCore._on_answer,
}


class _GoneCore:
    """A killed node's disk is gone: if anything restarts it, it does nothing (and the
    scenario crashes it again at once)."""

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        return None

    def on_tick(self, now_s: float) -> None:
        return None

    def take_effects(self) -> Effects:
        return Effects()
