"""A transfer's ways to its peers: the bulk connection (bulk.py) while it works, else the
link's ColonyFS stream (transfer.py). The bulk path only ever speeds a transfer up: one
that cannot be made, or ends other than by a timeout, leaves that peer to the link."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from colonynode.core.errors import DecodeError
from colonynode.core.ids import NodeId, short_id
from colonynode.node.daemon.fs.bulk import BulkClient
from colonynode.node.daemon.fs.transfer import FsPeer
from colonynode.node.daemon.wire import RemoteError, StreamClosed

if TYPE_CHECKING:
    from colonynode.node.daemon.fs.service import FsService

__all__ = ["Clients", "PutLine", "Take"]

# take(chunks, ids asked for) -> (the ids it took, how many chunks it refused): a get's
# check and write of what a holder sent (called off the Trio thread)
Take = Callable[[tuple[Any, ...], frozenset[bytes]], tuple[set[bytes], int]]


class Clients:
    """One fetcher's connections to holders: a link stream a peer, and a bulk connection
    (bulk.py) to each peer that has a bulk path; the link stream where it has none."""

    def __init__(self, fs: FsService) -> None:
        self.fs = fs
        self.peers: dict[NodeId, FsPeer] = {}
        self.bulks: dict[NodeId, BulkClient] = {}
        self.no_bulk: set[NodeId] = set()

    async def _peer(self, peer: NodeId) -> FsPeer:
        client = self.peers.get(peer) or await self.fs.open_peer(peer)
        self.peers[peer] = client
        return client

    async def fetch(self, peer: NodeId, ids: list[bytes], take: Take) -> tuple[set[bytes], int]:
        """`take` (off the Trio thread) of what `peer` sends of `ids`: (the ids taken, how
        many chunks were refused)."""
        bulk = self.bulks.get(peer)
        if bulk is None and peer not in self.no_bulk:
            client = self.peers.pop(peer, None)  # (closed if this raises)
            self.peers[peer], bulk = await self.fs.bulk_or_link(peer, client)
            if bulk is None:
                self.no_bulk.add(peer)
            else:
                self.bulks[peer] = bulk
        if bulk is None:
            return await self._fetch_on_link(peer, ids, take)
        try:
            taken, bad, suspect = await trio.to_thread.run_sync(bulk.fetch_and, ids, take)
        except (OSError, DecodeError, StreamClosed) as exc:
            del self.bulks[peer]
            _give_up(self.fs, bulk, exc)
            self.no_bulk.add(peer)  # refused or broken: this holder on the link
            return await self._fetch_on_link(peer, ids, take)
        self.fs.counters["bulk_fetches"] += 1
        if suspect:  # the holder reads them again and deletes what is corrupt
            self.fs.counters["bad_chunks_reported"] += len(suspect)
            try:
                await (await self._peer(peer)).verify(suspect)
            except (StreamClosed, RemoteError) as exc:  # what was taken stays taken
                self.fs.log.info("naming corrupt copies to %s failed: %s", short_id(peer), exc)
                await self.drop(peer)
        return taken, bad

    async def _fetch_on_link(
        self, peer: NodeId, ids: list[bytes], take: Take
    ) -> tuple[set[bytes], int]:
        """The link's Fetch, which answers at most BATCH_BYTES: asked again for the rest
        while an answer brings some."""
        taken: set[bytes] = set()
        bad = 0
        rest = ids
        while rest:
            chunks = await (await self._peer(peer)).fetch(rest)
            got, refused = await trio.to_thread.run_sync(take, chunks.chunks, frozenset(rest))
            taken |= got
            bad += refused
            if not got or not chunks.missing:
                break
            rest = [c for c in rest if c not in taken]
        return taken, bad

    async def drop(self, peer: NodeId) -> None:
        old = self.peers.pop(peer, None)
        if old is not None:
            await old.close()

    async def close(self) -> None:
        for bulk in self.bulks.values():
            bulk.close()
        for client in self.peers.values():
            await client.close()


class PutLine:
    """A put's way to one peer: its bulk connection while that works, else the link (a
    bulk connection that fails other than by a timeout is left for the link)."""

    def __init__(self, fs: FsService, peer: NodeId) -> None:
        self.fs, self.peer = fs, peer
        self.client: FsPeer | None = None
        self.bulk: BulkClient | None = None

    async def store(self, batch: list[tuple[bytes, bytes]]) -> list[bytes]:
        if self.client is None:
            self.client, self.bulk = await self.fs.bulk_or_link(self.peer, None)
        if self.bulk is not None:
            try:
                kept: list[bytes] = await trio.to_thread.run_sync(self.bulk.store, batch)
                return kept
            except (OSError, DecodeError, StreamClosed) as exc:
                self._off_bulk(exc)
        return list(await self.client.store([d for _, d in batch]))

    async def flush(self) -> None:
        if self.bulk is not None:
            try:
                await trio.to_thread.run_sync(self.bulk.flush)
                return
            except (OSError, DecodeError, StreamClosed) as exc:
                self._off_bulk(exc)
        if self.client is not None:  # (a syncfs: what the bulk connection kept too)
            await self.client.flush()

    def _off_bulk(self, exc: Exception) -> None:
        assert self.bulk is not None
        bulk, self.bulk = self.bulk, None
        _give_up(self.fs, bulk, exc)

    async def close(self) -> None:
        if self.bulk is not None:
            self.bulk.close()
        if self.client is not None:
            await self.client.close()


def _give_up(fs: FsService, bulk: BulkClient, exc: Exception) -> None:
    """A bulk connection that failed is closed; the peer goes on on the link, but one
    that timed out hangs (the link would wait as long): StreamClosed, for the next peer."""
    bulk.close()
    if isinstance(exc, TimeoutError):
        raise StreamClosed(f"the bulk connection failed: {exc}") from None
    fs.counters["bulk_fallbacks"] += 1
