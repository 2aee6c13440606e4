"""What a claimer's decided (or timed-out) request comes to: the event it emits, and the
repairs it sends (repair.py decides them). A part of `ClaimerCore` (claimer.py) split off
by job; functions of the claimer, which change its state as its methods do."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from colonynode.consensus import certs, repair
from colonynode.consensus import events as ev
from colonynode.consensus.held import LEASES_MAX
from colonynode.consensus.messages import Push, Reason, RegisterView, Release, State, Tag, Verdict
from colonynode.consensus.quorum import majority
from colonynode.consensus.register import CLOSED_STATES
from colonynode.consensus.verdicts import committed_view, read_outcome, shows_waiting
from colonynode.core.ids import NodeId

if TYPE_CHECKING:
    from colonynode.consensus.claimer import ClaimerCore, _Op

__all__ = ["COMMITTED_MAX", "FINISH", "release_stray", "repair_late"]

COMMITTED_MAX = 1_024  # recent closes/expires/cancels remembered, to repair late refusers


def finish_submit(claimer: ClaimerCore, now_s: float, op: _Op, reason: Reason | None) -> None:
    claimer.ops.pop((op.tag, op.pid), None)
    ok = reason is Reason.OK
    claimer._emit(ev.Submitted(op.pid, ok, None if ok else reason, tuple(op.reqs)))


def finish_claim(claimer: ClaimerCore, now_s: float, op: _Op, reason: Reason | None) -> None:
    claimer.ops.pop((op.tag, op.pid), None)
    pid, reqs = op.pid, tuple(op.reqs)
    lease_s = op.msg.lease_s
    ok = reason is Reason.OK
    in_time = now_s < claimer.timing.claimer_deadline_s(op.sent_s, lease_s)
    if ok and in_time and len(claimer.held) < LEASES_MAX:
        deadline_s = claimer.held.grant(pid, op.epoch, lease_s, op.sent_s)
        horizon = max((v.horizon for v in op.verdicts.values() if v.ok), default=-1)
        grant = RegisterView(pid, State.RUNNING, op.epoch, claimer.node_id, 0)
        cert = certs.gather(op.verdicts.items(), grant, majority(claimer.voters()))
        claimer._emit(ev.Granted(pid, op.epoch, deadline_s, reqs, horizon, cert))
        return
    for voter, verdict in op.verdicts.items():
        if verdict.ok:
            claimer._send(voter, Release(pid, op.epoch, claimer.version()))
    fix = repair.after_failed_claim(pid, claimer.voters(), op.verdicts)
    if fix is not None:
        claimer._send(*fix)
    if reason is Reason.STALE_EPOCH and not op.again and shows_waiting(op.verdicts):
        # Refused only for an epoch others have used: the process waits. Ask once
        # more, at once, above the epoch the refusals showed.
        claimer._claim_again(now_s, op)
        return
    left_s = max((v.lease_left_s for v in op.verdicts.values()), default=0.0)
    claimer._emit(ev.ClaimFailed(pid, op.epoch, None if ok else reason, reqs, left_s))


def finish_terminal(claimer: ClaimerCore, now_s: float, op: _Op, reason: Reason | None) -> None:
    """A close, expire or cancel is decided; a committed one is repaired at the voters
    that refused it, and answered with the register a majority holds."""
    claimer.ops.pop((op.tag, op.pid), None)
    pid, reqs = op.pid, tuple(op.reqs)
    ok = reason is Reason.OK
    why = None if ok else reason
    view = committed_view(op.verdicts) if ok else None
    cert = certs.gather(op.verdicts.items(), view, majority(claimer.voters()))
    if ok:
        repair_committed(claimer, op)
    if op.tag is Tag.CLOSE:
        claimer._emit(ev.Closed(pid, op.epoch, op.outcome, ok, why, view, reqs, cert))
    elif op.tag is Tag.EXPIRE:
        claimer._emit(ev.Expired(pid, ok, why, view, reqs, cert))
    else:
        if ok:
            claimer.held.end_closed(pid)
        claimer._emit(ev.Cancelled(pid, op.msg.state, ok, why, view, reqs, cert))


def finish_release(claimer: ClaimerCore, now_s: float, op: _Op, reason: Reason | None) -> None:
    claimer.ops.pop((op.tag, op.pid), None)  # nobody waits for it


def finish_read(claimer: ClaimerCore, now_s: float, op: _Op, reason: Reason | None) -> None:
    """Settled, or timed out: the best the voters that answered could tell."""
    claimer.ops.pop((op.tag, op.pid), None)
    committed, _ = read_outcome(claimer.voters(), op.verdicts)
    views = [v.view for v in op.verdicts.values() if v.view is not None]
    best = committed
    if best is None and views:
        best = max(views, key=lambda v: (v.state in CLOSED_STATES, v.epoch))
    pid, nonce = op.msg.pid, op.msg.nonce
    answered = len(op.verdicts)
    if committed is None:
        push_split(claimer, pid, op.verdicts)
    cert = certs.gather(op.verdicts.items(), committed, majority(claimer.voters()))
    claimer._emit(ev.ReadResult(pid, nonce, best, committed is not None, answered,
                                tuple(op.reqs), cert))  # fmt: skip


def push_split(claimer: ClaimerCore, pid: bytes, verdicts: dict[NodeId, Verdict]) -> None:
    """A read found every voter holding the process closed, with results no
    majority shares: have each voter send its register to every other, so they
    can settle (split.py)."""
    voters = claimer.voters()
    if not repair.is_split(voters, verdicts):
        return
    claimer.splits_pushed += 1
    for voter in voters:
        claimer._send(voter, Push(pid, tuple(v for v in voters if v != voter)))


def repair_committed(claimer: ClaimerCore, op: _Op) -> None:
    """A close, expire or cancel committed: the voters that refused it and are still
    open (a straggler whose lease had not run out yet, say) are sent the result by
    one that accepted, and so are those whose refusal comes later. Pushing a
    committed result is always safe: it is the only result a majority can commit."""
    source, push = repair.after_commit(op.pid, op.verdicts)
    if source is None:
        return
    key = (op.tag, op.pid)
    if len(claimer.committed) >= COMMITTED_MAX and key not in claimer.committed:
        del claimer.committed[next(iter(claimer.committed))]
    claimer.committed[key] = (op.epoch, source)
    if push is not None:
        claimer._send(source, push)


def repair_late(claimer: ClaimerCore, tag: Tag, voter: NodeId, verdict: Verdict) -> None:
    known = claimer.committed.get((tag, verdict.pid))
    if known is None or repair.is_closed(verdict):
        return
    epoch, source = known
    if epoch == verdict.epoch and source != voter:
        claimer._send(source, Push(verdict.pid, (voter,)))


def release_stray(claimer: ClaimerCore, voter: NodeId, verdict: Verdict) -> None:
    """A grant for a claim this node no longer waits for: give it back."""
    lease = claimer.held.get(verdict.pid)
    if lease is not None and lease.epoch == verdict.epoch:
        return  # a late duplicate of a grant that is part of the lease held
    claimer._send(voter, Release(verdict.pid, verdict.epoch, claimer.version()))


FINISH: dict[Tag, Callable[[ClaimerCore, float, _Op, Reason | None], None]] = {
    Tag.SUBMIT: finish_submit,
    Tag.CLAIM: finish_claim,
    Tag.CLOSE: finish_terminal,
    Tag.EXPIRE: finish_terminal,
    Tag.CANCEL: finish_terminal,
    Tag.RELEASE: finish_release,
    Tag.READ: finish_read,
}
