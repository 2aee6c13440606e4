"""What a storer keeps: size caps, the records cap, providers per key, rate limits."""

from __future__ import annotations

from colonynode.core.codec import to_wire
from colonynode.core.effects import Write
from colonynode.core.envelope import seal
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.dht.config import DhtConfig
from colonynode.dht.local import RECORDS_TABLE, LocalRecords, Providers, RateLimiter
from colonynode.dht.records import (
    RECORD_DOMAIN,
    PeerNamespace,
    PeerRecord,
    SignedRecord,
    ValueRecord,
    peer_key,
)
from colonynode.storage.memory import MemoryStore


def record(i: int, seq: int = 0) -> SignedRecord:
    who = Identity(i.to_bytes(32, "big"))
    value = ValueRecord(peer_key(who.node_id), seq, to_wire(PeerRecord((f"/a/{i}",))), 60.0)
    return SignedRecord(seal(who, RECORD_DOMAIN, value), value)


def test_the_records_cap_refuses_new_keys_but_updates_held_ones() -> None:
    local = LocalRecords(MemoryStore(), DhtConfig(records_max=3))
    writes: list[Write] = []
    ns = PeerNamespace()
    assert [local.offer(0.0, ns, [record(i)], writes) for i in (1, 2, 3)] == ["", "", ""]
    assert local.offer(0.0, ns, [record(4)], writes) == "full"
    assert local.offer(0.0, ns, [record(1, seq=1)], writes) == ""
    assert len(local) == 3 and local.get(record(1).key)[0].seq == 1


def test_an_older_record_is_refused_as_stale() -> None:
    local = LocalRecords(MemoryStore(), DhtConfig())
    writes: list[Write] = []
    ns = PeerNamespace()
    assert local.offer(0.0, ns, [record(1, seq=5)], writes) == ""
    assert local.offer(0.0, ns, [record(1, seq=4)], writes) == "stale"


def test_records_are_persisted_and_come_back_after_a_restart() -> None:
    store = MemoryStore()
    local = LocalRecords(store, DhtConfig())
    writes: list[Write] = []
    local.offer(0.0, PeerNamespace(), [record(1)], writes)
    store.apply(writes)
    assert writes[0][0] == RECORDS_TABLE
    again = LocalRecords(store, DhtConfig(record_ttl_s=100.0))
    assert [h.digest for h in again.get(record(1).key)] == [record(1).digest]
    again.sweep(50.0, [])  # a restart stamps a full TTL from now
    assert again.sweep(149.0, []) == 0 and again.sweep(150.0, []) == 1


def test_a_republished_record_is_refreshed_without_being_checked_again() -> None:
    local = LocalRecords(MemoryStore(), DhtConfig(record_ttl_s=10.0))
    local.offer(0.0, PeerNamespace(), [record(1)], [])
    assert local.refresh(8.0, (record(1).envelope,))
    assert not local.refresh(8.0, (record(2).envelope,))
    assert local.sweep(0.0, []) == 0  # first sweep: restamp (none were loaded)
    assert local.sweep(17.0, []) == 0 and local.sweep(18.0, []) == 1


def test_providers_per_key_are_capped_keeping_the_freshest() -> None:
    providers = Providers(DhtConfig(providers_per_key_max=2))
    ids = [NodeId(bytes([i]) * 32) for i in range(3)]
    for t, p in enumerate(ids):
        assert providers.add(float(t), b"k", p, ()) == ""
    assert [p for p, _ in providers.get(b"k")] == ids[1:]
    providers.sweep(DhtConfig().provider_ttl_s + 1.5)
    assert [p for p, _ in providers.get(b"k")] == [ids[2]]


def test_the_rate_limiter_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3.0, peers_max=2)
    peer = NodeId(b"\1" * 32)
    assert [limiter.allow(peer, 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(peer, 0.5) and not limiter.allow(peer, 0.5)
    for i in range(5):  # tracking is bounded
        limiter.allow(NodeId(bytes([i + 2]) * 32), 1.0)
    assert len(limiter.buckets) == 2
