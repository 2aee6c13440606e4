"""Voter-set changes, seal-then-serve (consensus/handover.py), rule by rule."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from colonynode.consensus import ClaimFailed, Granted, Outcome, ProcessTerms, Reason, Renewed
from colonynode.consensus import register as rg
from colonynode.consensus.events import VoterCommitted
from colonynode.consensus.handover import HandoverProgress, VoterSet, merge_handover
from colonynode.consensus.messages import Handover, HandoverRequest, Merge, State
from colonynode.consensus.register import Register
from colonynode.consensus.requests import (
    CancelProcess,
    ChangeVoters,
    ClaimLeases,
    CloseProcess,
    SubmitProcess,
)
from colonynode.consensus.voter import VoterCore
from colonynode.core.ids import NodeId
from colonynode.storage.memory import MemoryStore
from tests.consensus.harness import TIMING, Colony, nid

PID = b"pid-1"
A, B = NodeId(b"A" * 32), NodeId(b"B" * 32)


def reg(state: State = State.WAITING, epoch: int = 0, holder: NodeId | None = None) -> Register:
    return Register(
        ProcessTerms(PID, nid(9), maxretries=0), state, epoch, holder, 2.0, expiry_s=0.0
    )


def grow(colony: Colony, voters: tuple[int, ...]) -> None:
    ids = tuple(nid(i) for i in voters)
    for i in range(len(colony.nodes)):
        colony.call(i, lambda c, t: c.request(t, ChangeVoters(2, ids)))
    for _ in range(20):
        colony.deliver()
        colony.advance(0.1)


def test_new_voters_serve_only_after_a_majority_of_the_old_set_handed_over() -> None:
    colony = Colony(voters=3, claimers=3)  # nodes 3, 4, 5 may become voters
    ids = tuple(nid(i) for i in (0, 1, 2, 3, 4))
    for i in range(len(colony.nodes)):
        colony.call(i, lambda c, t: c.request(t, ChangeVoters(2, ids)))
    colony.deliver(drop=lambda s, d, m: s in (1, 2) and d in (3, 4))  # only voter 0 answers
    assert colony.core(3).voter.serving == 0 and colony.core(0).voter.serving == 1
    colony.advance(0.3)
    colony.deliver()
    assert [colony.core(i).voter.serving for i in range(5)] == [2, 2, 2, 2, 2]


def test_a_sealed_voter_refuses_requests_of_the_old_version() -> None:
    colony = Colony(voters=3, claimers=2)
    colony.call(4, lambda c, t: c.request(t, SubmitProcess(ProcessTerms(PID, nid(4)))))
    colony.deliver()
    colony.call(0, lambda c, t: c.request(t, ChangeVoters(2, (nid(0), nid(1), nid(3)))))
    colony.call(
        4, lambda c, t: c.request(t, ClaimLeases((PID,)))
    )  # node 4 still addresses version 1
    seen: list[Any] = []

    def watch(src: int, dst: int, msg: Any) -> bool:
        if src == 0 and dst == 4:
            seen.extend(msg.verdicts)
        return False

    colony.deliver(drop=watch)
    assert [v.reason for v in seen] == [Reason.WRONG_VERSION]
    assert colony.events(4, Granted)  # voters 1 and 2 have not heard of version 2 yet
    r = colony.core(0).voter.register(PID)
    assert r is not None and r.state is State.WAITING


def test_a_lease_held_across_the_change_is_kept_by_the_new_voters() -> None:
    colony = Colony(voters=3, claimers=3)
    colony.call(
        5, lambda c, t: c.request(t, SubmitProcess(ProcessTerms(PID, nid(5), maxretries=1)))
    )
    colony.deliver()
    colony.call(5, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    assert colony.events(5, Granted)
    grow(colony, (0, 1, 2, 3, 4))
    assert colony.events(5, Renewed)  # renewed with the new voters, under version 2
    colony.call(3, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    colony.call(3, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    assert [e.reason for e in colony.events(3, ClaimFailed)][-1] is Reason.LEASE_HELD
    colony.call(5, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, "done")))
    colony.deliver()
    for i in range(5):
        r = colony.core(i).voter.register(PID)
        assert r is not None and r.output == "done"


def test_settle_picks_the_result_a_majority_of_the_old_set_holds() -> None:
    old = (A, B, nid(7))
    h = HandoverProgress(VoterSet(2, (nid(8),), old))
    mine = rg.close(reg(State.RUNNING, 3, A), 3, A, Outcome.SUCCESS, "x", ())[0]
    other = rg.expire(reg(State.RUNNING, 3, A), 100.0)[0]
    assert other.state is State.FAILED and other.holder is None
    h.note_closed(A, mine, None)
    h.note_closed(B, other, mine)
    h.done |= {A, B}
    # an expiry against a close: serve, but the process stays frozen until the third
    assert h.settle() == (True, [], {mine.pid})
    h.note_closed(nid(7), other, mine)
    h.done.add(nid(7))
    assert h.settle() == (True, [other], set())


def test_settle_waits_for_a_majority_even_among_holders_closes() -> None:
    """Found by the soak (shrink, chaos seed 1701): a repair made a lower-epoch close the
    committed one, so the highest epoch is no tie-break."""
    old = (A, B, nid(7))
    h = HandoverProgress(VoterSet(2, (nid(8),), old))
    low = rg.close(reg(State.RUNNING, 2, A), 2, A, Outcome.SUCCESS, "low", ())[0]
    high = rg.close(reg(State.RUNNING, 3, B), 3, B, Outcome.SUCCESS, "high", ())[0]
    h.note_closed(A, low, None)
    h.note_closed(B, high, low)
    h.done |= {A, B}
    assert h.settle() == (True, [], {low.pid})
    h.note_closed(nid(7), low, low)
    h.done.add(nid(7))
    assert h.settle() == (True, [low], set())


def test_settle_a_cancel_a_majority_of_the_old_set_holds_wins_over_a_close() -> None:
    old = (A, B, nid(7))
    h = HandoverProgress(VoterSet(2, (nid(8),), old))
    done = rg.close(reg(State.RUNNING, 3, A), 3, A, Outcome.SUCCESS, "x", ())[0]
    cancelled = rg.abort(reg(State.RUNNING, 3, A), State.CANCELLED, ())[0]
    h.note_closed(A, done, None)
    h.note_closed(B, cancelled, done)
    h.done |= {A, B}
    assert h.settle() == (True, [], {done.pid})  # one each: frozen until the third
    h.note_closed(nid(7), cancelled, done)
    h.done.add(nid(7))
    assert h.settle() == (True, [cancelled], set())


states = st.sampled_from(list(State))


@settings(max_examples=300, deadline=None)
@given(states, st.integers(0, 5), states, st.integers(0, 5), st.floats(0, 100))
def test_property_merge_keeps_the_highest_epoch_a_lease_and_any_closed_result(
    s1: State, e1: int, s2: State, e2: int, now_s: float
) -> None:
    local = replace(reg(s1, e1, A if s1 is State.RUNNING else None), expiry_s=now_s + 1.0)
    incoming = reg(s2, e2, B if s2 is State.RUNNING else None)
    merged = merge_handover(local, incoming, now_s, TIMING)
    if local.closed:
        assert merged == local
    elif incoming.closed:
        assert merged.state is s2 and merged.epoch == e2
    else:
        assert merged.epoch == max(e1, e2)
        if State.RUNNING in (s1, s2):  # a lease either side knew is kept, never shortened
            assert merged.state is State.RUNNING
            assert merged.expiry_s >= max(local.expiry_s, TIMING.voter_expiry_s(now_s, 2.0))
    assert merge_handover(None, incoming, now_s, TIMING).epoch == e2


def close_at_0_and_1_cancel_at_2(*others: bytes) -> Colony:
    """Voters 0, 1, 2 (nodes 3, 4, 5 claim): PID's close committed at voters 0 and 1, a
    stray cancel of it held by voter 2 alone; `others` submitted, open."""
    colony = Colony(voters=3, claimers=3)
    for pid in (PID, *others):
        colony.call(5, lambda c, t, p=pid: c.request(t, SubmitProcess(ProcessTerms(p, nid(5)))))
    colony.deliver()
    colony.call(5, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    colony.call(5, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, "done")))
    colony.deliver(drop=lambda s, d, m: d == 2 or s == 2)  # the close reaches 0 and 1
    colony.call(5, lambda c, t: c.request(t, CancelProcess(PID)))
    colony.deliver(drop=lambda s, d, m: d in (0, 1) or s in (0, 1))  # the cancel reaches 2
    return colony


def test_a_result_the_old_voters_out_decide_is_frozen_and_the_rest_is_served() -> None:
    """Replacing a dead voter (issue 18; `voter_change=replace` stalled 21 seeds in 3,000):
    voter 0 and 1 committed a close, voter 2 holds a cancel that never committed, and
    voter 0 dies. The new set {1, 2, 3} cannot tell which result committed, but it serves
    every other process at once; that one answers FROZEN (and voter 3 holds no closed copy
    that could make a majority, only the process's terms) until voter 0 is back and
    settles it to the committed close."""
    other = b"pid-2"
    colony = close_at_0_and_1_cancel_at_2(other)
    states = [colony.core(i).voter.register(PID).state for i in range(3)]  # type: ignore[union-attr]
    assert states == [State.SUCCESS, State.SUCCESS, State.CANCELLED]

    dead = lambda s, d, m: 0 in (s, d)  # noqa: E731
    new = (nid(1), nid(2), nid(3))
    for i in range(1, 6):
        colony.call(i, lambda c, t: c.request(t, ChangeVoters(2, new)))
    for _ in range(10):
        colony.deliver(drop=dead)
        colony.advance(0.3)
    assert [colony.core(i).voter.serving for i in (1, 2, 3)] == [2, 2, 2]
    assert all(PID in colony.core(i).voter.frozen for i in (1, 2, 3))
    held = colony.core(3).voter.register(PID)  # the terms, held (the submission stays at
    assert held is not None and not held.closed  # a majority), open: no copy to vote with
    announced = lambda i: [e.view.state for e in colony.events(i, VoterCommitted)  # noqa: E731
                           if e.pid == PID and e.version == 2]  # fmt: skip
    assert [announced(i) for i in (1, 2, 3)] == [[], [], []]  # not served as closed yet
    colony.call(4, lambda c, t: c.request(t, ClaimLeases((PID, other))))
    colony.deliver(drop=dead)
    assert [g.pid for g in colony.events(4, Granted)] == [other]  # the rest is served
    assert {f.reason for f in colony.events(4, ClaimFailed)} == {Reason.FROZEN}

    # Voter 0 is back and hears the roster of set 2 (gossip, in the daemon): its copy
    # settles the close the old set committed.
    colony.call(0, lambda c, t: c.request(t, ChangeVoters(2, new)))
    for _ in range(10):
        colony.deliver()
        colony.advance(0.3)
    for i in (1, 2, 3):
        voter = colony.core(i).voter
        r = voter.register(PID)
        assert not voter.frozen and r is not None and (r.state, r.output) == (State.SUCCESS, "done")
    assert announced(2) == [State.SUCCESS] and announced(3) == [State.SUCCESS]


def test_a_sealed_voter_takes_no_repair_merge() -> None:
    # shrink seed 1867: voter V of set 1 {A, B, V} is sealed by set 2 {A, B} after it
    # handed over its RUNNING copy; a Merge of B's close (B still served set 1) turned
    # it SUCCESS, a second majority of set 1 next to the cancel set 2 committed.
    me = NodeId(b"V" * 32)
    old = VoterSet(1, (A, B, me))
    v = VoterCore(me, MemoryStore(), timing=TIMING, voter_set=old)
    v.on_tick(0.0)
    held = reg(State.RUNNING, 1, nid(5))
    v.registers[PID] = held
    v.set_voters(1.0, VoterSet(2, (A, B), old.voters))
    assert not v.serves
    v.take_effects()
    v.on_message(2.0, B, Merge(rg.to_copy(reg(State.SUCCESS, 1, nid(5))), version=1))
    effects = v.take_effects()
    assert v.register(PID) == held and not effects.writes and not effects.events


def test_a_serving_voter_takes_a_merge_only_from_a_voter_of_its_own_set() -> None:
    """A copy from a voter that still serves the old set is not a vote of the new one:
    it changes nothing (the same copy, sent under the new set's version, is taken)."""
    me = NodeId(b"V" * 32)
    v = VoterCore(me, MemoryStore(), timing=TIMING, voter_set=VoterSet(2, (A, me)))
    v.on_tick(0.0)
    v.take_effects()
    held = reg(State.RUNNING, 1, nid(5))
    v.registers[PID] = held
    closed = rg.to_copy(reg(State.SUCCESS, 1, nid(5)))
    v.on_message(1.0, A, Merge(closed, version=1))
    assert v.register(PID) == held and not v.take_effects().writes
    v.on_message(1.0, A, Merge(closed, version=2))
    merged = v.register(PID)
    assert merged is not None and merged.state is State.SUCCESS


def test_only_a_voter_of_the_newest_set_a_voter_knows_may_seal_it() -> None:
    """A handover request seals the voter that takes it (it stops serving its set): one
    from a member that is no voter of the set the roster names, or for another set, is
    refused, or any member could seal every voter and stall the colony."""
    me = NodeId(b"V" * 32)
    v = VoterCore(me, MemoryStore(), timing=TIMING, voter_set=VoterSet(1, (A, B, me)))
    v.on_tick(0.0)
    v.take_effects()
    stranger = nid(7)
    v.on_message(1.0, stranger, HandoverRequest(2, b""))  # no roster names a set 2 yet
    assert v.sealed == 0 and v.serves and not v.take_effects().sends
    v.set_voters(1.0, VoterSet(2, (A, B), (A, B, me)))  # the roster's set 2 seals it
    v.take_effects()
    v.on_message(1.0, stranger, HandoverRequest(2, b""))  # not a voter of set 2
    v.on_message(1.0, A, HandoverRequest(3, b""))  # a set no roster named
    assert v.sealed == 2 and v.handovers_refused == 3 and not v.take_effects().sends
    v.on_message(1.0, A, HandoverRequest(2, b""))  # a voter of set 2 gets the registers
    assert [type(m).__name__ for _, m in v.take_effects().sends] == ["Handover"]


def test_a_process_frozen_at_the_old_voters_stays_frozen_in_the_next_set() -> None:
    """Found by the voters scenario (`--faults chaos`, seed 28): a process frozen at
    every voter of set 2 (its deciding voter 0 dead) was withheld from set 3's handover
    without a word, so set 3's voter, which had voted the uncommitted cancel itself in
    set 1, served that cancel as committed: a second result. Withheld pids are named in
    the Handover and frozen in the new set too."""
    colony = Colony(voters=3, claimers=3)
    colony.call(5, lambda c, t: c.request(t, SubmitProcess(ProcessTerms(PID, nid(5)))))
    colony.deliver()
    colony.call(5, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    colony.call(5, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, "done")))
    colony.deliver(drop=lambda s, d, m: d == 2 or s == 2)  # the close commits at 0 and 1
    colony.call(5, lambda c, t: c.request(t, CancelProcess(PID)))
    colony.deliver(drop=lambda s, d, m: d in (0, 1) or s in (0, 1))  # voter 2's cancel

    dead = lambda s, d, m: 0 in (s, d)  # noqa: E731
    for version, voters in ((2, (1, 2, 3)), (3, (2,))):
        ids = tuple(nid(i) for i in voters)
        for i in range(1, 6):
            colony.call(i, lambda c, t, v=version, x=ids: c.request(t, ChangeVoters(v, x)))
        for _ in range(10):
            colony.deliver(drop=dead)
            colony.advance(0.3)
    voter = colony.core(2).voter
    assert voter.serving == 3 and PID in voter.frozen
    r = voter.register(PID)
    assert r is not None and r.state is State.CANCELLED  # its own vote, held, not served
    served = [e for e in colony.events(2, VoterCommitted) if e.pid == PID and e.version == 3]
    assert served == []
    colony.call(4, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver(drop=dead)
    assert {f.reason for f in colony.events(4, ClaimFailed)} == {Reason.FROZEN}


def test_a_handover_page_names_what_it_withholds_and_its_range_ends_there() -> None:
    from colonynode.consensus.handover import page_end, page_of
    from colonynode.consensus.messages import Handover

    regs = {bytes([i]) * 5: replace(reg(), terms=ProcessTerms(bytes([i]) * 5, nid(9)))
            for i in range(1, 4)}  # fmt: skip
    copies, withheld, done = page_of(regs, b"", {bytes([3]) * 5})
    assert [c.terms.pid for c in copies] == [b"\x01" * 5, b"\x02" * 5]
    assert withheld == (b"\x03" * 5,) and done
    assert page_end(Handover(3, b"", copies, done, withheld)) == b"\x03" * 5
    assert page_end(Handover(3, b"", (), True)) is None


def test_a_process_frozen_in_an_earlier_change_is_withheld_from_a_later_set_it_serves_too() -> None:
    """Voters chaos seed 271: voter V froze P in the change to set 2 (its own copy, a
    minority close of set 1, is kept as its vote); V also serves set 3 and was asked by
    another voter of set 3. Handed on as a copy, that vote counted as set 2's result: a
    second result next to the one set 1 committed. It is withheld; a process frozen in
    the change to set 3 itself is still handed to that change's voters."""
    me = NodeId(b"V" * 32)
    v = VoterCore(me, MemoryStore(), timing=TIMING, voter_set=VoterSet(3, (A, me), (me,)))
    v.on_tick(0.0)
    v.serving = 3
    own_vote_of_set_1 = reg(State.SUCCESS, 1, nid(5))
    v.registers[PID] = own_vote_of_set_1
    v.registers[b"pid-3"] = replace(own_vote_of_set_1, terms=ProcessTerms(b"pid-3", nid(9)))
    v.frozen, v.vote_of = {PID, b"pid-3"}, {PID: 1, b"pid-3": 2}  # (sets 1 and 2's votes)
    froze_2, froze_3 = HandoverProgress(VoterSet(2, (me,))), HandoverProgress(VoterSet(3, (me,)))
    froze_2.pids, froze_3.pids = {PID}, {b"pid-3"}  # (the changes that froze them here)
    v.unsettled = [froze_2, froze_3]
    v.take_effects()
    v.on_message(1.0, A, HandoverRequest(3, b""))
    ((to, page),) = v.take_effects().sends
    assert to == A and isinstance(page, Handover) and page.done
    assert page.withheld == (PID,)
    assert [c.terms.pid for c in page.copies] == [b"pid-3"]


def test_the_set_whose_vote_a_frozen_register_is_survives_a_restart() -> None:
    store = MemoryStore()
    me = NodeId(b"V" * 32)
    v = VoterCore(me, store, timing=TIMING, voter_set=VoterSet(3, (A, me), (me,)))
    v.on_tick(0.0)
    v.frozen, v.vote_of = {PID}, {PID: 1}
    v.save_meta()
    store.apply(v.take_effects().writes)
    again = VoterCore(me, store, timing=TIMING, voter_set=VoterSet(3, (A, me), (me,)))
    assert again.frozen == {PID} and again.vote_of == {PID: 1}


def test_a_process_frozen_across_two_changes_is_settled_once_the_old_voter_is_back() -> None:
    """Voters chaos seed 80: a process frozen in the change to set 2 (the voter whose
    copy decides it is out) was frozen again in the change to set 3; each voter then
    asked only the voters of the set just before, so the first set's answer was never
    asked for again: frozen for good. Each change now keeps asking about what it froze,
    and a later change settles once the set before it can hand the result on."""
    colony = close_at_0_and_1_cancel_at_2()
    dead = lambda s, d, m: 0 in (s, d)  # noqa: E731

    def change(version: int, voters: tuple[int, ...], nodes: range) -> None:
        ids = tuple(nid(i) for i in voters)
        for i in nodes:
            colony.call(i, lambda c, t: c.request(t, ChangeVoters(version, ids)))
        for _ in range(10):
            colony.deliver(drop=dead if 0 not in nodes else None)
            colony.advance(0.3)

    change(2, (1, 2, 3), range(1, 6))
    assert all(PID in colony.core(i).voter.frozen for i in (1, 2, 3))
    change(3, (1, 2, 4), range(1, 6))
    assert [colony.core(i).voter.serving for i in (1, 2, 4)] == [3, 3, 3]
    assert all(PID in colony.core(i).voter.frozen for i in (1, 2, 3, 4))
    colony.crash(4)  # what a change froze, and asks about, survives a restart
    colony.restart(4)
    assert [h.vset.version for h in colony.core(4).voter.unsettled] == [3]
    change(3, (1, 2, 4), range(0, 1))  # voter 0 is back, and hears of set 3 only
    for i in (1, 2, 3, 4):
        voter = colony.core(i).voter
        r = voter.register(PID)
        assert PID not in voter.frozen and not voter.unsettled, i
        assert r is not None and (r.state, r.output) == (State.SUCCESS, "done"), i
