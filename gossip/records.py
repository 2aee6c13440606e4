"""Gossip records: signed envelopes with an author and a per-author sequence number.

A record is an `Envelope` of domain `RECORD_DOMAIN` whose payload is a `RecordBody`:
``(seq, kind, body)``. The author (the envelope's signer) numbers its records 1, 2, 3, ...
without gaps, so a record's id is ``(author, seq)`` and what a node holds is summed up by
one number per author: the highest *contiguous* sequence it holds (its high-water mark).

A record signed by someone else (the owner's roster update, say) is published by its
author with the author's own sequence; any node may re-inject an existing signed record
(`GossipCore.publish_envelope`), it keeps its author and sequence.

`SeqRange(author, first, last)` names ``last - first + 1`` consecutive records of one
author: IHAVE, IWANT and GONE carry ranges, so a burst of one author's records costs one
entry, not one per record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from colonynode.core.codec import decode_raw, from_wire
from colonynode.core.envelope import Envelope, seal
from colonynode.core.errors import DecodeError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId

__all__ = [
    "ENVELOPE_KIND",
    "KIND_BYTES_MAX",
    "RECORD_DOMAIN",
    "SEQ_MAX",
    "RecordBody",
    "RecordId",
    "SeqRange",
    "envelope_from_body",
    "envelope_to_body",
    "open_body",
    "ranges_of",
    "seal_record",
]

RECORD_DOMAIN = "gossip/record"
KIND_BYTES_MAX = 64  # a record's kind: "process", "roster", "advert", ...
SEQ_MAX = (1 << 63) - 1

RecordId = tuple[NodeId, int]  # (author, seq)

# Kind of a record whose body carries another signed envelope (e.g. the owner's roster,
# domain "roster"): the owner's node publishes it as its own record; every node checks
# the inner signature itself (core.roster.accept_roster) when it is accepted.
ENVELOPE_KIND = "envelope"


@dataclass(frozen=True, slots=True)
class RecordBody:
    """The signed payload of a record."""

    seq: int
    kind: str
    body: Any

    def __post_init__(self) -> None:
        if not 1 <= self.seq <= SEQ_MAX:
            raise ValueError(f"a record sequence is 1..{SEQ_MAX}, got {self.seq}")
        if not 0 < len(self.kind) <= KIND_BYTES_MAX:
            raise ValueError(f"a record kind is 1..{KIND_BYTES_MAX} characters")


@dataclass(frozen=True, slots=True)
class SeqRange:
    """Records ``first..last`` (inclusive) of `author`."""

    author: NodeId
    first: int
    last: int

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.last <= SEQ_MAX:
            raise ValueError(f"bad sequence range {self.first}..{self.last}")

    @property
    def count(self) -> int:
        return self.last - self.first + 1


def seal_record(identity: Identity, seq: int, kind: str, body: Any) -> Envelope:
    """Sign record number `seq` of `identity`."""
    return seal(identity, RECORD_DOMAIN, RecordBody(seq, kind, body))


def open_body(envelope: Envelope) -> RecordBody:
    """Decode (without verifying the signature) the body of a record envelope.

    Raises DecodeError for a payload that is not a well-formed `RecordBody`.
    """
    if envelope.domain != RECORD_DOMAIN:
        raise DecodeError(f"not a gossip record: domain {envelope.domain!r}")
    return from_wire(RecordBody, decode_raw(envelope.payload))  # the conversion checks limits


def ranges_of(ids: Iterable[RecordId], ranges_max: int) -> list[SeqRange]:
    """Sorted, merged ranges covering `ids` (at most `ranges_max`; the rest is left off)."""
    out: list[SeqRange] = []
    author: NodeId | None = None
    first = last = 0
    for a, s in sorted(set(ids)):
        if a == author and s == last + 1:
            last = s
            continue
        if author is not None:
            out.append(SeqRange(author, first, last))
            if len(out) >= ranges_max:
                return out
        author, first, last = a, s, s
    if author is not None and len(out) < ranges_max:
        out.append(SeqRange(author, first, last))
    return out


def envelope_to_body(env: Envelope) -> list[Any]:
    """A signed envelope as a record body (its exact signed bytes travel unchanged)."""
    return [bytes(env.author), env.domain, env.payload, env.signature]


def envelope_from_body(body: Any) -> Envelope:
    """The envelope inside a record body made by `envelope_to_body` (not verified)."""
    if (
        type(body) is not list
        or len(body) != 4
        or not all(type(body[i]) is bytes for i in (0, 2, 3))
        or type(body[1]) is not str
        or len(body[0]) != 32
    ):
        raise DecodeError(
            "a record body that carries an envelope is [author, domain, payload, signature]"
        )
    try:
        return Envelope(NodeId(body[0]), body[1], body[2], body[3])
    except ValueError as exc:
        raise DecodeError(str(exc)) from None
