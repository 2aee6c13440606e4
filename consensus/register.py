"""One process's lease register and its transition table (DESIGN.md §6), in one place.

A `Register` is what one voter holds for one process. Every transition is a pure
function ``f(reg, request..., now_s, timing) -> (reg', reason)``: `reason` is
`Reason.OK` when the voter accepts (and `reg'` is what it must make durable before it
answers), anything else when it refuses (and `reg'` is `reg`). The voter core
(voter.py) only routes requests here and persists what changed; property tests hammer
these functions directly.

Times (`expiry_s`, `started_s`, `waiting_since_s`) are the voter's *local* monotonic
readings: they are never persisted and are re-stamped at a restart (`restarted`).

The table (the voter accepts iff ..., and then ...):

- submit: pid unknown, or known with the same terms (a retransmission) or as the same
  cron tick (another member fired it too: `same_process`; nothing changes) -> WAITING;
- claim(e): not closed; the executor type matches; e > epoch; WAITING within
  maxwaittime, or RUNNING with the lease expired here and retries left -> RUNNING at
  epoch e for the claimer, expiry = now + lease·(1+drift) + margin, retries+1 for a
  re-claim of an expired lease. The same claim again (e == epoch, same holder, still
  RUNNING) is a retransmission: accepted, the expiry extended;
- renew(e): RUNNING, e == epoch, same holder, maxexectime not passed -> expiry
  extended to now + lease·(1+drift) + margin;
- close(e): RUNNING, e == epoch, same holder, the lease unexpired here (or the same
  close again) -> SUCCESS or FAILED with the output;
- release(e): RUNNING, e == epoch, same holder (or WAITING at e: a retransmission) ->
  WAITING, no retry counted;
- expire: RUNNING, expired here and retries spent; or WAITING past maxwaittime ->
  FAILED with the reason;
- abort(state): not closed (or the same abort again), state CANCELLED or FAILED ->
  that state, no holder, the errors appended (REASON_ABORTED for a FAILED abort that
  gives none). It needs no epoch and no lease: a RUNNING lease is revoked, and the
  holder's renew and close are refused (CLOSED). Who may abort is the voter's rule
  (the submitter, or an owner).

CLOSED_STATES are terminal: no transition leaves them, so each voter changes a
process's result at most once and two majorities cannot commit two results.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from colonynode.consensus.messages import (
    Outcome,
    ProcessTerms,
    Reason,
    RegisterCopy,
    RegisterView,
    State,
)
from colonynode.core.codec import encode
from colonynode.core.ids import NodeId

__all__ = [
    "ABORT_STATES",
    "CLOSED_STATES",
    "Register",
    "Timing",
    "abort",
    "claim",
    "close",
    "commit_key",
    "expirable",
    "expire",
    "from_copy",
    "from_record",
    "lease_expired",
    "merge",
    "release",
    "renew",
    "restarted",
    "submit",
    "to_copy",
    "to_record",
    "view",
]

CLOSED_STATES = (State.SUCCESS, State.FAILED, State.CANCELLED)
ABORT_STATES = (State.CANCELLED, State.FAILED)  # what an abort may ask for
ERRORS_MAX = 16  # error strings kept per process
REASON_EXPIRED = "lease expired and retries are spent"
REASON_WAITED = "waited longer than maxwaittime"
REASON_ABORTED = "failed by an abort (its submitter or an owner)"


@dataclass(frozen=True, slots=True)
class Timing:
    """Clock-rate drift bound and margin (DESIGN.md §6, docs/consensus.md).

    Every node's clock *rate* is within 1 ± drift of real time (no synchronisation of
    readings is assumed). A claimer's lease runs until
    ``sent + lease_s·(1 − drift) − margin_s`` on its clock; a voter's until
    ``received + lease_s·(1 + drift) + margin_s`` on its own. The first is before the
    second in real time, whatever the rates within the bound.
    """

    drift: float = 0.001  # 1000 ppm
    margin_s: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.drift < 0.1 or self.margin_s < 0:
            raise ValueError("drift is in [0, 0.1) and margin_s is not negative")

    def voter_expiry_s(self, received_s: float, lease_s: float) -> float:
        return received_s + lease_s * (1.0 + self.drift) + self.margin_s

    def claimer_deadline_s(self, sent_s: float, lease_s: float) -> float:
        return sent_s + lease_s * (1.0 - self.drift) - self.margin_s


@dataclass(frozen=True, slots=True)
class Register:
    terms: ProcessTerms
    state: State = State.WAITING
    epoch: int = 0  # the highest epoch this voter granted for the process
    holder: NodeId | None = None
    lease_s: float = 0.0
    retries: int = 0
    output: Any = None
    errors: tuple[str, ...] = ()
    claim_nonce: int = 0  # the nonce of the claim that was granted (retransmissions match)
    sig: bytes = b""  # closed: this voter's signature of its result (certs.py)
    # voter-local monotonic times, not persisted:
    expiry_s: float = 0.0
    started_s: float = 0.0
    waiting_since_s: float = 0.0

    @property
    def pid(self) -> bytes:
        return self.terms.pid

    @property
    def closed(self) -> bool:
        return self.state in CLOSED_STATES


Result = tuple[Register, Reason]


def lease_expired(reg: Register, now_s: float) -> bool:
    return reg.state is State.RUNNING and now_s >= reg.expiry_s


def _retries_spent(reg: Register) -> bool:
    return reg.terms.maxretries != -1 and reg.retries >= reg.terms.maxretries


def _waited_too_long(reg: Register, now_s: float) -> bool:
    wait_s = reg.terms.maxwaittime_s
    return reg.state is State.WAITING and wait_s > 0 and now_s - reg.waiting_since_s > wait_s


def expirable(reg: Register, now_s: float) -> bool:
    """Would an Expire be accepted now: a lease run out with its retries spent, or a
    WAITING process past its maxwaittime."""
    if lease_expired(reg, now_s):
        return _retries_spent(reg)
    return _waited_too_long(reg, now_s)


def same_process(a: ProcessTerms, b: ProcessTerms) -> bool:
    """The same process: the same terms, or the same cron tick fired by two members
    (the first a voter took stands; the other's submitter and record are not kept)."""
    return a == b or (a.pid == b.pid and bool(a.tick) and a.tick == b.tick)


def submit(reg: Register | None, terms: ProcessTerms, now_s: float) -> tuple[Register, Reason]:
    if reg is not None:
        return reg, (Reason.OK if same_process(reg.terms, terms) else Reason.CONFLICT)
    return Register(terms=terms, waiting_since_s=now_s), Reason.OK


def claim(
    reg: Register,
    epoch: int,
    holder: NodeId,
    lease_s: float,
    executortype: str,
    now_s: float,
    timing: Timing,
    *,
    nonce: int = 0,
    ignore_epochs: bool = False,
) -> Result:
    """`nonce` identifies the claim request: the same claim again (same epoch, holder and
    nonce) is a retransmission; the same epoch from a new request is stale (a restarted
    claimer must not take over its old grants). `ignore_epochs` is a planted bug for the
    simulator's checkers (never in use)."""
    if reg.closed:
        return reg, Reason.CLOSED
    if reg.terms.executortype and reg.terms.executortype != executortype:
        return reg, Reason.NO_MATCH
    running = reg.state is State.RUNNING
    if not ignore_epochs:
        if epoch == reg.epoch and running and reg.holder == holder and reg.claim_nonce == nonce:
            # a retransmission of the claim that was granted: extending is safe
            expiry_s = max(reg.expiry_s, timing.voter_expiry_s(now_s, lease_s))
            return replace(reg, expiry_s=expiry_s), Reason.OK
        if epoch <= reg.epoch:
            return reg, Reason.STALE_EPOCH
        if running and not lease_expired(reg, now_s):
            return reg, Reason.LEASE_HELD
    retries = reg.retries
    if running:  # a re-claim of an expired lease counts as a retry
        if _retries_spent(reg):
            return reg, Reason.RETRIES_SPENT
        retries += 1
    elif _waited_too_long(reg, now_s):
        return reg, Reason.WAIT_TIME_SPENT
    granted = replace(
        reg,
        state=State.RUNNING,
        epoch=max(epoch, reg.epoch) if ignore_epochs else epoch,
        holder=holder,
        lease_s=lease_s,
        retries=retries,
        claim_nonce=nonce,
        expiry_s=timing.voter_expiry_s(now_s, lease_s),
        started_s=now_s,
    )
    return granted, Reason.OK


def _holds(reg: Register, epoch: int, holder: NodeId) -> Reason:
    if reg.closed:
        return Reason.CLOSED
    if epoch != reg.epoch:
        return Reason.STALE_EPOCH
    if reg.state is not State.RUNNING:
        return Reason.NOT_RUNNING
    if reg.holder != holder:
        return Reason.NOT_HOLDER
    return Reason.OK


def renew(reg: Register, epoch: int, holder: NodeId, now_s: float, timing: Timing) -> Result:
    reason = _holds(reg, epoch, holder)
    if reason is not Reason.OK:
        return reg, reason
    exec_s = reg.terms.maxexectime_s
    if exec_s > 0 and now_s - reg.started_s > exec_s:
        return reg, Reason.EXEC_TIME_SPENT
    expiry_s = max(reg.expiry_s, timing.voter_expiry_s(now_s, reg.lease_s))
    return replace(reg, expiry_s=expiry_s), Reason.OK


def close(
    reg: Register,
    epoch: int,
    holder: NodeId,
    outcome: Outcome,
    output: Any,
    errors: tuple[str, ...],
    *,
    now_s: float | None = None,
    ignore_epochs: bool = False,
) -> Result:
    """With `now_s`, a close after the lease ran out at this voter is refused
    (LEASE_EXPIRED): a close sent in time but delivered late must not leave a second
    closed result at a voter that missed a newer lease (a handover could not settle it
    without every old voter)."""
    state = State.SUCCESS if outcome is Outcome.SUCCESS else State.FAILED
    if reg.closed and reg.epoch == epoch and reg.holder == holder and reg.state is state:
        return reg, Reason.OK  # a retransmission of the close that was accepted
    reason = Reason.OK if ignore_epochs and not reg.closed else _holds(reg, epoch, holder)
    if reason is not Reason.OK:
        return reg, reason
    if now_s is not None and not ignore_epochs and lease_expired(reg, now_s):
        return reg, Reason.LEASE_EXPIRED
    closed = replace(
        reg,
        state=state,
        epoch=epoch,
        holder=holder,
        output=output,
        errors=tuple(errors[:ERRORS_MAX]),
    )
    return closed, Reason.OK


def release(reg: Register, epoch: int, holder: NodeId, now_s: float) -> Result:
    if reg.state is State.WAITING and reg.epoch == epoch:
        return reg, Reason.OK  # already released (or never granted at this voter)
    reason = _holds(reg, epoch, holder)
    if reason is not Reason.OK:
        return reg, reason
    return replace(reg, state=State.WAITING, holder=None, waiting_since_s=now_s), Reason.OK


def expire(reg: Register, now_s: float) -> Result:
    if reg.closed:
        return reg, Reason.CLOSED
    if not expirable(reg, now_s):
        return reg, Reason.NOT_EXPIRABLE
    why = REASON_EXPIRED if reg.state is State.RUNNING else REASON_WAITED
    errors = (*reg.errors, why)[-ERRORS_MAX:]
    return replace(reg, state=State.FAILED, holder=None, errors=errors), Reason.OK


def abort(
    reg: Register, state: State, errors: tuple[str, ...], *, overwrite_closed: bool = False
) -> Result:
    """Close the process as `state` (CANCELLED or FAILED) without a holder, whether it
    is WAITING or RUNNING. The same abort again (the register is in `state`, with no
    holder, and its errors end with the abort's) is a retransmission: accepted, nothing
    changes. A FAILED abort always leaves an error of its own (REASON_ABORTED if it gives
    none), so an expiry's FAILED is never taken for a retransmitted abort.
    `overwrite_closed` is a planted bug for the simulator's checkers (never in use)."""
    if state not in ABORT_STATES:
        return reg, Reason.BAD_STATE
    added = tuple(errors[:ERRORS_MAX])
    if state is State.FAILED and not added:
        added = (REASON_ABORTED,)
    if reg.closed and not overwrite_closed:
        again = reg.state is state and reg.holder is None and _ends_with(reg.errors, added)
        return reg, Reason.OK if again else Reason.CLOSED
    kept = (*reg.errors, *added)[-ERRORS_MAX:]
    return replace(reg, state=state, holder=None, errors=kept), Reason.OK


def _ends_with(errors: tuple[str, ...], tail: tuple[str, ...]) -> bool:
    return len(errors) >= len(tail) and errors[len(errors) - len(tail) :] == tail


def restarted(reg: Register, now_s: float, timing: Timing) -> Register:
    """The register as a restarted voter must see it: a RUNNING lease is a full lease
    from the restart (and maxexectime counts from it); waiting time counts from it."""
    if reg.state is State.RUNNING:
        return replace(reg, expiry_s=timing.voter_expiry_s(now_s, reg.lease_s), started_s=now_s)
    return replace(reg, waiting_since_s=now_s)


def merge(reg: Register | None, incoming: Register, now_s: float, timing: Timing) -> Result:
    """Another voter's register for the same process (repair). A missing process is
    adopted, a RUNNING one as a full lease from now (lengthening a lease at a voter is
    always safe); a closed register replaces an open one (each voter still changes its
    terminal value at most once, so two majorities cannot commit two results). A lease
    that ran out here gives way to a WAITING register of a higher epoch: the lease was
    given back where that epoch was granted, and this voter missed the Release (with its
    retries spent, it would refuse every claim as RETRIES_SPENT while the others grant:
    with a voter down, no majority either way; docs/consensus.md). Anything else is left
    alone: an open register never replaces another (that could drop a lease this voter
    granted)."""
    if reg is None:
        return restarted(incoming, now_s, timing), Reason.OK
    if not same_process(incoming.terms, reg.terms):
        return reg, Reason.CLOSED if reg.closed else Reason.LEASE_HELD
    if incoming.closed and not reg.closed:
        return replace(incoming, expiry_s=0.0, started_s=0.0), Reason.OK
    if incoming.state is State.WAITING and incoming.epoch > reg.epoch and lease_expired(reg, now_s):
        retries = max(reg.retries, incoming.retries)  # (counted at each voter: keep the most)
        return replace(incoming, retries=retries, waiting_since_s=now_s), Reason.OK
    return reg, Reason.CLOSED if reg.closed else Reason.LEASE_HELD


def view(reg: Register) -> RegisterView:
    return RegisterView(
        reg.pid, reg.state, reg.epoch, reg.holder, reg.retries, reg.output, reg.errors
    )


def commit_key(v: RegisterView) -> tuple[Any, ...] | None:
    """What two voters must agree on for a closed process to be one committed result:
    a holder's close is (state, epoch, holder, output); an expiry or an abort is
    (state, None) whatever the epoch each voter had reached (a FAILED abort and an
    expiry are the same result: FAILED, no output). None for an open register."""
    if v.state not in CLOSED_STATES:
        return None
    if v.holder is None:
        return (v.state, None)
    return (v.state, v.epoch, v.holder, encode(v.output))


def to_copy(reg: Register) -> RegisterCopy:
    return RegisterCopy(
        reg.terms,
        reg.state,
        reg.epoch,
        reg.holder,
        reg.lease_s,
        reg.retries,
        reg.output,
        reg.errors,
    )


def from_copy(c: RegisterCopy) -> Register:
    return Register(
        terms=c.terms,
        state=c.state,
        epoch=c.epoch,
        holder=c.holder,
        lease_s=c.lease_s,
        retries=c.retries,
        output=c.output,
        errors=c.errors[:ERRORS_MAX],
    )


# -- durable form (msgpack-able) -----------------------------------------------------


def to_record(reg: Register) -> dict[str, Any]:
    t = reg.terms
    return {
        "terms": [
            t.pid,
            bytes(t.submitter),
            t.executortype,
            t.priority,
            t.seq,
            t.maxexectime_s,
            t.maxwaittime_s,
            t.maxretries,
            t.record,
            t.tick,
            t.kept,
            t.series,
        ],
        "state": int(reg.state),
        "epoch": reg.epoch,
        "holder": None if reg.holder is None else bytes(reg.holder),
        "lease_s": reg.lease_s,
        "retries": reg.retries,
        "output": reg.output,
        "errors": list(reg.errors),
        "nonce": reg.claim_nonce,
        "sig": reg.sig,
    }


def from_record(record: dict[str, Any]) -> Register:
    pid, submitter, etype, priority, seq, exec_s, wait_s, maxretries, *rest = record["terms"]
    holder = record["holder"]
    return Register(
        terms=ProcessTerms(
            bytes(pid),
            NodeId(bytes(submitter)),
            str(etype),
            int(priority),
            int(seq),
            float(exec_s),
            float(wait_s),
            int(maxretries),
            bytes(rest[0]) if rest else b"",  # written before the record was kept: none
            bytes(rest[1]) if len(rest) > 1 else b"",  # written before crons: no tick
            bool(rest[2]) if len(rest) > 2 else False,  # written before compaction
            bytes(rest[3]) if len(rest) > 3 else b"",  # written before series horizons
        ),
        state=State(record["state"]),
        epoch=int(record["epoch"]),
        holder=None if holder is None else NodeId(bytes(holder)),
        lease_s=float(record["lease_s"]),
        retries=int(record["retries"]),
        output=record["output"],
        errors=tuple(str(e) for e in record["errors"]),
        claim_nonce=int(record.get("nonce", 0)),
        sig=bytes(record.get("sig", b"")),
    )


def durable_change(old: Register, new: Register) -> bool:
    """Did a transition change anything persisted (not only the local expiry)?"""
    return (
        old.state is not new.state
        or old.epoch != new.epoch
        or old.holder != new.holder
        or old.retries != new.retries
        or old.lease_s != new.lease_s
        or old.output != new.output
        or old.errors != new.errors
        or old.claim_nonce != new.claim_nonce
        or old.sig != new.sig
    )
