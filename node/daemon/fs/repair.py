"""Keeping R copies of every chunk, and collecting the chunks nothing refers to any more.

Every `repair_s` a node looks at the chunks it holds:

- **collection**: a chunk that only removed revisions name (NodeCore's index says a
  removal was seen, so this node has seen the revision too), not written or stored again
  for `gc_grace_s` (an upload of the same bytes in flight touches it), is deleted;
- **repair**: for each chunk a live revision names (up to IDS_A_PASS a pass, a cursor
  going round), the *alive* members are those linked, seen within `grace_s`, or that
  answer a dial now (a node links to some members only: node/core/peerset.py); a member
  away longer, or gone from the roster, no longer counts. The chunk's placement
  among the alive members (NodeCore's `plan_repair`) names who should hold it; those
  connected are asked which they hold (one Has of up to 4,096 ids a peer), and each
  holder copies what is missing to them, then asks them to flush. Every holder does this
  for its chunks: a copy two holders both send is stored once.
- **providers**: a chunk held off its placement (the members changed since it was
  written) is announced in the DHT, so a reader that misses it by placement finds it.

Copies left over after the members changed are kept (docs/colonyfs.md).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import trio

from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId, short_id
from colonynode.node.core import requests as rq
from colonynode.node.core.fs import HASH_BYTES, REPLICAS, placement, plan_repair
from colonynode.node.daemon.fs.peers import PutLine
from colonynode.node.daemon.fs.transfer import BATCH_BYTES, IDS_MAX
from colonynode.node.daemon.wire import RemoteError, StreamClosed

if TYPE_CHECKING:
    from colonynode.node.daemon.fs.service import FsService

__all__ = ["Repair"]

IDS_A_PASS = 20_000
PEERS_AT_ONCE = 4  # peers a pass repairs copies on at the same time
PROVIDES_A_PASS = 64


class Repair:
    def __init__(self, fs: FsService, *, every_s: float, grace_s: float, gc_grace_s: float):
        self.fs = fs
        self.every_s = every_s
        self.grace_s = grace_s
        self.gc_grace_s = gc_grace_s
        self.started_unix = time.time()
        self.cursor = 0
        self.provided: set[bytes] = set()

    async def run(self) -> None:
        while True:
            await trio.sleep(self.every_s)  # a period, not a wait for convergence
            try:
                await self.run_pass()
            except (ColonyError, OSError) as exc:
                self.fs.counters["repair_failures"] += 1
                self.fs.log.info("a repair pass failed: %s", exc)

    async def alive(self, cids: list[bytes]) -> list[NodeId]:
        """The members alive: linked, seen within the grace, or, among those that could
        hold one of `cids`, answering a dial now (not every member: a node links to
        some members only, and a pass must not link it to all)."""
        fs = self.fs
        transport = fs.node.transport
        seen = transport.last_seen_unix_s
        now = time.time()
        start = self.started_unix
        members = fs.members()
        quiet = {m for m in members
                 if m != fs.me and now - seen.get(m, start) >= self.grace_s / 2}  # fmt: skip
        if quiet:  # (the placements only then: a hash a member for every chunk held)
            near = {m for cid in cids for m in placement(cid, members, REPLICAS + 2)}
            quiet &= near
        up = await fs.reach(sorted(quiet))  # linked now, or by a dial (its frames: seen)
        return [m for m in members
                if m == fs.me or m in up
                or now - seen.get(m, self.started_unix) < self.grace_s]  # fmt: skip

    async def run_pass(self) -> None:
        fs = self.fs
        fs.counters["repair_passes"] += 1
        held = await trio.to_thread.run_sync(fs.store.ids)
        live, dead, trees = fs.index.referenced()
        for rev, lives in trees:  # a tree's data chunks, from the manifests held here
            for data in await fs.store.get(list(rev.chunks)):
                if data is not None:
                    ids = {data[i : i + HASH_BYTES] for i in range(0, len(data), HASH_BYTES)}
                    (live if lives else dead).update(ids)
        dead -= live
        await self._collect([c for c in held if c in dead])
        todo = [c for c in held if c in live]
        if len(todo) > IDS_A_PASS:
            start = self.cursor % len(todo)
            todo = (todo[start:] + todo[:start])[:IDS_A_PASS]
            self.cursor = start + IDS_A_PASS
        if not todo:
            return
        alive = await self.alive(todo)
        await self._repair(todo, alive)
        await self._provide(todo, alive)

    async def _collect(self, cids: list[bytes]) -> None:
        store = self.fs.store
        now = time.time()

        def old(c: bytes) -> bool:
            try:
                return now - os.stat(store.path(c)).st_mtime > self.gc_grace_s
            except FileNotFoundError:
                return False

        due = await trio.to_thread.run_sync(lambda: [c for c in cids if old(c)])
        gone = await store.delete(due)
        if gone:
            self.fs.log.info("collected %d chunks no revision refers to", gone)

    async def _repair(self, cids: list[bytes], alive: list[NodeId]) -> None:
        fs = self.fs
        asks: dict[NodeId, list[bytes]] = defaultdict(list)
        for cid in cids:
            for peer in plan_repair(cid, fs.me, alive, ()):
                asks[peer].append(cid)  # (open_peer dials one this node is not linked to)
        limit = trio.CapacityLimiter(PEERS_AT_ONCE)
        async with trio.open_nursery() as nursery:
            for peer, ids in asks.items():
                nursery.start_soon(self._repair_on, peer, ids, limit)

    async def _repair_on(self, peer: NodeId, ids: list[bytes], limit: trio.CapacityLimiter) -> None:
        """Copy to `peer` the chunks of `ids` it lacks (one peer's failure is its own)."""
        fs = self.fs
        async with limit:
            try:
                client = await fs.open_peer(peer)
                line = PutLine(fs, peer)  # the copies go as a put's: bulk path, else link
                try:
                    holding: set[bytes] = set()
                    for i in range(0, len(ids), IDS_MAX):
                        holding |= await client.has(ids[i : i + IDS_MAX])
                    await self._copy(line, [c for c in ids if c not in holding])
                finally:
                    await line.close()
                    await client.close()
            except (StreamClosed, RemoteError, ColonyError) as exc:
                fs.counters["repair_failures"] += 1
                fs.log.info("repairing copies on %s failed: %s", short_id(peer), exc)

    async def _copy(self, line: PutLine, missing: list[bytes]) -> None:
        fs = self.fs
        batch: list[tuple[bytes, bytes]] = []
        size = 0
        for cid in missing:
            (data,) = await fs.store.get([cid])
            if data is None:
                continue
            if batch and (size + len(data) > BATCH_BYTES or len(batch) >= IDS_MAX):
                await line.store(batch)
                batch, size = [], 0
            batch.append((cid, data))
            size += len(data)
        if batch:
            await line.store(batch)
        if missing:
            await line.flush()
            fs.counters["chunks_repaired"] += len(missing)
            fs.log.info("copied %d chunks to keep %d copies", len(missing), REPLICAS)

    async def _provide(self, cids: list[bytes], alive: list[NodeId]) -> None:
        fs = self.fs
        r = min(REPLICAS, len(alive))
        n = 0
        for cid in cids:
            if n >= PROVIDES_A_PASS:
                break
            if cid in self.provided or fs.me in placement(cid, alive, r):
                continue
            n += 1
            self.provided.add(cid)
            if await fs.node.call(rq.FsProvide(cid)):
                fs.counters["chunks_provided"] += 1
