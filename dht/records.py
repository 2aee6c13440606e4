"""Signed value records, and the validators and selectors of each namespace (DESIGN.md §8).

A record is a `ValueRecord(key, seq, value, ttl_s)` sealed in an `Envelope` of domain
``dht/record`` by its author; it travels and is stored as its exact signed bytes. Each key
belongs to a namespace (the longest registered prefix) that says who may write it, what
a valid value is, and which records a storer keeps:

- `/peer/<peer id>`: a node's multiaddrs; only that node may write it. Selector: the
  highest sequence number wins, ties by the lowest record hash (sha256 of the signed
  payload and signature): one record per key.
- `/fs/<colony>/<label>/<name>`: a `FileRecord`. Any author `may_write` allows (a colony
  member with the right role: injected). Records that race are all kept (up to
  `heads_max` concurrent heads, one covering another when its revisions include the
  other's); a read merges them, so no revision drops out.

`reduce(records)` is a function of the *set* of records (the order they arrived in does
not matter), which is what makes every node that saw the same records agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from colonynode.core.codec import decode, from_wire, to_wire
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError, DecodeError, ValidationError
from colonynode.core.ids import NodeId, node_id_from_peer_id, peer_id_str
from colonynode.dht.fs import FS_PREFIX, FileRecord, FileRevision, merge_all, parse_fs_key

__all__ = [
    "PEER_PREFIX",
    "RECORD_DOMAIN",
    "FsNamespace",
    "Namespace",
    "PeerNamespace",
    "PeerRecord",
    "SignedRecord",
    "ValueRecord",
    "default_namespaces",
    "namespace_of",
    "open_record",
    "peer_key",
    "record_digest",
    "reduce",
]

RECORD_DOMAIN = "dht/record"
PEER_PREFIX = "/peer/"
TTL_S_MAX = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class ValueRecord:
    key: str
    seq: int  # per key; a write carries one more than the highest it has seen
    value: Any  # plain CBOR data, checked by the namespace
    ttl_s: float  # storers drop it this long after they stored it (capped by theirs)

    def __post_init__(self) -> None:
        if self.seq < 0 or not 0 < self.ttl_s <= TTL_S_MAX:
            raise ValidationError("seq >= 0 and 0 < ttl_s <= 7 days")


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """The value of `/peer/<id>`: where that node can be dialled."""

    addrs: tuple[str, ...]


class SignedRecord:
    """A verified envelope and its decoded record (verified once, kept as signed bytes)."""

    __slots__ = ("digest", "envelope", "record")

    def __init__(self, envelope: Envelope, record: ValueRecord) -> None:
        self.envelope = envelope
        self.record = record
        self.digest = record_digest(envelope)

    @property
    def author(self) -> NodeId:
        return self.envelope.author

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def seq(self) -> int:
        return self.record.seq

    @property
    def rank(self) -> tuple[int, bytes]:
        """Smaller is better: the highest seq, then the lowest hash."""
        return (-self.record.seq, self.digest)

    def __repr__(self) -> str:
        return f"SignedRecord({self.key}, seq {self.seq}, {self.digest[:4].hex()})"


def record_digest(envelope: Envelope) -> bytes:
    """A record's hash (ties between equal sequence numbers go to the lowest)."""
    return sha256(envelope.payload + envelope.signature).digest()


def open_record(
    envelope: Envelope, verify: Callable[[Envelope], None], value_bytes_max: int
) -> SignedRecord:
    """Check size, signature and shape of a record envelope (raises ColonyError)."""
    if len(envelope.payload) > value_bytes_max:
        raise ValidationError(f"record of {len(envelope.payload)} bytes over {value_bytes_max}")
    if envelope.domain != RECORD_DOMAIN:
        raise DecodeError(f"envelope for {envelope.domain!r}, not a dht record")
    verify(envelope)
    return SignedRecord(envelope, from_wire(ValueRecord, decode(envelope.payload)))


def peer_key(node_id: NodeId) -> str:
    return PEER_PREFIX + peer_id_str(node_id)


class Namespace:
    """Base: highest seq wins, ties by the lowest hash; anyone `may_write` allows writes."""

    prefix = ""
    merges = False  # True: concurrent records are all kept and a read merges them

    def validate(self, key: str, author: NodeId, value: Any) -> None:
        """Raise ValidationError unless `author` may write `value` under `key`."""

    def covers(self, a: SignedRecord, b: SignedRecord) -> bool:
        """Whether keeping `a` makes `b` redundant."""
        return a.rank <= b.rank

    def prepare(self, key: str, author: NodeId, heads: Sequence[SignedRecord], new: Any) -> Any:
        """The value a put of `new` writes, given the current heads (plain wire data)."""
        return to_wire(new)

    def view(self, heads: Sequence[SignedRecord]) -> Any:
        """What a read returns from the reduced heads (best first)."""
        return heads[0].record.value if heads else None


class PeerNamespace(Namespace):
    prefix = PEER_PREFIX

    def validate(self, key: str, author: NodeId, value: Any) -> None:
        try:
            owner = node_id_from_peer_id(key[len(PEER_PREFIX) :])
        except DecodeError:
            raise ValidationError(f"{key!r} does not name a peer") from None
        if owner != author:
            raise ValidationError("only a peer writes its own /peer/ record")
        from_wire(PeerRecord, value)

    def view(self, heads: Sequence[SignedRecord]) -> Any:
        """The PeerRecord of the best record."""
        return from_wire(PeerRecord, heads[0].record.value) if heads else None


class FsNamespace(Namespace):
    prefix = FS_PREFIX
    merges = True

    def validate(self, key: str, author: NodeId, value: Any) -> None:
        colony, label, name = parse_fs_key(key)
        record = self.file_record(value)
        if (record.colony, record.label, record.name) != (colony, label, name):
            raise ValidationError(f"file record of {record.key} stored under {key}")

    @staticmethod
    def file_record(value: Any) -> FileRecord:
        try:
            return from_wire(FileRecord, value)
        except DecodeError as exc:
            raise ValidationError(f"not a file record: {exc}") from None

    @staticmethod
    def _ids(record: SignedRecord) -> frozenset[str]:
        return frozenset(str(rev[0]) for rev in record.record.value[3])

    def covers(self, a: SignedRecord, b: SignedRecord) -> bool:
        ids_a, ids_b = self._ids(a), self._ids(b)
        if ids_a == ids_b:
            return a.rank <= b.rank
        return ids_a > ids_b

    def prepare(self, key: str, author: NodeId, heads: Sequence[SignedRecord], new: Any) -> Any:
        """`new` is a FileRevision (or several): merged into every head's history."""
        colony, label, name = parse_fs_key(key)
        added = (new,) if isinstance(new, FileRevision) else tuple(new)
        revisions = [r for h in heads for r in self.file_record(h.record.value).revisions]
        return to_wire(FileRecord.of(colony, label, name, (*revisions, *added)))

    def view(self, heads: Sequence[SignedRecord]) -> Any:
        """The merged FileRecord of every head (None when there is none)."""
        return merge_all(self.file_record(h.record.value) for h in heads)


def default_namespaces() -> dict[str, Namespace]:
    return {PEER_PREFIX: PeerNamespace(), FS_PREFIX: FsNamespace()}


def namespace_of(namespaces: dict[str, Namespace], key: str) -> Namespace:
    best: Namespace | None = None
    for prefix, ns in namespaces.items():
        if key.startswith(prefix) and (best is None or len(prefix) > len(best.prefix)):
            best = ns
    if best is None:
        raise ValidationError(f"no namespace for key {key!r}")
    return best


def reduce(ns: Namespace, records: Iterable[SignedRecord], heads_max: int) -> list[SignedRecord]:
    """The records a node keeps for one key: those no other record covers, best first.

    A function of the set of records: every order of arrival gives the same heads."""
    unique: dict[bytes, SignedRecord] = {}
    for r in records:
        unique.setdefault(r.digest, r)
    items = sorted(unique.values(), key=lambda r: r.rank)
    kept = [r for r in items if not any(o is not r and ns.covers(o, r) for o in items)]
    if not ns.merges:
        return kept[:1]
    return kept[:heads_max]


def record_error(exc: ColonyError) -> str:
    return f"{type(exc).__name__}: {exc}"
