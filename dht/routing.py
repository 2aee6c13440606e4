"""The Kademlia routing table: k-buckets split around our own key (DESIGN.md §8).

Keys are 256-bit integers: sha256 of a node id (a peer's place) or of a record key (a
record's place); the distance between two keys is their XOR. Bucket ``i`` holds the
contacts whose key shares exactly ``i`` leading bits with ours, except the last bucket,
which holds every contact sharing at least that many: the table starts as one bucket and
only the bucket that covers our own key splits when it overflows (the libp2p/kad layout,
equivalent to the original paper's split tree). A full bucket that may not split keeps the
newcomer in a small replacement cache; the oldest contacts stay (they are the likeliest
to stay up) until they fail `failures_max` queries in a row, when the freshest
replacement takes their place.

`closest(target, n)` visits buckets in increasing distance from the target, so it sorts
a few buckets instead of the whole table (checked against a brute-force sort by a
Hypothesis test).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import lru_cache
from hashlib import sha256

from colonynode.core.ids import NodeId
from colonynode.dht.messages import PeerInfo

__all__ = ["KEY_BITS", "Contact", "RoutingTable", "common_prefix_len", "key_of"]

KEY_BITS = 256
KEY_CACHE_MAX = 1 << 16  # node ids and keys whose position is remembered (per process)


@lru_cache(maxsize=KEY_CACHE_MAX)
def key_of(data: bytes) -> int:
    """The key-space position of a node id or record key: sha256 as a big-endian integer."""
    return int.from_bytes(sha256(data).digest(), "big")


def common_prefix_len(a: int, b: int) -> int:
    """Leading bits two keys share (KEY_BITS when equal)."""
    return KEY_BITS - (a ^ b).bit_length()


class Contact:
    """A peer in the table (or waiting in a replacement cache)."""

    __slots__ = ("_addrs", "failures", "info", "key", "node_id", "seen_s")

    def __init__(self, node_id: NodeId, key: int, addrs: tuple[str, ...], seen_s: float) -> None:
        self.node_id = node_id
        self.key = key
        self.seen_s = seen_s
        self.failures = 0
        self.addrs = addrs

    @property
    def addrs(self) -> tuple[str, ...]:
        return self._addrs

    @addrs.setter
    def addrs(self, addrs: tuple[str, ...]) -> None:
        self._addrs = addrs
        self.info = PeerInfo(self.node_id, addrs)  # what answers carry, made once


class RoutingTable:
    """k-buckets around `self_id`; every bucket holds at most `k` contacts."""

    def __init__(
        self,
        self_id: NodeId,
        *,
        k: int = 20,
        replacements_max: int = 8,
        failures_max: int = 2,
        addrs_max: int = 8,
    ) -> None:
        if k < 1:
            raise ValueError("k is at least 1")
        self.self_id = self_id
        self.self_key = key_of(self_id)
        self.k = k
        self.replacements_max = replacements_max
        self.failures_max = failures_max
        self.addrs_max = addrs_max
        # buckets[i]: node ids, least recently seen first; contacts: every one of them.
        self.buckets: list[list[NodeId]] = [[]]
        self.replacements: list[list[Contact]] = [[]]
        self.touched_s: list[float] = [0.0]
        self.contacts: dict[NodeId, Contact] = {}
        self.keys: dict[NodeId, int] = {}  # contact -> its key (what closest() sorts by)
        self.removals = 0  # contacts dropped so far (callers cache "who is closer")

    # -- reads ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.contacts)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.contacts

    def __iter__(self) -> Iterator[Contact]:
        return iter(self.contacts.values())

    def get(self, node_id: NodeId) -> Contact | None:
        return self.contacts.get(node_id)

    def bucket_index(self, key: int) -> int:
        return min(common_prefix_len(self.self_key, key), len(self.buckets) - 1)

    def closest(self, target: int, n: int) -> list[Contact]:
        """The `n` contacts closest to key `target` by XOR distance, closest first."""
        if n <= 0 or not self.contacts:
            return []
        contacts = self.contacts
        last = len(self.buckets) - 1
        c = common_prefix_len(self.self_key, target)
        # Groups in increasing distance from the target. If c < last: bucket c agrees
        # with the target on bit c (the closest group), buckets c+1..last differ from it
        # exactly at bit c (the next group, as one), then buckets c-1, c-2, ..., 0 differ
        # first at their own index. If c >= last, bucket `last` comes first.
        groups: list[list[NodeId]]
        if c < last:
            tail: list[NodeId] = []
            for i in range(c + 1, last + 1):
                tail.extend(self.buckets[i])
            groups = [self.buckets[c], tail]
            below = c - 1
        else:
            groups = [self.buckets[last]]
            below = last - 1
        keys = self.keys
        out: list[tuple[int, NodeId]] = []
        for group in groups:
            out.extend(sorted([(keys[x] ^ target, x) for x in group]))
            if len(out) >= n:
                return [contacts[x] for _, x in out[:n]]
        for i in range(below, -1, -1):
            bucket = self.buckets[i]
            if bucket:
                out.extend(sorted([(keys[x] ^ target, x) for x in bucket]))
                if len(out) >= n:
                    break
        return [contacts[x] for _, x in out[:n]]

    # -- changes ---------------------------------------------------------------------------

    def seen(self, node_id: NodeId, now_s: float, addrs: tuple[str, ...] = ()) -> bool:
        """A peer answered or asked us: add it or refresh it. True if it is in the table."""
        if node_id == self.self_id:
            return False
        contact = self.contacts.get(node_id)
        if contact is not None:
            contact.seen_s = now_s
            contact.failures = 0
            if addrs:
                contact.addrs = addrs[: self.addrs_max]
            bucket = self.buckets[self.bucket_index(contact.key)]
            if bucket[-1] != node_id:
                bucket.remove(node_id)
                bucket.append(node_id)
            return True
        contact = Contact(node_id, key_of(node_id), addrs[: self.addrs_max], now_s)
        while True:
            index = self.bucket_index(contact.key)
            bucket = self.buckets[index]
            if len(bucket) < self.k:
                self._drop_replacement(index, node_id)
                bucket.append(node_id)
                self.contacts[node_id] = contact
                self.keys[node_id] = contact.key
                return True
            if index == len(self.buckets) - 1 and index < KEY_BITS - 1:
                self._split()
                continue
            self._add_replacement(index, contact)
            return False

    def failed(self, node_id: NodeId) -> bool:
        """A query to the peer timed out. True if that removed it from the table."""
        contact = self.contacts.get(node_id)
        if contact is None:
            return False
        contact.failures += 1
        if contact.failures < self.failures_max:
            return False
        self.remove(node_id)
        return True

    def remove(self, node_id: NodeId) -> None:
        """Drop a contact; the freshest replacement of its bucket takes the place."""
        contact = self.contacts.pop(node_id, None)
        if contact is None:
            return
        del self.keys[node_id]
        self.removals += 1
        index = self.bucket_index(contact.key)
        self.buckets[index].remove(node_id)
        waiting = self.replacements[index]
        if waiting:
            promoted = waiting.pop()
            self.buckets[index].append(promoted.node_id)
            self.contacts[promoted.node_id] = promoted
            self.keys[promoted.node_id] = promoted.key

    def touch(self, target: int, now_s: float) -> None:
        """A lookup for `target` ran: its bucket needs no refresh for a while."""
        self.touched_s[self.bucket_index(target)] = now_s

    def stale_buckets(self, now_s: float, interval_s: float) -> list[int]:
        return [i for i, t in enumerate(self.touched_s) if now_s - t >= interval_s]

    def random_key_in_bucket(self, index: int, rng: random.Random) -> int:
        """A random key sharing exactly `index` leading bits with ours."""
        low_bits = KEY_BITS - 1 - index
        flipped = self.self_key ^ (1 << low_bits)
        mask = (1 << low_bits) - 1
        return (flipped & ~mask) | rng.getrandbits(low_bits) if low_bits else flipped

    # -- internals -------------------------------------------------------------------------

    def _split(self) -> None:
        """The last bucket covers our key and is full: its deeper half moves out."""
        last = len(self.buckets) - 1
        keep: list[NodeId] = []
        moved: list[NodeId] = []
        for node_id in self.buckets[last]:
            if common_prefix_len(self.self_key, self.contacts[node_id].key) > last:
                moved.append(node_id)
            else:
                keep.append(node_id)
        keep_r = [
            c for c in self.replacements[last] if common_prefix_len(self.self_key, c.key) == last
        ]
        moved_r = [
            c for c in self.replacements[last] if common_prefix_len(self.self_key, c.key) > last
        ]
        self.buckets[last] = keep
        self.replacements[last] = keep_r
        self.buckets.append(moved)
        self.replacements.append(moved_r)
        self.touched_s.append(self.touched_s[last])

    def _add_replacement(self, index: int, contact: Contact) -> None:
        waiting = self.replacements[index]
        self._drop_replacement(index, contact.node_id)
        waiting.append(contact)
        if len(waiting) > self.replacements_max:
            del waiting[0]

    def _drop_replacement(self, index: int, node_id: NodeId) -> None:
        waiting = self.replacements[index]
        for i, c in enumerate(waiting):
            if c.node_id == node_id:
                del waiting[i]
                return
