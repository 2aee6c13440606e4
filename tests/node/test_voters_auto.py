"""Voters that manage themselves (issue 19): the choice (`choose_voters`), then NodeCores
on a stepped network: the set grows as members come up, a voter away past the grace
period is replaced through the usual handover, `voters set` pins the set again."""

from __future__ import annotations

import math

from colonynode.core.ids import NodeId
from colonynode.node.core.voters_auto import choose_voters

A, B, C, D, E, F = (NodeId(bytes([i]) * 32) for i in range(1, 7))
NAMES = {A: "a", B: "b", C: "c", D: "d", E: "e", F: "f"}


def choose(voters: list[NodeId], up: set[NodeId], away: dict[NodeId, float] | None = None,
           never: tuple[str, ...] = (), members: list[NodeId] | None = None,
           grace_s: float = 10.0) -> tuple[NodeId, ...]:  # fmt: skip
    ms = [(m, NAMES[m]) for m in (members or [A, B, C, D, E, F])]
    return choose_voters(ms, voters, up, away or {}, never, grace_s)


def test_the_set_grows_to_the_largest_odd_size_the_members_up_fill() -> None:
    assert choose([A], {A}) == (A,)
    assert choose([A], {A, B}) == (A,)
    assert choose([A], {A, B, C}) == (A, B, C)
    assert choose([A], {A, B, C, D}) == (A, B, C)
    assert choose([A, B, C], {A, B, C, D, E}) == (A, B, C, D, E)


def test_a_voter_away_past_the_grace_is_replaced_within_it_kept() -> None:
    up = {A, C, D}
    assert choose([A, B, C], up, {B: 5.0, E: math.inf, F: math.inf}) == (A, B, C)
    assert choose([A, B, C], up, {B: 11.0, E: math.inf, F: math.inf}) == (A, C, D)


def test_never_vote_members_are_not_chosen_and_a_voter_named_so_is_dropped() -> None:
    assert choose([A], {A, B, C, D}, never=("b",)) == (A, C, D)
    assert choose([A, B, C], {A, B, C, D}, never=("b",)) == (A, C, D)


def test_too_few_members_left_shrinks_the_set_keeping_live_voters_first() -> None:
    members = [A, B, C]
    assert choose([A, B, C], {A, B}, {C: 60.0}, members=members) == (A,)
    assert choose([A, B, C], {A, B, C}, members=[A, B, C]) == (A, B, C)
    assert choose([A, B, C, D, E], {A, B, C}, {D: 60.0, E: 60.0}) == (A, B, C)


def test_auto_grows_the_set_and_replaces_a_voter_away_past_the_grace_period() -> None:
    """Four NodeCores, one voter (n0, the owner). Under auto the owner's node signs 3
    voters (n0, n1, n2: the first candidates by name); n1 crashes; once it has been away
    the grace period, n3 takes its place through the handover, and a submission is
    acknowledged by the new set."""
    from colonynode.node.core import requests as rq
    from tests.node.colony import Colony, submit

    c = Colony(4, voters=1)
    ids = [x.node_id for x in c.identities]
    assert c.result(0, rq.AutoVoters(grace_s=3.0))["voters"] == "auto"

    def voters_everywhere(want: tuple[NodeId, ...]) -> bool:
        """Every node up names `want`, and each of them serves that set (the handover
        done)."""
        version = c.core(0).consensus.version()
        named = all(set(c.core(i).membership.roster.voters) == set(want)  # type: ignore[union-attr]
                    and set(c.core(i).consensus.voters()) == set(want)
                    for i in range(4) if c.net.is_up(i))  # fmt: skip
        voters = [c.core(ids.index(v)).consensus.voter for v in want]
        return named and all(v.serving == version and v.serves for v in voters)

    c.run_until(lambda: voters_everywhere((ids[0], ids[1], ids[2])), 20.0)
    assert c.core(0).status()["voters_auto"]["voter_changes"] == 1
    t_crash = c.net.t
    c.net.crash(1)
    c.connect_all()
    c.run_until(lambda: voters_everywhere((ids[0], ids[2], ids[3])), 30.0)
    assert c.net.t - t_crash >= 3.0  # not before the grace period
    assert submit(c, 0)  # acknowledged by a majority of the new set
    roster = c.core(2).membership.roster
    assert roster is not None and roster.settings["voters"] == "auto"


def test_voters_set_pins_the_set_and_ends_auto_mode() -> None:
    from colonynode.node.core import requests as rq
    from tests.node.colony import Colony

    c = Colony(4, voters=1)
    c.result(0, rq.AutoVoters(never=("n3",), grace_s=5.0))
    c.run_until(lambda: len(c.core(3).membership.roster.voters) == 3, 20.0)  # type: ignore[union-attr]
    assert c.identities[3].node_id not in c.core(3).membership.roster.voters  # type: ignore[union-attr]
    c.result(0, rq.SetVoters(("n0",)))
    c.run_until(lambda: len(c.core(3).membership.roster.voters) == 1, 20.0)  # type: ignore[union-attr]
    roster = c.core(0).membership.roster
    assert roster is not None and "voters" not in roster.settings
    c.net.advance(10.0)  # auto would grow it again; pinned, it stays
    c.net.stabilize()
    assert len(c.core(3).membership.roster.voters) == 1  # type: ignore[union-attr]


def test_a_voter_change_waits_until_a_majority_serves_the_last_one() -> None:
    """Found by the voters scenario (`--faults partitions`, seed 38): the owner signed
    set v+1 while set v's handover had not finished (its voters had not heard of it), so
    v+1 sealed voters that held nothing and a result set v-1 committed was lost. A change
    now waits until a majority of the current set says it serves it; `voters set` waits
    up to SERVED_WAIT_S, then says why."""
    from colonynode.node.core import requests as rq
    from colonynode.node.core.voters_auto import SERVED_WAIT_S
    from tests.node.colony import Colony, submit

    c = Colony(5, voters=1)
    c.result(0, rq.SetVoters(("n0", "n1", "n2")))
    c.net.crash(1)  # the new set cannot finish its handover: n0 alone serves it
    c.net.crash(2)
    rid = c.ask(0, rq.SetVoters(("n0", "n3", "n4")))
    c.run_until(lambda: c.answer(0, rid) is not None, SERVED_WAIT_S + 5.0)
    answer = c.answer(0, rid)
    assert answer is not None and answer.error is not None
    assert "not yet served by a majority" in str(answer.error)
    assert len(c.core(0).membership.roster.voters) == 3  # type: ignore[union-attr]
    c.net.restart(1)
    c.net.restart(2)
    c.connect_all()
    c.result(0, rq.SetVoters(("n0", "n3", "n4")), max_s=SERVED_WAIT_S + 5.0)
    ids = {c.identities[i].node_id for i in (0, 3, 4)}
    c.run_until(lambda: all(c.core(i).consensus.voter.serving == c.core(0).consensus.version()
                            for i in (0, 3, 4)), 20.0)  # fmt: skip
    assert set(c.core(3).consensus.voters()) == ids
    assert submit(c, 0)


def test_an_owner_that_was_stopped_gives_every_member_a_fresh_grace() -> None:
    """Found by the voters scenario (`--faults chaos`, seed 41): the owner's node, paused
    13 s, woke with a stale view of who was connected and replaced two voters that were
    up. A check that runs late judges nothing, and the time away restarts."""
    from colonynode.node.core import requests as rq
    from colonynode.node.core.voters_auto import STALL_S
    from tests.node.colony import Colony

    c = Colony(4, voters=1)
    c.result(0, rq.AutoVoters(grace_s=3.0))
    c.run_until(lambda: len(c.core(3).membership.roster.voters) == 3, 20.0)  # type: ignore[union-attr]
    c.run_until(c.core(0).consensus.served, 20.0)  # (else no change could be made)
    version = c.core(0).membership.roster.version  # type: ignore[union-attr]
    ids = [x.node_id for x in c.identities]
    others = [ids[2], ids[3]]  # a partition hid n1 from the owner's node, just before
    c.net.call(0, lambda core, now: core.set_connected(now, others))
    c.net.advance(STALL_S + 10.0, tick=False)  # it stops: no check runs meanwhile
    c.net.tick(0)  # and wakes: its view is stale, n1 is not judged away 13 s
    c.net.stabilize()
    assert c.core(0).auto_voters.counters["stalls"] == 1
    assert c.core(0).membership.roster.version == version  # type: ignore[union-attr]
    c.connect_all()  # the view is fresh again: nothing to replace
    c.net.advance(5.0)
    c.net.stabilize()
    assert c.core(0).membership.roster.version == version  # type: ignore[union-attr]
