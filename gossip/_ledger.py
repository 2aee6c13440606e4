"""The ledger: which records a node holds, durably, and their retention.

Per author it keeps the high-water mark (`hwm`: every record 1..hwm is held or was
compacted) and the set of records held past it (`ahead`, a gap waiting for repair). Bodies
live in the store; the most recent ones also in a bounded in-memory cache. Every change
comes out as a store write in `self.writes`, which the core hands to the driver.

Tables (values are msgpack; the store adds the schema version):

| table | key | value |
| --- | --- | --- |
| `gossip.rec` | author (32 B) + seq (8 B, big-endian) | `[payload, signature, kind]` |
| `gossip.hwm` | author | highest contiguous seq held or compacted |
| `gossip.ahead` | author + seq | 1 (held past the hwm) |
| `gossip.meta` | `next_seq` | no own sequence number from here on was ever handed out |

Own sequence numbers are reserved `SEQ_BLOCK` at a time (`next_seq` stored is the end of
the reservation, written again when half of it is used), so a restarted node resumes past
every number it may have used, including one sent in a record before its turn's commit
(the daemon's early Submit, node/core/nodecore.py). The numbers a restart passes over
are filled with void records at its first tick (core.py, `_pass_reserved_seqs`).

Retention: a body is compacted (its row deleted; the hwm still covers it)
`retention_of(kind)` seconds after it was accepted here. Monotonic time does not survive
a restart, so a restarted node counts every stored body as accepted at its first tick.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from colonynode.core.effects import Write
from colonynode.core.envelope import Envelope
from colonynode.core.ids import NodeId
from colonynode.gossip.config import GossipConfig
from colonynode.gossip.messages import DIGEST_HASH_BYTES
from colonynode.gossip.records import RECORD_DOMAIN, RecordId
from colonynode.storage.api import Store

__all__ = [
    "TABLE_AHEAD",
    "TABLE_HWM",
    "TABLE_META",
    "TABLE_RECORDS",
    "Ledger",
    "record_key",
]

TABLE_RECORDS = "gossip.rec"
TABLE_HWM = "gossip.hwm"
TABLE_AHEAD = "gossip.ahead"
TABLE_META = "gossip.meta"
SEQ_BLOCK = 16  # own sequence numbers reserved a durable write at a time
_AUTHOR_BYTES = 32


def record_key(author: NodeId, seq: int) -> bytes:
    return bytes(author) + seq.to_bytes(8, "big")


def _split_key(key: bytes) -> RecordId:
    return NodeId(key[:_AUTHOR_BYTES]), int.from_bytes(key[_AUTHOR_BYTES:], "big")


def _entry_hash(author: NodeId, hwm: int) -> int:
    digest = hashlib.blake2b(
        bytes(author) + hwm.to_bytes(8, "big"), digest_size=DIGEST_HASH_BYTES
    ).digest()
    return int.from_bytes(digest, "big")


def _ahead_hash(author: NodeId, seq: int) -> int:
    """A record held past its author's hwm, in the digest hash: two nodes whose hwms agree
    but whose records past a gap differ still see different hashes and exchange digests
    (a gap its dead author alone could fill would otherwise hide what lies past it from a
    node that joins or comes back later)."""
    digest = hashlib.blake2b(
        b"ahead" + bytes(author) + seq.to_bytes(8, "big"), digest_size=DIGEST_HASH_BYTES
    ).digest()
    return int.from_bytes(digest, "big")


class Ledger:
    """Held records, high-water marks and retention of one node."""

    def __init__(self, store: Store, config: GossipConfig) -> None:
        self.store = store
        self.config = config
        self.writes: list[Write] = []
        # `writes` hold a sequence number of this node's (its own records, next_seq):
        # durable before anything is sent, so no number is used twice (effects.py)
        self.own = False
        self.hwm: dict[NodeId, int] = {}
        self.ahead: dict[NodeId, set[int]] = {}
        self._xor = 0
        self.bodies = 0  # bodies held in the store
        self.compacted = 0
        self._expiry: list[tuple[float, NodeId, int]] = []  # heap: (expire_s, author, seq)
        self._cache: OrderedDict[RecordId, Envelope] = OrderedDict()
        self._boot_kinds: list[tuple[NodeId, int, str]] | None = []
        for key, value in store.scan(TABLE_HWM):
            author, hwm = NodeId(bytes(key)), int(value)
            self.hwm[author] = hwm
            self._xor ^= _entry_hash(author, hwm)
        for key, _ in store.scan(TABLE_AHEAD):
            author, seq = _split_key(key)
            self.ahead.setdefault(author, set()).add(seq)
            self._xor ^= _ahead_hash(author, seq)
        for key, value in store.scan(TABLE_RECORDS):
            author, seq = _split_key(key)
            self._boot_kinds.append((author, seq, str(value[2])))
        self.bodies = len(self._boot_kinds)
        self.next_seq = int(store.get(TABLE_META, b"next_seq") or 1)
        self.reserved = self.next_seq  # no own number at or past it was handed out
        self.reserved_out = self.reserved  # the reservation in the writes handed out

    def start(self, now_s: float) -> None:
        """The first tick: stored bodies count as accepted now (see the module doc)."""
        boot, self._boot_kinds = self._boot_kinds, None
        for author, seq, kind in boot or ():
            heapq.heappush(self._expiry, (now_s + self.config.retention_of(kind), author, seq))

    # -- reads ----------------------------------------------------------------------------

    def has(self, author: NodeId, seq: int) -> bool:
        if seq <= self.hwm.get(author, 0):
            return True
        ahead = self.ahead.get(author)
        return ahead is not None and seq in ahead

    def room_for(self, author: NodeId, seq: int) -> str:
        """ "" if a record (author, seq) not held could be kept, else why not."""
        if seq > self.hwm.get(author, 0) + self.config.ahead_max:
            return "too_far_ahead"
        new_author = author not in self.hwm and author not in self.ahead
        if new_author and len(self.hwm.keys() | self.ahead.keys()) >= self.config.authors_max:
            return "too_many_authors"
        return ""

    def get(self, author: NodeId, seq: int) -> Envelope | None:
        """The record if its body is held (cache first, then the store)."""
        env = self._cache.get((author, seq))
        if env is not None:
            return env
        value = self.store.get(TABLE_RECORDS, record_key(author, seq))
        if value is None:
            return None
        return Envelope(author, RECORD_DOMAIN, bytes(value[0]), bytes(value[1]))

    def missing(self, author: NodeId, first: int, last: int) -> Iterator[int]:
        """The sequences of first..last not held, in order; never past the ahead window
        (those could not be kept), so at most `ahead_max` of them."""
        hwm = self.hwm.get(author, 0)
        ahead = self.ahead.get(author, ())
        last = min(last, hwm + self.config.ahead_max)
        for seq in range(max(first, hwm + 1), last + 1):
            if seq not in ahead:
                yield seq

    def digest(self) -> dict[NodeId, int]:
        return {a: h for a, h in self.hwm.items() if h > 0}

    def digest_hash(self) -> bytes:
        return self._xor.to_bytes(DIGEST_HASH_BYTES, "big")

    # -- changes --------------------------------------------------------------------------

    def add(self, now_s: float, env: Envelope, seq: int, kind: str) -> None:
        """Keep a verified record not held before."""
        author = env.author
        self.writes.append(
            (TABLE_RECORDS, record_key(author, seq), [env.payload, env.signature, kind])
        )
        self.bodies += 1
        self._remember(author, seq, env)
        heapq.heappush(self._expiry, (now_s + self.config.retention_of(kind), author, seq))
        hwm = self.hwm.get(author, 0)
        if seq == hwm + 1:
            self._advance(author, seq)
        else:
            self.ahead.setdefault(author, set()).add(seq)
            self._xor ^= _ahead_hash(author, seq)
            self.writes.append((TABLE_AHEAD, record_key(author, seq), 1))
        if self.bodies > self.config.records_max:
            self._compact_one()

    def skip(self, author: NodeId, first: int, last: int) -> bool:
        """A peer compacted first..last: count them as held if they close our gap."""
        hwm = self.hwm.get(author, 0)
        if not first <= hwm + 1 <= last:
            return False
        self._advance(author, last)
        return True

    def bump_next_seq(self, at_least: int) -> None:
        if at_least > self.next_seq:
            self.next_seq = at_least
            self._reserve()
            self.own = True

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq = seq + 1
        if self.next_seq + SEQ_BLOCK // 2 > self.reserved:
            self._reserve()
        self.own = True
        assert seq < self.reserved, "an own sequence number past the reservation"
        return seq

    def _reserve(self) -> None:
        self.reserved = max(self.reserved, self.next_seq + SEQ_BLOCK)
        self.writes.append((TABLE_META, b"next_seq", self.reserved))

    def compact(self, now_s: float) -> int:
        """Drop the bodies whose retention ran out (at most compact_per_hb_max)."""
        done = 0
        expiry = self._expiry
        while expiry and expiry[0][0] <= now_s and done < self.config.compact_per_hb_max:
            self._compact_one()
            done += 1
        return done

    # -- internals ------------------------------------------------------------------------

    def _remember(self, author: NodeId, seq: int, env: Envelope) -> None:
        cache = self._cache
        cache[(author, seq)] = env
        if len(cache) > self.config.cache_max:
            cache.popitem(last=False)

    def _advance(self, author: NodeId, seq: int) -> None:
        """Move author's hwm to `seq`, then over every held record right after it."""
        old = self.hwm.get(author, 0)
        ahead = self.ahead.get(author)
        if ahead:
            for s in [s for s in ahead if s <= seq]:
                ahead.discard(s)
                self._xor ^= _ahead_hash(author, s)
                self.writes.append((TABLE_AHEAD, record_key(author, s), None))
            while seq + 1 in ahead:
                seq += 1
                ahead.discard(seq)
                self._xor ^= _ahead_hash(author, seq)
                self.writes.append((TABLE_AHEAD, record_key(author, seq), None))
            if not ahead:
                del self.ahead[author]
        if old:
            self._xor ^= _entry_hash(author, old)
        self._xor ^= _entry_hash(author, seq)
        self.hwm[author] = seq
        self.writes.append((TABLE_HWM, bytes(author), seq))

    def _compact_one(self) -> None:
        _, author, seq = heapq.heappop(self._expiry)
        self.writes.append((TABLE_RECORDS, record_key(author, seq), None))
        self._cache.pop((author, seq), None)
        self.bodies -= 1
        self.compacted += 1

    def stats(self) -> dict[str, Any]:
        return {
            "authors": len(self.hwm),
            "bodies": self.bodies,
            "gaps": sum(len(s) for s in self.ahead.values()),
            "compacted": self.compacted,
        }
