"""The claimer role: the requests one node makes to the voters, and their tallies.

Every request (requests.py) goes to every voter and is retransmitted to the voters that
have not answered, until a majority decides it (quorum.py: one tally for all) or its
timeout passes: first after `retry_s` (or twice the smoothed round trip of the voters'
answers if that is longer) and QUEUED_S more for each request in flight, then twice as
long each time, up to RETRY_MAX_S; and a resend is skipped (POSTPONES_MAX times in a
row) while every voter it would go to has answered something since it was sent: they
are busy, not deaf. Voters busy with a burst of 1,000 submissions answer late; resending
the burst to them every `retry_s` had them decode it three times over. Rules
(DESIGN.md §6, docs/consensus.md):

- a claim that gets no majority is released where it was granted (a late grant for a
  claim already given up is released too), so a failed claim does not block the
  process for a whole lease; a granted one becomes a held lease (held.py), renewed while
  held and lost when its deadline passes;
- a close carries the lease's epoch (the fencing token): the voters accept it only if
  no newer lease was granted, so a committed result happens exactly once. A holder whose
  lease ran out does not even send it (`Closed` with NOT_HOLDER at once);
- a cancel (the submitter's or an owner's abort) needs no lease: a majority that
  accepts it has the process closed, so no holder's close can commit after it. A holder
  learns it when a majority refuses its renew as CLOSED: the lease ends at once;
- when the voters disagree in a way no request can fix, the most advanced one is asked
  to hand its register to the others (repair.py).

What to claim is not decided here: NodeCore's scheduler (node/core/scheduler.py,
core/scheduling.py) chooses, from the node's view, in the daemon and the simulator alike.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from colonynode.consensus import events as ev
from colonynode.consensus import outcomes, repair
from colonynode.consensus import requests as rq
from colonynode.consensus.held import CLAIM_BATCH_MAX, LEASES_MAX, HeldLeases, Lease
from colonynode.consensus.messages import (
    Cancel,
    Claim,
    ClaimItem,
    Close,
    Expire,
    Outcome,
    Read,
    Reason,
    Release,
    Reply,
    Submit,
    Tag,
    Verdict,
)
from colonynode.consensus.quorum import VoteResult, majority, tally
from colonynode.consensus.register import (
    ABORT_STATES,
    ERRORS_MAX,
    Timing,
)
from colonynode.consensus.verdicts import (
    most_common_refusal,
    read_outcome,
)
from colonynode.core.effects import Effects
from colonynode.core.ids import NodeId

__all__ = ["CLAIM_BATCH_MAX", "ClaimerConfig", "ClaimerCore"]

OPS_MAX = 10_000  # requests in flight (submits, claims, closes, releases, expires, cancels, reads)
EPOCHS_MAX = 10_000  # highest epochs remembered per pid (oldest forgotten first)
RETRY_MAX_S = 2.0  # the longest a request waits between two sends to a voter
RTT_AVERAGE = 0.125  # weight of the newest sample in the smoothed round trip (TCP's)
QUEUED_S = 0.001  # a request's first wait grows this much for each request in flight
POSTPONES_MAX = 2  # resends skipped in a row because every voter left answers others

Reqs = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ClaimerConfig:
    lease_s: float = 5.0
    retry_s: float = 0.25  # retransmission interval to voters that did not answer
    claim_timeout_s: float = 1.0
    renew_before_s: float = 0.0  # renew this long before the deadline; 0: lease_s / 2
    op_timeout_s: float = 30.0  # submit, close, release, expire, read
    read_grace_s: float = 5.0  # an undecided majority read waits this long for the rest
    executortype: str = ""

    def __post_init__(self) -> None:
        if self.lease_s <= 0 or self.retry_s <= 0 or self.claim_timeout_s <= 0:
            raise ValueError("lease_s, retry_s and claim_timeout_s are positive")


@dataclass(slots=True)
class _Op:
    """One request in flight to every voter, and the requests its answer answers."""

    tag: Tag
    pid: bytes
    epoch: int
    msg: Any
    sent_s: float
    timeout_s: float
    next_s: float
    reqs: list[int]
    verdicts: dict[NodeId, Verdict] = field(default_factory=dict)
    outcome: Outcome = Outcome.SUCCESS
    again: bool = False  # a claim sent again at once with the epoch its refusal taught
    sends: int = 1  # times it was sent (a round trip is sampled only from the first)
    last_sent_s: float = 0.0
    postponed: int = 0  # resends skipped in a row (the voters were heard from since)

    @property
    def due_s(self) -> float:
        return min(self.next_s, self.timeout_s)


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
        self.config = config = config or ClaimerConfig()
        self.timing = timing or Timing()
        self.ops: dict[tuple[Tag, bytes], _Op] = {}
        self.epochs: dict[bytes, int] = {}
        # (tag, pid) -> (epoch, a voter that accepted) of a close, expire or cancel that
        # committed: a voter whose refusal arrives afterwards is sent the result
        self.committed: dict[tuple[Tag, bytes], tuple[int, NodeId]] = {}
        self.next_nonce = rng.getrandbits(60) + 1  # per incarnation: random
        self.splits_pushed = 0
        self.claims_again = 0
        self.srtt_s = 0.0  # smoothed round trip of the voters' first answers
        self.heard_s: dict[NodeId, float] = {}  # voter -> when its last reply came
        # voter -> (the voter-set version it serves, how many processes it holds frozen),
        # from its latest answer to a Read (which names the version the voter serves,
        # whatever the read asked): voter changes wait for a majority of the newest set
        # to serve it (lease.py `served`), auto mode a while for frozen ones to settle
        self.serving_seen: dict[NodeId, tuple[int, int]] = {}
        self.postponed = 0  # resends skipped (counter)
        # (due time, sequence, op key): when each op next needs a look (stale entries,
        # whose op is gone or due at another time, are skipped)
        self._due: list[tuple[float, int, tuple[Tag, bytes]]] = []
        self._due_seq = 0
        self.effects = Effects()
        self.held = HeldLeases(
            voters,
            version,
            self._nonce,
            self.timing,
            retry_s=config.retry_s,
            renew_before_s=config.renew_before_s,
            send=self._send,
            emit=self._emit,
        )

    # -- queries ------------------------------------------------------------------------

    @property
    def leases(self) -> dict[bytes, Lease]:
        """pid -> the lease held on it."""
        return self.held.leases

    def claiming(self, pid: bytes) -> bool:
        """Is a claim of `pid` by this node out to the voters?"""
        return (Tag.CLAIM, pid) in self.ops

    def holds(self, pid: bytes, now_s: float) -> bool:
        lease = self.held.get(pid)
        return lease is not None and now_s < lease.deadline_s

    def lost_epoch(self, pid: bytes) -> int | None:
        """The epoch of a lease on `pid` that ended without a close, if remembered."""
        return self.held.lost_epoch(pid)

    # -- requests (requests.py) ---------------------------------------------------------

    def request(self, now_s: float, req: rq.Request, req_id: int) -> None:
        """Start `req`; every outcome is an event whose `reqs` holds `req_id`."""
        _REQUESTS[type(req)](self, now_s, req, (req_id,))

    def _submit(self, now_s: float, req: rq.SubmitProcess, reqs: Reqs) -> None:
        pid = req.terms.pid
        if not self._start(Tag.SUBMIT, pid, 0, Submit(req.terms, self.version()), now_s, reqs):
            self._emit(ev.Submitted(pid, False, Reason.BUSY, reqs))

    def _claim(self, now_s: float, req: rq.ClaimLeases, reqs: Reqs) -> None:
        """One batched Claim; each distinct pid ends in `Granted` or `ClaimFailed`."""
        lease_s = self.config.lease_s if req.lease_s is None else req.lease_s
        items: list[ClaimItem] = []
        for pid in dict.fromkeys(req.pids):
            if pid in self.held or (Tag.CLAIM, pid) in self.ops:
                self._emit(ev.ClaimFailed(pid, 0, Reason.NOT_ALLOWED, reqs))
                continue
            room = (
                len(items) < CLAIM_BATCH_MAX
                and len(self.ops) + len(items) < OPS_MAX
                and len(self.held) + len(items) < LEASES_MAX
            )
            if not room or lease_s <= 0:
                why = Reason.BUSY if room else Reason.NOT_ALLOWED
                self._emit(ev.ClaimFailed(pid, 0, why, reqs))
                continue
            epoch = self.epochs.get(pid, 0) + 1
            self._learn_epoch(pid, epoch)
            items.append(ClaimItem(pid, epoch))
        if not items:
            return
        msg = Claim(tuple(items), lease_s, self.config.executortype, self.version(), self._nonce())
        timeout_s = now_s + self.config.claim_timeout_s
        next_s = now_s + self._first_wait_s()
        for item in items:
            op = _Op(Tag.CLAIM, item.pid, item.epoch, msg, now_s, timeout_s, next_s, list(reqs))
            self._put(op)
        for voter in self.voters():
            self._send(voter, msg)

    def _close(self, now_s: float, req: rq.CloseProcess, reqs: Reqs) -> None:
        """Close with the lease's epoch. A holder whose lease ran out does not send it (it
        must stop acting): `Closed` with NOT_HOLDER at once, or CLOSED if its lease ended
        because the voters closed the process (a cancel). (Were it sent, the voters would
        fence it by the epoch; but a late close accepted by a voter that missed the newer
        epoch is a second closed result a later handover may have to settle.)"""
        pid, outcome = req.pid, req.outcome
        in_flight = self.ops.get((Tag.CLOSE, pid))
        if in_flight is not None and pid not in self.held:
            if in_flight.outcome is outcome:
                in_flight.reqs.extend(reqs)  # the same close again: one answer for both
            else:
                self._emit(ev.Closed(pid, in_flight.epoch, outcome, False, Reason.BUSY, None, reqs))
            return
        if len(self.ops) >= OPS_MAX:
            self._emit(ev.Closed(pid, 0, outcome, False, Reason.BUSY, None, reqs))
            return
        lease = self.held.pop(pid)
        if lease is None or now_s >= lease.deadline_s:
            if lease is None:
                ended = self.held.lost.pop(pid, None)
            else:
                ended = (lease.epoch, Reason.NOT_HOLDER)
                self._emit(ev.LeaseEnded(pid, lease.epoch, "lost"))
            epoch, reason = ended if ended is not None else (0, Reason.NOT_HOLDER)
            self._emit(ev.Closed(pid, epoch, outcome, False, reason, None, reqs))
            return
        epoch = lease.epoch
        self._emit(ev.LeaseEnded(pid, epoch, "closing"))
        errors = tuple(req.errors[:ERRORS_MAX])
        msg = Close(pid, epoch, outcome, req.output, errors, self.version())
        self._start(Tag.CLOSE, pid, epoch, msg, now_s, reqs)
        self.ops[(Tag.CLOSE, pid)].outcome = outcome

    def _release(self, now_s: float, req: rq.ReleaseLease, reqs: Reqs) -> None:
        released = self._give_back(now_s, req.pid)
        self._emit(ev.Released((req.pid,) if released else (), reqs))

    def _release_all(self, now_s: float, req: rq.ReleaseAll, reqs: Reqs) -> None:
        pids = tuple(self.held)
        for pid in pids:
            self._give_back(now_s, pid)
        self._emit(ev.Released(pids, reqs))

    def _give_back(self, now_s: float, pid: bytes) -> bool:
        """Release a held lease: the voters free it at once (stop acting first)."""
        lease = self.held.end(pid, "released")
        if lease is None:
            return False
        self.ops.pop((Tag.RELEASE, pid), None)  # an older release of it: this one counts
        release = Release(pid, lease.epoch, self.version())
        self._start(Tag.RELEASE, pid, lease.epoch, release, now_s, ())
        return True

    def _drop(self, now_s: float, req: rq.DropLease, reqs: Reqs) -> None:
        lease = self.held.end(req.pid, "dropped")
        self._emit(ev.Dropped(req.pid, lease is not None, reqs))

    def _expire(self, now_s: float, req: rq.ExpireProcess, reqs: Reqs) -> None:
        msg = Expire(req.pid, req.epoch, self.version())
        if not self._start(Tag.EXPIRE, req.pid, req.epoch, msg, now_s, reqs):
            self._emit(ev.Expired(req.pid, False, Reason.BUSY, None, reqs))

    def _cancel(self, now_s: float, req: rq.CancelProcess, reqs: Reqs) -> None:
        """Abort a process as CANCELLED (or FAILED: a workflow parent failed), whether it
        waits or runs; the voters accept it from its submitter or an owner. A lease this
        node holds on it ends (`LeaseEnded` ``closed``) once the abort commits."""
        pid, state = req.pid, req.state
        if state not in ABORT_STATES:
            self._emit(ev.Cancelled(pid, state, False, Reason.BAD_STATE, None, reqs))
            return
        msg = Cancel(pid, state, tuple(req.errors[:ERRORS_MAX]), self.version())
        if not self._start(Tag.CANCEL, pid, 0, msg, now_s, reqs):
            self._emit(ev.Cancelled(pid, state, False, Reason.BUSY, None, reqs))

    def _read(self, now_s: float, req: rq.ReadRegister, reqs: Reqs) -> None:
        """A majority read; each read is its own request (a nonce tells the replies)."""
        nonce = self._nonce()
        key_pid = req.pid + nonce.to_bytes(8, "big")
        if not self._start(Tag.READ, key_pid, 0, Read(req.pid, nonce), now_s, reqs):
            self._emit(ev.ReadResult(req.pid, nonce, None, False, 0, reqs))

    def on_voters_changed(self, now_s: float) -> None:
        """A new voter set: what was in flight starts again with the new voters, under
        the new version (verdicts of the old set count for nothing)."""
        version = self.version()
        for op in self.ops.values():
            op.verdicts.clear()
            if hasattr(op.msg, "version"):
                op.msg = replace(op.msg, version=version)
            op.next_s = now_s
            op.sends = 1
            self._schedule(op)
        self.held.reset_renewals()

    # -- stepping -----------------------------------------------------------------------

    def handles(self, msg: Any) -> bool:
        return isinstance(msg, Reply)

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        if sender not in self.voters() or not isinstance(msg, Reply):
            return
        self.heard_s[sender] = now_s
        if msg.request is Tag.READ and msg.version >= self.serving_seen.get(sender, (0, 0))[0]:
            self.serving_seen[sender] = (msg.version, msg.frozen)
        if msg.version != self.version():
            # Decided under another voter set, or (a read) answered by a voter that does
            # not serve this one yet (a new voter in the middle of its handover holds
            # registers that are not settled): it counts for nothing here.
            return
        for verdict in msg.verdicts:
            if verdict.view is not None:
                self._learn_epoch(verdict.pid, verdict.view.epoch)
            if msg.request is Tag.RENEW:
                self.held.on_verdict(now_s, sender, verdict, msg.nonce)
                continue
            self._on_verdict(now_s, sender, msg, verdict)

    def _on_verdict(self, now_s: float, sender: NodeId, msg: Reply, verdict: Verdict) -> None:
        tag = msg.request
        pid = verdict.pid + msg.nonce.to_bytes(8, "big") if tag is Tag.READ else verdict.pid
        op = self.ops.get((tag, pid))
        if op is not None and tag is Tag.CLAIM and op.msg.nonce != msg.nonce:
            op = None  # a reply to another claim (an older one, another incarnation)
        if op is None or (tag is not Tag.READ and op.epoch != verdict.epoch):
            if tag is Tag.CLAIM and verdict.ok:
                outcomes.release_stray(self, sender, verdict)
            elif op is None and tag in _TERMINAL and not verdict.ok:
                outcomes.repair_late(self, tag, sender, verdict)
            return
        if op.sends == 1 and sender not in op.verdicts:  # Karn: never from a resent one
            sample_s = now_s - op.sent_s
            self.srtt_s = sample_s if not self.srtt_s else (
                self.srtt_s + RTT_AVERAGE * (sample_s - self.srtt_s))  # fmt: skip
        op.verdicts[sender] = verdict
        self._decide(now_s, op)

    def on_tick(self, now_s: float) -> None:
        due = self._due
        while due and due[0][0] <= now_s:
            at_s, _, key = heapq.heappop(due)
            op = self.ops.get(key)
            if op is None or op.due_s != at_s:
                continue  # gone, or due at another time (its own entry)
            if now_s >= op.timeout_s:
                self._finish(now_s, op, None)
                continue
            if self._busy(op):
                op.postponed += 1
                self.postponed += 1
            else:
                self._retransmit(op)
                op.postponed = 0
                op.last_sent_s = now_s
            op.next_s = now_s + self._rto(op.sends)
            op.sends += 1
            self._schedule(op)
        self.held.tick(now_s)

    def take_effects(self) -> Effects:
        effects, self.effects = self.effects, Effects()
        effects.wake_at_s = self.next_wake_s()
        return effects

    def next_wake_s(self) -> float | None:
        wake = self.held.next_wake_s()
        due = self._due
        while due:
            at_s, _, key = due[0]
            op = self.ops.get(key)
            if op is not None and op.due_s == at_s:
                return at_s if wake is None else min(wake, at_s)
            heapq.heappop(due)  # stale
        return wake

    # -- requests in flight -------------------------------------------------------------

    def _send(self, to: NodeId, msg: Any) -> None:
        self.effects.sends.append((to, msg))

    def _emit(self, event: Any) -> None:
        self.effects.events.append(event)

    def _nonce(self) -> int:
        nonce = self.next_nonce
        self.next_nonce = (nonce + 1) % (1 << 62) or 1
        return nonce

    def _learn_epoch(self, pid: bytes, epoch: int) -> None:
        known = self.epochs.get(pid)
        if known is None:
            if len(self.epochs) >= EPOCHS_MAX:
                del self.epochs[next(iter(self.epochs))]
            self.epochs[pid] = epoch
        elif epoch > known:
            self.epochs[pid] = epoch

    def _start(self, tag: Tag, pid: bytes, epoch: int, msg: Any, now_s: float, reqs: Reqs) -> bool:
        """Send `msg` to every voter, or join the same request in flight; False when it
        cannot start (another request of this kind for pid, or too many in flight)."""
        key = (tag, pid)
        op = self.ops.get(key)
        if op is not None:
            if op.msg != msg:
                return False
            op.reqs.extend(reqs)
            return True
        if len(self.ops) >= OPS_MAX:
            return False
        timeout_s = now_s + self.config.op_timeout_s
        op = _Op(tag, pid, epoch, msg, now_s, timeout_s, now_s + self._first_wait_s(), list(reqs))
        self._put(op)
        for voter in self.voters():
            self._send(voter, msg)
        return True

    def _rto(self, resent: int) -> float:
        """How long a request sent `resent` times before waits for its answers."""
        base_s = max(self.config.retry_s, 2 * self.srtt_s)
        wait_s: float = base_s * (1 << min(resent, 8))
        return min(RETRY_MAX_S, wait_s)

    def _first_wait_s(self) -> float:
        return self._rto(0) + len(self.ops) * QUEUED_S

    def _put(self, op: _Op) -> None:
        op.last_sent_s = op.sent_s
        self.ops[(op.tag, op.pid)] = op
        self._schedule(op)

    def _schedule(self, op: _Op) -> None:
        self._due_seq += 1
        heapq.heappush(self._due, (op.due_s, self._due_seq, (op.tag, op.pid)))

    def _busy(self, op: _Op) -> bool:
        """Has every voter that has not answered `op` answered something since it was
        last sent (a voter working through a burst), and was it not put off too often?"""
        if op.postponed >= POSTPONES_MAX:
            return False
        heard = self.heard_s
        waiting = [v for v in self.voters() if v not in op.verdicts]
        return all(heard.get(v, float("-inf")) > op.last_sent_s for v in waiting)

    def _retransmit(self, op: _Op) -> None:
        msg = op.msg
        if op.tag is Tag.CLAIM:  # only this pid: the others of the batch decide alone
            msg = replace(msg, items=(ClaimItem(op.pid, op.epoch),))
        for voter in self.voters():
            if voter not in op.verdicts:
                self._send(voter, msg)

    def _decide(self, now_s: float, op: _Op) -> None:
        voters = self.voters()
        if op.tag is Tag.READ:
            if len(op.verdicts) < majority(voters):
                return
            _, settled = read_outcome(voters, op.verdicts)
            if settled:
                outcomes.finish_read(self, now_s, op, Reason.OK)
            else:  # a result may be committed among the voters yet to answer
                op.timeout_s = min(op.timeout_s, now_s + self.config.read_grace_s)
                self._schedule(op)
            return
        if op.tag in _TERMINAL:
            adopt = repair.adopt_missing(op.pid, voters, op.verdicts)
            if adopt is not None:
                source, push = adopt
                for voter in push.to:
                    del op.verdicts[voter]  # asked again at the next retry
                self._send(source, push)
        result = tally(voters, op.verdicts, lambda v: v.ok).result
        if result is VoteResult.WON:
            self._finish(now_s, op, Reason.OK)
        elif result is VoteResult.LOST:
            self._finish(now_s, op, most_common_refusal(op.verdicts.values()))

    def _finish(self, now_s: float, op: _Op, reason: Reason | None) -> None:
        """The op is decided (`reason` OK or a refusal) or timed out (None)."""
        outcomes.FINISH[op.tag](self, now_s, op, reason)

    def _claim_again(self, now_s: float, op: _Op) -> None:
        epoch = self.epochs.get(op.pid, op.epoch) + 1
        self._learn_epoch(op.pid, epoch)
        lease_s = op.msg.lease_s
        msg = Claim((ClaimItem(op.pid, epoch),), lease_s, self.config.executortype,
                    self.version(), self._nonce())  # fmt: skip
        timeout_s = now_s + self.config.claim_timeout_s
        again = _Op(Tag.CLAIM, op.pid, epoch, msg, now_s, timeout_s, now_s + self._first_wait_s(),
                    op.reqs, again=True)  # fmt: skip
        self._put(again)
        self.claims_again += 1
        for voter in self.voters():
            self._send(voter, msg)


_TERMINAL = (Tag.CLOSE, Tag.CANCEL, Tag.EXPIRE)  # requests that close a process

_REQUESTS: dict[type, Callable[[ClaimerCore, float, Any, Reqs], None]] = {
    rq.SubmitProcess: ClaimerCore._submit,
    rq.ClaimLeases: ClaimerCore._claim,
    rq.CloseProcess: ClaimerCore._close,
    rq.ReleaseLease: ClaimerCore._release,
    rq.ReleaseAll: ClaimerCore._release_all,
    rq.DropLease: ClaimerCore._drop,
    rq.ExpireProcess: ClaimerCore._expire,
    rq.CancelProcess: ClaimerCore._cancel,
    rq.ReadRegister: ClaimerCore._read,
}
