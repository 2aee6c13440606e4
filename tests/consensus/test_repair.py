"""Repair's choices (consensus/repair.py): who hands its register to whom after a claim
that got no majority."""

from __future__ import annotations

from colonynode.consensus import repair
from colonynode.consensus.messages import Push, Reason, RegisterView, State, Verdict
from colonynode.core.ids import NodeId

A, B, C, H = (NodeId(bytes([c]) * 32) for c in b"ABCH")
PID = b"p1"


def verdict(reason: Reason, state: State, epoch: int, holder: NodeId | None = H) -> Verdict:
    return Verdict(PID, 42, reason, RegisterView(PID, state, epoch, holder, 3))


def test_a_voter_behind_a_release_is_sent_the_register_of_the_one_that_granted() -> None:
    # `voters` chaos seed 581: A refuses RETRIES_SPENT (its epoch-11 lease ran out: it
    # missed the Release), B granted epoch 42, C is down.
    verdicts = {
        A: verdict(Reason.RETRIES_SPENT, State.RUNNING, 11),
        B: verdict(Reason.OK, State.RUNNING, 42),
    }
    assert repair.after_failed_claim(PID, (A, B, C), verdicts) == (B, Push(PID, (A,)))


def test_no_push_without_a_grant_above_the_refusal() -> None:
    spent = verdict(Reason.RETRIES_SPENT, State.RUNNING, 11)
    held = verdict(Reason.LEASE_HELD, State.RUNNING, 42)
    assert repair.after_failed_claim(PID, (A, B, C), {A: spent, B: held}) is None
    same = verdict(Reason.OK, State.RUNNING, 11)  # (a retransmission of the grant)
    assert repair.after_failed_claim(PID, (A, B, C), {A: spent, B: same}) is None
    assert repair.after_failed_claim(PID, (A, B, C), {A: spent}) is None
