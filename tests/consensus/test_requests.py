"""The one request entry point (`ConsensusCore.request`) and the one vote tally: every
request is answered by events carrying its id; committed closes bring the register a
majority holds; a verdict from outside the voter set can never be counted."""

from __future__ import annotations

from dataclasses import replace

import pytest

from colonynode.consensus import (
    Cancelled,
    ClaimFailed,
    Closed,
    Dropped,
    Expired,
    Granted,
    Outcome,
    ProcessTerms,
    ReadResult,
    Reason,
    Released,
    State,
    Submitted,
    VotersChanged,
)
from colonynode.consensus.messages import RegisterView, Reply, Verdict
from colonynode.consensus.quorum import VoteResult, tally
from colonynode.consensus.register import REASON_EXPIRED
from colonynode.consensus.requests import (
    CancelProcess,
    ChangeVoters,
    ClaimLeases,
    CloseProcess,
    DropLease,
    ExpireProcess,
    ReadRegister,
    ReleaseAll,
    ReleaseLease,
    SubmitProcess,
)
from tests.consensus.harness import Colony, nid

PID, OTHER = b"pid-1", b"pid-2"
C1, C2 = 3, 4


def submit(colony: Colony, pid: bytes = PID, **kw: int) -> int:
    terms = ProcessTerms(pid, nid(C1), **kw)
    req: int = colony.call(C1, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver()
    return req


def test_request_ids_grow_and_each_answer_carries_its_own() -> None:
    colony = Colony()
    first = submit(colony)
    second = submit(colony, OTHER)
    assert second > first
    answers = {e.pid: e.reqs for e in colony.events(C1, Submitted)}
    assert answers == {PID: (first,), OTHER: (second,)}


def test_a_second_submit_in_flight_joins_the_first_and_both_are_answered() -> None:
    colony = Colony()
    terms = ProcessTerms(PID, nid(C1))
    a = colony.call(C1, lambda c, t: c.request(t, SubmitProcess(terms)))
    b = colony.call(C1, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver()
    (answer,) = colony.events(C1, Submitted)
    assert answer.acked and answer.reqs == (a, b)


def test_a_claim_answers_every_distinct_pid_once_even_those_it_does_not_send() -> None:
    colony = Colony()
    submit(colony)
    submit(colony, OTHER)
    req = colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID, PID, OTHER))))
    again = colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))  # still out
    colony.deliver()
    granted = colony.events(C2, Granted)
    assert {g.pid for g in granted} == {PID, OTHER} and all(g.reqs == (req,) for g in granted)
    (refused,) = colony.events(C2, ClaimFailed)
    assert refused.pid == PID and refused.reason is Reason.NOT_ALLOWED and refused.reqs == (again,)


def test_a_committed_close_brings_the_register_a_majority_holds() -> None:
    colony = Colony()
    submit(colony)
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    req = colony.call(C2, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, [7])))
    colony.deliver()
    (closed,) = colony.events(C2, Closed)
    assert closed.committed and closed.reqs == (req,)
    assert closed.view == RegisterView(PID, State.SUCCESS, 1, nid(C2), 0, [7], ())


def test_a_close_without_a_lease_is_answered_at_once_not_holder() -> None:
    colony = Colony()
    submit(colony)
    req = colony.call(C2, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS)))
    assert not colony.inflight
    (closed,) = colony.events(C2, Closed)
    assert not closed.committed and closed.reason is Reason.NOT_HOLDER and closed.reqs == (req,)


def test_an_expiry_brings_the_voters_retries_and_reason() -> None:
    """What `colonynode get` shows of a closed process comes from here: the voters'
    retries and errors, not the node's guess (the issue's `retries 0` vs `retries 1`)."""
    colony = Colony()
    submit(colony, maxretries=1)
    for _ in range(2):  # the first run's lease runs out; the re-claim is the one retry
        colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
        colony.deliver()
        colony.call(C2, lambda c, t: c.request(t, DropLease(PID)))
        colony.advance(3.0)
        colony.deliver()
    req = colony.call(C1, lambda c, t: c.request(t, ExpireProcess(PID)))
    colony.deliver()
    (expired,) = colony.events(C1, Expired)
    assert expired.committed and expired.reqs == (req,) and expired.view is not None
    assert expired.view.state is State.FAILED and expired.view.retries == 1
    assert expired.view.errors[-1] == REASON_EXPIRED


def test_local_requests_are_answered_in_the_same_step() -> None:
    colony = Colony()
    submit(colony)
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    nothing = colony.call(C2, lambda c, t: c.request(t, DropLease(OTHER)))
    dropped = colony.call(C2, lambda c, t: c.request(t, DropLease(PID)))
    released = colony.call(C2, lambda c, t: c.request(t, ReleaseLease(PID)))
    everything = colony.call(C2, lambda c, t: c.request(t, ReleaseAll()))
    assert [(e.dropped, e.reqs) for e in colony.events(C2, Dropped)] == [
        (False, (nothing,)),
        (True, (dropped,)),
    ]
    assert [(e.pids, e.reqs) for e in colony.events(C2, Released)] == [
        ((), (released,)),
        ((), (everything,)),
    ]
    changed = colony.call(C2, lambda c, t: c.request(t, ChangeVoters(2, colony.voter_ids)))
    stale = colony.call(C2, lambda c, t: c.request(t, ChangeVoters(1, colony.voter_ids)))
    assert colony.events(C2, VotersChanged) == [VotersChanged(2, True), VotersChanged(1, False)]
    assert [e.reqs for e in colony.events(C2, VotersChanged)] == [(changed,), (stale,)]


def test_a_cancel_answers_with_the_committed_register() -> None:
    colony = Colony()
    submit(colony)
    req = colony.call(C1, lambda c, t: c.request(t, CancelProcess(PID, errors=("stop",))))
    colony.deliver()
    (done,) = colony.events(C1, Cancelled)
    assert done.committed and done.reqs == (req,) and done.view is not None
    assert done.view.state is State.CANCELLED and done.view.errors == ("stop",)


def _verdict(ok: bool) -> Verdict:
    return Verdict(PID, 1, Reason.OK if ok else Reason.LEASE_HELD, None)


def test_the_tally_wins_loses_and_waits_like_a_majority() -> None:
    voters = (nid(0), nid(1), nid(2))

    def result(*oks: bool) -> VoteResult:
        verdicts = {voters[i]: _verdict(ok) for i, ok in enumerate(oks)}
        return tally(voters, verdicts, lambda v: v.ok).result

    assert result(True) is VoteResult.PENDING
    assert result(True, True) is VoteResult.WON
    assert result(True, False) is VoteResult.PENDING
    assert result(False, False) is VoteResult.LOST
    assert result(True, False, True) is VoteResult.WON


def test_the_tally_refuses_to_count_a_verdict_from_outside_the_voter_set() -> None:
    voters = (nid(0), nid(1), nid(2))
    with pytest.raises(AssertionError, match="outside the voter set"):
        tally(voters, {nid(0): _verdict(True), nid(7): _verdict(True)}, lambda v: v.ok)


def test_a_read_counts_only_voters_that_serve_its_voter_set() -> None:
    """A new voter in the middle of its handover answers reads with registers that are
    not settled yet (found by the grow soak: a read called a cancel committed from two
    such answers and one stale old voter)."""
    colony = Colony()
    submit(colony)
    colony.call(C2, lambda c, t: c.request(t, ReadRegister(PID)))

    seen: list[Reply] = []

    def unserved(src: int, dst: int, msg: object) -> bool:
        if isinstance(msg, Reply) and src in (1, 2):
            seen.append(msg)
            colony.inflight.append((src, dst, replace(msg, version=0)))  # not serving
            return True
        return False

    colony.deliver(rounds_max=1)  # the Read reaches the voters
    colony.deliver(rounds_max=1, drop=unserved)  # voters 1 and 2 answer as if not serving
    colony.deliver(rounds_max=1)  # their (version 0) answers arrive
    assert len(seen) == 2 and not colony.events(C2, ReadResult)  # one voter is no majority
    colony.advance(0.3)  # retransmitted: now they answer as voters that serve
    colony.deliver()
    (result,) = colony.events(C2, ReadResult)
    assert result.answered >= 2 and result.view is not None
