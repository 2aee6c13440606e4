"""The leases one node holds: deadlines, batched renewals, and the ones it lost.

Rules (DESIGN.md §6, docs/consensus.md):

- a lease counts from the moment its claim was *sent*: it is valid until
  ``sent + lease_s·(1 − drift) − margin`` on this node's clock (`Timing.claimer_deadline_s`),
  which precedes every granting voter's expiry whatever the clock rates within the bound;
- a renew that a majority accepts moves the deadline to the same formula from the moment
  the renew was sent (never backwards); when the deadline passes without one the lease is
  lost (`LeaseEnded` ``lost``): the application must stop acting on the process;
- a renew that a majority refuses as CLOSED (a cancel revoked the lease) ends it at once
  (`LeaseEnded` ``closed``); any other refusal lets it run out at its deadline.

`HeldLeases` emits events and sends through callables its claimer gives it, so what it
does lands in the claimer's effects of the same step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from colonynode.consensus import events as ev
from colonynode.consensus.messages import ClaimItem, Reason, Renew, Verdict
from colonynode.consensus.quorum import VoteResult, tally
from colonynode.consensus.register import Timing
from colonynode.core.ids import NodeId

__all__ = ["CLAIM_BATCH_MAX", "LEASES_MAX", "LOST_MAX", "HeldLeases", "Lease"]

LEASES_MAX = 1_024  # leases held at once
LOST_MAX = 1_024  # lost leases remembered, so a late close is refused with its epoch
CLAIM_BATCH_MAX = 64  # processes per Claim or Renew request


@dataclass(slots=True)
class RenewOp:
    msg: Renew
    sent_s: float
    next_s: float  # retransmission to the voters that did not answer
    verdicts: dict[NodeId, Verdict] = field(default_factory=dict)


@dataclass(slots=True)
class Lease:
    pid: bytes
    epoch: int
    lease_s: float
    deadline_s: float
    renew: RenewOp | None = None
    renew_refused: bool = False


class HeldLeases:
    """pid -> the lease this node holds on it, and the memory of leases it lost."""

    def __init__(
        self,
        voters: Callable[[], tuple[NodeId, ...]],
        version: Callable[[], int],
        nonce: Callable[[], int],
        timing: Timing,
        *,
        retry_s: float,
        renew_before_s: float,
        send: Callable[[NodeId, Any], None],
        emit: Callable[[Any], None],
    ) -> None:
        self.voters = voters
        self.version = version
        self.nonce = nonce
        self.timing = timing
        self.retry_s = retry_s
        self.renew_before_s = renew_before_s
        self.send = send
        self.emit = emit
        self.leases: dict[bytes, Lease] = {}
        # pid -> (epoch, why a close of it is refused) of a lease that ended without a
        # close: NOT_HOLDER when it ran out, CLOSED when the voters closed the process
        self.lost: dict[bytes, tuple[int, Reason]] = {}

    def __contains__(self, pid: bytes) -> bool:
        return pid in self.leases

    def __len__(self) -> int:
        return len(self.leases)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.leases)

    def get(self, pid: bytes) -> Lease | None:
        return self.leases.get(pid)

    # -- changes ------------------------------------------------------------------------

    def grant(self, pid: bytes, epoch: int, lease_s: float, sent_s: float) -> float:
        """A majority granted the claim sent at `sent_s`: hold it; its deadline."""
        assert pid not in self.leases, "a lease is granted once"
        assert len(self.leases) < LEASES_MAX
        deadline_s = self.timing.claimer_deadline_s(sent_s, lease_s)
        assert deadline_s <= sent_s + lease_s, "a held lease ends before any voter's expiry"
        self.leases[pid] = Lease(pid, epoch, lease_s, deadline_s)
        self.lost.pop(pid, None)
        return deadline_s

    def pop(self, pid: bytes) -> Lease | None:
        return self.leases.pop(pid, None)

    def end(self, pid: bytes, why: str, lost: Reason | None = None) -> Lease | None:
        """Stop holding `pid` (`why` for LeaseEnded); remember it as lost with the
        reason a later close is refused, if `lost` is given."""
        lease = self.leases.pop(pid, None)
        if lease is not None:
            if lost is not None:
                self.remember_lost(pid, lease.epoch, lost)
            self.emit(ev.LeaseEnded(pid, lease.epoch, why))
        return lease

    def end_closed(self, pid: bytes) -> None:
        """The voters closed the process under a lease this node may hold: end it (ending
        a lease early is always safe); a close of it is then refused CLOSED."""
        self.end(pid, "closed", Reason.CLOSED)

    def remember_lost(self, pid: bytes, epoch: int, why: Reason = Reason.NOT_HOLDER) -> None:
        if len(self.lost) >= LOST_MAX:
            del self.lost[next(iter(self.lost))]
        self.lost[pid] = (epoch, why)

    def lost_epoch(self, pid: bytes) -> int | None:
        """The epoch of a lease on `pid` that ended without a close, if remembered."""
        ended = self.lost.get(pid)
        return None if ended is None else ended[0]

    def reset_renewals(self) -> None:
        """A new voter set: renewals start again with it."""
        for lease in self.leases.values():
            lease.renew = None
            lease.renew_refused = False

    # -- renewals -----------------------------------------------------------------------

    def renew_at_s(self, lease: Lease) -> float:
        before_s = self.renew_before_s or lease.lease_s / 2.0
        return lease.deadline_s - before_s

    def tick(self, now_s: float) -> None:
        """Lose the leases whose deadline passed; renew (batched) those due; retransmit
        renewals to the voters that did not answer."""
        due: list[Lease] = []
        for pid, lease in list(self.leases.items()):
            if now_s >= lease.deadline_s:
                self.end(pid, "lost", Reason.NOT_HOLDER)
                continue
            renew = lease.renew
            if renew is not None:
                if now_s >= renew.next_s:
                    msg = replace(renew.msg, items=(ClaimItem(pid, lease.epoch),))
                    for voter in self.voters():
                        if voter not in renew.verdicts:
                            self.send(voter, msg)
                    renew.next_s = now_s + self.retry_s
            elif not lease.renew_refused and now_s >= self.renew_at_s(lease):
                due.append(lease)
        for i in range(0, len(due), CLAIM_BATCH_MAX):
            batch = due[i : i + CLAIM_BATCH_MAX]
            items = tuple(ClaimItem(x.pid, x.epoch) for x in batch)
            msg = Renew(items, self.version(), self.nonce())
            for lease in batch:
                lease.renew = RenewOp(msg, now_s, now_s + self.retry_s)
            for voter in self.voters():
                self.send(voter, msg)

    def on_verdict(self, now_s: float, sender: NodeId, verdict: Verdict, nonce: int) -> None:
        lease = self.leases.get(verdict.pid)
        if lease is None or lease.epoch != verdict.epoch or lease.renew is None:
            return
        renew = lease.renew
        if renew.msg.nonce != nonce:
            return  # a late reply to an earlier renew: its expiry counts from earlier
        renew.verdicts[sender] = verdict
        voters = self.voters()
        if tally(voters, renew.verdicts, lambda v: v.ok).result is VoteResult.WON:
            lease.renew = None
            deadline_s = self.timing.claimer_deadline_s(renew.sent_s, lease.lease_s)
            assert deadline_s <= renew.sent_s + lease.lease_s
            if deadline_s > lease.deadline_s:  # a deadline never moves back
                lease.deadline_s = deadline_s
                self.emit(ev.Renewed(lease.pid, lease.epoch, deadline_s))
            return
        closed = tally(voters, renew.verdicts, lambda v: v.reason is Reason.CLOSED)
        if closed.result is VoteResult.WON:
            # A majority holds the process closed (a cancel revoked the lease): no close
            # under this lease can commit. Stop now rather than at the deadline.
            self.end_closed(lease.pid)
        elif tally(voters, renew.verdicts, lambda v: v.ok).result is VoteResult.LOST:
            lease.renew = None
            lease.renew_refused = True  # it runs out at its deadline

    def next_wake_s(self) -> float | None:
        wake: float | None = None
        for lease in self.leases.values():
            if lease.renew is not None:
                t = min(lease.deadline_s, lease.renew.next_s)
            elif lease.renew_refused:
                t = lease.deadline_s
            else:
                t = self.renew_at_s(lease)
            if wake is None or t < wake:
                wake = t
        return wake
