"""ColonyFS file-revision records (DESIGN.md §9): one DHT record per file.

Key ``/fs/<colony>/<label>/<name>``; the value is a `FileRecord`: every revision of the
file (id, sha256, size, chunk ids, author, time) and the id of the latest. Writers merge
what they read with what they add, but two writers can still race: storers then keep both
records (concurrent heads) and readers merge them. `merge` is a union of revisions by id,
ordered by (time_ns, id), and the latest is the greatest of that order, so the result is
the same whatever order records are merged in and no revision drops out of the history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from colonynode.core.errors import ValidationError
from colonynode.core.ids import NodeId

__all__ = [
    "FS_PREFIX",
    "FileRecord",
    "FileRevision",
    "fs_key",
    "merge",
    "merge_all",
    "parse_fs_key",
]

FS_PREFIX = "/fs/"
REVISION_ID_BYTES_MAX = 128
SHA256_BYTES = 32


@dataclass(frozen=True, slots=True)
class FileRevision:
    id: str
    sha256: bytes
    size: int
    chunks: tuple[bytes, ...]  # content ids (sha256) of the chunks, in file order
    author: NodeId
    time_ns: int  # the author's wall clock when it made the revision (an ordering hint)

    def __post_init__(self) -> None:
        if not 0 < len(self.id) <= REVISION_ID_BYTES_MAX:
            raise ValidationError("a revision id is 1-128 characters")
        if len(self.sha256) != SHA256_BYTES or self.size < 0:
            raise ValidationError("a revision has a 32-byte sha256 and a size >= 0")
        if any(len(c) != SHA256_BYTES for c in self.chunks):
            raise ValidationError("chunk ids are 32-byte sha256 digests")

    @property
    def order(self) -> tuple[int, str, bytes, int, bytes, tuple[bytes, ...]]:
        """Revisions sort by (time, id); the rest only breaks ties of a reused id."""
        return (self.time_ns, self.id, self.sha256, self.size, self.author, self.chunks)


@dataclass(frozen=True, slots=True)
class FileRecord:
    colony: str
    label: str
    name: str
    revisions: tuple[FileRevision, ...]  # sorted by (time_ns, id), ids unique
    latest: str  # id of the last revision of that order ("" when there is none)

    def __post_init__(self) -> None:
        ids = [r.id for r in self.revisions]
        if len(set(ids)) != len(ids):
            raise ValidationError("a revision id appears twice")
        orders = [r.order for r in self.revisions]
        if orders != sorted(orders):
            raise ValidationError("revisions are sorted by (time, id)")
        expected = self.revisions[-1].id if self.revisions else ""
        if self.latest != expected:
            raise ValidationError("latest names the last revision")

    @property
    def latest_revision(self) -> FileRevision | None:
        return self.revisions[-1] if self.revisions else None

    @property
    def key(self) -> str:
        return fs_key(self.colony, self.label, self.name)

    @classmethod
    def of(
        cls, colony: str, label: str, name: str, revisions: Iterable[FileRevision]
    ) -> FileRecord:
        """A record of these revisions (in any order, a reused id kept once)."""
        by_id: dict[str, FileRevision] = {}
        for rev in revisions:
            held = by_id.get(rev.id)
            if held is None or rev.order < held.order:
                by_id[rev.id] = rev
        ordered = tuple(sorted(by_id.values(), key=lambda r: r.order))
        return cls(colony, label, name, ordered, ordered[-1].id if ordered else "")


def merge(a: FileRecord, b: FileRecord) -> FileRecord:
    """Both histories: commutative, associative and idempotent."""
    if (a.colony, a.label, a.name) != (b.colony, b.label, b.name):
        raise ValidationError(f"cannot merge {a.key} with {b.key}")
    return FileRecord.of(a.colony, a.label, a.name, (*a.revisions, *b.revisions))


def merge_all(records: Iterable[FileRecord]) -> FileRecord | None:
    out: FileRecord | None = None
    for record in records:
        out = record if out is None else merge(out, record)
    return out


def fs_key(colony: str, label: str, name: str) -> str:
    if not colony or "/" in colony or not name or "/" in name or not label:
        raise ValidationError("colony and name are non-empty, without '/'; label non-empty")
    return f"{FS_PREFIX}{colony}/{label.strip('/')}/{name}"


def parse_fs_key(key: str) -> tuple[str, str, str]:
    """(colony, label, name) of ``/fs/<colony>/<label>/<name>``; a label may hold '/'."""
    if not key.startswith(FS_PREFIX):
        raise ValidationError(f"{key!r} is not an /fs/ key")
    parts = key[len(FS_PREFIX) :].split("/")
    if len(parts) < 3 or not all(parts):
        raise ValidationError(f"{key!r} is not /fs/<colony>/<label>/<name>")
    return parts[0], "/".join(parts[1:-1]), parts[-1]
