"""Cancel: the submitter (or an owner) aborts a process, CANCELLED or FAILED, waiting or
running, stepped by hand rule by rule (register.py `abort`, voter.py, claimer.py)."""

from __future__ import annotations

from typing import Any

from colonynode.consensus import (
    Cancelled,
    ClaimerConfig,
    ClaimFailed,
    Closed,
    LeaseEnded,
    Outcome,
    ProcessTerms,
    ReadResult,
    Reason,
    State,
    Submitted,
    VoterCommitted,
)
from colonynode.consensus.messages import Cancel, Reply, Tag
from colonynode.consensus.requests import (
    CancelProcess,
    ClaimLeases,
    CloseProcess,
    ReadRegister,
    SubmitProcess,
)
from colonynode.core.ids import NodeId
from tests.consensus.harness import Colony, nid
from tests.consensus.test_lease import C1, C2, PID, granted, submitted, voter_state

OWNER = 5  # the third claimer node of `Colony(claimers=3)`


def only_owner_is_owner(node: NodeId, role: str) -> bool:
    return role != "owner" or node == nid(OWNER)


def cancel(
    colony: Colony, node: int, state: State = State.CANCELLED, errors: tuple[str, ...] = ()
) -> list[Cancelled]:
    colony.call(node, lambda c, t: c.request(t, CancelProcess(PID, state, errors)))
    colony.deliver()
    return colony.events(node, Cancelled)


def running(colony: Colony, holder: int = C2) -> float:
    """C1 submits, `holder` claims; the holder's lease deadline."""
    submitted(colony)
    colony.call(holder, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    return granted(colony, holder).deadline_s


def verdicts_of(colony: Colony, msg: Any, node: int = C1) -> list[Reason]:
    """Send `msg` from `node` to every voter; the reasons of the voters' verdicts."""
    seen: list[Reason] = []

    def watch(src: int, dst: int, m: Any) -> bool:
        if dst == node and isinstance(m, Reply) and m.request is Tag.CANCEL:
            seen.extend(v.reason for v in m.verdicts)
        return False

    colony.inflight.extend((node, v, msg) for v in range(len(colony.voter_ids)))
    colony.deliver(drop=watch)
    return seen


def test_submitter_cancels_a_waiting_process_at_a_majority_and_a_claim_is_refused_closed() -> None:
    colony = Colony()
    submitted(colony)
    colony.call(C1, lambda c, t: c.request(t, CancelProcess(PID)))
    colony.deliver(drop=lambda s, d, m: d == 2)  # voter 2 is unreachable: a majority does
    assert colony.events(C1, Cancelled) == [Cancelled(PID, State.CANCELLED, True)]
    assert [voter_state(colony, v) for v in range(3)] == [
        (State.CANCELLED, 0),
        (State.CANCELLED, 0),
        (State.WAITING, 0),
    ]
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    assert [e.reason for e in colony.events(C2, ClaimFailed)] == [Reason.CLOSED]
    assert voter_state(colony, 2) == (State.CANCELLED, 0)  # the failed claim repaired it


def test_cancel_of_a_running_process_ends_the_holders_lease_at_its_next_renew() -> None:
    colony = Colony()
    deadline_s = running(colony)
    assert cancel(colony, C1) == [Cancelled(PID, State.CANCELLED, True)]
    assert [voter_state(colony, v) for v in range(3)] == [(State.CANCELLED, 1)] * 3
    for _ in range(30):  # the renew at half the lease is refused CLOSED by a majority
        colony.advance(0.1)
        colony.deliver()
        if colony.events(C2, LeaseEnded):
            break
    assert colony.events(C2, LeaseEnded) == [LeaseEnded(PID, 1, "closed")]
    assert colony.local(C2) < deadline_s  # at once, not at the deadline
    colony.call(C2, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, "late")))
    assert not colony.inflight  # a close it knows to be refused is not even sent
    assert colony.events(C2, Closed) == [Closed(PID, 1, Outcome.SUCCESS, False, Reason.CLOSED)]


def test_cancel_of_a_running_process_fences_the_holders_close() -> None:
    colony = Colony()
    running(colony)
    assert cancel(colony, C1) == [Cancelled(PID, State.CANCELLED, True)]
    colony.call(
        C2, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, "out"))
    )  # not told yet
    colony.deliver()
    assert colony.events(C2, Closed) == [Closed(PID, 1, Outcome.SUCCESS, False, Reason.CLOSED)]
    for v in range(3):
        reg = colony.core(v).voter.register(PID)
        assert reg is not None and (reg.state, reg.holder, reg.output) == (
            State.CANCELLED,
            None,
            None,
        )


def test_a_cancel_that_commits_ends_a_lease_the_cancelling_node_holds() -> None:
    colony = Colony(voters=1, claimers=0)  # a colony of one: submitter, executor, voter
    colony.call(0, lambda c, t: c.request(t, SubmitProcess(ProcessTerms(PID, nid(0)))))
    colony.call(0, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.call(0, lambda c, t: c.request(t, CancelProcess(PID)))
    assert not colony.inflight
    assert colony.events(0, LeaseEnded) == [LeaseEnded(PID, 1, "closed")]
    assert colony.events(0, Cancelled) == [Cancelled(PID, State.CANCELLED, True)]
    assert not colony.core(0).claimer.holds(PID, colony.local(0))


def test_a_member_neither_submitter_nor_owner_is_refused_not_allowed() -> None:
    colony = Colony(claimers=3, has_role=only_owner_is_owner)
    submitted(colony)
    assert cancel(colony, C2) == [Cancelled(PID, State.CANCELLED, False, Reason.NOT_ALLOWED)]
    assert [voter_state(colony, v) for v in range(3)] == [(State.WAITING, 0)] * 3


def test_an_owner_may_cancel_another_members_process() -> None:
    colony = Colony(claimers=3, has_role=only_owner_is_owner)
    running(colony)
    assert cancel(colony, OWNER) == [Cancelled(PID, State.CANCELLED, True)]
    assert [voter_state(colony, v) for v in range(3)] == [(State.CANCELLED, 1)] * 3


def test_cancel_of_a_closed_process_is_refused_closed_and_the_result_stays() -> None:
    colony = Colony()
    running(colony)
    colony.call(C2, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, "out")))
    colony.deliver()
    assert cancel(colony, C1) == [Cancelled(PID, State.CANCELLED, False, Reason.CLOSED)]
    for v in range(3):
        reg = colony.core(v).voter.register(PID)
        assert reg is not None and (reg.state, reg.output) == (State.SUCCESS, "out")


def test_a_failed_abort_keeps_its_error_message_and_reads_as_committed() -> None:
    colony = Colony()
    running(colony)
    why = ("parent p0 failed",)
    assert cancel(colony, C1, State.FAILED, why) == [Cancelled(PID, State.FAILED, True)]
    colony.call(C2, lambda c, t: c.request(t, ReadRegister(PID)))
    colony.deliver()
    (read,) = colony.events(C2, ReadResult)
    assert read.committed and read.view is not None
    assert (read.view.state, read.view.holder, read.view.errors) == (State.FAILED, None, why)


def test_a_retransmitted_cancel_is_idempotent() -> None:
    colony = Colony()
    submitted(colony)
    colony.call(C1, lambda c, t: c.request(t, CancelProcess(PID)))
    colony.deliver(drop=lambda s, d, m: isinstance(m, Reply))  # every voter's reply is lost
    assert not colony.events(C1, Cancelled)
    colony.advance(0.3)  # retransmitted: the voters accept it again and change nothing
    colony.deliver()
    assert colony.events(C1, Cancelled) == [Cancelled(PID, State.CANCELLED, True)]
    assert cancel(colony, C1)[-1] == Cancelled(PID, State.CANCELLED, True)  # asked again
    for v in range(3):
        assert len(colony.events(v, VoterCommitted)) == 1
    assert [voter_state(colony, v) for v in range(3)] == [(State.CANCELLED, 0)] * 3


def test_a_cancel_survives_a_restart_of_every_voter() -> None:
    colony = Colony()
    running(colony)
    assert cancel(colony, C1) == [Cancelled(PID, State.CANCELLED, True)]
    for v in range(3):
        record = colony.nodes[v].store.durable_get("lease_registers", PID)
        assert record is not None and record["state"] == State.CANCELLED
        colony.crash(v)
    colony.advance(1.0)
    for v in range(3):
        colony.restart(v)
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver()
    assert [e.reason for e in colony.events(C1, ClaimFailed)] == [Reason.CLOSED]


def test_a_cancel_of_an_unknown_process_is_refused_unknown_pid() -> None:
    colony = Colony()
    assert cancel(colony, C1) == [Cancelled(PID, State.CANCELLED, False, Reason.UNKNOWN_PID)]


def test_a_cancel_without_a_majority_times_out_uncommitted() -> None:
    colony = Colony(config=ClaimerConfig(lease_s=2.0, op_timeout_s=2.0))
    submitted(colony)
    colony.call(C1, lambda c, t: c.request(t, CancelProcess(PID)))
    for _ in range(10):
        colony.deliver(drop=lambda s, d, m: d in (1, 2))
        colony.advance(0.25)
    assert colony.events(C1, Cancelled) == [Cancelled(PID, State.CANCELLED, False, None)]


def test_a_cancel_asks_for_cancelled_or_failed_only() -> None:
    colony = Colony()
    colony.call(C1, lambda c, t: c.request(t, SubmitProcess(ProcessTerms(PID, nid(C1)))))
    colony.deliver()
    assert Submitted(PID, True) in colony.nodes[C1].events
    colony.call(C1, lambda c, t: c.request(t, CancelProcess(PID, State.SUCCESS)))
    assert not colony.inflight  # refused here, never sent
    refused = Cancelled(PID, State.SUCCESS, False, Reason.BAD_STATE)
    assert colony.events(C1, Cancelled) == [refused]
    assert verdicts_of(colony, Cancel(PID, State.RUNNING, (), 1)) == [Reason.BAD_STATE] * 3


def test_a_cancel_for_another_voter_set_version_is_refused_wrong_version() -> None:
    colony = Colony()
    submitted(colony)
    assert verdicts_of(colony, Cancel(PID, State.CANCELLED, (), 2)) == [Reason.WRONG_VERSION] * 3
    assert [voter_state(colony, v) for v in range(3)] == [(State.WAITING, 0)] * 3


def test_a_cancel_racing_a_close_past_a_voter_that_missed_the_submit_commits_one_result() -> None:
    """Found by the soak (chaos seed 90, seed-profile seed 46): voter 2 missed the submit;
    the cancel reached voter 0 first, the holder's close voter 1 first. Each was refused
    (CLOSED at one voter, UNKNOWN_PID at voter 2) and no result could ever reach a
    majority. An UNKNOWN_PID while another voter holds the process does not count: that
    voter gets the register pushed and is asked again."""
    colony = Colony()
    colony.call(C1, lambda c, t: c.request(t, SubmitProcess(ProcessTerms(PID, nid(C1)))))
    colony.deliver(drop=lambda s, d, m: d == 2)
    assert colony.events(C1, Submitted) == [Submitted(PID, True)]
    assert colony.core(2).voter.register(PID) is None
    colony.call(C2, lambda c, t: c.request(t, ClaimLeases((PID,))))
    colony.deliver(drop=lambda s, d, m: d == 2)
    assert granted(colony, C2).epoch == 1
    colony.call(C1, lambda c, t: c.request(t, CancelProcess(PID)))
    colony.call(C2, lambda c, t: c.request(t, CloseProcess(PID, Outcome.SUCCESS, "out")))
    first = {0: C1, 1: C2}  # voter 0 hears the cancel first, voter 1 the close
    colony.inflight.sort(key=lambda x: 0 if first.get(x[1]) == x[0] else 1)
    colony.deliver()
    for _ in range(10):
        colony.advance(0.3)
        colony.deliver()
    (cancelled,) = colony.events(C1, Cancelled)
    (closed,) = colony.events(C2, Closed)
    assert cancelled.committed != closed.committed  # one result, and each was told which
    states = [voter_state(colony, v) for v in range(3)]
    winner = (State.CANCELLED, 1) if cancelled.committed else (State.SUCCESS, 1)
    assert states.count(winner) >= 2, states
