"""What survives a restart: held records, high-water marks, gaps, the own sequence;
retention compacts bodies; GONE lets a node move past what everyone compacted."""

from __future__ import annotations

import random

from colonynode.core.identity import Identity
from colonynode.gossip import Gone, GossipConfig, IWant, Push, SeqRange, seal_record
from colonynode.gossip._ledger import SEQ_BLOCK, TABLE_AHEAD, TABLE_META, TABLE_RECORDS
from colonynode.gossip.core import OWN_SEQ_MARGIN, VOID_KIND, GossipCore
from colonynode.gossip.records import open_body
from colonynode.storage import MemoryStore
from tests.gossip.harness import Colony


def test_a_restarted_node_does_not_deliver_old_records_again() -> None:
    colony = Colony(6)
    colony.tick_all(1.0, step_s=0.25)
    for k in range(5):
        colony.publish(k % 3, k)
    colony.crash(4)
    colony.events[4].clear()
    colony.restart(4)
    colony.tick_all(colony.now_s + 5.0, step_s=0.25)  # digests, IHAVEs: nothing new
    assert colony.accepted(4) == []
    assert colony.cores[4].digest() == colony.cores[0].digest()
    assert colony.cores[4].stats()["bodies"] == 5


def test_the_own_sequence_survives_a_restart_and_leaves_no_gap() -> None:
    """A restart resumes past the reservation; the numbers passed over are void
    records, so the peers' high-water marks move without anyone saying "gone"."""
    colony = Colony(3)
    author = colony.node_id(0)
    colony.publish(0, "one")
    colony.publish(0, "two")
    colony.crash(0)
    colony.restart(0)
    colony.tick_all(colony.now_s + 0.5, step_s=0.25)  # the first tick fills the numbers
    env = colony.publish(0, "three")
    got = colony.accepted(1)
    real = [e.seq for e in got if e.kind == "note"]
    voids = [e.seq for e in got if e.kind == VOID_KIND]
    assert real[:2] == [1, 2] and real[2] > 2 and env.author == author
    assert sorted(voids) == list(range(3, real[2]))
    assert colony.cores[0].stats()["own_seqs_skipped"] == len(voids) > 0
    for core in colony.cores[1:]:
        assert core.ledger.get(author, real[2]) == env
        assert core.ledger.hwm[author] == real[2] and not core.ledger.ahead.get(author)
        assert core.stats()["gone_skipped"] == 0


def test_a_record_sent_before_its_commit_keeps_its_number_after_a_crash() -> None:
    """What the daemon's early Submit relies on: a number below the durable reservation
    is never handed out again, even when the record that used it was never committed."""
    ident, store = Identity(bytes([9]) * 32), MemoryStore()
    core = GossipCore(ident, store, random.Random(0), is_member=lambda n: True)
    core.publish(0.0, "note", "committed")
    store.apply(core.take_effects().writes)
    reserved = core.ledger.reserved
    lost = core.publish(0.0, "note", "sent, never committed")
    core.take_effects()  # its writes are lost in the crash
    lost_seq = open_body(lost).seq
    assert lost_seq < reserved  # within what the first commit reserved
    again = GossipCore(ident, store, random.Random(1), is_member=lambda n: True)
    again.on_tick(0.0)  # void records for the numbers passed over
    voided = again.ledger.get(ident.node_id, lost_seq)
    assert voided is not None and open_body(voided).kind == VOID_KIND
    assert open_body(again.publish(0.0, "note", "after the restart")).seq > lost_seq


def test_numbers_are_reserved_a_block_at_a_time() -> None:
    ident, store = Identity(bytes([9]) * 32), MemoryStore()
    core = GossipCore(ident, store, random.Random(0), is_member=lambda n: True)
    writes = []
    for k in range(SEQ_BLOCK):
        core.publish(0.0, "note", k)
        writes += [w for w in core.take_effects().writes if w[0] == TABLE_META]
    assert 2 <= len(writes) <= 3  # not one a record
    assert all(value > core.ledger.next_seq - 1 for _, _, value in writes[-1:])


def test_a_node_with_a_lost_store_learns_its_sequence_back_from_a_digest() -> None:
    colony = Colony(3)
    for k in range(3):
        colony.publish(0, k)
    colony.crash(0)
    colony.stores[0] = type(colony.stores[0])()  # a fresh data dir, the same key
    colony.restart(0)
    colony.tick_all(colony.now_s + 4.0, step_s=0.25)
    env = colony.publish(0, "after")
    assert colony.cores[1].has(env.author, 4)
    assert [e.seq for e in colony.accepted(1)][-1] == 4


def test_gaps_survive_a_restart_and_fill_later() -> None:
    colony = Colony(3)
    author = colony.ids[2]
    recs = [seal_record(author, s, "note", s) for s in (1, 2, 3, 4)]
    core = colony.cores[0]
    core.on_message(0.0, colony.node_id(1), Push((recs[0], recs[2], recs[3])))
    colony.stores[0].apply(core.take_effects().writes)
    assert len(list(colony.stores[0].scan(TABLE_AHEAD))) == 2
    colony.crash(0)
    colony.restart(0)
    core = colony.cores[0]
    assert core.digest()[author.node_id] == 1 and core.has(author.node_id, 4)
    core.on_message(1.0, colony.node_id(1), Push((recs[1],)))
    colony.stores[0].apply(core.take_effects().writes)
    assert core.digest()[author.node_id] == 4
    assert list(colony.stores[0].scan(TABLE_AHEAD)) == []


def test_retention_compacts_bodies_per_kind_and_keeps_the_high_water_mark() -> None:
    cfg = GossipConfig(retention_s=100.0, retention_by_kind=(("closed", 5.0),))
    colony = Colony(3, cfg)
    colony.tick_all(1.0, step_s=0.5)
    colony.publish(0, "short", kind="closed")
    colony.publish(0, "long", kind="note")
    colony.tick_all(colony.now_s + 7.0, step_s=0.5)
    for i in range(3):
        core = colony.cores[i]
        assert core.record(colony.node_id(0), 1) is None
        assert core.record(colony.node_id(0), 2) is not None
        assert core.digest()[colony.node_id(0)] == 2
        assert len(list(colony.stores[i].scan(TABLE_RECORDS))) == 1


def test_records_max_compacts_the_oldest_bodies_early() -> None:
    colony = Colony(2, GossipConfig(records_max=3))
    for k in range(5):
        colony.publish(0, k)
    core = colony.cores[1]
    assert core.stats()["bodies"] == 3
    assert [core.record(colony.node_id(0), s) is None for s in range(1, 6)] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_an_iwant_for_compacted_records_is_answered_with_gone_and_skipped() -> None:
    colony = Colony(3, GossipConfig(retention_s=2.0))
    colony.crash(2)
    colony.set_all_peers()
    for k in range(4):
        colony.publish(0, k)
    colony.tick_all(colony.now_s + 4.0, step_s=0.5)  # everyone up compacted them
    author = colony.node_id(0)
    holder = colony.cores[1]
    holder.on_message(colony.now_s, colony.node_id(2), IWant((SeqRange(author, 1, 4),)))
    sends = holder.take_effects().sends
    assert sends == [(colony.node_id(2), Gone((SeqRange(author, 1, 4),)))]
    colony.restart(2)
    colony.tick_all(colony.now_s + 4.0, step_s=0.5)
    late = colony.cores[2]
    assert late.digest()[author] == 4 and late.stats()["gone_skipped"] == 4
    assert colony.accepted(2) == []  # compacted records are skipped, not delivered


def test_a_gone_is_taken_from_the_author_or_two_other_members_never_from_one() -> None:
    """One member's word that another's records are gone would blind this node to them
    for good (it would never ask for them again): it skips them when their author says
    so, or when two other members do, and then only up to where both say."""
    colony = Colony(4)
    author, a, b = colony.node_id(0), colony.node_id(1), colony.node_id(2)
    node = colony.cores[3]
    hwm = node.digest().get(author, 0)
    now = colony.now_s
    node.on_message(now, a, Gone((SeqRange(author, hwm + 1, hwm + 50),)))
    assert node.digest().get(author, 0) == hwm and node.stats()["gone_held"] == 1
    node.on_message(now, b, Gone((SeqRange(author, hwm + 1, hwm + 20),)))
    assert node.digest()[author] == hwm + 20  # what both said
    node.on_message(now, author, Gone((SeqRange(author, hwm + 21, hwm + 30),)))
    assert node.digest()[author] == hwm + 30  # its author alone


def test_a_node_that_lost_its_store_numbers_new_records_past_its_old_ones() -> None:
    """A node whose store was lost (its key kept) starts again at sequence 1: peers that
    hold its old records would drop the new ones as copies, for good. Told how far its
    old records went (the join's `seen_seq`), it numbers past them, and the peers get
    past the numbers it skipped (it says they are gone)."""
    colony = Colony(3)
    author = colony.node_id(0)
    for i in range(3):
        colony.publish(0, f"old {i}")
    assert all(core.ledger.hwm[author] == 3 for core in colony.cores)
    colony.crash(0)
    colony.stores[0] = MemoryStore()  # the store is lost, the key is not
    colony.restart(0)
    assert colony.cores[0].ledger.next_seq == 1
    seen = colony.cores[1].highest_seq(author)
    assert seen == 3
    colony.cores[0].resume_after(seen)
    new = colony.publish(0, "new")
    seq = colony.cores[0].ledger.hwm[author]
    assert seq > 3 + OWN_SEQ_MARGIN - 1 and colony.cores[0].stats()["own_seqs_skipped"] > 0
    colony.tick_all(colony.now_s + 3.0, step_s=0.25)
    for core in colony.cores[1:]:
        assert core.ledger.get(author, seq) == new  # accepted, not dropped as a copy
        assert core.ledger.hwm[author] == seq  # the skipped numbers are gone: no gap


def test_without_resume_a_node_that_lost_its_store_is_not_heard() -> None:
    """What resume_after prevents (the test above's premise)."""
    colony = Colony(3)
    author = colony.node_id(0)
    colony.publish(0, "old")
    colony.crash(0)
    colony.stores[0] = MemoryStore()
    colony.restart(0)
    new = colony.publish(0, "new")
    assert colony.cores[1].ledger.get(author, 1) != new
