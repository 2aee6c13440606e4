"""The routing table: k-buckets split around our key; closest() against brute force."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from colonynode.core.ids import NodeId
from colonynode.dht.routing import KEY_BITS, RoutingTable, common_prefix_len, key_of

node_ids = st.binary(min_size=32, max_size=32).map(NodeId)


@settings(max_examples=200, deadline=None)
@given(
    me=node_ids,
    peers=st.lists(node_ids, max_size=300, unique=True),
    target=st.integers(min_value=0, max_value=(1 << KEY_BITS) - 1),
    n=st.integers(min_value=1, max_value=40),
    k=st.sampled_from([1, 2, 4, 20]),
)
def test_closest_equals_a_brute_force_sort_by_xor_distance(
    me: NodeId, peers: list[NodeId], target: int, n: int, k: int
) -> None:
    table = RoutingTable(me, k=k)
    for p in peers:
        table.seen(p, 0.0)
    held = [c.node_id for c in table]
    expected = sorted(held, key=lambda p: key_of(p) ^ target)[:n]
    assert [c.node_id for c in table.closest(target, n)] == expected


@settings(max_examples=100, deadline=None)
@given(me=node_ids, peers=st.lists(node_ids, max_size=400, unique=True))
def test_buckets_hold_at_most_k_and_only_their_prefix_length(
    me: NodeId, peers: list[NodeId]
) -> None:
    table = RoutingTable(me, k=4)
    for p in peers:
        table.seen(p, 0.0)
    last = len(table.buckets) - 1
    for i, bucket in enumerate(table.buckets):
        assert len(bucket) <= 4
        for p in bucket:
            cpl = common_prefix_len(table.self_key, key_of(p))
            assert cpl == i or (i == last and cpl >= last)
    assert len(table) == sum(len(b) for b in table.buckets)


def test_only_the_bucket_around_our_key_splits() -> None:
    rng = random.Random(3)
    me = NodeId(rng.randbytes(32))
    table = RoutingTable(me, k=2)
    for _ in range(500):
        table.seen(NodeId(rng.randbytes(32)), 0.0)
    # far buckets stay full at k while deeper ones appear: the table grows ~log2(n)
    assert len(table.buckets[0]) == 2
    assert 4 <= len(table.buckets) <= 14
    assert len(table) <= 2 * len(table.buckets)


def test_a_full_bucket_keeps_old_contacts_and_queues_the_newcomer() -> None:
    rng = random.Random(4)
    me = NodeId(rng.randbytes(32))
    table = RoutingTable(me, k=2, replacements_max=2, failures_max=2)
    far = [
        p
        for p in (NodeId(rng.randbytes(32)) for _ in range(200))
        if common_prefix_len(table.self_key, key_of(p)) == 0
    ]
    a, b, c = far[:3]
    assert table.seen(a, 1.0) and table.seen(b, 2.0)
    assert not table.seen(c, 3.0)  # full: c waits as a replacement
    assert c not in table
    assert not table.failed(a)  # one failure is forgiven
    assert table.failed(a)  # the second removes a; c takes its place
    assert a not in table and c in table and b in table


def test_self_is_never_a_contact() -> None:
    me = NodeId(b"\1" * 32)
    table = RoutingTable(me)
    assert not table.seen(me, 0.0)
    assert len(table) == 0


def test_random_key_in_bucket_has_that_prefix_length() -> None:
    rng = random.Random(5)
    table = RoutingTable(NodeId(rng.randbytes(32)))
    for index in (0, 1, 7, 100, 255):
        key = table.random_key_in_bucket(index, rng)
        assert common_prefix_len(table.self_key, key) == index
