"""ConsensusCore (voter and claimer roles) stepped by hand, rule by rule (DESIGN.md §6)."""

from __future__ import annotations

from typing import Any

from colonynode.consensus import (
    ClaimerConfig,
    ClaimFailed,
    Closed,
    Expired,
    Granted,
    LeaseEnded,
    Outcome,
    ProcessTerms,
    ReadResult,
    Reason,
    Renewed,
    State,
    Submitted,
)
from colonynode.consensus.messages import Claim, Close, Push, Renew, Reply, Tag
from colonynode.consensus.requests import (
    ClaimLeases,
    CloseProcess,
    ExpireProcess,
    ReadRegister,
    ReleaseAll,
    SubmitProcess,
)
from tests.consensus.harness import TIMING, Colony, nid

PID = b"pid-1"
C1, C2 = 3, 4  # the claimer nodes of a 3-voter colony


def submitted(colony: Colony, pid: bytes = PID, node: int = C1, **kw: Any) -> None:
    colony.call(node, lambda c, t: c.request(t, SubmitProcess(ProcessTerms(pid, nid(node), **kw))))
    colony.deliver()
    assert Submitted(pid, True) in colony.nodes[node].events


def granted(colony: Colony, node: int, pid: bytes = PID) -> Granted:
    found: list[Granted] = [e for e in colony.events(node, Granted) if e.pid == pid]
    assert found, colony.nodes[node].events
    return found[-1]


def voter_state(colony: Colony, voter: int, pid: bytes = PID) -> tuple[State, int] | None:
    reg = colony.core(voter).voter.register(pid)
    return None if reg is None else (reg.state, reg.epoch)


def test_submit_is_acknowledged_only_when_a_majority_holds_it_durably() -> None:
    colony = Colony()
    colony.call(C1, lambda c, t: c.request(t, SubmitProcess(ProcessTerms(PID, nid(C1)))))
    colony.deliver(drop=lambda s, d, m: d in (1, 2))  # only voter 0 hears it
    assert not colony.events(C1, Submitted)
    assert colony.nodes[0].store.durable_get("lease_registers", PID) is not None
    colony.advance(0.3)  # the retransmission reaches voter 1 too: a majority
    colony.deliver(drop=lambda s, d, m: d == 2)
    assert colony.events(C1, Submitted) == [Submitted(PID, True)]


def test_submit_without_a_majority_is_not_acknowledged_at_its_timeout() -> None:
    colony = Colony(config=ClaimerConfig(lease_s=2.0, op_timeout_s=2.0))
    colony.call(C1, lambda c, t: c.request(t, SubmitProcess(ProcessTerms(PID, nid(C1)))))
    for _ in range(10):
        colony.deliver(drop=lambda s, d, m: d in (1, 2))
        colony.advance(0.25)
    assert colony.events(C1, Submitted) == [Submitted(PID, False, None)]


def test_batch_claim_one_request_claims_several_processes() -> None:
    colony = Colony()
    pids = [b"a", b"b", b"c"]
    for pid in pids:
        submitted(colony, pid)
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases(tuple(pids))))
    claims = [m for _, dst, m in colony.inflight if isinstance(m, Claim)]
    assert len(claims) == 3 and all(len(m.items) == 3 for m in claims)  # one per voter
    colony.deliver()
    assert sorted(e.pid for e in colony.events(C2, Granted)) == pids


def test_grant_deadline_counts_from_the_send_shortened_by_drift_and_margin() -> None:
    colony = Colony()
    submitted(colony)
    sent_s = colony.local(C1)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,), 2.0)))
    colony.advance(0.2, tick=False)  # the grants arrive later: the deadline does not move
    colony.deliver()
    assert granted(colony, C1).deadline_s == TIMING.claimer_deadline_s(sent_s, 2.0)


def test_minority_grant_is_released() -> None:
    colony = Colony()
    submitted(colony)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    # C1's claim reaches voter 0 first; C2's reaches voters 1 and 2 first.
    first = {0: C1, 1: C2, 2: C2}
    pending = colony.inflight
    colony.inflight = sorted(pending, key=lambda x: 0 if first.get(x[1]) == x[0] else 1)
    colony.deliver()
    assert granted(colony, C2)
    # both asked for epoch 1: voters 1 and 2 had granted it to C2 already
    assert [e.reason for e in colony.events(C1, ClaimFailed)] == [Reason.STALE_EPOCH]
    assert voter_state(colony, 0) == (State.WAITING, 1)  # C1's minority grant was released
    assert voter_state(colony, 1) == (State.RUNNING, 1)


def test_a_late_grant_for_a_claim_given_up_is_released() -> None:
    colony = Colony(config=ClaimerConfig(lease_s=2.0, claim_timeout_s=0.5))
    submitted(colony)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    held = colony.inflight
    colony.inflight = []
    colony.advance(0.6)  # the claim times out before any voter hears it
    assert colony.events(C1, ClaimFailed) == [ClaimFailed(PID, 1, None)]
    colony.inflight = [x for x in held if x[1] == 0]
    colony.deliver()
    assert voter_state(colony, 0) == (State.WAITING, 1)


def test_renew_moves_the_deadline_from_the_renew_send() -> None:
    colony = Colony()
    submitted(colony)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    first = granted(colony, C1)
    colony.advance(1.0)  # half the lease: the renew goes out
    renew_sent_s = colony.local(C1)
    assert any(isinstance(m, Renew) for _, _, m in colony.inflight)
    colony.deliver()
    renewed = colony.events(C1, Renewed)
    assert renewed == [Renewed(PID, first.epoch, TIMING.claimer_deadline_s(renew_sent_s, 2.0))]


def test_lease_is_lost_at_the_deadline_without_a_majority_renew() -> None:
    colony = Colony()
    submitted(colony)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    deadline_s = granted(colony, C1).deadline_s
    while colony.local(C1) < deadline_s:
        colony.advance(0.1)
        colony.deliver(drop=lambda s, d, m: isinstance(m, Renew) and d != 0)
    assert colony.events(C1, LeaseEnded) == [LeaseEnded(PID, 1, "lost")]
    assert not colony.core(C1).claimer.holds(PID, colony.local(C1))


def test_renew_is_refused_past_maxexectime_and_the_lease_runs_out() -> None:
    colony = Colony()
    submitted(colony, maxexectime_s=1.5)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    for _ in range(40):
        colony.advance(0.1)
        colony.deliver()
    assert colony.events(C1, LeaseEnded) == [LeaseEnded(PID, 1, "lost")]


def _take_over(colony: Colony, epoch: int = 2) -> None:
    """C1 holds the lease and freezes; C2 claims after it ran out and closes."""
    submitted(colony, maxretries=1)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    assert granted(colony, C1).epoch == 1
    colony.nodes[C1].up = False  # frozen: no ticks, no messages
    colony.advance(3.0)
    colony.deliver()
    colony.call(
        C2, lambda c, t: c.request(t, ClaimLeases((PID,)))
    )  # epoch 1: refused, learns the epoch
    colony.deliver()
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    assert granted(colony, C2).epoch == epoch


def test_paused_ex_holder_wakes_after_another_closed_and_its_close_is_refused() -> None:
    colony = Colony()
    _take_over(colony)
    colony.call(C2, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, "from C2")))
    colony.deliver()
    assert colony.events(C2, Closed) == [Closed(PID, 2, Outcome.SUCCESS, True)]
    colony.nodes[C1].up = True  # wakes: first the overdue tick, then the late close
    colony.tick(C1)
    assert colony.events(C1, LeaseEnded) == [LeaseEnded(PID, 1, "lost")]
    colony.call(C1, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, "from C1")))
    colony.deliver()
    assert colony.events(C1, Closed) == [Closed(PID, 1, Outcome.SUCCESS, False, Reason.NOT_HOLDER)]
    for v in range(3):
        reg = colony.core(v).voter.register(PID)
        assert reg is not None and reg.output == "from C2"


def stale_close_verdicts(colony: Colony) -> list[Reason]:
    """C1 sends a close under its old epoch 1 to every voter (as a close sent in time
    but delivered late would arrive); the voters' verdicts."""
    seen: list[Reason] = []

    def watch(src: int, dst: int, msg: Any) -> bool:
        if dst == C1 and isinstance(msg, Reply) and msg.request is Tag.CLOSE:
            seen.extend(v.reason for v in msg.verdicts)
        return False

    colony.inflight.extend(
        (C1, v, Close(PID, 1, Outcome.SUCCESS, "stale", (), 1)) for v in range(3)
    )
    colony.deliver(drop=watch)
    return seen


def test_epoch_fencing_a_stale_close_before_the_new_holder_closes_is_refused() -> None:
    colony = Colony()
    _take_over(colony)
    colony.nodes[C1].up = True
    assert stale_close_verdicts(colony) == [Reason.STALE_EPOCH] * 3
    assert voter_state(colony, 0) == (State.RUNNING, 2)


def test_restarted_voters_never_grant_a_lease_that_conflicts_with_one_granted_before() -> None:
    colony = Colony()
    submitted(colony)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    deadline_s = granted(colony, C1).deadline_s
    for v in range(3):
        colony.crash(v)
    colony.advance(1.0)
    for v in range(3):
        colony.restart(v)
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))  # epoch 1: stale
    colony.deliver()
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))  # epoch 2: the lease is held
    colony.deliver()
    assert [e.reason for e in colony.events(C2, ClaimFailed)] == [
        Reason.STALE_EPOCH,
        Reason.LEASE_HELD,
    ]
    # A full lease from the restart protects the old holder past its own deadline.
    colony.nodes[C1].up = False
    colony.advance(deadline_s - colony.local(C2) + 0.5)
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    assert not colony.events(C2, Granted)


def test_majority_read_reports_a_committed_close_with_one_voter_down() -> None:
    colony = Colony()
    submitted(colony)
    req = colony.call(C2, lambda c, t: c.request(t, ReadRegister(PID)))
    colony.deliver()
    (before,) = colony.events(C2, ReadResult)
    assert before.reqs == (req,) and not before.committed
    assert before.view is not None and before.view.state is State.WAITING
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    colony.call(C1, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, [1, 2])))
    colony.deliver()
    colony.crash(2)
    colony.call(C2, lambda c, t: c.request(t, ReadRegister(PID)))
    colony.deliver()
    after = colony.events(C2, ReadResult)[-1]
    assert after.committed and after.answered == 2
    assert after.view is not None and after.view.output == [1, 2]


def test_explicit_fail_closes_failed_and_is_never_claimed_again() -> None:
    colony = Colony()
    submitted(colony, maxretries=-1)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    colony.call(C1, lambda c, t: c.request(t, CloseProcess(PID, Outcome.FAILED, None, ("boom",))))
    colony.deliver()
    assert colony.events(C1, Closed) == [Closed(PID, 1, Outcome.FAILED, True)]
    colony.advance(10.0)
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    assert [e.reason for e in colony.events(C2, ClaimFailed)] == [Reason.CLOSED]


def test_release_frees_the_process_at_once_for_another_claimer() -> None:
    colony = Colony()
    submitted(colony)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    colony.call(C1, lambda c, t: c.request(t, ReleaseAll()))
    colony.deliver()
    assert colony.events(C1, LeaseEnded) == [LeaseEnded(PID, 1, "released")]
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    assert granted(colony, C2).epoch == 2


def test_a_colony_of_one_voter_claims_and_closes_through_itself() -> None:
    colony = Colony(voters=1, claimers=0)
    colony.call(0, lambda c, t: c.request(t, SubmitProcess(ProcessTerms(PID, nid(0)))))
    colony.call(0, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.call(0, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, "solo")))
    assert not colony.inflight  # nothing went to the network
    assert colony.events(0, Submitted) == [Submitted(PID, True)]
    assert colony.events(0, Closed) == [Closed(PID, 1, Outcome.SUCCESS, True)]
    record = colony.nodes[0].store.durable_get("lease_registers", PID)
    assert record is not None and record["state"] == State.SUCCESS


def test_planted_ignore_epochs_voter_accepts_a_stale_close() -> None:
    colony = Colony(planted_bug="ignore_epochs")
    _take_over(colony, epoch=1)  # the buggy voters granted the stale epoch 1 again
    colony.nodes[C1].up = True
    assert stale_close_verdicts(colony) == [Reason.OK] * 3  # what the checkers must catch


def test_a_late_grant_answering_an_older_claim_does_not_count_for_a_new_one() -> None:
    """Found by the soak (chaos seed 2198): a claimer restarted and claimed the same
    epoch again; grants to its first claim, delivered late, must not make a majority
    with the new one (their expiries count from the old send)."""
    colony = Colony()
    submitted(colony)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver(rounds_max=1)  # the voters grant
    stale = [x for x in colony.inflight if x[0] in (1, 2)]
    colony.inflight = []  # voter 0's reply is lost; those of voters 1 and 2 are held up
    assert len(stale) == 2
    colony.crash(C1)
    colony.advance(3.0)  # the grants expire at the voters
    colony.restart(C1)
    colony.call(
        C1, lambda c, t: c.request(t, ClaimLeases((PID,)))
    )  # epoch 1 again, from a new core
    colony.deliver(drop=lambda s, d, m: d in (1, 2))  # only voter 0 hears it
    colony.inflight.extend(stale)  # the old grants of voters 1 and 2 arrive now
    colony.deliver()
    assert not colony.events(C1, Granted)


def _straggler(colony: Colony) -> None:
    """C1 holds PID (no retries) and dies after a renew only voter 2 heard: voters 0
    and 1 see the lease run out a second before voter 2 does. C2 expires PID then."""
    submitted(colony, maxretries=0)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    colony.advance(1.0)  # C1 renews; only voter 2 extends the lease
    colony.deliver(drop=lambda s, d, m: isinstance(m, Renew) and d in (0, 1))
    colony.nodes[C1].up = False
    colony.advance(1.5)  # expired at voters 0 and 1, held at voter 2 for ~0.5 s more
    colony.call(C2, lambda c, t: c.request(t, ExpireProcess(PID)))


def test_an_expiry_committed_without_a_straggler_is_pushed_to_it() -> None:
    """Found by CI: after a maxexectime expiry one voter (whose lease a late renew had
    extended) refused the Expire and stayed RUNNING for good, so a later majority read
    that reached it saw no majority. The voters that closed the process push the result
    to it, whether its refusal arrives before the majority or after."""
    for straggler_first in (False, True):
        colony = Colony()
        _straggler(colony)
        colony.deliver(rounds_max=1)  # the voters answer
        replies = colony.inflight
        if straggler_first:
            replies.sort(key=lambda x: x[0] != 2)
        colony.deliver()
        assert colony.events(C2, Expired) == [Expired(PID, True)]
        assert [voter_state(colony, v) for v in range(3)] == [(State.FAILED, 1)] * 3


def test_a_majority_read_that_meets_a_straggler_waits_for_the_last_voter() -> None:
    """Voters 0 and 1 closed the process, voter 2 still has it RUNNING: a read answered
    first by voters 0 and 2 cannot tell whether a majority closed it, so it waits for
    voter 1 rather than report it uncommitted."""
    colony = Colony()
    _straggler(colony)
    colony.deliver(drop=lambda s, d, m: isinstance(m, Push))  # the repair is lost
    assert voter_state(colony, 2) == (State.RUNNING, 1)
    colony.call(C2, lambda c, t: c.request(t, ReadRegister(PID)))
    colony.deliver(rounds_max=1)
    held = [x for x in colony.inflight if x[0] == 1]
    colony.inflight = [x for x in colony.inflight if x[0] != 1]
    colony.deliver()
    assert not colony.events(C2, ReadResult)
    colony.inflight.extend(held)
    colony.deliver()
    (read,) = colony.events(C2, ReadResult)
    assert read.committed and read.answered == 3
    assert read.view is not None and read.view.state is State.FAILED


def test_a_majority_read_answers_at_its_grace_when_the_last_voter_is_silent() -> None:
    colony = Colony()
    _straggler(colony)
    colony.deliver(drop=lambda s, d, m: isinstance(m, Push))
    colony.crash(1)
    colony.call(C2, lambda c, t: c.request(t, ReadRegister(PID)))
    colony.deliver()
    assert not colony.events(C2, ReadResult)
    colony.advance(ClaimerConfig().read_grace_s)
    colony.deliver()
    (read,) = colony.events(C2, ReadResult)
    assert not read.committed and read.answered == 2
    assert read.view is not None and read.view.state is State.FAILED


def test_a_majority_read_of_an_open_process_does_not_wait_for_the_last_voter() -> None:
    colony = Colony()
    submitted(colony)
    colony.crash(2)
    colony.call(C2, lambda c, t: c.request(t, ReadRegister(PID)))
    colony.deliver()
    (read,) = colony.events(C2, ReadResult)
    assert not read.committed and read.answered == 2
