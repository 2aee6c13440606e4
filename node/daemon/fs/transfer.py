"""The chunk protocol (``/colony/<name>/fs/1``): request streams between members.

    Store(chunks)  -> Stored(ids)     keep these chunks (ids: the receiver's own hashes)
    Flush()        -> Flushed()       make every chunk this stream stored durable
    Fetch(ids)     -> Chunks(chunks, missing)
    Has(ids)       -> Holding(ids)    which of these this node holds durably
    Verify(ids)    -> Holding(ids)    read these again (a getter found one corrupt): each
                                      copy that is is deleted; the ids still held
    BulkAsk()      -> BulkTicket(port, token, key)   a connection to the bulk port (bulk.py)

A client keeps one stream a peer for an operation and at most one request in flight on
it (a stream holds STREAM_FRAMES_MAX unread frames; a reader that runs behind never
overflows it). A request's chunks total at most BATCH_BYTES, so every frame is under the
link's 1 MiB frame cap. A stream ends with the operation; an error answer (a full quota)
is an error frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from colonynode.core.codec import MessageCodec
from colonynode.core.errors import ColonyError, DecodeError
from colonynode.core.limits import WIRE
from colonynode.node.core.fs import CHUNK_BYTES
from colonynode.node.daemon.fs.bulk import IDS_MAX, BulkServer
from colonynode.node.daemon.fs.chunks import ChunkStore
from colonynode.node.daemon.wire import FrameStream, RemoteError, StreamClosed

__all__ = ["BATCH_BYTES", "FS_CODEC", "IDS_MAX", "FsPeer", "NoAnswer", "serve_chunks"]

log = logging.getLogger("colonynode.fs")

BATCH_BYTES = 3 * CHUNK_BYTES  # the chunk bytes of one request or answer at most
REQUEST_S = 60.0  # a request's answer at most this late
FLUSH_S = 600.0  # a flush's: it syncs a disk (gigabytes, on an SD card, take minutes)


@dataclass(frozen=True, slots=True)
class Store:
    chunks: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Stored:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Flush:
    pass


@dataclass(frozen=True, slots=True)
class Flushed:
    pass


@dataclass(frozen=True, slots=True)
class Fetch:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Chunks:
    chunks: tuple[bytes, ...]
    missing: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Has:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Holding:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BulkAsk:
    pass


@dataclass(frozen=True, slots=True)
class Verify:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BulkTicket:
    port: int  # 0: this node has no bulk path
    token: bytes
    key: bytes


FS_CODEC = MessageCodec(
    "fs",
    {1: Store, 2: Stored, 3: Flush, 4: Flushed, 5: Fetch, 6: Chunks, 7: Has, 8: Holding,
     9: BulkAsk, 10: BulkTicket, 11: Verify},
    WIRE,
)  # fmt: skip
assert WIRE.str_bytes_max >= CHUNK_BYTES and WIRE.frame_bytes_max >= BATCH_BYTES + 64 * 1024


def _one(msgs: list[Any], kind: type) -> Any:
    if len(msgs) != 1 or not isinstance(msgs[0], kind):
        raise DecodeError(f"expected one {kind.__name__}")
    return msgs[0]


async def serve_chunks(
    store: ChunkStore, counters: dict[str, int], bulk: BulkServer, stream: Any
) -> None:
    """Answer one peer's requests on one stream until it ends."""
    frames = FrameStream(stream, FS_CODEC)
    try:
        while True:
            try:
                msgs = await frames.read_batch()
            except StreamClosed:
                return
            if len(msgs) != 1:
                raise DecodeError("one request a frame")
            msg = msgs[0]
            if isinstance(msg, Store):
                if sum(len(c) for c in msg.chunks) > BATCH_BYTES:
                    raise DecodeError("a Store over the batch cap")
                try:
                    ids = await store.put(list(msg.chunks))
                except ColonyError as exc:
                    await frames.write_error("refused", str(exc))
                    continue
                counters["chunks_received"] += len(ids)
                await frames.write_batch([Stored(tuple(ids))])
            elif isinstance(msg, Flush):
                await store.flush()
                await frames.write_batch([Flushed()])
            elif isinstance(msg, Fetch):
                await frames.write_batch([await _fetch(store, msg.ids, counters)])
            elif isinstance(msg, Has):
                await store.flush()  # what it says it holds is durable, not just written
                held = await trio.to_thread.run_sync(_held, store, msg.ids)
                await frames.write_batch([Holding(held)])
            elif isinstance(msg, Verify):
                good = await store.get(list(msg.ids[:IDS_MAX]))  # deletes what is corrupt
                held = tuple(c for c, data in zip(msg.ids, good, strict=False) if data)
                await frames.write_batch([Holding(held)])
            elif isinstance(msg, BulkAsk):
                await frames.write_batch([BulkTicket(*bulk.ticket())])
            else:
                raise DecodeError(f"{type(msg).__name__} is not a request")
    except StreamClosed:  # the link went while an answer was written: nobody to tell
        return
    except (DecodeError, RemoteError) as exc:
        counters["bad_requests"] += 1
        log.info("a bad chunk request: %s", exc)
        await frames.reset()


def _held(store: ChunkStore, ids: tuple[bytes, ...]) -> tuple[bytes, ...]:
    return tuple(c for c in ids if store.has(c))


async def _fetch(store: ChunkStore, ids: tuple[bytes, ...], counters: dict[str, int]) -> Chunks:
    got = await store.get(list(ids))
    chunks: list[bytes] = []
    missing: list[bytes] = []
    size = 0
    for cid, data in zip(ids, got, strict=True):
        if data is None or size + len(data) > BATCH_BYTES:
            missing.append(cid)
        else:
            chunks.append(data)
            size += len(data)
    counters["chunks_served"] += len(chunks)
    return Chunks(tuple(chunks), tuple(missing))


class NoAnswer(StreamClosed):
    """A peer answered no request in time: it hangs (with its link up, or not)."""


class FsPeer:
    """A client's stream to one peer for one operation: one request at a time, each
    answered within `request_s` (REQUEST_S, or node.json's `fs_request_s`): a peer that
    hangs with its link up fails the request."""

    def __init__(self, frames: FrameStream, request_s: float = REQUEST_S) -> None:
        self.frames = frames
        self.request_s = request_s

    async def _ask(self, msg: Any, kind: type, within_s: float | None = None) -> Any:
        within_s = within_s or self.request_s
        with trio.move_on_after(within_s):
            await self.frames.write_batch([msg])
            return _one(await self.frames.read_batch(), kind)
        await self.frames.reset()
        raise NoAnswer(f"no answer to {type(msg).__name__} within {within_s:.0f} s")

    async def store(self, chunks: list[bytes]) -> tuple[bytes, ...]:
        got: Stored = await self._ask(Store(tuple(chunks)), Stored)
        return got.ids

    async def flush(self) -> None:
        await self._ask(Flush(), Flushed, FLUSH_S)

    async def fetch(self, ids: list[bytes]) -> Chunks:
        got: Chunks = await self._ask(Fetch(tuple(ids)), Chunks)
        return got

    async def bulk_ticket(self) -> BulkTicket:
        got: BulkTicket = await self._ask(BulkAsk(), BulkTicket)
        return got

    async def verify(self, ids: list[bytes]) -> set[bytes]:
        got: Holding = await self._ask(Verify(tuple(ids)), Holding)
        return set(got.ids)

    async def has(self, ids: list[bytes]) -> set[bytes]:
        got: Holding = await self._ask(Has(tuple(ids)), Holding)
        return set(got.ids)

    async def close(self) -> None:
        await self.frames.close()
