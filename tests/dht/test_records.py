"""Signed records: selection per namespace, validators, and the ColonyFS merge."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonynode.core.codec import to_wire
from colonynode.core.envelope import seal
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.dht.fs import FileRecord, FileRevision, fs_key, merge, merge_all, parse_fs_key
from colonynode.dht.records import (
    RECORD_DOMAIN,
    FsNamespace,
    PeerNamespace,
    PeerRecord,
    SignedRecord,
    ValueRecord,
    default_namespaces,
    namespace_of,
    open_record,
    peer_key,
    reduce,
)

ALICE = Identity(b"\1" * 32)
BOB = Identity(b"\2" * 32)


def signed(who: Identity, key: str, seq: int, value: object) -> SignedRecord:
    record = ValueRecord(key, seq, to_wire(value), 60.0)
    return SignedRecord(seal(who, RECORD_DOMAIN, record), record)


def rev(i: int, time_ns: int, author: NodeId = ALICE.node_id) -> FileRevision:
    return FileRevision(f"r{i}", bytes([i]) * 32, i, (bytes([i]) * 32,), author, time_ns)


def test_the_highest_sequence_number_wins() -> None:
    key = peer_key(ALICE.node_id)
    records = [signed(ALICE, key, seq, PeerRecord((f"/a/{seq}",))) for seq in (3, 7, 5)]
    for order in itertools.permutations(records):
        [best] = reduce(PeerNamespace(), order, 8)
        assert best.seq == 7


def test_equal_sequence_numbers_go_to_the_lowest_hash() -> None:
    key = peer_key(ALICE.node_id)
    records = [signed(ALICE, key, 4, PeerRecord((f"/a/{i}",))) for i in range(5)]
    lowest = min(records, key=lambda r: r.digest)
    for order in (records, records[::-1]):
        assert reduce(PeerNamespace(), order, 8) == [lowest]


def test_only_a_peer_writes_its_own_peer_record() -> None:
    ns = PeerNamespace()
    value = to_wire(PeerRecord(("/ip4/1.2.3.4/tcp/1",)))
    ns.validate(peer_key(ALICE.node_id), ALICE.node_id, value)
    with pytest.raises(ValidationError):
        ns.validate(peer_key(ALICE.node_id), BOB.node_id, value)


def test_a_record_with_a_bad_signature_is_refused() -> None:
    good = signed(ALICE, peer_key(ALICE.node_id), 1, PeerRecord(()))
    env = good.envelope
    forged = type(env)(env.author, env.domain, env.payload, bytes(64))

    with pytest.raises(ColonyError):
        open_record(forged, lambda e: e.verify(RECORD_DOMAIN), 1024)
    assert open_record(env, lambda e: e.verify(RECORD_DOMAIN), 1024).seq == 1


def test_a_record_over_the_size_cap_is_refused() -> None:
    big = signed(ALICE, peer_key(ALICE.node_id), 1, PeerRecord(("x" * 2000,)))
    with pytest.raises(ValidationError):
        open_record(big.envelope, lambda e: None, 1024)


def test_keys_go_to_the_longest_matching_namespace_and_unknown_ones_are_refused() -> None:
    spaces = default_namespaces()
    assert isinstance(namespace_of(spaces, "/fs/lab/data/x"), FsNamespace)
    assert isinstance(namespace_of(spaces, "/peer/abc"), PeerNamespace)
    with pytest.raises(ValidationError):
        namespace_of(spaces, "/other/x")


def test_fs_keys_round_trip_and_labels_may_hold_slashes() -> None:
    key = fs_key("lab", "/data/in/", "a.csv")
    assert key == "/fs/lab/data/in/a.csv"
    assert parse_fs_key(key) == ("lab", "data/in", "a.csv")


def test_fs_record_stored_under_another_key_is_refused() -> None:
    record = FileRecord.of("lab", "data", "a", [rev(1, 1)])
    FsNamespace().validate("/fs/lab/data/a", ALICE.node_id, to_wire(record))
    with pytest.raises(ValidationError):
        FsNamespace().validate("/fs/lab/data/b", ALICE.node_id, to_wire(record))


def test_concurrent_fs_records_are_all_kept_and_a_read_merges_them() -> None:
    key = fs_key("lab", "data", "a")
    base = FileRecord.of("lab", "data", "a", [rev(1, 10)])
    left = signed(ALICE, key, 2, FileRecord.of("lab", "data", "a", [rev(1, 10), rev(2, 20)]))
    right = signed(BOB, key, 2, FileRecord.of("lab", "data", "a", [rev(1, 10), rev(3, 15)]))
    old = signed(ALICE, key, 1, base)
    ns = FsNamespace()
    heads = reduce(ns, [old, left, right], 8)
    assert sorted(h.digest for h in heads) == sorted([left.digest, right.digest])  # old covered
    view = ns.view(heads)
    assert [r.id for r in view.revisions] == ["r1", "r3", "r2"]  # by time
    assert view.latest == "r2"
    # a writer that read both heads writes their union: it covers both
    union = ns.prepare(key, ALICE.node_id, heads, rev(4, 30))
    assert [r[0] for r in union[3]] == ["r1", "r3", "r2", "r4"]
    merged = SignedRecord(
        seal(ALICE, RECORD_DOMAIN, ValueRecord(key, 3, union, 60.0)),
        ValueRecord(key, 3, union, 60.0),
    )
    assert reduce(ns, [left, merged, right], 8) == [merged]


revisions = st.builds(
    FileRevision,
    id=st.sampled_from([f"r{i}" for i in range(6)]),
    sha256=st.sampled_from([bytes([i]) * 32 for i in range(3)]),
    size=st.integers(0, 3),
    chunks=st.just(()),
    author=st.sampled_from([ALICE.node_id, BOB.node_id]),
    time_ns=st.integers(0, 4),
)
file_records = st.lists(revisions, max_size=5).map(lambda rs: FileRecord.of("lab", "d", "f", rs))


@settings(max_examples=200, deadline=None)
@given(records=st.lists(file_records, min_size=1, max_size=5), data=st.data())
def test_fs_merge_keeps_every_revision_and_any_order_gives_the_same_result(
    records: list[FileRecord], data: st.DataObject
) -> None:
    merged = merge_all(records)
    assert merged is not None
    every_id = {r.id for rec in records for r in rec.revisions}
    assert {r.id for r in merged.revisions} == every_id  # none drops out
    order = data.draw(st.permutations(records))
    assert merge_all(order) == merged
    # any grouping too: merge(a, merge(b, c)) == merge(merge(a, b), c)
    if len(records) >= 3:
        a, b, c = records[:3]
        assert merge(a, merge(b, c)) == merge(merge(a, b), c)
    assert merge(merged, merged) == merged
    if merged.revisions:
        assert merged.latest == max(merged.revisions, key=lambda r: r.order).id


def test_a_file_record_must_be_sorted_with_the_right_latest() -> None:
    a, b = rev(1, 10), rev(2, 20)
    with pytest.raises(ValidationError):
        FileRecord("lab", "d", "f", (b, a), "r1")
    with pytest.raises(ValidationError):
        FileRecord("lab", "d", "f", (a, b), "r1")
    assert FileRecord("lab", "d", "f", (a, b), "r2").latest_revision == b
