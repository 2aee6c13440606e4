"""Settling a split (consensus/split.py): every voter holds the process closed with a
different result, none committed; a majority read that meets it has the voters exchange
their registers, and each settles to the same result, which then commits."""

from __future__ import annotations

import itertools

from colonynode.consensus import Outcome, ProcessTerms, ReadResult, State
from colonynode.consensus import register as rg
from colonynode.consensus.messages import Cancel, Close, Expire
from colonynode.consensus.requests import (
    CancelProcess,
    ClaimLeases,
    CloseProcess,
    ExpireProcess,
    ReadRegister,
    SubmitProcess,
)
from colonynode.consensus.split import SplitResults, settle_order
from colonynode.core.ids import NodeId
from tests.consensus.harness import Colony, nid

PID = b"pid-1"
C1, C2 = 3, 4


def split_colony() -> Colony:
    """Voter 0 holds C2's SUCCESS, voter 1 C1's CANCELLED, voter 2 an expiry's FAILED."""
    colony = Colony()
    terms = ProcessTerms(PID, nid(C1), maxretries=0)
    colony.call(C1, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver()
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    colony.call(C2, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, [1])))
    colony.deliver(drop=lambda s, d, m: isinstance(m, Close) and d != 0)
    colony.call(C1, lambda c, t: c.request(t, CancelProcess(PID)))
    colony.deliver(drop=lambda s, d, m: isinstance(m, Cancel) and d != 1)
    colony.advance(3.0, tick=False)  # the lease ran out at voter 2; no retries left
    colony.call(C1, lambda c, t: c.request(t, ExpireProcess(PID)))
    colony.deliver(drop=lambda s, d, m: isinstance(m, Expire) and d != 2)
    colony.inflight.clear()  # every retransmission from here on is lost
    return colony


def held(colony: Colony) -> list[tuple[State, int]]:
    out = []
    for v in range(3):
        reg = colony.core(v).voter.registers[PID]
        out.append((reg.state, reg.epoch))
    return out


def test_a_read_that_meets_a_split_settles_it_and_the_holders_result_commits() -> None:
    colony = split_colony()
    assert [s for s, _ in held(colony)] == [State.SUCCESS, State.CANCELLED, State.FAILED]
    colony.call(C1, lambda c, t: c.request(t, ReadRegister(PID)))
    colony.deliver()
    first = colony.events(C1, ReadResult)[-1]
    assert not first.committed and first.answered == 3  # split: nothing committed
    assert held(colony) == [(State.SUCCESS, 1)] * 3  # settled: a holder's close wins
    assert all(colony.core(v).voter.settled == (v != 0) for v in range(3))
    colony.call(C1, lambda c, t: c.request(t, ReadRegister(PID)))
    colony.deliver()
    after = colony.events(C1, ReadResult)[-1]
    assert after.committed and after.view is not None and after.view.output == [1]


def test_a_split_with_a_voter_that_does_not_answer_is_left_alone() -> None:
    """Without every voter's result, a result may be committed among the silent ones'."""
    colony = split_colony()
    colony.call(C1, lambda c, t: c.request(t, ReadRegister(PID)))
    colony.deliver(drop=lambda s, d, m: 2 in (s, d))
    assert [s for s, _ in held(colony)] == [State.SUCCESS, State.CANCELLED, State.FAILED]


def _closed(state: State, epoch: int, holder: NodeId | None, output: object = None) -> rg.Register:
    reg = rg.Register(ProcessTerms(PID, nid(9)), epoch=epoch, holder=holder)
    return rg.Register(reg.terms, state, epoch, holder, output=output)


def test_every_voter_settles_to_the_same_result_whatever_order_it_hears_them() -> None:
    voters = (nid(0), nid(1), nid(2), nid(3), nid(4))
    results = [
        _closed(State.SUCCESS, 2, nid(7), [1]),
        _closed(State.FAILED, 4, nid(8)),
        _closed(State.CANCELLED, 1, None),
        _closed(State.FAILED, 3, None),  # an expiry: the same result as a FAILED abort
        _closed(State.SUCCESS, 3, nid(6), [2]),
    ]
    winner = max(results, key=settle_order)
    assert winner.state is State.FAILED and winner.epoch == 4  # the latest holder's close
    for me in range(5):
        for order in itertools.permutations([v for v in range(5) if v != me]):
            splits = SplitResults()
            got = None
            for v in order:
                got = splits.note(voters[v], results[v], voters[me], results[me], voters)
            assert got is winner


def test_a_result_held_by_a_majority_is_never_settled_away() -> None:
    voters = (nid(0), nid(1), nid(2))
    done = _closed(State.SUCCESS, 2, nid(7), [1])
    other = _closed(State.FAILED, 5, nid(8))
    splits = SplitResults()
    assert splits.note(voters[1], done, voters[2], other, voters) is None
    assert splits.note(voters[0], done, voters[2], other, voters) is None  # SUCCESS: 2 of 3
