"""Moving a file's bytes: upload (chunk, store on the placement's members, commit) and
download (fetch each chunk from a holder, verify, write), with bounded memory.

Upload. Each file is read in CHUNK_BYTES pieces (off the Trio thread); each chunk goes to
the first R of its placement among the members that are up (NodeCore's `placement`), this
node included when it ranks there. Chunks for one peer travel in requests of up to
BATCH_BYTES through a queue of QUEUE_BATCHES, so a fast reader waits for a slow network,
not memory. When every chunk is sent, each peer is asked to flush (one sync of its store),
and only then are the revisions committed (NodeCore, held by a majority of voters): the
answer to a put means every chunk is durable on min(2, members up) nodes and the record on
a majority of voters. A file of more than INLINE_CHUNKS_MAX chunks names manifest chunks.

Download. Chunks are fetched by FETCHERS tasks, each request to the first holder that is
connected in the chunk's placement order over every member (a chunk that a holder lacks,
or whose bytes do not hash to its id, is counted and asked of the next), written at their
offsets in a temporary file beside the target, which is renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId, short_id
from colonynode.node.core import requests as rq
from colonynode.node.core.crons import may_submit
from colonynode.node.core.fs import (
    CHUNK_BYTES,
    HASH_BYTES,
    INLINE_CHUNKS_MAX,
    REPLICAS,
    Revision,
    placement,
    runs,
)
from colonynode.node.daemon.fs.bulk import IDS_MAX
from colonynode.node.daemon.fs.chunks import chunk_id
from colonynode.node.daemon.fs.peers import Clients, PutLine, Take
from colonynode.node.daemon.fs.transfer import BATCH_BYTES
from colonynode.node.daemon.wire import RemoteError, StreamClosed

if TYPE_CHECKING:
    from colonynode.node.daemon.fs.service import FsService

__all__ = ["Progress", "download", "upload"]

QUEUE_BATCHES = 4  # batches waiting for one peer at most
SENDERS_A_PEER = 2  # store requests in flight to one peer (a stream each)
READ_CHUNKS = 4  # chunks read from a file in one thread hop
FETCHERS = 6  # requests in flight for a get (a stream each; a link has 16)
GET_BATCH_BYTES = 4 * BATCH_BYTES  # the chunk bytes a get asks a holder for at once
HOLDERS_TRIED = 8  # connected holders asked for a chunk, in placement order


class TransferFailed(ColonyError):
    """A put or get could not be completed (the reason says which chunk or peer)."""


@dataclass
class Progress:
    """What a transfer has done so far (the CLI's progress bars read it)."""

    kind: str
    bytes_total: int = 0
    bytes_done: int = 0
    files_total: int = 0
    files_done: int = 0
    state: str = "running"  # running, done, failed
    result: Any = None
    error: str = ""
    id: str = field(default_factory=lambda: secrets.token_hex(8))

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state,
                "bytes_total": self.bytes_total, "bytes_done": self.bytes_done,
                "files_total": self.files_total, "files_done": self.files_done,
                "result": self.result, "error": self.error}  # fmt: skip


# -- upload ------------------------------------------------------------------------------


class _Pushes:
    """Per-peer queues of chunk batches, their senders, and which chunk reached whom."""

    def __init__(self, fs: FsService, nursery: trio.Nursery) -> None:
        self.fs = fs
        self.nursery = nursery
        self.queues: dict[NodeId, trio.MemorySendChannel[list[tuple[bytes, bytes]]]] = {}
        self.pending: dict[NodeId, list[tuple[bytes, bytes]]] = {}
        self.pending_bytes: dict[NodeId, int] = {}
        self.copies: dict[bytes, set[NodeId]] = {}  # chunk -> the peers holding it durably
        self.errors: dict[NodeId, str] = {}

    async def add(self, cid: bytes, data: bytes, targets: list[NodeId]) -> None:
        for peer in targets:
            if self.pending_bytes.get(peer, 0) + len(data) > BATCH_BYTES:
                await self._send(peer)
            self.pending.setdefault(peer, []).append((cid, data))
            self.pending_bytes[peer] = self.pending_bytes.get(peer, 0) + len(data)
            full = len(self.pending[peer]) >= IDS_MAX  # a request names at most these
            if full or self.pending_bytes[peer] + CHUNK_BYTES > BATCH_BYTES:  # or the next
                await self._send(peer)  # may not fit

    async def _send(self, peer: NodeId) -> None:
        batch = self.pending.pop(peer, [])
        self.pending_bytes[peer] = 0
        if not batch or peer in self.errors:
            return
        queue = self.queues.get(peer)
        if queue is None:
            send, receive = trio.open_memory_channel[list[tuple[bytes, bytes]]](QUEUE_BATCHES)
            self.queues[peer] = queue = send
            for _ in range(1 if peer == self.fs.me else SENDERS_A_PEER):
                self.nursery.start_soon(self._sender, peer, receive.clone())
            receive.close()
        await queue.send(batch)

    async def finish(self) -> None:
        for peer in list(self.pending):
            await self._send(peer)
        for queue in self.queues.values():
            await queue.aclose()

    async def _sender(
        self, peer: NodeId, queue: trio.MemoryReceiveChannel[list[tuple[bytes, bytes]]]
    ) -> None:
        """Send `peer` its batches, then ask it to flush; the chunks count as copies only
        then. After a failure the queue is drained (the producer must not wait on a
        dead peer)."""
        fs = self.fs
        line = None if peer == fs.me else PutLine(fs, peer)
        stored: list[bytes] = []
        try:
            async with queue:
                async for batch in queue:
                    if peer in self.errors:
                        continue
                    try:
                        if line is None:
                            datas, ids = [d for _, d in batch], [c for c, _ in batch]
                            stored += await fs.store.put(datas, ids)
                        else:
                            stored += await line.store(batch)
                        fs.counters["chunks_sent"] += len(batch)
                    except (StreamClosed, RemoteError, ColonyError, OSError) as exc:
                        self._failed(peer, exc)
            if peer not in self.errors:
                try:
                    await (fs.store.flush() if line is None else line.flush())
                except (StreamClosed, RemoteError, ColonyError, OSError) as exc:
                    self._failed(peer, exc)
            if peer not in self.errors:
                for cid in stored:
                    self.copies.setdefault(cid, set()).add(peer)
        finally:
            if line is not None:
                await line.close()

    def _failed(self, peer: NodeId, exc: BaseException) -> None:
        self.errors[peer] = str(exc) or type(exc).__name__
        self.fs.counters["push_failures"] += 1
        self.fs.log.info("storing chunks on %s failed: %s", short_id(peer), exc)


def _open_and_read(path: Path, whole: Any, n: int) -> tuple[Any, list[tuple[bytes, bytes]]]:
    """The first `n` chunks of `path` (id, bytes), and the open file if there may be
    more (a small file costs one thread hop)."""
    f = open(path, "rb")  # noqa: SIM115 (closed below, or by the caller)
    datas = _read_chunks(f, whole, n)
    if len(datas) < n:
        f.close()
        return None, datas
    return f, datas


def _read_chunks(f: Any, whole: Any, n: int) -> list[tuple[bytes, bytes]]:
    """Up to `n` chunks (id, bytes) of `f`, hashed here (called off the Trio thread)."""
    out = []
    for _ in range(n):
        data = f.read(CHUNK_BYTES)
        if not data:
            break
        whole.update(data)
        out.append((chunk_id(data), data))
    return out


async def upload(
    fs: FsService, files: list[tuple[Path, str, str]], progress: Progress
) -> list[dict[str, Any]]:
    """Store `files` ((path, label, name)) and commit a revision of each; their JSON."""
    may_submit(fs.node.core)  # before a chunk is sent: the commit would refuse it
    up = await fs.up_members()
    r = min(REPLICAS, len(up))
    need = min(2, len(up))
    progress.files_total = len(files)
    progress.bytes_total = sum(p.stat().st_size for p, _, _ in files)
    commits: list[dict[str, Any]] = []
    sent: list[bytes] = []  # every chunk put, data and manifests: each must be durable
    async with trio.open_nursery() as nursery:
        pushes = _Pushes(fs, nursery)

        async def put_chunk(data: bytes, cid: bytes | None = None) -> bytes:
            cid = cid or chunk_id(data)
            await pushes.add(cid, data, placement(cid, up, r))
            sent.append(cid)
            return cid

        for path, label, name in files:
            whole = hashlib.sha256()
            ids: list[bytes] = []
            size = 0
            f, datas = await trio.to_thread.run_sync(_open_and_read, path, whole, READ_CHUNKS)
            try:
                while True:
                    for cid, data in datas:
                        ids.append(await put_chunk(data, cid))
                        size += len(data)
                        progress.bytes_done += len(data)
                    if f is None or len(datas) < READ_CHUNKS:
                        break
                    datas = await trio.to_thread.run_sync(_read_chunks, f, whole, READ_CHUNKS)
            finally:
                if f is not None:
                    f.close()
            tree = len(ids) > INLINE_CHUNKS_MAX
            if tree:
                joined = b"".join(ids)
                ids = [await put_chunk(joined[i : i + CHUNK_BYTES])
                       for i in range(0, len(joined), CHUNK_BYTES)]  # fmt: skip
            commits.append({"label": label, "name": name, "sha256": whole.digest(),
                            "size": size, "chunks": tuple(ids), "tree": tree})  # fmt: skip
            progress.files_done += 1
        await pushes.finish()
    short = [cid for cid in dict.fromkeys(sent) if len(pushes.copies.get(cid, ())) < need]
    if short:
        why = "; ".join(f"{short_id(p)}: {e}" for p, e in sorted(pushes.errors.items()))
        raise TransferFailed(
            f"{len(short)} chunks are not durable on {need} nodes ({why or 'no member took them'});"
            " nothing was committed, try again"
        )
    out: list[dict[str, Any]] = await fs.node.call(rq.FsCommit(tuple(commits)))
    return out


# -- download ----------------------------------------------------------------------------


@dataclass
class _Target:
    path: Path
    tmp: Path
    fd: int


async def chunk_ids(fs: FsService, rev: Revision) -> list[bytes]:
    """A revision's data chunks (a `tree` revision's manifests fetched and read)."""
    if not rev.tree:
        return list(rev.chunks)
    datas = await fetch_chunks(fs, list(rev.chunks))
    joined = b"".join(datas)
    if len(joined) % HASH_BYTES:
        raise TransferFailed(f"a manifest of {rev.label}/{rev.name} is not a list of ids")
    return [joined[i : i + HASH_BYTES] for i in range(0, len(joined), HASH_BYTES)]


async def fetch_chunks(fs: FsService, ids: list[bytes]) -> list[bytes]:
    """The verified bytes of `ids` (small lists: manifests, a snapshot's few chunks)."""
    out: dict[bytes, bytes] = {}
    clients = Clients(fs)
    try:
        for cid in dict.fromkeys(ids):  # one a request: each may be a whole chunk
            await _fetch_into(fs, [cid], lambda c, d: out.__setitem__(c, bytes(d)), clients)
    finally:
        await clients.close()
    return [out[c] for c in ids]


async def _fetch_into(
    fs: FsService,
    ids: list[bytes],
    put: Callable[[bytes, Any], None],
    clients: Clients,
) -> None:
    """Each chunk of `ids` (together at most GET_BATCH_BYTES): from the local store, else
    from its holders; `put(cid, data)` for each, verified."""
    left = list(dict.fromkeys(ids))
    local = await fs.store.get(left)
    for cid, data in zip(list(left), local, strict=True):
        if data is not None:
            put(cid, data)
            left.remove(cid)

    def take(chunks: tuple[Any, ...], wanted: frozenset[bytes]) -> tuple[set[bytes], int]:
        taken: set[bytes] = set()
        for data in chunks:
            cid = chunk_id(data)
            if cid in wanted and cid not in taken:
                put(cid, data)
                taken.add(cid)
        return taken, len(chunks) - len(taken)

    await _fetch_remote(fs, left, clients, take)


async def _fetch_remote(fs: FsService, left: list[bytes], clients: Clients, take: Take) -> None:
    """The chunks of `left` from their holders: the first connected one in placement
    order not yet asked, then the DHT's providers, then any member; each answer handed
    to `take` off the Trio thread (it verifies each chunk's bytes against the ids asked
    for: those it took, and how many it refused)."""
    tried: dict[bytes, set[NodeId]] = {cid: set() for cid in left}
    while left:
        asked = tried[left[0]]
        peer = next((p for p in fs.holders(left[0]) if p not in asked), None)
        if peer is None:
            peer = await fs.provider_of(left[0], asked)
        if peer is None:
            raise TransferFailed(
                f"chunk {left[0].hex()[:16]} is on no member this node can reach "
                f"(asked {len(asked)})"
            )
        ask = left[:IDS_MAX]
        for cid in ask:
            tried[cid].add(peer)
        try:
            taken, bad = await clients.fetch(peer, ask, take)
        except (StreamClosed, RemoteError, ColonyError) as exc:
            fs.counters["fetch_failures"] += 1
            fs.log.info("fetch from %s failed: %s", short_id(peer), exc)
            await clients.drop(peer)
            continue
        fs.counters["bad_chunks"] += bad
        fs.counters["chunks_fetched"] += len(taken)
        left = [c for c in left if c not in taken]


def _by_holder(
    fs: FsService, work: list[tuple[int, int, bytes, int]]
) -> list[tuple[int, int, bytes, int]]:
    """`work` grouped by each chunk's first connected holder, so a batch of small chunks
    is one request to one peer (what this node holds it reads itself, whatever the batch)."""

    def first(item: tuple[int, int, bytes, int]) -> bytes:
        holders = fs.holders(item[2])
        return bytes(holders[0]) if holders else b"\xff"

    if len(work) < 2:
        return work
    return sorted(work, key=first)  # stable: a big file's chunks keep their order


async def download(
    fs: FsService, items: Iterable[tuple[Revision, Path]], progress: Progress
) -> list[str]:
    """Write each revision's bytes to its path (parent directories made); the paths."""
    items = list(items)
    progress.files_total += len(items)
    progress.bytes_total += sum(rev.size for rev, _ in items)
    targets: list[_Target] = []
    work: list[tuple[int, int, bytes, int]] = []  # (target, offset, chunk, size)
    try:
        for rev, path in items:
            ids = await chunk_ids(fs, rev)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.cfs-{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            targets.append(_Target(path, tmp, fd))
            for i, cid in enumerate(ids):
                size = min(CHUNK_BYTES, rev.size - i * CHUNK_BYTES)
                work.append((len(targets) - 1, i * CHUNK_BYTES, cid, size))
        batches = runs(_by_holder(fs, work), lambda item: item[3], GET_BATCH_BYTES)
        send, receive = trio.open_memory_channel[list[tuple[int, int, bytes, int]]](len(batches))
        for batch in batches:
            send.send_nowait(batch)
        send.close()
        async with trio.open_nursery() as nursery:
            for _ in range(FETCHERS):
                nursery.start_soon(_fetcher, fs, receive.clone(), targets, progress)
        receive.close()
        done = []
        for t in targets:
            os.close(t.fd)
            t.fd = -1
            os.replace(t.tmp, t.path)
            done.append(str(t.path))
            progress.files_done += 1
        return done
    finally:
        for t in targets:
            if t.fd >= 0:
                os.close(t.fd)
            t.tmp.unlink(missing_ok=True)  # gone once renamed; else what a failure left


async def _fetch_batch(
    fs: FsService,
    batch: list[tuple[int, int, bytes, int]],
    targets: list[_Target],
    clients: Clients,
) -> None:
    """Write one batch's chunks at their offsets: those this node holds, then the rest
    from their holders in placement order; each step's reads, hashing and writes in one
    thread hop."""
    where: dict[bytes, list[tuple[int, int]]] = {}
    for t, offset, cid, _ in batch:
        where.setdefault(cid, []).append((t, offset))
    store = fs.store

    def local() -> tuple[list[bytes], list[int]]:
        missing, freed = [], []
        for cid, spots in where.items():
            data, bad = store.read_verified(cid)
            if data is None:
                missing.append(cid)
                if bad:
                    freed.append(bad)
                continue
            for t, offset in spots:
                os.pwrite(targets[t].fd, data, offset)
        return missing, freed

    left, freed = await trio.to_thread.run_sync(local)
    store.count_bad(freed)

    def take(chunks: tuple[Any, ...], wanted: frozenset[bytes]) -> tuple[set[bytes], int]:
        return _verify_and_write(chunks, wanted, where, targets)

    await _fetch_remote(fs, left, clients, take)


def _verify_and_write(
    chunks: tuple[Any, ...],
    wanted: frozenset[bytes],
    where: dict[bytes, list[tuple[int, int]]],
    targets: list[_Target],
) -> tuple[set[bytes], int]:
    """Write each chunk that hashes to one we asked for at its offsets (off the Trio
    thread): (the ids written, how many were bytes of no chunk we asked for)."""
    written: set[bytes] = set()
    bad = 0
    for data in chunks:
        cid = chunk_id(data)
        if cid not in wanted or cid in written:
            bad += 1
            continue
        for t, offset in where[cid]:
            os.pwrite(targets[t].fd, data, offset)
        written.add(cid)
    return written, bad


async def _fetcher(
    fs: FsService,
    queue: trio.MemoryReceiveChannel[list[tuple[int, int, bytes, int]]],
    targets: list[_Target],
    progress: Progress,
) -> None:
    clients = Clients(fs)
    try:
        async with queue:
            async for batch in queue:
                await _fetch_batch(fs, batch, targets, clients)
                progress.bytes_done += sum(b[3] for b in batch)
    finally:
        await clients.close()
