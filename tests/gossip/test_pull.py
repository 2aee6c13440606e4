"""Lazy pull (IHAVE -> IWANT) and anti-entropy (SUMMARY -> DIGEST -> exact IWANT)."""

from __future__ import annotations

from colonynode.gossip import (
    Digest,
    GossipConfig,
    IHave,
    IWant,
    Push,
    SeqRange,
    Summary,
    seal_record,
)
from tests.gossip.harness import Colony


def test_a_node_that_missed_the_eager_push_pulls_the_record_after_an_ihave() -> None:
    colony = Colony(30, GossipConfig(anti_entropy_every_hb=1000))  # no digest in time
    colony.tick_all(2.0, step_s=0.25)
    victim = 7
    colony.drop = lambda src, dst, msg: (
        dst == victim
        and isinstance(msg, Push)
        and not any(isinstance(m, IWant) for s, d, m in colony.sent if s == victim)
    )
    env = colony.publish(0, "missed")
    assert not colony.cores[victim].has(env.author, 1)
    colony.tick_all(colony.now_s + 3.0, step_s=0.25)  # heartbeats: IHAVE, IWANT, push
    assert colony.cores[victim].has(env.author, 1)
    assert colony.sent_to(victim, IHave)
    wants = [m for s, _, m in colony.sent if s == victim and isinstance(m, IWant)]
    assert wants and wants[0].ranges == (SeqRange(env.author, 1, 1),)


def test_an_ihave_of_held_records_asks_for_nothing() -> None:
    colony = Colony(3)
    env = colony.publish(0, "held")
    core = colony.cores[1]
    core.on_message(colony.now_s, colony.node_id(2), IHave((SeqRange(env.author, 1, 1),)))
    assert not core.take_effects().sends


def test_an_iwant_is_not_repeated_before_the_followup_time() -> None:
    colony = Colony(4, GossipConfig(iwant_followup_s=2.0))
    core = colony.cores[1]
    author = colony.node_id(0)
    ihave = IHave((SeqRange(author, 1, 3),))
    core.on_message(colony.now_s, colony.node_id(2), ihave)
    first = core.take_effects().sends
    core.on_message(colony.now_s, colony.node_id(3), ihave)
    second = core.take_effects().sends
    assert first == [(colony.node_id(2), IWant((SeqRange(author, 1, 3),)))]
    assert second == []
    core.on_message(colony.now_s + 2.5, colony.node_id(3), ihave)
    assert core.take_effects().sends == [(colony.node_id(3), IWant((SeqRange(author, 1, 3),)))]


def test_anti_entropy_pulls_exactly_the_missing_ranges() -> None:
    colony = Colony(3)
    a, b = colony.cores[0], colony.cores[1]
    author = colony.ids[2]
    records = [seal_record(author, s, "note", s) for s in range(1, 11)]
    a.on_message(0.0, colony.node_id(2), Push(tuple(records)))  # a holds 1..10
    b.on_message(0.0, colony.node_id(2), Push(tuple(records[i] for i in (0, 1, 4, 5))))
    a.take_effects()
    b.take_effects()
    assert b.digest()[author.node_id] == 2
    # b starts a round with a: a's hash differs, so a answers with its digest.
    b.on_message(1.0, colony.node_id(0), Digest(a.digest()))
    sends = b.take_effects().sends
    assert sends == [
        (
            colony.node_id(0),
            IWant((SeqRange(author.node_id, 3, 4), SeqRange(author.node_id, 7, 10))),
        )
    ]
    a.on_message(1.0, colony.node_id(1), sends[0][1])
    (reply,) = a.take_effects().sends
    assert [e.signature for e in reply[1].records] == [
        records[i].signature for i in (2, 3, 6, 7, 8, 9)
    ]
    b.on_message(1.0, colony.node_id(0), reply[1])
    b.take_effects()
    assert b.digest() == a.digest()


def test_equal_summaries_start_no_exchange() -> None:
    colony = Colony(3)
    colony.publish(2, "x")
    a = colony.cores[0]
    a.on_message(1.0, colony.node_id(1), Summary(1, a.ledger.digest_hash()))
    assert a.take_effects().sends == []
    a.on_message(1.0, colony.node_id(1), Summary(0, bytes(16)))
    assert a.take_effects().sends == [(colony.node_id(1), Digest(a.digest()))]


def test_a_node_that_was_down_converges_by_anti_entropy_alone() -> None:
    colony = Colony(12, GossipConfig(history_gossip_hb=1))
    colony.tick_all(2.0, step_s=0.25)
    colony.crash(5)
    colony.set_all_peers()
    for k in range(30):
        colony.publish(k % 4, k)
    colony.tick_all(colony.now_s + 4.0, step_s=0.25)  # the IHAVE windows are gone
    colony.restart(5)
    colony.tick_all(colony.now_s + 4.0, step_s=0.25)
    assert colony.cores[5].digest() == colony.cores[0].digest()
    assert len(colony.accepted(5)) == 30
    assert colony.cores[5].stats()["iwant_sent"] >= 30


def test_records_past_a_gap_no_one_can_fill_still_reach_a_node_that_was_down() -> None:
    """Found by the voters scenario (partitions seed 87, chaos seed 28): a submitter killed
    for good right after its submission left a gap in its sequence numbers that no one
    could fill (its next record was never sent), so its later records sat past the gap
    at the nodes that had them and never reached a node that came back: digests carry
    only each author's contiguous high-water mark. Records held past a gap now count in
    the digest hash, and a digest exchange pushes them too."""
    colony = Colony(4, GossipConfig(history_gossip_hb=1))
    colony.tick_all(1.0, step_s=0.25)
    colony.crash(3)
    author = colony.ids[2]
    records = [seal_record(author, s, "note", s) for s in (1, 2, 4, 5)]  # 3: never sent
    colony.net.call(0, lambda core, now_s: core.on_message(now_s, colony.node_id(2),
                                                            Push(tuple(records))))  # fmt: skip
    colony.crash(2)  # its author is gone for good: no one can fill the gap at 3
    colony.tick_all(colony.now_s + 4.0, step_s=0.25)
    assert colony.cores[1].digest()[author.node_id] == 2  # 1 and 2; 4 and 5 past the gap
    colony.restart(3)
    colony.tick_all(colony.now_s + 6.0, step_s=0.25)
    got = sorted(e.seq for e in colony.accepted(3) if e.author == author.node_id)
    assert got == [1, 2, 4, 5]
    assert colony.cores[3].ledger.digest_hash() == colony.cores[0].ledger.digest_hash()
