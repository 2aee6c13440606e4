"""Frozen processes settled across voter-set changes (consensus/settle.py): the verdict
rule, and what a voter answers about a frozen process."""

from __future__ import annotations

from colonynode.consensus import ProcessTerms
from colonynode.consensus.handover import HandoverProgress, VoterSet
from colonynode.consensus.messages import Handover, HandoverRequest, State
from colonynode.consensus.register import Register
from colonynode.consensus.settle import verdict
from colonynode.consensus.voter import VoterCore
from colonynode.core.ids import NodeId
from colonynode.storage.memory import MemoryStore
from tests.consensus.harness import TIMING, nid

PID = b"pid-1"
OLD = tuple(nid(i) for i in range(5))  # the previous set: a majority is 3


def closed(state: State, epoch: int = 1) -> Register:
    return Register(ProcessTerms(PID, nid(9)), state, epoch, None, 2.0, expiry_s=0.0)


def progress(copies: dict[int, State], none: tuple[int, ...] = ()) -> HandoverProgress:
    h = HandoverProgress(VoterSet(2, (nid(7),), OLD))
    h.pids = {PID}
    h.closed_by[PID] = {nid(i): closed(s) for i, s in copies.items()}
    h.none_by[PID] = {nid(i) for i in none}
    return h


def test_a_result_a_majority_of_the_old_set_holds_is_installed() -> None:
    kind, reg = verdict(progress({0: State.SUCCESS, 1: State.SUCCESS, 2: State.SUCCESS}), PID)
    assert kind == "install" and reg is not None and reg.state is State.SUCCESS


def test_the_only_result_the_voters_out_could_have_made_a_majority_is_installed() -> None:
    """Voters chaos seed 144: voter 4 is dead for good; with its vote SUCCESS could have
    had a majority, FAILED could not. So SUCCESS is the one that may have committed."""
    h = progress({0: State.SUCCESS, 1: State.SUCCESS, 2: State.FAILED}, none=(3,))
    kind, reg = verdict(h, PID)
    assert kind == "install" and reg is not None and reg.state is State.SUCCESS


def test_two_results_either_of_which_the_voter_out_could_have_decided_stay_frozen() -> None:
    h = progress({0: State.SUCCESS, 1: State.SUCCESS, 2: State.FAILED, 3: State.FAILED})
    assert verdict(h, PID) == ("frozen", None)


def test_with_a_majority_not_answering_even_a_result_no_answer_shows_may_have_committed() -> None:
    assert verdict(progress({0: State.SUCCESS}, none=(1,)), PID) == ("frozen", None)


def test_when_no_result_can_have_had_a_majority_the_first_copy_in_set_order_is_kept() -> None:
    h = progress({3: State.FAILED, 1: State.SUCCESS}, none=(0, 2))
    kind, reg = verdict(h, PID)
    assert kind == "none" and reg is not None and reg.state is State.SUCCESS  # voter 1's


def test_a_voter_that_never_served_the_set_asked_about_answers_none_for_a_frozen_process() -> None:
    """Voters chaos seed 52: voter V serves set 1, froze P in the change to set 2 it
    never finished, and is asked by set 4 about set 3. It voted nothing in set 3: none
    (neither its copy, a vote of set 1, nor withheld, which held set 4 up for good)."""
    me = NodeId(b"V" * 32)
    v = VoterCore(me, MemoryStore(), timing=TIMING, voter_set=VoterSet(5, (nid(1), me)))
    v.on_tick(0.0)
    v.serving = 1
    v.registers[PID] = closed(State.SUCCESS)
    v.frozen, v.vote_of = {PID}, {PID: 1}
    froze = HandoverProgress(VoterSet(2, (me,)))
    froze.pids = {PID}
    v.unsettled = [froze]
    v.take_effects()
    v.on_message(1.0, nid(1), HandoverRequest(4, b"", (PID,)))
    ((_, answer),) = v.take_effects().sends
    assert isinstance(answer, Handover) and answer.only == (PID,)
    assert answer.copies == () and answer.withheld == ()


def test_a_voter_that_served_a_later_set_withholds_what_it_no_longer_holds_as_that_sets() -> None:
    """Asked by an older change about set 3, a voter serving set 5 withholds a process
    it holds (what set 5 did with it is no vote of set 3) or no longer holds (compacted
    under set 5: "none" would count as no vote of set 3)."""
    me = NodeId(b"V" * 32)
    v = VoterCore(me, MemoryStore(), timing=TIMING, voter_set=VoterSet(5, (nid(1), me)))
    v.on_tick(0.0)
    v.serving = 5
    v.registers[PID] = closed(State.SUCCESS)
    v.take_effects()
    v.on_message(1.0, nid(1), HandoverRequest(4, b"", (PID, b"gone"), 3))
    ((_, answer),) = v.take_effects().sends
    assert isinstance(answer, Handover) and answer.copies == ()
    assert answer.withheld == (b"gone", PID)
