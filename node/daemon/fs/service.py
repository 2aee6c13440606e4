"""ColonyFS on one node: what the local API's /v1/fs routes call (docs/colonyfs.md).

Reads of the index (ls, info, labels, snapshots) are NodeCore's FsIndex; writes of it go
through NodeCore requests; bytes move in files.py; directories sync in dirsync.py.
Long operations run as *transfers*: the caller may wait for the result, or take the
transfer's id and poll its progress (the CLI's progress bars).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.ids import NodeId, short_id
from colonynode.node.core import requests as rq
from colonynode.node.core.errors import NotFound
from colonynode.node.core.fs import (
    CHUNK_BYTES,
    FsIndex,
    Revision,
    Snapshot,
    check_label,
    check_name,
    placement,
)
from colonynode.node.daemon.fs import dirsync, files
from colonynode.node.daemon.fs.bulk import BulkClient, BulkServer
from colonynode.node.daemon.fs.chunks import ChunkStore
from colonynode.node.daemon.fs.dirsync import relative_label, safe_join
from colonynode.node.daemon.fs.files import Progress
from colonynode.node.daemon.fs.repair import Repair
from colonynode.node.daemon.fs.transfer import FsPeer, NoAnswer
from colonynode.node.daemon.p2p import DialError, parse_addr
from colonynode.node.daemon.wire import RemoteError, StreamClosed

if TYPE_CHECKING:
    from colonynode.node.daemon.run import Node
    from colonynode.node.datadir import NodeSettings

__all__ = ["FsService"]

TRANSFERS_KEPT = 64  # finished transfers remembered for their callers
TRANSFERS_RUNNING_MAX = 16
TRANSFER_WAIT_MAX_S = 30.0  # the longest GET /v1/fs/transfers/{id}?wait_s= waits
# A node keeps links to some members, not all (node/core/peerset.py); ColonyFS needs the
# holders of its chunks, so it dials them when it needs them:
DIAL_S = 3.0  # a member that does not answer a dial this fast counts as away
UNREACHABLE_S = 30.0  # ... and is not dialled again for this long
UNREACHABLE_MAX = 4096
DIALS_AT_ONCE = 8
NO_BULK_S = 300.0  # a bulk port that did not answer is not dialled again for this long


class FsService:
    def __init__(self, node: Node, root: Path, settings: NodeSettings) -> None:
        self.node = node
        self.me: NodeId = node.identity.node_id
        self.store = ChunkStore(root, settings.fs_quota_bytes)
        self.repair = Repair(self, every_s=settings.fs_repair_s, grace_s=settings.fs_grace_s,
                             gc_grace_s=settings.fs_gc_grace_s)  # fmt: skip
        self.log = logging.getLogger("colonynode.fs")
        self.counters: dict[str, int] = defaultdict(int)
        self.request_s = settings.fs_request_s
        self.bulk = BulkServer(self.store, self.counters, CHUNK_BYTES, files.GET_BATCH_BYTES)
        self.transfers: OrderedDict[str, Progress] = OrderedDict()
        self._nursery: trio.Nursery | None = None
        self._unreachable: dict[NodeId, float] = {}  # member -> not dialled before (trio time)
        # member -> (until when, the bulk port of its that did not answer): that port is
        # not dialled again before then; a new one (the member restarted) is
        self._no_bulk: dict[NodeId, tuple[float, int]] = {}
        self._dials = trio.CapacityLimiter(DIALS_AT_ONCE)
        self._done: dict[str, trio.Event] = {}

    @property
    def index(self) -> FsIndex:
        return self.node.core.fs

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(self.store.scan)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self.repair.run()

    def stats(self) -> dict[str, Any]:
        return {**self.store.stats(), **self.counters, "transfers": len(self.transfers)}

    # -- peers --------------------------------------------------------------------------

    def members(self) -> list[NodeId]:
        roster = self.node.core.membership.roster
        return [m.node_id for m in roster.members] if roster else [self.me]

    async def up_members(self) -> list[NodeId]:
        """This node and the members it is linked to or can link to now (dialled)."""
        others = [m for m in self.members() if m != self.me]
        up = await self.reach(others)
        return [m for m in self.members() if m == self.me or m in up]

    async def reach(self, peers: list[NodeId]) -> set[NodeId]:
        """Those of `peers` this node is linked to, after dialling the others it knows an
        address for (not one that failed a dial within UNREACHABLE_S)."""
        transport = self.node.transport
        linked = set(transport.peers())
        now = trio.current_time()
        todo = [p for p in peers
                if p not in linked and self._unreachable.get(p, -1.0) <= now]  # fmt: skip
        if todo:
            async with trio.open_nursery() as nursery:
                for peer in todo:
                    nursery.start_soon(self._dial, peer)
            linked = set(transport.peers())
        return {p for p in peers if p in linked}

    async def _dial(self, peer: NodeId) -> None:
        addrs = self.node.core.membership.addrs.get(peer, ())
        async with self._dials:
            with trio.move_on_after(DIAL_S):
                for addr in [a for a in addrs if "/p2p/" in a][:2]:
                    try:
                        await self.node.transport.connect(addr)
                        self.counters["dials"] += 1
                        return
                    except DialError:
                        continue
        if len(self._unreachable) >= UNREACHABLE_MAX:
            self._unreachable.clear()
        self._unreachable[peer] = trio.current_time() + UNREACHABLE_S
        self.counters["dials_failed"] += 1

    def holders(self, cid: bytes) -> list[NodeId]:
        """Members in `cid`'s placement order over every member, but those that failed a
        dial lately: where a chunk is, unless the members changed since it was written."""
        now = trio.current_time()
        members = self.members()
        ranked = placement(cid, members, len(members))
        ok = [m for m in ranked if m != self.me and self._unreachable.get(m, -1.0) <= now]
        return ok[: files.HOLDERS_TRIED]

    async def provider_of(self, cid: bytes, tried: set[NodeId]) -> NodeId | None:
        """A holder off the placement (the members changed since the chunk was written):
        a provider the DHT names, else any member up not yet asked."""
        try:
            named = await self.node.call(rq.FsProviders(cid))
        except ColonyError:
            named = ()
        for m in [*named, *await self.up_members()]:
            if m != self.me and m not in tried and await self.reach([NodeId(m)]):
                return NodeId(m)
        return None

    async def open_peer(self, peer: NodeId) -> FsPeer:
        """A stream to `peer`'s ColonyFS, dialling it first if this node is not linked
        to it."""
        if not await self.reach([peer]):
            raise StreamClosed(f"{short_id(peer)} cannot be reached")
        return FsPeer(await self.node.transport.open(peer, "fs"), self.request_s)

    async def bulk_or_link(
        self, peer: NodeId, client: FsPeer | None
    ) -> tuple[FsPeer, BulkClient | None]:
        """A stream to `peer` on the link (`client`, or a new one), and a connection to its
        bulk port where it has one, with a ticket asked for on that stream."""
        client = client or await self.open_peer(peer)
        try:
            return client, await self._open_bulk(peer, client)
        except NoAnswer:  # it hangs: the link would wait as long (the caller moves on)
            await client.close()
            raise
        except (StreamClosed, RemoteError):  # a member that knows no tickets (older)
            await client.close()  # its end reset the stream
            return await self.open_peer(peer), None

    async def _open_bulk(self, peer: NodeId, client: FsPeer) -> BulkClient | None:
        ticket = await client.bulk_ticket()
        if not ticket.port:
            return None
        until, port = self._no_bulk.get(peer, (-1.0, 0))
        if port == ticket.port and until > trio.current_time():
            return None  # it did not answer there lately: the link (no dial to wait out)
        linked = self.node.transport.remote_host(peer)
        hosts = [linked] if linked else []
        for addr in self.node.core.membership.addrs.get(peer, ()):
            try:
                hosts.append(parse_addr(addr)[0])
            except DialError:
                continue
        hosts = list(dict.fromkeys(hosts))
        try:
            bulk = await trio.to_thread.run_sync(
                BulkClient.connect, hosts, ticket.port, ticket.token, ticket.key,
                CHUNK_BYTES, self.request_s,
            )  # fmt: skip
        except OSError as exc:  # a firewall, say: the link serves it for NO_BULK_S
            if len(self._no_bulk) >= UNREACHABLE_MAX:
                self._no_bulk.clear()
            self._no_bulk[peer] = (trio.current_time() + NO_BULK_S, ticket.port)
            self.counters["bulk_dials_failed"] += 1
            self.log.info("no bulk connection to %s: %s", short_id(peer), exc)
            return None
        self.counters["bulk_connections"] += 1
        return bulk

    # -- transfers ----------------------------------------------------------------------

    async def run_transfer(
        self, kind: str, work: Callable[[Progress], Awaitable[Any]], *, detach: bool
    ) -> dict[str, Any]:
        """Run `work`; its progress's JSON when done, or at once (`detach`)."""
        running = sum(1 for t in self.transfers.values() if t.state == "running")
        if running >= TRANSFERS_RUNNING_MAX:
            raise ColonyError(f"{running} transfers are running; wait for one to end")
        progress = Progress(kind)
        self.transfers[progress.id] = progress
        done = self._done[progress.id] = trio.Event()
        while len(self.transfers) > TRANSFERS_KEPT:
            oldest = next(iter(self.transfers))
            if self.transfers[oldest].state == "running":
                break
            gone, _ = self.transfers.popitem(last=False)
            self._done.pop(gone, None)

        async def go() -> None:
            try:
                progress.result = await work(progress)
                progress.state = "done"
            except Exception as exc:  # the transfer fails; the node serves on
                progress.state, progress.error = "failed", _reason(exc)
                self.counters["transfers_failed"] += 1
                if not isinstance(exc, ColonyError | OSError):
                    self.log.exception("a %s transfer failed", kind)
            finally:
                done.set()

        assert self._nursery is not None
        self._nursery.start_soon(go)
        if not detach:
            await done.wait()
            if progress.state == "failed":
                raise ColonyError(progress.error)
        return progress.json()

    async def transfer(self, tid: str, wait_s: float = 0.0) -> dict[str, Any]:
        """A transfer's progress, once it ended or `wait_s` passed (a long-poll)."""
        progress, done = self.transfers.get(tid), self._done.get(tid)
        if progress is None or done is None:
            raise NotFound(f"no transfer {tid} on this node")
        with trio.move_on_after(min(max(wait_s, 0.0), TRANSFER_WAIT_MAX_S)):
            await done.wait()
        return progress.json()

    # -- files --------------------------------------------------------------------------

    async def put(self, path: str, label: str, name: str, *, detach: bool) -> dict[str, Any]:
        source = _local_file(path)
        label, name = check_label(label), check_name(name or source.name)

        async def work(progress: Progress) -> Any:
            return (await files.upload(self, [(source, label, name)], progress))[0]

        return await self.run_transfer("put", work, detach=detach)

    def _live(self, label: str, name: str) -> list[Revision]:
        """The live revisions of a file (oldest first), or NotFound."""
        label, name = check_label(label), check_name(name)
        live = self.index.live(label, name)
        if not live:
            raise NotFound(f"no file {name!r} in {label}")
        return live

    def revision(self, label: str, name: str, revision: str = "") -> tuple[Revision, int]:
        live = self._live(label, name)
        if not revision:
            return live[-1], len(live)
        for i, rev in enumerate(live):
            if rev.id == revision:
                return rev, i + 1
        raise NotFound(f"{label}/{name} has no revision {revision}")

    async def get(
        self, label: str, name: str, directory: str, revision: str, *, detach: bool
    ) -> dict[str, Any]:
        rev, seq = self.revision(label, name, revision)
        target = _local_dir(directory, create=True) / rev.name

        async def work(progress: Progress) -> Any:
            await files.download(self, [(rev, target)], progress)
            return {"path": str(target), **rev.json(seq)}

        return await self.run_transfer("get", work, detach=detach)

    def ls(self, label: str) -> list[dict[str, Any]]:
        label = check_label(label)
        return [rev.json(seq) for rev, seq in self.index.files(label)]

    def info(self, label: str, name: str) -> list[dict[str, Any]]:
        return [rev.json(i + 1) for i, rev in enumerate(self._live(label, name))]

    def labels(self) -> list[dict[str, Any]]:
        return [{"label": k, "files": v} for k, v in self.index.label_counts().items()]

    async def remove(self, label: str, name: str) -> Any:
        return await self.node.call(rq.FsRemove(check_label(label), check_name(name)))

    async def remove_label(self, label: str) -> Any:
        return await self.node.call(rq.FsRemove(check_label(label)))

    # -- snapshots ----------------------------------------------------------------------

    async def snapshot_create(self, label: str, name: str) -> Any:
        return await self.node.call(rq.FsSnapshot(label, name))

    def snapshots(self) -> list[dict[str, Any]]:
        snaps = sorted(self.index.snapshots.values(), key=lambda s: (s.time_ns, s.id))
        return [s.json() for s in snaps]

    def _snapshot(self, key: str) -> Snapshot:
        """A snapshot by id or by name."""
        snap = self.index.snapshots.get(key) or self.index.snapshot_named(check_name(key))
        if snap is None:
            raise NotFound(f"no snapshot named {key!r}")
        return snap

    def snapshot(self, name: str) -> dict[str, Any]:
        snap = self._snapshot(name)
        out = snap.json()
        out["fileids"] = [f[2] for f in snap.files]
        return out

    async def snapshot_remove(self, name: str) -> Any:
        return await self.node.call(rq.FsSnapshotRemove(check_name(name)))

    async def snapshot_download(self, name: str, directory: str, *, detach: bool) -> Any:
        snap = self._snapshot(name)
        root = _local_dir(directory, create=True)
        items = []
        for label, fname, rid in snap.files:
            rev = self.index.by_id.get(rid)
            if rev is None:
                raise NotFound(f"snapshot {name} names revision {rid}, unknown here yet")
            items.append((rev, safe_join(root, relative_label(label, snap.label), fname)))

        async def work(progress: Progress) -> Any:
            written = await files.download(self, items, progress)
            return {"snapshot": snap.json(), "downloaded": len(written), "dir": str(root)}

        return await self.run_transfer("snapshot-download", work, detach=detach)

    # -- sync ---------------------------------------------------------------------------

    async def sync(
        self, label: str, directory: str, *, keeplocal: bool, dry: bool, detach: bool
    ) -> dict[str, Any]:
        label = check_label(label)
        root = _local_dir(directory, create=not dry, missing_ok=dry)

        async def work(progress: Progress) -> Any:
            return await dirsync.sync(self, label, root, keeplocal=keeplocal, dry=dry,
                                      progress=progress)  # fmt: skip

        return await self.run_transfer("sync", work, detach=detach)


def _reason(exc: BaseException) -> str:
    """The first ColonyError or OSError in `exc` (an exception group's too), as a line."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            reason = _reason(inner)
            if reason:
                return reason
    if isinstance(exc, ColonyError | OSError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _local_file(path: str) -> Path:
    p = Path(path)
    if not p.is_absolute():
        raise ValidationError("give the file as an absolute path (the CLI does)")
    if not p.is_file():
        raise ValidationError(f"{path} is not a file")
    return p


def _local_dir(path: str, *, create: bool, missing_ok: bool = False) -> Path:
    p = Path(path)
    if not p.is_absolute():
        raise ValidationError("give the directory as an absolute path (the CLI does)")
    if create:
        p.mkdir(parents=True, exist_ok=True)
    if missing_ok and not p.exists():
        return p
    if not p.is_dir():
        raise ValidationError(f"{path} is not a directory")
    return p
