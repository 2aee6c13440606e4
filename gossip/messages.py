"""The gossip protocol's messages (`/colony/<name>/gossip/1`).

Every message is batched: one message carries many records or ranges, within the bounds
below (a decoder refuses more). The driver puts every message ready for a peer into one
frame per loop turn.

| message | meaning |
| --- | --- |
| `Push(records, sent_to)` | eager push: records for the receiver (relay, IWANT answer, repair) |
| `IHave(ranges)` | lazy gossip: "I hold these recent records" |
| `IWant(ranges)` | "send me these records" (after an IHAVE, or an anti-entropy digest) |
| `Graft()` | "add me to your mesh" |
| `Prune(backoff_s)` | "you are out of my mesh; do not graft me again for backoff_s" |
| `Summary(authors, digest_hash)` | anti-entropy, step 1: a hash of my high-water marks |
| `Digest(hwms)` | step 2, when the hashes differ: author -> highest contiguous seq |
| `Gone(ranges)` | answer to IWANT: these records were compacted here; skip them |

`Push.sent_to`: the peers (8-byte id prefixes) the sender sent its own records of this
push to as well; the receiver does not relay those records to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from colonynode.core.codec import MessageCodec
from colonynode.core.envelope import Envelope
from colonynode.core.ids import NodeId
from colonynode.gossip.records import SeqRange

__all__ = [
    "CODEC",
    "DIGEST_ENTRIES_MAX",
    "DIGEST_HASH_BYTES",
    "PUSH_BYTES_MAX",
    "RANGES_PER_MESSAGE_MAX",
    "RECORDS_PER_MESSAGE_MAX",
    "SENT_TO_ID_BYTES",
    "SENT_TO_MAX",
    "Digest",
    "Gone",
    "Graft",
    "IHave",
    "IWant",
    "MessageTag",
    "Prune",
    "Push",
    "Summary",
    "split_push",
]

# Bounds every message obeys; checked when built and when received. A push of 64 records
# of ~200 bytes is ~13 KB: under the ~20 KB a frame costs the same CPU for (DESIGN.md §4).
RECORDS_PER_MESSAGE_MAX = 64
# A push's records' bytes at most (a single record may exceed it: it goes alone), so a
# push of big records (a ColonyFS commit of thousands of files is ~160 KB a record)
# stays well under the 1 MiB frame cap, which drops a message over it whole.
PUSH_BYTES_MAX = 256 * 1024
RANGES_PER_MESSAGE_MAX = 1024
DIGEST_ENTRIES_MAX = 4096  # = roster MEMBERS_MAX = codec items_max
DIGEST_HASH_BYTES = 16
SENT_TO_MAX = 16  # peers a push names as already holding its sender's own records
SENT_TO_ID_BYTES = 8  # a node id's prefix: enough to tell a node's peers apart


class MessageTag(IntEnum):
    """Append-only: values are wire format."""

    PUSH = 1
    IHAVE = 2
    IWANT = 3
    GRAFT = 4
    PRUNE = 5
    SUMMARY = 6
    DIGEST = 7
    GONE = 8


def _bounded(what: str, n: int, n_max: int) -> None:
    if n > n_max:
        raise ValueError(f"{what}: {n} over the {n_max} cap")


@dataclass(frozen=True, slots=True)
class Push:
    records: tuple[Envelope, ...]
    sent_to: tuple[bytes, ...] = ()  # appended field: older senders leave it off

    def __post_init__(self) -> None:
        _bounded("Push.records", len(self.records), RECORDS_PER_MESSAGE_MAX)
        _bounded("Push.sent_to", len(self.sent_to), SENT_TO_MAX)
        if any(len(p) != SENT_TO_ID_BYTES for p in self.sent_to):
            raise ValueError(f"Push.sent_to holds {SENT_TO_ID_BYTES}-byte id prefixes")


@dataclass(frozen=True, slots=True)
class IHave:
    ranges: tuple[SeqRange, ...]

    def __post_init__(self) -> None:
        _bounded("IHave.ranges", len(self.ranges), RANGES_PER_MESSAGE_MAX)


@dataclass(frozen=True, slots=True)
class IWant:
    ranges: tuple[SeqRange, ...]

    def __post_init__(self) -> None:
        _bounded("IWant.ranges", len(self.ranges), RANGES_PER_MESSAGE_MAX)


@dataclass(frozen=True, slots=True)
class Graft:
    pass


@dataclass(frozen=True, slots=True)
class Prune:
    backoff_s: float


@dataclass(frozen=True, slots=True)
class Summary:
    authors: int
    digest_hash: bytes

    def __post_init__(self) -> None:
        if len(self.digest_hash) != DIGEST_HASH_BYTES:
            raise ValueError(f"a digest hash is {DIGEST_HASH_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class Digest:
    hwms: dict[NodeId, int]

    def __post_init__(self) -> None:
        _bounded("Digest.hwms", len(self.hwms), DIGEST_ENTRIES_MAX)


@dataclass(frozen=True, slots=True)
class Gone:
    ranges: tuple[SeqRange, ...]

    def __post_init__(self) -> None:
        _bounded("Gone.ranges", len(self.ranges), RANGES_PER_MESSAGE_MAX)


CODEC = MessageCodec(
    "gossip",
    {
        MessageTag.PUSH: Push,
        MessageTag.IHAVE: IHave,
        MessageTag.IWANT: IWant,
        MessageTag.GRAFT: Graft,
        MessageTag.PRUNE: Prune,
        MessageTag.SUMMARY: Summary,
        MessageTag.DIGEST: Digest,
        MessageTag.GONE: Gone,
    },
)


def split_push(box: list[Envelope], per: int) -> list[tuple[Envelope, ...]]:
    """`box` in runs of at most `per` records and about PUSH_BYTES_MAX bytes."""
    out: list[tuple[Envelope, ...]] = []
    run: list[Envelope] = []
    size = 0
    for env in box:
        n = len(env.payload) + len(env.signature) + 64
        if run and (len(run) >= per or size + n > PUSH_BYTES_MAX):
            out.append(tuple(run))
            run, size = [], 0
        run.append(env)
        size += n
    if run:
        out.append(tuple(run))
    return out
