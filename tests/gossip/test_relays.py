"""No relay of a record to a peer its author sent it to, and what a relay left out is
offered by IHAVE at the next heartbeat (gossip/core.py, `sent_to`)."""

from __future__ import annotations

from colonynode.gossip import GossipConfig, IHave, Push
from tests.gossip.harness import Colony


def copies_to(colony: Colony, dst: int, signature: bytes) -> int:
    return sum(
        1 for m in colony.sent_to(dst, Push) for env in m.records if env.signature == signature
    )


def test_in_a_full_mesh_every_node_gets_a_record_once_from_its_author() -> None:
    n = 6
    colony = Colony(n)
    assert all(len(core.mesh) == n - 1 for core in colony.cores)  # a full mesh
    env = colony.publish(0, "hello")
    for i in range(1, n):
        assert colony.cores[i].has(env.author, 1)
        assert copies_to(colony, i, env.signature) == 1  # the author's push, no relay
    skipped = sum(core.stats()["relays_skipped"] for core in colony.cores)
    assert skipped == (n - 1) * (n - 2)  # each receiver left out every other receiver
    assert sum(core.stats()["duplicates"] for core in colony.cores) == 0


def test_a_copy_the_author_lost_comes_by_ihave_at_the_next_heartbeat() -> None:
    colony = Colony(5, GossipConfig(anti_entropy_every_hb=1000))  # no anti-entropy in time
    colony.tick_all(2.0, step_s=0.25)
    victim, author = 3, 0
    colony.drop = lambda src, dst, msg: src == author and dst == victim and isinstance(msg, Push)
    env = colony.publish(author, "lost on one link")
    assert not colony.cores[victim].has(env.author, 1)  # nobody relayed it: it was "sent"
    start_s = colony.now_s
    heard = len(colony.sent_to(victim, IHave))
    while not colony.cores[victim].has(env.author, 1):
        assert colony.now_s < start_s + 1.5, "not offered within a heartbeat"
        colony.tick_all(colony.now_s + 0.25, step_s=0.25)
    assert len(colony.sent_to(victim, IHave)) > heard  # it came by IHAVE -> IWANT


def test_a_relayed_push_that_names_peers_does_not_stop_relays_of_others_records() -> None:
    colony = Colony(4)
    env = colony.publish(0, "x")  # held everywhere now
    fresh = Colony(4)  # a colony that has not seen it: node 1 relays node 0's record
    core = fresh.cores[1]
    names = tuple(bytes(fresh.node_id(j))[:8] for j in (2, 3))
    core.on_message(fresh.now_s, fresh.node_id(0), Push((env,), names))
    own = core.take_effects().sends
    assert not [p for p, m in own if isinstance(m, Push)]  # from its author: no relay
    other = Colony(4).cores[1]
    other.on_message(fresh.now_s, fresh.node_id(2), Push((env,), names))  # from a relay
    relayed = [p for p, m in other.take_effects().sends if isinstance(m, Push)]
    assert sorted(relayed) == sorted([fresh.node_id(3)])  # not back to 2, nor to author 0


def test_no_ihave_offers_a_record_to_a_peer_sure_to_get_it_another_way() -> None:
    """A submission record goes to the voters in their Submits (`reached`, `sure`): an
    IHAVE naming it to a voter whose Submits queue behind a burst would have it fetch the
    record twice. The other peers are offered it as usual."""
    n = 24  # more peers than the mesh holds: the heartbeat's IHAVEs go to the others
    colony = Colony(n, GossipConfig(anti_entropy_every_hb=1000))
    colony.tick_all(2.0, step_s=0.25)
    author = 0
    core = colony.cores[author]
    lazy = [colony.index[p] for p in core.peers if p not in core.mesh]
    assert len(lazy) >= 2
    voters, other = lazy[:-1], lazy[-1]
    reached = [colony.node_id(v) for v in voters]
    env = colony.net.call(author, lambda core, now_s: core.publish(now_s, "note", "submission",
                                                                  reached=reached))  # fmt: skip
    seq = core.ledger.hwm[env.author]
    colony.drop = lambda src, dst, msg: isinstance(msg, Push)  # nobody gets it by push
    colony.settle()
    before = len(colony.sent)
    colony.tick_all(colony.now_s + 3.0, step_s=0.25)

    def offered(dst: int) -> bool:
        return any(
            r.author == env.author and r.first <= seq <= r.last
            for s, d, m in colony.sent[before:]
            if s == author and d == dst and isinstance(m, IHave)
            for r in m.ranges
        )

    assert not any(offered(v) for v in voters)
    assert offered(other)  # a peer the author's push missed is offered it
