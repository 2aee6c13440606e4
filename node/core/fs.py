"""ColonyFS's metadata and placement (part of NodeCore, DESIGN.md §9; docs/colonyfs.md).

A file is (label, name); every upload is a new *revision* (id, SHA-256, size, chunk ids,
author, time). Revisions travel as signed gossip records, so every member holds the
whole index and `fs ls`, `fs info` and a sync's plan are local reads:

- ``fs-put`` ``{"files": [revision, ...]}``: revisions added (one record for many files);
- ``fs-rm`` ``{"files": [{"l": label, "n": name, "ids": [id, ...]}]}``: those revisions
  removed (a tombstone: a removal names what it saw, so a revision it did not see lives on);
- ``fs-snapshot`` ``{"id", "name", "label", "t", "files": [[label, name, id], ...]}``: the
  latest revision of every file under a label, frozen; ``fs-snapshot-rm`` ``{"id"}``.

Each record is also held by a majority of voters before the request that made it is
answered (crons.hold_definition), so an acknowledged put survives its writer.

Merging is order-free: a file's revisions are the union of those added less those
removed, sorted by (time_ns, id); the latest is the greatest. Its `seq` is its place in
that order (1-based), the same on every node once the records have spread.

Content lives in content-addressed chunks of CHUNK_BYTES; a revision names them in file
order, or, past INLINE_CHUNKS_MAX, names *manifest* chunks whose bytes are the data
chunks' ids (32 bytes each) in order (`tree`). `placement` says which members hold a
chunk: the first R of a rendezvous hash over the members.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from colonynode.core.codec import encode
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.ids import NodeId
from colonynode.node.core import requests as rq
from colonynode.node.core.crons import hold_definition, may_submit
from colonynode.node.core.errors import NotFound

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

__all__ = [
    "CHUNK_BYTES",
    "FS_KIND",
    "INLINE_CHUNKS_MAX",
    "REPLICAS",
    "FsIndex",
    "Revision",
    "Snapshot",
    "check_label",
    "check_name",
    "placement",
    "plan_repair",
]

FS_KIND = "fs-"  # the prefix of every ColonyFS record kind
PUT_KIND, RM_KIND = "fs-put", "fs-rm"
SNAPSHOT_KIND, SNAPSHOT_RM_KIND = "fs-snapshot", "fs-snapshot-rm"

CHUNK_BYTES = 256 * 1024  # a chunk's bytes at most (docs/colonyfs.md: why fixed-size)
HASH_BYTES = 32
INLINE_CHUNKS_MAX = 256  # chunk ids a revision names itself; beyond, manifest chunks
MANIFESTS_MAX = 1024  # 1024 manifests of 8,192 chunks of 256 KiB: 2 TiB a file
REPLICAS = 3  # R: members holding each chunk (fewer in smaller colonies)
PART_BYTES_MAX = 255  # one path component (a name, a label's part), as on most file systems
LABEL_BYTES_MAX = 1024
RECORD_BYTES_MAX = 160 * 1024  # one fs record's body, about (a gossip payload is <= 256 KiB)
FILES_A_REQUEST_MAX = 100_000
SNAPSHOTS_MAX = 10_000
ID_BYTES = 16  # a revision's or snapshot's id: 16 random bytes, as hex
T = TypeVar("T")


def _check_part(part: str, what: str) -> None:
    if part in ("", ".", ".."):
        raise ValidationError(f"{what} may not have an empty, '.' or '..' part")
    if "\0" in part or "\\" in part:
        raise ValidationError(f"{what} may not hold NUL or backslash characters")
    if len(part.encode()) > PART_BYTES_MAX:
        raise ValidationError(f"{what} has a part over {PART_BYTES_MAX} bytes")


def check_label(label: str) -> str:
    """A label as ``/a/b`` (a leading '/' added, a trailing one dropped), or ValidationError
    for `..`, `.`, empty parts, NUL, over-long parts or an over-long label."""
    if not isinstance(label, str) or not label.strip("/"):
        raise ValidationError("a label is a path such as /data or /data/raw")
    if len(label.encode()) > LABEL_BYTES_MAX:
        raise ValidationError(f"a label is at most {LABEL_BYTES_MAX} bytes")
    parts = label.strip("/").split("/")
    for part in parts:
        _check_part(part, "a label")
    return "/" + "/".join(parts)


def check_name(name: str) -> str:
    """A file name: one path component (no '/', '.', '..', NUL, at most 255 bytes)."""
    if not isinstance(name, str) or "/" in name:
        raise ValidationError("a file name is one path component, without '/'")
    _check_part(name, "a file name")
    return name


def under(label: str, root: str) -> bool:
    """`label` is `root` or one of its sub-labels."""
    return label == root or label.startswith(root.rstrip("/") + "/")


def placement(chunk: bytes, members: Iterable[NodeId], n: int = REPLICAS) -> list[NodeId]:
    """The `n` members that hold `chunk`, in rendezvous order (the same on every node for
    the same members; a member joining or leaving moves only the chunks it ranks in)."""
    ranked = sorted(members, key=lambda m: hashlib.sha256(chunk + bytes(m)).digest())
    return ranked[:n]


@dataclass(frozen=True, slots=True)
class Revision:
    label: str
    name: str
    id: str
    sha256: bytes
    size: int
    chunks: tuple[bytes, ...]  # data chunks in file order, or manifest chunks (`tree`)
    tree: bool
    author: NodeId
    time_ns: int

    def __post_init__(self) -> None:
        if len(self.sha256) != HASH_BYTES or self.size < 0:
            raise ValidationError("a revision has a 32-byte sha256 and a size >= 0")
        if any(len(c) != HASH_BYTES for c in self.chunks):
            raise ValidationError("chunk ids are 32-byte sha256 digests")
        if len(self.chunks) > (MANIFESTS_MAX if self.tree else INLINE_CHUNKS_MAX):
            raise ValidationError("a revision names too many chunks")
        if not 0 < len(self.id) <= 2 * ID_BYTES:
            raise ValidationError("a revision id is 1..32 characters")
        if self.size and not self.chunks:
            raise ValidationError("a revision of bytes names its chunks")

    @property
    def order(self) -> tuple[int, str]:
        return (self.time_ns, self.id)

    def body(self) -> dict[str, Any]:
        return {"l": self.label, "n": self.name, "i": self.id, "h": self.sha256, "s": self.size,
                "c": list(self.chunks), "m": self.tree, "t": self.time_ns}  # fmt: skip

    @classmethod
    def of(cls, body: Any, author: NodeId) -> Revision:
        if not isinstance(body, dict):
            raise ValidationError("a revision is a map")
        try:
            chunks = body["c"]
            if not isinstance(chunks, list):
                raise ValidationError("a revision's chunks are a list")
            rev = cls(check_label(body["l"]), check_name(body["n"]), str(body["i"]),
                      bytes(body["h"]), int(body["s"]), tuple(bytes(c) for c in chunks),
                      bool(body["m"]), author, int(body["t"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"a malformed revision: {exc}") from None
        return rev

    def json(self, seq: int) -> dict[str, Any]:
        """ColonyOS's File fields (`checksumalg` SHA256), and ours."""
        return {"label": self.label, "name": self.name, "fileid": self.id, "seq": seq,
                "checksum": self.sha256.hex(), "checksumalg": "SHA256", "size": self.size,
                "added_ns": self.time_ns, "author": bytes(self.author).hex(),
                "chunks": len(self.chunks), "tree": self.tree}  # fmt: skip


@dataclass(slots=True)
class FileEntry:
    revisions: dict[str, Revision] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)

    def live(self) -> list[Revision]:
        revs = [r for i, r in self.revisions.items() if i not in self.removed]
        return sorted(revs, key=lambda r: r.order)

    def latest(self) -> tuple[Revision, int] | None:
        live = self.live()
        return (live[-1], len(live)) if live else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    name: str
    label: str
    files: tuple[tuple[str, str, str], ...]  # (label, name, revision id)
    author: NodeId
    time_ns: int

    def json(self) -> dict[str, Any]:
        return {"snapshotid": self.id, "name": self.name, "label": self.label,
                "fileids": [f[2] for f in self.files], "files": len(self.files),
                "added_ns": self.time_ns}  # fmt: skip


class FsIndex:
    """Every file, revision and snapshot of the colony, as this node's records say."""

    def __init__(self) -> None:
        self.labels: dict[str, dict[str, FileEntry]] = {}
        self.by_id: dict[str, Revision] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.removed_snapshots: set[str] = set()
        self.counters = {"records_refused": 0, "revisions": 0, "removals": 0}

    # -- records ------------------------------------------------------------------------

    def on_record(self, author: NodeId | None, kind: str, body: Any) -> None:
        if author is None:
            return
        try:
            if kind == PUT_KIND:
                revs = [Revision.of(b, author) for b in _list(body, "files")]
                for rev in revs:
                    self._add(rev)
            elif kind == RM_KIND:
                removals = [_removal(item) for item in _list(body, "files")]
                for label, name, ids in removals:  # all parsed first: whole or refused
                    entry = self.labels.setdefault(label, {}).setdefault(name, FileEntry())
                    entry.removed.update(ids)
                    self.counters["removals"] += len(ids)
            elif kind == SNAPSHOT_KIND:
                self._snapshot(body, author)
            elif kind == SNAPSHOT_RM_KIND:
                sid = str(body["id"])
                self.removed_snapshots.add(sid)
                self.snapshots.pop(sid, None)
        except (ColonyError, KeyError, IndexError, TypeError, ValueError):
            self.counters["records_refused"] += 1

    def _add(self, rev: Revision) -> None:
        held = self.by_id.get(rev.id)
        if held is not None and (held.label, held.name) != (rev.label, rev.name):
            raise ValidationError("a revision id reused for another file")
        entry = self.labels.setdefault(rev.label, {}).setdefault(rev.name, FileEntry())
        if rev.id not in entry.revisions:
            entry.revisions[rev.id] = rev
            self.by_id[rev.id] = rev
            self.counters["revisions"] += 1

    def _snapshot(self, body: Any, author: NodeId) -> None:
        files = tuple((check_label(f[0]), check_name(f[1]), str(f[2]))
                      for f in _list(body, "files"))  # fmt: skip
        snap = Snapshot(str(body["id"]), check_name(body["name"]), check_label(body["label"]),
                        files, author, int(body["t"]))  # fmt: skip
        if snap.id not in self.removed_snapshots and len(self.snapshots) < SNAPSHOTS_MAX:
            self.snapshots[snap.id] = snap

    # -- reads --------------------------------------------------------------------------

    def entry(self, label: str, name: str) -> FileEntry | None:
        return self.labels.get(label, {}).get(name)

    def live(self, label: str, name: str) -> list[Revision]:
        """The live revisions of (label, name), oldest first (seq 1..n); [] for none."""
        entry = self.entry(label, name)
        return entry.live() if entry else []

    def latest(self, label: str, name: str) -> tuple[Revision, int] | None:
        entry = self.entry(label, name)
        return entry.latest() if entry else None

    def files(self, label: str, *, recursive: bool = False) -> list[tuple[Revision, int]]:
        """The latest revision (and its seq) of every live file in `label` (and its
        sub-labels when `recursive`), by (label, name)."""
        out = []
        for lab in sorted(self.labels):
            if lab == label or (recursive and under(lab, label)):
                for name in sorted(self.labels[lab]):
                    got = self.labels[lab][name].latest()
                    if got is not None:
                        out.append(got)
        return out

    def label_counts(self) -> dict[str, int]:
        """Labels with at least one live file, and how many."""
        out = {}
        for lab, names in self.labels.items():
            n = sum(1 for e in names.values() if e.latest() is not None)
            if n:
                out[lab] = n
        return dict(sorted(out.items()))

    def snapshot_named(self, name: str) -> Snapshot | None:
        named = [s for s in self.snapshots.values() if s.name == name]
        return max(named, key=lambda s: (s.time_ns, s.id)) if named else None

    def referenced(self) -> tuple[set[bytes], set[bytes], list[tuple[Revision, bool]]]:
        """(chunks a live revision or a snapshot names, chunks only removed revisions name,
        the `tree` revisions and whether each lives): a tree revision names its manifest
        chunks only; the data chunks they list are the caller's to add."""
        live: set[bytes] = set()
        dead: set[bytes] = set()
        trees: list[tuple[Revision, bool]] = []
        kept = {f[2] for s in self.snapshots.values() for f in s.files}
        for names in self.labels.values():
            for entry in names.values():
                for rid, rev in entry.revisions.items():
                    alive = rid not in entry.removed or rid in kept
                    (live if alive else dead).update(rev.chunks)
                    if rev.tree:
                        trees.append((rev, alive))
        return live, dead - live, trees


def plan_repair(
    cid: bytes, me: NodeId, alive: Sequence[NodeId], holding: Iterable[NodeId]
) -> list[NodeId]:
    """The members `me` (a holder of `cid`) should copy it to: those of its placement
    among the `alive` members (R of them, fewer if fewer are alive) not known to hold it."""
    held = set(holding) | {me}
    return [m for m in placement(cid, alive, min(REPLICAS, len(alive))) if m not in held]


def _removal(item: Any) -> tuple[str, str, list[str]]:
    ids = item["ids"]
    if not isinstance(ids, list):
        raise ValidationError("a removal's ids are a list")
    return check_label(item["l"]), check_name(item["n"]), [str(i) for i in ids]


def _list(body: Any, key: str) -> list[Any]:
    value = body[key] if isinstance(body, dict) else None
    if not isinstance(value, list):
        raise ValidationError(f"an fs record's {key!r} is a list")
    return value


# -- requests (NodeCore's handlers, registered in service.HANDLERS) ----------------------


def runs(items: Iterable[T], size: Callable[[T], int], limit: int) -> list[list[T]]:
    """`items` in order, in runs of at most `limit` by `size` (an item bigger than `limit`
    goes alone)."""
    out: list[list[T]] = []
    total = limit
    for item in items:
        n = size(item)
        if out and total + n <= limit:
            out[-1].append(item)
            total += n
        else:
            out.append([item])
            total = n
    return out


def _encoded(item: Any) -> int:
    return len(encode(item))


def _publish_held(
    core: NodeCore, kind: str, bodies: list[dict[str, Any]], what: str,
    then: Callable[[ColonyError | None], None],
) -> None:  # fmt: skip
    """Publish each body as a record of `kind`, apply it here, and `then` once a majority
    of voters holds every one (the first error otherwise)."""
    left = [len(bodies)]
    failed: list[ColonyError] = []

    def held(error: ColonyError | None) -> None:
        if error is not None:
            failed.append(error)
        left[0] -= 1
        if left[0] == 0:
            then(failed[0] if failed else None)

    for body in bodies:
        env = core.publish(kind, body)
        core.fs.on_record(core.node_id, kind, body)
        hold_definition(core, core.rng.randbytes(ID_BYTES), env, core.unix_ns(), what, held)


def _answer_when_held(core: NodeCore, rid: int, value: Any) -> Callable[[ColonyError | None], None]:
    def then(error: ColonyError | None) -> None:
        core.answer(rid, None if error else value, error)

    return then


def fs_commit(core: NodeCore, rid: int, req: rq.FsCommit) -> None:
    """New revisions (their chunks already stored): answered with their JSON."""
    may_submit(core)
    if not req.files or len(req.files) > FILES_A_REQUEST_MAX:
        raise ValidationError(f"a commit names 1..{FILES_A_REQUEST_MAX} files")
    now = core.unix_ns()
    revs = []
    for i, f in enumerate(req.files):
        rev = Revision(check_label(f["label"]), check_name(f["name"]),
                       core.rng.randbytes(ID_BYTES).hex(), bytes(f["sha256"]), int(f["size"]),
                       tuple(f["chunks"]), bool(f.get("tree")), core.node_id, now + i)  # fmt: skip
        revs.append(rev)
    items = [r.body() for r in revs]
    bodies = [{"files": run} for run in runs(items, _encoded, RECORD_BYTES_MAX)]
    index = core.fs

    def value() -> list[dict[str, Any]]:
        out = []
        for rev in revs:
            live = index.live(rev.label, rev.name)
            seq = next((i + 1 for i, r in enumerate(live) if r.id == rev.id), 0)
            out.append(rev.json(seq))
        return out

    def then(error: ColonyError | None) -> None:
        core.answer(rid, None if error else value(), error)

    _publish_held(core, PUT_KIND, bodies, f"{len(revs)} file revisions", then)


def fs_remove(core: NodeCore, rid: int, req: rq.FsRemove) -> None:
    """Every live revision of one file (`name`), or of every file under `label`."""
    may_submit(core)
    label = check_label(req.label)
    index = core.fs
    items = []
    if req.name:
        live = index.live(label, check_name(req.name))
        if not live:
            raise NotFound(f"no file {req.name!r} in {label}")
        items.append({"l": label, "n": req.name, "ids": [r.id for r in live]})
    else:
        for rev, _ in index.files(label, recursive=True):
            ids = [r.id for r in index.live(rev.label, rev.name)]
            items.append({"l": rev.label, "n": rev.name, "ids": ids})
        if not items:
            raise NotFound(f"no files under {label}")
    bodies = [{"files": run} for run in runs(items, _encoded, RECORD_BYTES_MAX)]
    removed = {"removed": len(items)}
    _publish_held(core, RM_KIND, bodies, f"removal of {len(items)} files",
                  _answer_when_held(core, rid, removed))  # fmt: skip


def fs_snapshot(core: NodeCore, rid: int, req: rq.FsSnapshot) -> None:
    may_submit(core)
    label, name = check_label(req.label), check_name(req.name)
    index = core.fs
    if index.snapshot_named(name) is not None:
        raise ValidationError(f"a snapshot named {name!r} exists; remove it first")
    files = [[r.label, r.name, r.id] for r, _ in index.files(label, recursive=True)]
    if not files:
        raise NotFound(f"no files under {label}")
    sid = core.rng.randbytes(ID_BYTES).hex()
    body = {"id": sid, "name": name, "label": label, "t": core.unix_ns(), "files": files}
    if len(encode(body)) > RECORD_BYTES_MAX:
        raise ValidationError(f"{label} holds too many files for one snapshot")

    def then(error: ColonyError | None) -> None:
        snap = index.snapshots.get(sid)
        core.answer(rid, None if error or snap is None else snap.json(), error)

    _publish_held(core, SNAPSHOT_KIND, [body], f"snapshot {name}", then)


def fs_snapshot_remove(core: NodeCore, rid: int, req: rq.FsSnapshotRemove) -> None:
    may_submit(core)
    snap = core.fs.snapshot_named(req.name)
    if snap is None:
        raise NotFound(f"no snapshot named {req.name!r}")
    _publish_held(core, SNAPSHOT_RM_KIND, [{"id": snap.id}], f"removal of snapshot {req.name}",
                  _answer_when_held(core, rid, {"removed": snap.id}))  # fmt: skip


def fs_provide(core: NodeCore, rid: int, req: rq.FsProvide) -> None:
    core.dht_call(lambda dht, now: dht.add_provider(now, req.key),
                  lambda result: core.answer(rid, bool(result.ok)))  # fmt: skip


def fs_providers(core: NodeCore, rid: int, req: rq.FsProviders) -> None:
    def found(result: Any) -> None:
        core.answer(rid, tuple(p.node_id for p in result.providers))

    core.dht_call(lambda dht, now: dht.get_providers(now, req.key), found)


def fs_handlers() -> dict[type, Callable[[NodeCore, int, Any], None]]:
    return {rq.FsCommit: fs_commit, rq.FsRemove: fs_remove, rq.FsSnapshot: fs_snapshot,
            rq.FsSnapshotRemove: fs_snapshot_remove, rq.FsProvide: fs_provide,
            rq.FsProviders: fs_providers}  # fmt: skip
