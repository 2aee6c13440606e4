"""Whom a node keeps links to (node/core/peerset.py): the voters, a random sample for
gossip, the owner's candidates; a bound for those that are no voter."""

from __future__ import annotations

import random

from colonynode.core.ids import NodeId
from colonynode.node.core.peerset import (
    BACKOFF_S,
    CANDIDATES_MAX,
    LINK_GRACE_S,
    PEERS_WANTED,
    SAMPLE_PATIENCE_S,
    PeerSet,
)


def ids(n: int) -> list[NodeId]:
    return [NodeId(bytes([i + 1]) * 32) for i in range(n)]


MEMBERS = ids(30)
ME, VOTERS = MEMBERS[10], MEMBERS[:3]


def test_a_small_colony_is_a_full_mesh() -> None:
    members = ids(PEERS_WANTED + 3 + 1)  # the voters, me and PEERS_WANTED others
    p = PeerSet(members[-1], random.Random(1))
    assert p.wanted(0.0, members, members[:3], ()) == set(members[:-1])


def test_a_large_colony_wants_the_voters_and_a_stable_random_sample() -> None:
    p = PeerSet(ME, random.Random(1))
    wanted = p.wanted(0.0, MEMBERS, VOTERS, ())
    assert set(VOTERS) <= wanted and ME not in wanted
    assert len(wanted) == len(VOTERS) + PEERS_WANTED
    assert p.wanted(1.0, MEMBERS, VOTERS, wanted) == wanted  # the same while linked
    other = PeerSet(ME, random.Random(2)).wanted(0.0, MEMBERS, VOTERS, ())
    assert other != wanted  # each node draws its own


def test_a_sampled_member_whose_link_ended_is_replaced_and_set_aside() -> None:
    p = PeerSet(ME, random.Random(1))
    wanted = p.wanted(0.0, MEMBERS, VOTERS, ())
    gone = next(n for n in sorted(wanted) if n not in VOTERS)
    p.lost({gone}, closed_here=set())
    again = p.wanted(1.0, MEMBERS, VOTERS, wanted - {gone})
    assert gone not in again and len(again) == len(wanted)
    assert gone in p.backoff and p.replaced == 1
    # one this node closed itself stays
    kept = next(n for n in sorted(again) if n not in VOTERS)
    p.lost({kept}, closed_here={kept})
    assert kept in p.wanted(2.0, MEMBERS, VOTERS, again - {kept})


def test_in_a_small_colony_a_lost_member_stays_and_is_dialled_again() -> None:
    members = ids(6)
    p = PeerSet(members[-1], random.Random(1))
    wanted = p.wanted(0.0, members, members[:3], ())
    p.lost({members[3]}, closed_here=set())
    assert p.wanted(1.0, members, members[:3], wanted - {members[3]}) == wanted
    late = p.wanted(SAMPLE_PATIENCE_S + 5, members, members[:3], set(members[:3]))
    assert late == wanted  # none to draw instead: kept however long it takes


def test_an_unreachable_sampled_member_is_replaced_after_the_patience() -> None:
    p = PeerSet(ME, random.Random(1))
    wanted = p.wanted(0.0, MEMBERS, VOTERS, ())
    linked = set(sorted(wanted)[:-1])  # one never answers
    never = (wanted - linked).pop()
    assert never in p.wanted(SAMPLE_PATIENCE_S - 1, MEMBERS, VOTERS, linked)
    later = p.wanted(SAMPLE_PATIENCE_S + 1, MEMBERS, VOTERS, linked)
    assert never not in later and len(later) == len(wanted)
    back = p.wanted(SAMPLE_PATIENCE_S + 1 + BACKOFF_S + 1, MEMBERS, VOTERS, later)
    assert back == later  # the sample is full: it is not drawn again by itself


def test_pruning_closes_unwanted_links_past_the_bound_oldest_first_after_the_grace() -> None:
    p = PeerSet(ME, random.Random(1))
    wanted = p.wanted(0.0, MEMBERS, VOTERS, ())
    others = [n for n in MEMBERS if n != ME and n not in wanted]
    # the voters and the sample (9), then 14 others dialled in, one a second
    linked = dict.fromkeys(sorted(wanted), 0.0) | {n: float(i) for i, n in enumerate(others[:14])}
    # 6 sampled + 14 others = 20 links to members that are no voters: 4 past the bound
    assert p.prune(5.0, linked, VOTERS, wanted, 16) == []  # none past the grace yet
    now_s = 13.0 + LINK_GRACE_S  # every one old enough
    assert p.prune(now_s, linked, VOTERS, wanted, 16) == others[:4]  # the oldest first
    young = {n: (now_s if n in others else 0.0) for n in linked}  # the others just came
    assert p.prune(now_s, young, VOTERS, wanted, 16) == []  # a transfer may be using them
    assert p.prune(now_s, dict(list(linked.items())[:19]), VOTERS, wanted, 16) == []


def test_the_owners_node_under_auto_keeps_its_first_candidates() -> None:
    p = PeerSet(MEMBERS[0], random.Random(1))
    candidates = MEMBERS[1:]
    wanted = p.wanted(0.0, MEMBERS, VOTERS, (), candidates)
    assert set(candidates[:CANDIDATES_MAX]) <= wanted
    p.set_aside(0.0, candidates[0])  # a candidate that cannot be reached: the next one
    wanted = p.wanted(1.0, MEMBERS, VOTERS, (), candidates)
    assert set(candidates[1 : CANDIDATES_MAX + 1]) <= wanted
