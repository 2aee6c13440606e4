"""The claimer role: submit, claim (batched), renew, close, release, expire, cancel, read.

Every request goes to every voter and is retransmitted every `retry_s` to the voters
that have not answered, until a majority decides it or its timeout passes. Rules
(DESIGN.md §6, docs/consensus.md):

- a lease counts from the moment the claim was *sent*: it is valid until
  ``sent + lease_s·(1 − drift) − margin`` on this node's clock, and only once a
  majority granted it before that deadline;
- a claim that gets no majority is released where it was granted (a late grant for a
  claim already given up is released too), so a failed claim does not block the
  process for a whole lease;
- a renew that a majority accepts moves the deadline to ``renew_sent + lease_s·(1 −
  drift) − margin``; when the deadline passes the lease is lost (`LeaseEnded`): the
  application must stop acting on the process;
- a close carries the lease's epoch (the fencing token): the voters accept it only if
  no newer lease was granted, so a committed result happens exactly once. A holder whose
  lease ran out does not even send it (`Closed` with NOT_HOLDER at once);
- a cancel (the submitter's or an owner's abort) needs no lease: a majority that
  accepts it has the process closed, so no holder's close can commit after it. A holder
  learns it when a majority refuses its renew as CLOSED: the lease ends at once
  (`LeaseEnded` ``closed``) rather than at its deadline;
- with `slots` > 0 the claimer also schedules: it scans a voter for candidates, claims
  among the first ones by rendezvous hash of (pid, node), and expires processes the
  voters report as run out.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from colonynode.consensus import events as ev
from colonynode.consensus.messages import (
    Cancel,
    Candidates,
    Claim,
    ClaimItem,
    Close,
    Expire,
    Outcome,
    ProcessTerms,
    Push,
    Read,
    Reason,
    RegisterView,
    Release,
    Renew,
    Reply,
    Scan,
    State,
    Submit,
    Tag,
    Verdict,
)
from colonynode.consensus.register import (
    ABORT_STATES,
    CLOSED_STATES,
    ERRORS_MAX,
    Timing,
    commit_key,
)
from colonynode.core.effects import Effects
from colonynode.core.ids import NodeId

__all__ = ["ClaimerConfig", "ClaimerCore"]

OPS_MAX = 10_000  # requests in flight (submits, claims, closes, releases, expires, cancels, reads)
LEASES_MAX = 1_024  # leases held at once
EPOCHS_MAX = 10_000  # highest epochs remembered per pid (oldest forgotten first)
LOST_MAX = 1_024  # lost leases remembered, so a late close is refused with its epoch
COMMITTED_MAX = 1_024  # recent closes/expires/cancels remembered, to repair late refusers
CLAIM_BATCH_MAX = 64  # processes per Claim request


@dataclass(frozen=True, slots=True)
class ClaimerConfig:
    lease_s: float = 5.0
    retry_s: float = 0.25  # retransmission interval to voters that did not answer
    claim_timeout_s: float = 1.0
    renew_before_s: float = 0.0  # renew this long before the deadline; 0: lease_s / 2
    op_timeout_s: float = 30.0  # submit, close, release, expire, read
    read_grace_s: float = 5.0  # an undecided majority read waits this long for the rest
    slots: int = 0  # processes this node runs at once when it schedules (0: it does not)
    poll_s: float = 0.5  # how often a scheduling claimer scans for candidates
    candidates_k: int = 4  # rendezvous choice among the first k × free slots
    executortype: str = ""

    def __post_init__(self) -> None:
        if self.lease_s <= 0 or self.retry_s <= 0 or self.claim_timeout_s <= 0:
            raise ValueError("lease_s, retry_s and claim_timeout_s are positive")


@dataclass(slots=True)
class _Op:
    """One request in flight to every voter."""

    tag: Tag
    pid: bytes
    epoch: int
    msg: Any
    sent_s: float
    timeout_s: float
    next_s: float
    verdicts: dict[NodeId, Verdict] = field(default_factory=dict)
    outcome: Outcome = Outcome.SUCCESS


@dataclass(slots=True)
class _Lease:
    pid: bytes
    epoch: int
    lease_s: float
    deadline_s: float
    renew: _Op | None = None
    renew_refused: bool = False


class ClaimerCore:
    """The requests one node makes to the voters, and the leases it holds."""

    def __init__(
        self,
        node_id: NodeId,
        voters: Callable[[], tuple[NodeId, ...]],
        rng: random.Random,
        *,
        config: ClaimerConfig | None = None,
        timing: Timing | None = None,
        version: Callable[[], int] = lambda: 1,
    ) -> None:
        self.node_id = node_id
        self.voters = voters
        self.version = version
        self.rng = rng
        self.config = config or ClaimerConfig()
        self.timing = timing or Timing()
        self.ops: dict[tuple[Tag, bytes], _Op] = {}
        self.leases: dict[bytes, _Lease] = {}
        self.epochs: dict[bytes, int] = {}
        # pid -> (epoch, why a close of it is refused) of a lease that ended without a
        # close: NOT_HOLDER when it ran out, CLOSED when the voters closed the process
        self.lost: dict[bytes, tuple[int, Reason]] = {}
        # (tag, pid) -> (epoch, a voter that accepted) of a close, expire or cancel that
        # committed: a voter whose refusal arrives afterwards is sent the result
        self.committed: dict[tuple[Tag, bytes], tuple[int, NodeId]] = {}
        self.next_poll_s: float | None = None
        self.scan_sent_s: float | None = None
        self.scan_cursor = 0
        self.next_nonce = rng.getrandbits(60) + 1  # per incarnation: random
        self.effects = Effects()

    # -- application calls --------------------------------------------------------------

    def submit(self, now_s: float, terms: ProcessTerms) -> bool:
        """Submit a process; `Submitted` tells when a majority has it durably."""
        return self._start(Tag.SUBMIT, terms.pid, 0, Submit(terms, self.version()), now_s)

    def claim(self, now_s: float, pids: list[bytes], lease_s: float | None = None) -> int:
        """Claim processes in one batched request; returns how many were asked for.
        Each ends in `Granted` or `ClaimFailed`."""
        lease_s = self.config.lease_s if lease_s is None else lease_s
        items: list[ClaimItem] = []
        for pid in pids:
            if len(items) >= CLAIM_BATCH_MAX or len(self.ops) >= OPS_MAX:
                break
            if pid in self.leases or (Tag.CLAIM, pid) in self.ops:
                continue
            if len(self.leases) + len(items) >= LEASES_MAX:
                break
            epoch = self.epochs.get(pid, 0) + 1
            self._learn_epoch(pid, epoch)
            items.append(ClaimItem(pid, epoch))
        if not items:
            return 0
        nonce = self._nonce()
        msg = Claim(tuple(items), lease_s, self.config.executortype, self.version(), nonce)
        timeout_s = self.config.claim_timeout_s
        for item in items:
            op = _Op(Tag.CLAIM, item.pid, item.epoch, msg, now_s, now_s + timeout_s, now_s)
            self.ops[(Tag.CLAIM, item.pid)] = op
        for voter in self.voters():
            self._send(voter, msg)
        for item in items:
            self.ops[(Tag.CLAIM, item.pid)].next_s = now_s + self.config.retry_s
        return len(items)

    def claiming(self, pid: bytes) -> bool:
        """Is a claim of `pid` by this node out to the voters?"""
        return (Tag.CLAIM, pid) in self.ops

    def close(
        self,
        now_s: float,
        pid: bytes,
        outcome: Outcome,
        output: Any = None,
        errors: tuple[str, ...] = (),
    ) -> bool:
        """Close with the lease's epoch; `Closed` says whether it committed. A holder
        whose lease ran out does not send it (it must stop acting): `Closed` with
        NOT_HOLDER at once, or CLOSED if its lease ended because the voters closed the
        process (a cancel). (Were it sent, the voters would fence it by the epoch; but a
        late close accepted by a voter that missed the newer epoch is a second closed
        result a later handover may have to settle.)"""
        lease = self.leases.pop(pid, None)
        if lease is None or now_s >= lease.deadline_s:
            if lease is None:
                ended = self.lost.pop(pid, None)
            else:
                ended = (lease.epoch, Reason.NOT_HOLDER)
                self.effects.events.append(ev.LeaseEnded(pid, lease.epoch, "lost"))
            if ended is not None:
                epoch, reason = ended
                self.effects.events.append(ev.Closed(pid, epoch, outcome, False, reason))
            return False
        epoch = lease.epoch
        self.effects.events.append(ev.LeaseEnded(pid, epoch, "closing"))
        msg = Close(pid, epoch, outcome, output, errors, self.version())
        started = self._start(Tag.CLOSE, pid, epoch, msg, now_s)
        if started:
            self.ops[(Tag.CLOSE, pid)].outcome = outcome
        return started

    def fail(self, now_s: float, pid: bytes, errors: tuple[str, ...] = ()) -> bool:
        """An explicit fail: closed FAILED, never retried."""
        return self.close(now_s, pid, Outcome.FAILED, None, errors)

    def release(self, now_s: float, pid: bytes) -> bool:
        """Give a lease back (stop acting first): the voters free it at once."""
        lease = self.leases.pop(pid, None)
        if lease is None:
            return False
        self.effects.events.append(ev.LeaseEnded(pid, lease.epoch, "released"))
        release = Release(pid, lease.epoch, self.version())
        self._start(Tag.RELEASE, pid, lease.epoch, release, now_s)
        return True

    def release_all(self, now_s: float) -> int:
        """A clean shutdown: release every lease held."""
        pids = list(self.leases)
        for pid in pids:
            self.release(now_s, pid)
        return len(pids)

    def drop(self, now_s: float, pid: bytes) -> bool:
        """Forget a lease without telling the voters (the executor died): it expires."""
        lease = self.leases.pop(pid, None)
        if lease is None:
            return False
        self.effects.events.append(ev.LeaseEnded(pid, lease.epoch, "dropped"))
        return True

    def expire(self, now_s: float, pid: bytes, epoch: int = 0) -> bool:
        return self._start(Tag.EXPIRE, pid, epoch, Expire(pid, epoch, self.version()), now_s)

    def cancel(
        self,
        now_s: float,
        pid: bytes,
        state: State = State.CANCELLED,
        errors: tuple[str, ...] = (),
    ) -> bool:
        """Abort a process as `state` (CANCELLED, or FAILED when a workflow parent
        failed), whether it waits or runs; the voters accept it from the process's
        submitter or an owner. `Cancelled` says whether a majority closed it. False when
        `state` is neither, or a cancel of `pid` (or too many requests) is in flight. A
        lease this node holds on `pid` ends (`LeaseEnded` ``closed``) once it commits."""
        if state not in ABORT_STATES:
            return False
        msg = Cancel(pid, state, tuple(errors[:ERRORS_MAX]), self.version())
        return self._start(Tag.CANCEL, pid, 0, msg, now_s)

    def read(self, now_s: float, pid: bytes) -> int:
        """A majority read (`colonynode get --consistent`); returns the nonce of the
        `ReadResult` to come, or 0 when too many requests are in flight."""
        nonce = self._nonce()
        key_pid = pid + nonce.to_bytes(8, "big")
        if not self._start(Tag.READ, key_pid, 0, Read(pid, nonce), now_s):
            return 0
        return nonce

    def on_voters_changed(self, now_s: float) -> None:
        """A new voter set: what was in flight starts again with the new voters, under
        the new version (verdicts of the old set count for nothing)."""
        version = self.version()
        for op in self.ops.values():
            op.verdicts.clear()
            if hasattr(op.msg, "version"):
                op.msg = replace(op.msg, version=version)
            op.next_s = now_s
        for lease in self.leases.values():
            lease.renew = None
            lease.renew_refused = False
        self.scan_sent_s = None

    def _nonce(self) -> int:
        nonce = self.next_nonce
        self.next_nonce = (nonce + 1) % (1 << 62) or 1
        return nonce

    def holds(self, pid: bytes, now_s: float) -> bool:
        lease = self.leases.get(pid)
        return lease is not None and now_s < lease.deadline_s

    # -- stepping -----------------------------------------------------------------------

    def handles(self, msg: Any) -> bool:
        return isinstance(msg, Reply | Candidates)

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        if sender not in self.voters():
            return
        if isinstance(msg, Candidates):
            self._on_candidates(now_s, sender, msg)
            return
        if not isinstance(msg, Reply):
            return
        if msg.request is not Tag.READ and msg.version != self.version():
            return  # decided under another voter set: it does not count toward this one
        for verdict in msg.verdicts:
            if verdict.view is not None:
                self._learn_epoch(verdict.pid, verdict.view.epoch)
            if msg.request is Tag.READ:
                pid = verdict.pid + msg.nonce.to_bytes(8, "big")
            else:
                pid = verdict.pid
            if msg.request is Tag.RENEW:
                self._on_renew_verdict(now_s, sender, verdict, msg.nonce)
                continue
            op = self.ops.get((msg.request, pid))
            if op is not None and msg.request is Tag.CLAIM and op.msg.nonce != msg.nonce:
                op = None  # a reply to another claim (an older one, another incarnation)
            if op is None or (msg.request is not Tag.READ and op.epoch != verdict.epoch):
                if msg.request is Tag.CLAIM and verdict.ok:
                    self._release_stray(now_s, sender, verdict)
                elif op is None and msg.request in _TERMINAL and not verdict.ok:
                    self._repair_late(msg.request, sender, verdict)
                continue
            op.verdicts[sender] = verdict
            self._decide(now_s, op)

    def on_tick(self, now_s: float) -> None:
        cfg = self.config
        for key, op in list(self.ops.items()):
            if key not in self.ops:
                continue
            if now_s >= op.timeout_s:
                self._finish(now_s, op, None)
            elif now_s >= op.next_s:
                self._retransmit(op)
                op.next_s = now_s + cfg.retry_s
        self._leases_tick(now_s)
        if cfg.slots > 0:
            if self.next_poll_s is None:
                self.next_poll_s = now_s + self.rng.uniform(0.0, cfg.poll_s)
            if now_s >= self.next_poll_s:
                self.next_poll_s = now_s + cfg.poll_s
                self._poll(now_s)

    def take_effects(self) -> Effects:
        effects, self.effects = self.effects, Effects()
        effects.wake_at_s = self.next_wake_s()
        return effects

    def next_wake_s(self) -> float | None:
        wake: float | None = self.next_poll_s
        for op in self.ops.values():
            t = min(op.next_s, op.timeout_s)
            wake = t if wake is None or t < wake else wake
        for lease in self.leases.values():
            if lease.renew is not None:
                t = min(lease.deadline_s, lease.renew.next_s)
            elif lease.renew_refused:
                t = lease.deadline_s
            else:
                t = self._renew_at_s(lease)
            wake = t if wake is None or t < wake else wake
        return wake

    # -- internals ----------------------------------------------------------------------

    def _majority(self) -> int:
        return len(self.voters()) // 2 + 1

    def _send(self, to: NodeId, msg: Any) -> None:
        self.effects.sends.append((to, msg))

    def _learn_epoch(self, pid: bytes, epoch: int) -> None:
        known = self.epochs.get(pid)
        if known is None:
            if len(self.epochs) >= EPOCHS_MAX:
                del self.epochs[next(iter(self.epochs))]
            self.epochs[pid] = epoch
        elif epoch > known:
            self.epochs[pid] = epoch

    def _start(self, tag: Tag, pid: bytes, epoch: int, msg: Any, now_s: float) -> bool:
        key = (tag, pid)
        if key in self.ops or len(self.ops) >= OPS_MAX:
            return False
        op = _Op(tag, pid, epoch, msg, now_s, now_s + self.config.op_timeout_s, now_s)
        self.ops[key] = op
        for voter in self.voters():
            self._send(voter, msg)
        op.next_s = now_s + self.config.retry_s
        return True

    def _retransmit(self, op: _Op) -> None:
        msg = op.msg
        if op.tag is Tag.CLAIM:  # only this pid: the others of the batch decide alone
            msg = replace(msg, items=(ClaimItem(op.pid, op.epoch),))
        for voter in self.voters():
            if voter not in op.verdicts:
                self._send(voter, msg)

    def _decide(self, now_s: float, op: _Op) -> None:
        need = self._majority()
        voters = self.voters()
        verdicts = [op.verdicts[v] for v in voters if v in op.verdicts]
        if op.tag is Tag.READ:
            if len(verdicts) < need:
                return
            if _read_settled(verdicts, len(voters) - len(verdicts), need):
                self._finish_read(op, verdicts)
            else:  # a result may be committed among the voters yet to answer
                op.timeout_s = min(op.timeout_s, now_s + self.config.read_grace_s)
            return
        if op.tag in _TERMINAL and self._adopt_missing(op):
            verdicts = [op.verdicts[v] for v in voters if v in op.verdicts]
        oks = sum(1 for v in verdicts if v.ok)
        if oks >= need:
            self._finish(now_s, op, Reason.OK)
        elif len(verdicts) - oks > len(voters) - need:
            self._finish(now_s, op, _most_common_refusal(verdicts))

    def _adopt_missing(self, op: _Op) -> bool:
        """A close, cancel or expire that a voter refuses UNKNOWN_PID while another holds
        the process (the voter missed the submit): have one that holds it push its
        register there (a closed one first), and ask that voter again; its refusal does
        not count. Without it two closed results (a holder's close and a cancel), one
        voter each, with the third lacking the process, would never reach a majority."""
        missing = tuple(
            v for v, verdict in op.verdicts.items() if verdict.reason is Reason.UNKNOWN_PID
        )
        if not missing:
            return False
        voters = self.voters()
        holding = [v for v in voters if _known(op.verdicts.get(v))]
        closed = [v for v in holding if _is_closed(op.verdicts.get(v))]
        if not holding:
            return False  # no voter has the process: the refusals count
        source = (closed or holding)[0]
        for voter in missing:
            del op.verdicts[voter]  # retransmitted to it at the next retry
        self._send(source, Push(op.pid, missing))
        return True

    def _finish(self, now_s: float, op: _Op, reason: Reason | None) -> None:
        """The op is decided (`reason` OK or a refusal) or timed out (None)."""
        self.ops.pop((op.tag, op.pid), None)
        events = self.effects.events
        pid = op.pid
        ok = reason is Reason.OK
        if ok and op.tag in _TERMINAL:
            self._repair_committed(op)
        if op.tag is Tag.SUBMIT:
            events.append(ev.Submitted(pid, ok, None if ok else reason))
        elif op.tag is Tag.CLAIM:
            lease_s = op.msg.lease_s
            deadline_s = self.timing.claimer_deadline_s(op.sent_s, lease_s)
            if ok and now_s < deadline_s and len(self.leases) < LEASES_MAX:
                self.leases[pid] = _Lease(pid, op.epoch, lease_s, deadline_s)
                self.lost.pop(pid, None)
                events.append(ev.Granted(pid, op.epoch, deadline_s))
            else:
                for voter, verdict in op.verdicts.items():
                    if verdict.ok:
                        self._send(voter, Release(pid, op.epoch, self.version()))
                self._repair(op)
                events.append(ev.ClaimFailed(pid, op.epoch, None if ok else reason))
        elif op.tag is Tag.CLOSE:
            events.append(ev.Closed(pid, op.epoch, op.outcome, ok, None if ok else reason))
        elif op.tag is Tag.EXPIRE:
            events.append(ev.Expired(pid, ok))
        elif op.tag is Tag.CANCEL:
            if ok:
                self._end_closed(pid)
            events.append(ev.Cancelled(pid, op.msg.state, ok, None if ok else reason))
        elif op.tag is Tag.READ:
            verdicts = list(op.verdicts.values())
            self.ops[(op.tag, op.pid)] = op  # _finish_read pops it again
            self._finish_read(op, verdicts)

    def _finish_read(self, op: _Op, verdicts: list[Verdict]) -> None:
        self.ops.pop((op.tag, op.pid), None)
        views = [v.view for v in verdicts if v.view is not None]
        committed_view = _committed(views, self._majority())
        best = committed_view
        if best is None and views:
            best = max(views, key=lambda v: (v.state in CLOSED_STATES, v.epoch))
        pid, nonce = op.msg.pid, op.msg.nonce
        self.effects.events.append(
            ev.ReadResult(pid, nonce, best, committed_view is not None, len(verdicts))
        )

    def _repair(self, op: _Op) -> None:
        """The voters disagree in a way no claim can fix (one lacks the process, or one
        has it closed): ask the most advanced one to hand its register to the others."""
        voters = self.voters()
        closed = [v for v in voters if _is_closed(op.verdicts.get(v))]
        known = [v for v in voters if _known(op.verdicts.get(v))]
        missing = [v for v in voters if v in op.verdicts and op.verdicts[v].view is None]
        source = closed[0] if closed else (known[0] if missing and known else None)
        if source is None:
            return
        to = tuple(v for v in voters if v != source and not _is_closed(op.verdicts.get(v)))
        if to:
            self._send(source, Push(op.pid, to))

    def _repair_committed(self, op: _Op) -> None:
        """A close, expire or cancel committed: the voters that refused it and are still
        open (a straggler whose lease had not run out yet, say) are sent the result by
        one that accepted, and so are those whose refusal comes later. Otherwise a
        straggler keeps the process open for good, and a majority read that meets it
        cannot see the majority. Pushing a committed result is always safe: it is the
        only result a majority can ever commit."""
        source = next((v for v, verdict in op.verdicts.items() if verdict.ok), None)
        if source is None:
            return
        key = (op.tag, op.pid)
        if len(self.committed) >= COMMITTED_MAX and key not in self.committed:
            del self.committed[next(iter(self.committed))]
        self.committed[key] = (op.epoch, source)
        behind = tuple(
            v for v, verdict in op.verdicts.items() if not verdict.ok and not _is_closed(verdict)
        )
        if behind:
            self._send(source, Push(op.pid, behind))

    def _repair_late(self, tag: Tag, voter: NodeId, verdict: Verdict) -> None:
        known = self.committed.get((tag, verdict.pid))
        if known is None or _is_closed(verdict):
            return
        epoch, source = known
        if epoch == verdict.epoch and source != voter:
            self._send(source, Push(verdict.pid, (voter,)))

    def _release_stray(self, now_s: float, voter: NodeId, verdict: Verdict) -> None:
        """A grant for a claim this node no longer waits for: give it back."""
        lease = self.leases.get(verdict.pid)
        if lease is not None and lease.epoch == verdict.epoch:
            return  # a late duplicate of a grant that is part of the lease held
        self._send(voter, Release(verdict.pid, verdict.epoch, self.version()))

    # -- leases -------------------------------------------------------------------------

    def _renew_at_s(self, lease: _Lease) -> float:
        before_s = self.config.renew_before_s or lease.lease_s / 2.0
        return lease.deadline_s - before_s

    def _leases_tick(self, now_s: float) -> None:
        due: list[_Lease] = []
        for pid, lease in list(self.leases.items()):
            if now_s >= lease.deadline_s:
                del self.leases[pid]
                self._remember_lost(pid, lease.epoch)
                self.effects.events.append(ev.LeaseEnded(pid, lease.epoch, "lost"))
                continue
            renew = lease.renew
            if renew is not None:
                if now_s >= renew.next_s:
                    msg = replace(renew.msg, items=(ClaimItem(pid, lease.epoch),))
                    for voter in self.voters():
                        if voter not in renew.verdicts:
                            self._send(voter, msg)
                    renew.next_s = now_s + self.config.retry_s
            elif not lease.renew_refused and now_s >= self._renew_at_s(lease):
                due.append(lease)
        if due:
            for i in range(0, len(due), CLAIM_BATCH_MAX):
                batch = due[i : i + CLAIM_BATCH_MAX]
                items = tuple(ClaimItem(x.pid, x.epoch) for x in batch)
                msg = Renew(items, self.version(), self._nonce())
                for lease in batch:
                    lease.renew = _Op(
                        Tag.RENEW,
                        lease.pid,
                        lease.epoch,
                        msg,
                        now_s,
                        lease.deadline_s,
                        now_s + self.config.retry_s,
                    )
                for voter in self.voters():
                    self._send(voter, msg)

    def _on_renew_verdict(self, now_s: float, sender: NodeId, verdict: Verdict, nonce: int) -> None:
        lease = self.leases.get(verdict.pid)
        if lease is None or lease.epoch != verdict.epoch or lease.renew is None:
            return
        if lease.renew.msg.nonce != nonce:
            return  # a late reply to an earlier renew: its expiry counts from earlier
        renew = lease.renew
        renew.verdicts[sender] = verdict
        need = self._majority()
        voters = self.voters()
        verdicts = [renew.verdicts[v] for v in voters if v in renew.verdicts]
        oks = sum(1 for v in verdicts if v.ok)
        if oks >= need:
            lease.renew = None
            deadline_s = self.timing.claimer_deadline_s(renew.sent_s, lease.lease_s)
            if deadline_s > lease.deadline_s:
                lease.deadline_s = deadline_s
                self.effects.events.append(ev.Renewed(lease.pid, lease.epoch, deadline_s))
        elif sum(1 for v in verdicts if v.reason is Reason.CLOSED) >= need:
            # A majority holds the process closed (a cancel revoked the lease): no close
            # under this lease can commit. Stop now rather than at the deadline.
            self._end_closed(lease.pid)
        elif len(verdicts) - oks > len(voters) - need:
            lease.renew = None
            lease.renew_refused = True  # it runs out at its deadline

    def _end_closed(self, pid: bytes) -> None:
        """The voters closed the process under a lease this node may hold: end it (ending
        a lease early is always safe); a close of it is then refused CLOSED."""
        lease = self.leases.pop(pid, None)
        if lease is not None:
            self._remember_lost(pid, lease.epoch, Reason.CLOSED)
            self.effects.events.append(ev.LeaseEnded(pid, lease.epoch, "closed"))

    def _remember_lost(self, pid: bytes, epoch: int, why: Reason = Reason.NOT_HOLDER) -> None:
        if len(self.lost) >= LOST_MAX:
            del self.lost[next(iter(self.lost))]
        self.lost[pid] = (epoch, why)

    def lost_epoch(self, pid: bytes) -> int | None:
        """The epoch of a lease on `pid` that ended without a close, if remembered."""
        ended = self.lost.get(pid)
        return None if ended is None else ended[0]

    # -- scheduling ---------------------------------------------------------------------

    def _free_slots(self) -> int:
        claiming = sum(1 for tag, _ in self.ops if tag is Tag.CLAIM)
        return self.config.slots - len(self.leases) - claiming

    def _poll(self, now_s: float) -> None:
        free = self._free_slots()
        voters = self.voters()
        if free <= 0 or not voters:
            return
        if self.scan_sent_s is not None and now_s - self.scan_sent_s < 4 * self.config.poll_s:
            return  # one scan at a time (a lost one is forgotten after a few polls)
        voter = voters[self.scan_cursor % len(voters)]
        self.scan_cursor += 1
        self.scan_sent_s = now_s
        limit = max(1, free * self.config.candidates_k)
        self._send(voter, Scan(limit, self.config.executortype))

    def _on_candidates(self, now_s: float, sender: NodeId, msg: Candidates) -> None:
        self.scan_sent_s = None
        claimable: list[bytes] = []
        for c in msg.items:
            self._learn_epoch(c.pid, c.epoch)
            if c.expirable:
                self.expire(now_s, c.pid, c.epoch)
            elif c.pid not in self.leases and (Tag.CLAIM, c.pid) not in self.ops:
                claimable.append(c.pid)
        free = self._free_slots()
        if free <= 0 or not claimable:
            return
        me = bytes(self.node_id)
        claimable.sort(key=lambda pid: hashlib.blake2b(pid + me, digest_size=8).digest())
        self.claim(now_s, claimable[:free])


_TERMINAL = (Tag.CLOSE, Tag.CANCEL, Tag.EXPIRE)  # requests that close a process


def _is_closed(verdict: Verdict | None) -> bool:
    return verdict is not None and verdict.view is not None and verdict.view.state in CLOSED_STATES


def _known(verdict: Verdict | None) -> bool:
    return verdict is not None and verdict.view is not None


def _most_common_refusal(verdicts: list[Verdict]) -> Reason:
    counts: dict[Reason, int] = {}
    for v in verdicts:
        if not v.ok:
            counts[v.reason] = counts.get(v.reason, 0) + 1
    return max(sorted(counts), key=lambda r: counts[r])


def _read_settled(verdicts: list[Verdict], unanswered: int, need: int) -> bool:
    """Can the verdicts so far decide a read: a result is committed among them, or no
    closed result could reach a majority even if every voter yet to answer had it."""
    views = [v.view for v in verdicts if v.view is not None]
    if _committed(views, need) is not None:
        return True
    keys = [key for key in map(commit_key, views) if key is not None]
    return all(keys.count(key) + unanswered < need for key in keys)


def _committed(views: list[RegisterView], need: int) -> RegisterView | None:
    """A closed register whose result (`commit_key`) a majority reports, if any."""
    keys = [commit_key(v) for v in views]
    for candidate, key in zip(views, keys, strict=True):
        if key is not None and sum(1 for k in keys if k == key) >= need:
            return candidate
    return None
