"""Every cache and queue of the core stays under its named *_max."""

from __future__ import annotations

from colonynode.gossip import GossipConfig, IHave, IWant, Push, SeqRange, seal_record
from tests.gossip.harness import Colony, identity


def _feed(colony: Colony, core_index: int, author: int, seqs: range) -> None:
    ident = colony.ids[author] if author < len(colony.ids) else identity(author)
    core = colony.cores[core_index]
    for s in seqs:
        core.on_message(colony.now_s, colony.node_id(1), Push((seal_record(ident, s, "n", s),)))
    colony.stores[core_index].apply(core.take_effects().writes)


def test_the_seen_cache_and_the_record_cache_evict_the_oldest() -> None:
    colony = Colony(3, GossipConfig(seen_max=5, cache_max=4))
    _feed(colony, 0, 2, range(1, 21))
    core = colony.cores[0]
    assert len(core._seen) == 5
    assert len(core.ledger._cache) == 4
    # Evicted records are still served, from the store.
    assert core.record(colony.node_id(2), 1) is not None


def test_records_too_far_past_the_high_water_mark_are_refused() -> None:
    colony = Colony(3, GossipConfig(ahead_max=10))
    _feed(colony, 0, 2, range(10, 12))
    stats = colony.cores[0].stats()
    assert stats["too_far_ahead"] == 1 and stats["gaps"] == 1


def test_authors_are_bounded() -> None:
    colony = Colony(3, GossipConfig(authors_max=2))
    for extra in (10, 11, 12):
        colony.members.add(identity(extra).node_id)
    for author in (10, 11, 12):
        _feed(colony, 0, author, range(1, 2))
    stats = colony.cores[0].stats()
    assert stats["authors"] == 2 and stats["too_many_authors"] == 1


def test_the_per_peer_outbox_drops_past_its_bound() -> None:
    colony = Colony(3, GossipConfig(outbox_records_max=5))
    core = colony.cores[0]
    for k in range(8):
        core.publish(colony.now_s, "n", k)  # one step: 8 records for each peer
    effects = core.take_effects()
    per_peer = {}
    for dest, msg in effects.sends:
        if isinstance(msg, Push):
            per_peer[dest] = per_peer.get(dest, 0) + len(msg.records)
    assert set(per_peer.values()) == {5}
    assert core.stats()["outbox_dropped"] == 2 * 3


def test_pushes_are_split_into_messages_of_at_most_records_per_message_max() -> None:
    colony = Colony(2, GossipConfig(records_per_message_max=4))
    core = colony.cores[0]
    for k in range(10):
        core.publish(colony.now_s, "n", k)
    sizes = [len(m.records) for _, m in core.take_effects().sends if isinstance(m, Push)]
    assert sizes == [4, 4, 2]


def test_pending_iwants_and_iwant_sizes_are_bounded() -> None:
    colony = Colony(4, GossipConfig(iwant_pending_max=7, iwant_records_max=5))
    core = colony.cores[0]
    author = colony.node_id(3)
    core.on_message(colony.now_s, colony.node_id(1), IHave((SeqRange(author, 1, 1000),)))
    core.on_message(colony.now_s, colony.node_id(2), IHave((SeqRange(author, 1, 1000),)))
    core.take_effects()
    assert core.stats()["iwant_sent"] == 5 + 2
    assert len(core._pending) == 7


def test_ihaves_from_one_peer_are_bounded_per_heartbeat() -> None:
    colony = Colony(3, GossipConfig(ihave_per_peer_hb_max=2))
    core = colony.cores[0]
    for s in range(1, 5):
        ihave = IHave((SeqRange(colony.node_id(2), s, s),))
        core.on_message(colony.now_s, colony.node_id(1), ihave)
    core.take_effects()
    assert core.stats()["ihave_ignored"] == 2


def test_gossip_windows_hold_at_most_gossip_ids_max_ids() -> None:
    colony = Colony(2, GossipConfig(gossip_ids_max=3))
    core = colony.cores[0]
    for k in range(6):
        core.publish(colony.now_s, "n", k)
    core.take_effects()
    assert sum(len(w) for w in core._windows) == 3


def test_iwants_from_one_peer_are_bounded_per_heartbeat() -> None:
    colony = Colony(3, GossipConfig(iwant_per_peer_hb_max=2))
    env = colony.publish(0, "x")
    core = colony.cores[0]
    for _ in range(4):
        core.on_message(colony.now_s, colony.node_id(1), IWant((SeqRange(env.author, 1, 1),)))
    pushes = [m for _, m in core.take_effects().sends if isinstance(m, Push)]
    assert len(pushes) == 1 and len(pushes[0].records) == 2  # two IWANTs served, batched
    assert core.stats()["iwant_ignored"] == 2


def test_pushes_of_big_records_stay_under_the_byte_budget_and_all_arrive() -> None:
    """Ten records of ~150 KB (a ColonyFS commit of thousands of files) in one step: each
    push holds at most PUSH_BYTES_MAX of them (one alone when it is bigger), so none is
    over the 1 MiB frame cap that would drop it whole."""
    from colonynode.gossip.messages import CODEC, PUSH_BYTES_MAX

    colony = Colony(2)
    core = colony.cores[0]
    for k in range(10):
        core.publish(colony.now_s, "big", "x" * 150_000 + str(k))
    pushes = [m for _, m in core.take_effects().sends if isinstance(m, Push)]
    assert sum(len(p.records) for p in pushes) == 10 and len(pushes) >= 5
    for push in pushes:
        size = sum(len(e.payload) for e in push.records)
        assert len(push.records) == 1 or size <= PUSH_BYTES_MAX
        assert len(CODEC.encode_batch([push])) < (1 << 20)
