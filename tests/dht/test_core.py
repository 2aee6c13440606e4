"""DhtCore stepped by hand on a small network (tests/dht/net.py)."""

from __future__ import annotations

import dataclasses
import random
from hashlib import sha256

import pytest

from colonynode.core.ids import NodeId
from colonynode.dht.config import DhtConfig
from colonynode.dht.core import DhtCore
from colonynode.dht.events import (
    Dial,
    FindNodeResult,
    GetResult,
    Joined,
    ProvideResult,
    ProvidersResult,
    PutResult,
)
from colonynode.dht.fs import FileRecord, FileRevision
from colonynode.dht.messages import FindNode, PutValue
from colonynode.dht.records import PeerRecord, peer_key
from colonynode.dht.routing import key_of
from tests.dht.net import Net


def brute_closest(net: Net, target: bytes, n: int, exclude: int) -> list[NodeId]:
    t = int.from_bytes(target, "big")
    live = [x for i, x in enumerate(net.ids) if i not in net.down and i != exclude]
    return sorted(live, key=lambda x: key_of(x) ^ t)[:n]


def test_a_join_through_one_peer_fills_the_table_and_publishes_our_address() -> None:
    net = Net(30)
    net.join_all()
    joined = net.results(Joined)
    assert len(joined) == 30  # node 0 too, once others found it
    assert all(len(core.table) >= 10 for core in net.cores)
    puts = [e for e in net.results(PutResult) if e.key.startswith("/peer/")]
    assert len(puts) == 30 and all(p.ok for p in puts)


def test_lookups_converge_on_the_true_closest_nodes_of_a_static_network() -> None:
    net = Net(60, wire=True)
    net.join_all()
    for i, seed in enumerate((b"a", b"b", b"c", b"d")):
        target = sha256(seed).digest()
        req = net.call(i, lambda core, now_s, t=target: core.find_node(now_s, t))
        [result] = [r for r in net.results(FindNodeResult, i) if r.req_id == req]
        expected = brute_closest(net, target, net.config.k, exclude=i)
        assert [p.node_id for p in result.peers] == expected
        assert result.hops is not None and result.hops <= 3


def test_a_lookup_survives_peers_that_never_answer() -> None:
    net = Net(40)
    net.join_all()
    target = sha256(b"t").digest()
    net.down.update(net.index[x] for x in brute_closest(net, target, 5, exclude=0))
    req = net.call(0, lambda core, now_s: core.find_node(now_s, target))
    assert not [r for r in net.results(FindNodeResult, 0) if r.req_id == req]  # waiting
    net.advance(net.config.query_timeout_s * 4)
    [result] = [r for r in net.results(FindNodeResult, 0) if r.req_id == req]
    assert result.failures == 5
    # the live peers still found, in order: answers name the dead ones among their k
    # closest, so k - 5 of them are found, and they are the closest live ones
    found = [p.node_id for p in result.peers]
    assert len(found) >= net.config.k - 5
    assert found == brute_closest(net, target, len(found), 0)


def test_a_get_returns_the_newest_version_and_repairs_stale_copies() -> None:
    net = Net(30)
    net.join_all()
    key = peer_key(net.ids[5])
    holders_before = [i for i, c in enumerate(net.cores) if c.records.get(key) and i != 5]
    assert len(holders_before) >= 10
    # half the holders miss the update
    missed = set(holders_before[: len(holders_before) // 2])
    net.down |= missed
    req = net.call(5, lambda core, now_s: core.set_addrs(now_s, ["/new"]))
    net.advance(net.config.query_timeout_s * 20)
    [put] = [r for r in net.results(PutResult, 5) if r.req_id == req]
    assert put.ok and put.seq == 1
    net.down -= missed
    assert all(net.cores[i].records.get(key)[0].seq == 0 for i in missed)
    req = net.call(7, lambda core, now_s: core.get(now_s, key))
    [result] = [r for r in net.results(GetResult, 7) if r.req_id == req]
    assert result.seq == 1 and result.value == PeerRecord(("/new",))
    assert result.quorum and result.repaired >= 1
    # the stale copies the read met were overwritten with the newest one
    assert sum(1 for i in missed if net.cores[i].records.get(key)[0].seq == 1) >= 1


def test_a_get_never_answers_from_the_local_copy_alone() -> None:
    net = Net(20)
    net.join_all()
    key = peer_key(net.ids[3])
    reader = next(i for i, c in enumerate(net.cores) if c.records.get(key) and i != 3)
    net.down |= {i for i in range(20) if i != reader}
    req = net.call(reader, lambda core, now_s: core.get(now_s, key))
    net.advance(net.config.query_timeout_s * 20)  # every peer, alpha at a time, times out
    [result] = [r for r in net.results(GetResult, reader) if r.req_id == req]
    assert not result.quorum and result.answers == 0  # the caller learns nobody answered
    assert not result.expired  # every peer was asked, and failed, before the deadline


def test_a_get_cut_short_by_its_deadline_says_so() -> None:
    config = dataclasses.replace(DhtConfig.local(), lookup_timeout_s=2.5)
    net = Net(20, config)
    net.join_all()
    key = peer_key(NodeId(sha256(b"no one wrote it").digest()))
    reader = 7
    net.down |= {i for i in range(20) if i != reader}  # each query waits 1 s, 3 at a time
    req = net.call(reader, lambda core, now_s: core.get(now_s, key))
    net.advance(config.query_timeout_s * 20)
    [result] = [r for r in net.results(GetResult, reader) if r.req_id == req]
    assert result.expired and result.seq is None and result.answers == 0


def test_records_expire_at_their_ttl() -> None:
    config = DhtConfig.local().with_(record_ttl_s=30.0, expire_sweep_s=1.0)
    net = Net(10, config)
    net.join_all()
    key = peer_key(net.ids[2])
    holder = next(i for i, c in enumerate(net.cores) if c.records.get(key) and i != 2)
    net.down.add(2)  # the author cannot republish
    net.advance(25.0, step_s=1.0)
    assert net.cores[holder].records.get(key)
    net.advance(8.0, step_s=1.0)
    assert not net.cores[holder].records.get(key)
    assert net.stores[holder].get("dht_records", key.encode()) is None


def test_authors_republish_once_soon_then_at_half_the_ttl() -> None:
    config = DhtConfig.local().with_(record_ttl_s=40.0, expire_sweep_s=1.0, settle_republish_s=5.0)
    net = Net(10, config)
    net.join_all()
    key = peer_key(net.ids[2])
    before = net.delivered
    sent: list[float] = []
    real = net.cores[2].take_effects

    def spy() -> object:
        effects = real()
        if any(isinstance(m, PutValue) for _, m in effects.sends):
            sent.append(net.now_s)
        return effects

    net.cores[2].take_effects = spy  # type: ignore[method-assign]
    net.advance(45.0, step_s=1.0)
    assert net.delivered > before
    # published at 0 s (its join), stored again after settle_republish_s, then every TTL/2
    assert [round(t) for t in sent] == [5, 25, 45]
    holders = [c for c in net.cores if c.records.get(key)]
    assert len(holders) >= 5  # the record outlived its first TTL


def test_providers_are_announced_and_found() -> None:
    net = Net(25)
    net.join_all()
    chunk = sha256(b"chunk").digest()
    req = net.call(4, lambda core, now_s: core.add_provider(now_s, chunk))
    [done] = [r for r in net.results(ProvideResult, 4) if r.req_id == req]
    assert done.ok and done.stored >= 10
    req = net.call(9, lambda core, now_s: core.get_providers(now_s, chunk, 1))
    [found] = [r for r in net.results(ProvidersResult, 9) if r.req_id == req]
    assert [p.node_id for p in found.providers] == [net.ids[4]]
    assert found.providers[0].addrs == ("/ip4/10.0.0.4/tcp/4001",)


def test_concurrent_file_revisions_all_survive_and_resolve_the_same_everywhere() -> None:
    net = Net(25)
    net.join_all()

    def add(i: int, rid: str, t: int) -> None:
        revision = FileRevision(rid, bytes([t]) * 32, t, (), net.ids[i], t)
        net.cores[i].fs_add_revision(net.now_s, "lab", "data", "a.csv", revision)
        net.flush(i)

    add(1, "r1", 1)
    net.run()
    add(2, "r2", 2)  # two writers, neither has seen the other's revision
    add(3, "r3", 3)
    net.run()
    reads = []
    for reader in (0, 10, 20):
        req = net.call(reader, lambda core, now_s: core.fs_get(now_s, "lab", "data", "a.csv"))
        [r] = [x for x in net.results(GetResult, reader) if x.req_id == req]
        reads.append(r.value)
    assert all(isinstance(v, FileRecord) for v in reads)
    assert all([rev.id for rev in v.revisions] == ["r1", "r2", "r3"] for v in reads)
    assert all(v.latest == "r3" for v in reads)


def test_stores_over_the_per_peer_rate_are_refused() -> None:
    config = DhtConfig.local().with_(store_rate_per_s=1.0, store_burst=3.0)
    net = Net(10, config)
    net.join_all()
    target = net.cores[1]
    refused_before = target.stats["refused_rate"]
    record = next(iter(target.records.entries.values())).heads[0].envelope
    for rid in range(10):
        target.on_message(net.now_s, net.ids[2], PutValue(rid, (record,)))
    acks = [m for _, m in target.take_effects().sends]
    assert sum(1 for a in acks if a.stored) <= 3
    assert target.stats["refused_rate"] - refused_before >= 7
    assert all(a.reason == "rate" for a in acks if not a.stored)


def test_a_send_to_an_unconnected_peer_asks_the_driver_to_dial_it() -> None:
    net = Net(5)
    net.join_all()
    core = net.cores[0]
    core.set_peers(net.now_s, [net.ids[1]])
    core.find_node(net.now_s, sha256(b"x").digest())
    effects = core.take_effects()
    dials = [e for e in effects.events if isinstance(e, Dial)]
    sent_to = {dest for dest, m in effects.sends if isinstance(m, FindNode)}
    assert {d.node_id for d in dials} == sent_to - {net.ids[1]}
    for d in dials:  # what the table knows (a peer that only asked us: nothing yet)
        contact = core.table.get(d.node_id)
        assert contact is not None and d.addrs == contact.addrs


def test_a_restarted_node_keeps_its_records_and_rejoins_from_saved_contacts() -> None:
    net = Net(20)
    net.join_all()
    net.advance(6.0)  # contacts saved
    held = sorted(net.cores[7].records.keys())
    net.down.add(7)
    net.restart(7)
    assert sorted(net.cores[7].records.keys()) == held
    net.advance(2.0)
    assert net.cores[7].joined and len(net.cores[7].table) >= 10


def test_a_core_needs_its_own_identity_to_sign() -> None:
    net = Net(2)
    with pytest.raises(ValueError):
        DhtCore(net.ids[0], net.stores[0], random.Random(1), identity=net.identities[1])


def test_messages_from_non_members_are_dropped() -> None:
    net = Net(3)
    outsider = net.ids[2]
    core = DhtCore(
        net.ids[0],
        net.stores[0],
        random.Random(1),
        net.config,
        identity=net.identities[0],
        is_member=lambda nid: nid != outsider,
    )
    core.on_message(0.0, outsider, FindNode(1, b"\0" * 32))
    assert not core.take_effects().sends and outsider not in core.table
    assert core.stats["refused_member"] == 1
    core.on_message(0.0, net.ids[1], FindNode(2, b"\0" * 32))
    assert [m.rid for _, m in core.take_effects().sends] == [2]


def test_file_records_by_authors_may_write_refuses_are_not_stored() -> None:
    net = Net(2)
    writer = net.ids[1]
    core = DhtCore(
        net.ids[0],
        net.stores[0],
        random.Random(1),
        net.config,
        identity=net.identities[0],
        may_write=lambda author, key: author != writer,
    )
    other = net.cores[1]
    revision = FileRevision("r1", b"\1" * 32, 1, (), writer, 1)
    other.fs_add_revision(0.0, "lab", "data", "a", revision)  # nobody to ask: stored locally
    [record] = other.records.get("/fs/lab/data/a")
    core.on_message(0.0, writer, PutValue(7, (record.envelope,)))
    [(_, ack)] = core.take_effects().sends
    assert not ack.stored and ack.reason == "invalid"
    assert not core.records.get("/fs/lab/data/a")
