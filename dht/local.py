"""What a node stores for others: value records, provider entries, per-peer store rates.

Records live in table ``dht_records`` (key: the record key's UTF-8 bytes; value: the heads
as ``[author, domain, payload, signature]`` lists: their exact signed bytes) and in memory
for reads. Storers expire a record `ttl` after its last store (the record's own ttl_s,
capped by ours); a monotonic clock does not survive a restart, so records loaded at a
restart get a full TTL from then (kept at most one TTL longer, never dropped early).
Provider entries are soft state (providers announce again at TTL/2) and stay in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from colonynode.core.codec import decode, from_wire
from colonynode.core.effects import Write
from colonynode.core.envelope import Envelope
from colonynode.core.ids import NodeId
from colonynode.dht.config import DhtConfig
from colonynode.dht.records import Namespace, SignedRecord, ValueRecord, record_digest, reduce
from colonynode.dht.routing import key_of
from colonynode.storage.api import Store

__all__ = [
    "RECORDS_TABLE",
    "LocalRecords",
    "Providers",
    "RateLimiter",
    "decode_heads",
    "encode_heads",
]

RECORDS_TABLE = "dht_records"


class _Entry:
    __slots__ = ("bytes", "closer_known", "expires_s", "heads", "target")

    def __init__(self, heads: list[SignedRecord], expires_s: float) -> None:
        self.heads = heads
        self.target = key_of(heads[0].key.encode())  # the record's place in key space
        # The routing table's `removals` when a contact closer to the record than us was
        # seen (-1: not known): hand-offs are the closest holder's job (DhtCore._hand_off).
        self.closer_known = -1
        self.expires_s = expires_s
        self.bytes = sum(len(h.envelope.payload) for h in heads)


def encode_heads(heads: list[SignedRecord]) -> list[list[Any]]:
    return [
        [h.envelope.author, h.envelope.domain, h.envelope.payload, h.envelope.signature]
        for h in heads
    ]


def decode_heads(value: Any) -> list[SignedRecord]:
    heads = []
    for author, domain, payload, signature in value:
        env = Envelope(NodeId(author), domain, payload, signature)
        heads.append(SignedRecord(env, from_wire(ValueRecord, decode(payload))))
    return heads


class LocalRecords:
    """The records this node stores, bounded by `records_max` keys and `bytes_max`."""

    def __init__(self, store: Store, config: DhtConfig) -> None:
        self.config = config
        self.bytes_max = config.records_max * 16 * 1024  # average 16 KiB per key
        self.entries: dict[str, _Entry] = {}
        self.by_digest: dict[bytes, str] = {}  # every head we hold -> its key
        self.total_bytes = 0
        self._restamp = True  # loaded entries get their expiry at the first sweep
        for raw_key, value in store.scan(RECORDS_TABLE, limit=config.records_max):
            entry = _Entry(decode_heads(value), 0.0)
            self._put(raw_key.decode(), entry)
            self.total_bytes += entry.bytes

    def __len__(self) -> int:
        return len(self.entries)

    def _put(self, key: str, entry: _Entry) -> None:
        old = self.entries.get(key)
        if old is not None:
            for h in old.heads:
                self.by_digest.pop(h.digest, None)
        self.entries[key] = entry
        for h in entry.heads:
            self.by_digest[h.digest] = key

    def get(self, key: str) -> list[SignedRecord]:
        entry = self.entries.get(key)
        return entry.heads if entry is not None else []

    def keys(self) -> Iterator[str]:
        return iter(self.entries)

    def offer(
        self, now_s: float, ns: Namespace, records: list[SignedRecord], writes: list[Write]
    ) -> str:
        """Store `records` (one key, already validated). "" if held now, else why not."""
        key = records[0].key
        entry = self.entries.get(key)
        held = entry.heads if entry is not None else []
        heads = reduce(ns, [*held, *records], self.config.heads_max)
        ttl_s = min(min(r.record.ttl_s for r in records), self.config.record_ttl_s)
        new_digests = {r.digest for r in records}
        if not any(h.digest in new_digests for h in heads):
            return "stale"  # every record offered is covered by what we hold
        if [h.digest for h in heads] == [h.digest for h in held]:
            assert entry is not None
            entry.expires_s = max(entry.expires_s, now_s + ttl_s)  # a republish
            return ""
        fresh = _Entry(heads, now_s + ttl_s)
        growth = fresh.bytes - (entry.bytes if entry is not None else 0)
        if entry is None and len(self.entries) >= self.config.records_max:
            return "full"
        if self.total_bytes + growth > self.bytes_max:
            return "full"
        if entry is not None:
            fresh.expires_s = max(fresh.expires_s, entry.expires_s)
        self._put(key, fresh)
        self.total_bytes += growth
        writes.append((RECORDS_TABLE, key.encode(), encode_heads(heads)))
        return ""

    def refresh(self, now_s: float, envelopes: tuple[Envelope, ...]) -> bool:
        """If we hold every one of these exact records (a republish, a repair we already
        had), extend their expiry and return True: nothing needs checking again."""
        keys = {self.by_digest.get(record_digest(e)) for e in envelopes}
        if len(keys) != 1:
            return False
        key = keys.pop()
        if key is None:
            return False
        entry = self.entries[key]
        ttl_s = min(min(h.record.ttl_s for h in entry.heads), self.config.record_ttl_s)
        entry.expires_s = max(entry.expires_s, now_s + ttl_s)
        return True

    def sweep(self, now_s: float, writes: list[Write]) -> int:
        """Drop expired records; returns how many."""
        if self._restamp:
            self._restamp = False
            for entry in self.entries.values():  # loaded ones hold 0.0
                entry.expires_s = max(entry.expires_s, now_s + self.config.record_ttl_s)
            return 0
        expired = [k for k, e in self.entries.items() if e.expires_s <= now_s]
        for key in expired:
            entry = self.entries.pop(key)
            for h in entry.heads:
                self.by_digest.pop(h.digest, None)
            self.total_bytes -= entry.bytes
            writes.append((RECORDS_TABLE, key.encode(), None))
        return len(expired)


class Providers:
    """Who provides which content key (soft state, in memory, bounded)."""

    def __init__(self, config: DhtConfig) -> None:
        self.config = config
        self.by_key: dict[bytes, dict[NodeId, tuple[tuple[str, ...], float]]] = {}
        self.count = 0

    def add(self, now_s: float, key: bytes, provider: NodeId, addrs: tuple[str, ...]) -> str:
        entries = self.by_key.get(key)
        if entries is None:
            if self.count >= self.config.providers_max:
                return "full"
            entries = self.by_key[key] = {}
        if provider not in entries:
            if self.count >= self.config.providers_max:
                return "full"
            if len(entries) >= self.config.providers_per_key_max:
                oldest = min(entries, key=lambda p: entries[p][1])  # expires first
                del entries[oldest]
                self.count -= 1
            self.count += 1
        entries[provider] = (addrs[: self.config.addrs_max], now_s + self.config.provider_ttl_s)
        return ""

    def get(self, key: bytes) -> list[tuple[NodeId, tuple[str, ...]]]:
        entries = self.by_key.get(key, {})
        return [(p, addrs) for p, (addrs, _) in entries.items()]

    def sweep(self, now_s: float) -> None:
        for key in list(self.by_key):
            entries = self.by_key[key]
            for p in [p for p, (_, exp) in entries.items() if exp <= now_s]:
                del entries[p]
                self.count -= 1
            if not entries:
                del self.by_key[key]


class RateLimiter:
    """A token bucket per peer: `rate_per_s` stores a second after a `burst`."""

    def __init__(self, rate_per_s: float, burst: float, peers_max: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.peers_max = peers_max
        self.buckets: dict[NodeId, tuple[float, float]] = {}  # peer -> (tokens, at)

    def allow(self, peer: NodeId, now_s: float) -> bool:
        tokens, at_s = self.buckets.pop(peer, (self.burst, now_s))
        tokens = min(self.burst, tokens + (now_s - at_s) * self.rate_per_s)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        self.buckets[peer] = (tokens, now_s)  # most recent last
        if len(self.buckets) > self.peers_max:
            del self.buckets[next(iter(self.buckets))]
        return ok
