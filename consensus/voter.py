"""The voter role: durable lease registers, one per process (DESIGN.md §6).

`VoterCore` answers requests from claimers with the transition functions of
register.py. Whatever a request changed goes out as `Effects.writes` in the *same*
effects batch as the reply, and the driver persists the writes before it sends: a grant
or an acknowledged submission is durable before anyone hears of it.

Restart rule: monotonic clocks do not survive a restart, so at its first step a
restarted voter treats every RUNNING lease it persisted as freshly granted (a full lease
from now, maxexectime counted from now) and every WAITING process as waiting from now.
It never grants a lease that conflicts with one it granted before the crash: the epoch
and holder are durable, and the expiry it uses is later than the one it used before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from colonynode.consensus import register as rg
from colonynode.consensus.events import VoterCommitted
from colonynode.consensus.messages import (
    Candidate,
    Candidates,
    Claim,
    Close,
    Expire,
    Merge,
    Push,
    Read,
    Reason,
    Release,
    Renew,
    Reply,
    Scan,
    State,
    Submit,
    Tag,
    Verdict,
)
from colonynode.consensus.register import Register, Timing
from colonynode.core.effects import Effects
from colonynode.core.ids import NodeId
from colonynode.storage.api import Store

__all__ = ["REGISTERS_TABLE", "VoterCore"]

REGISTERS_TABLE = "lease_registers"
REGISTERS_MAX = 100_000  # registers a voter holds; a Submit beyond is refused (FULL)
SCAN_MAX = 64  # candidates per Scan reply
CLAIM_ITEMS_MAX = 64  # processes per Claim or Renew request; the rest are ignored
PUSH_TO_MAX = 4  # voters one Push may name (a voter set has at most 5)

# has_role(node, role) -> bool: the roster check (roles "submitter", "executor", ...).
HasRole = Callable[[NodeId, str], bool]


def _anyone(node: NodeId, role: str) -> bool:
    return True


class VoterCore:
    """Holds and serves the lease registers of one voter."""

    def __init__(
        self,
        node_id: NodeId,
        store: Store,
        *,
        timing: Timing | None = None,
        has_role: HasRole = _anyone,
        voters: Callable[[], tuple[NodeId, ...]] | None = None,
        registers_max: int = REGISTERS_MAX,
        planted_bug: str = "",
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.timing = timing or Timing()
        self.has_role = has_role
        self.voters = voters
        self.registers_max = registers_max
        self.planted_bug = planted_bug
        self.registers: dict[bytes, Register] = {}
        for key, record in store.scan(REGISTERS_TABLE, limit=registers_max):
            self.registers[bytes(key)] = rg.from_record(record)
        self._stamped = False  # the restart rule is applied at the first step
        self.effects = Effects()
        self.requests = 0
        self.refused = 0
        self.merged = 0

    # -- the voter's step ---------------------------------------------------------------

    def _stamp(self, now_s: float) -> None:
        if not self._stamped:
            self._stamped = True
            timing = self.timing
            self.registers = {
                pid: rg.restarted(reg, now_s, timing) for pid, reg in self.registers.items()
            }

    def on_tick(self, now_s: float) -> None:
        self._stamp(now_s)

    def handles(self, msg: Any) -> bool:
        return isinstance(
            msg, Submit | Claim | Renew | Close | Release | Expire | Read | Scan | Push | Merge
        )

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        self._stamp(now_s)
        self.requests += 1
        if isinstance(msg, Scan):
            self._reply(sender, self._scan(now_s, msg))
            return
        if isinstance(msg, Push | Merge):
            self._repair(now_s, sender, msg)
            return
        nonce = 0
        if isinstance(msg, Submit):
            tag, verdicts = Tag.SUBMIT, [self._submit(now_s, sender, msg)]
        elif isinstance(msg, Claim | Renew):
            tag = Tag.CLAIM if isinstance(msg, Claim) else Tag.RENEW
            allowed = self.has_role(sender, "executor")
            verdicts = [
                self._apply(now_s, sender, msg, item.pid, item.epoch)
                if allowed
                else self._verdict(item.pid, item.epoch, Reason.NOT_ALLOWED, None)
                for item in msg.items[:CLAIM_ITEMS_MAX]
            ]
        elif isinstance(msg, Close | Release | Expire):
            tag = _TAGS[type(msg)]
            verdicts = [self._apply(now_s, sender, msg, msg.pid, msg.epoch)]
        elif isinstance(msg, Read):
            tag, nonce = Tag.READ, msg.nonce
            verdicts = [self._verdict(msg.pid, 0, Reason.OK, self.registers.get(msg.pid))]
        else:
            return
        self._reply(sender, Reply(tag, tuple(verdicts), nonce))

    def _transition(
        self, reg: Register, now_s: float, sender: NodeId, msg: Any, epoch: int
    ) -> tuple[Register, Reason]:
        """The register transition a request asks for (register.py decides)."""
        ignore = self.planted_bug == "ignore_epochs"
        if isinstance(msg, Claim):
            if msg.lease_s <= 0:
                return reg, Reason.NOT_ALLOWED
            return rg.claim(
                reg,
                epoch,
                sender,
                msg.lease_s,
                msg.executortype,
                now_s,
                self.timing,
                ignore_epochs=ignore,
            )
        if isinstance(msg, Renew):
            return rg.renew(reg, epoch, sender, now_s, self.timing)
        if isinstance(msg, Close):
            return rg.close(
                reg, epoch, sender, msg.outcome, msg.output, msg.errors, ignore_epochs=ignore
            )
        if isinstance(msg, Release):
            return rg.release(reg, epoch, sender, now_s)
        assert isinstance(msg, Expire)
        return rg.expire(reg, now_s)

    def take_effects(self) -> Effects:
        effects, self.effects = self.effects, Effects()
        return effects

    # -- requests -----------------------------------------------------------------------

    def _reply(self, to: NodeId, msg: Any) -> None:
        self.effects.sends.append((to, msg))

    def _verdict(self, pid: bytes, epoch: int, reason: Reason, reg: Register | None) -> Verdict:
        if reason is not Reason.OK:
            self.refused += 1
        return Verdict(pid, epoch, reason, None if reg is None else rg.view(reg))

    def _put(self, reg: Register) -> None:
        """Keep a changed register and make it durable with this step's reply."""
        old = self.registers.get(reg.pid)
        self.registers[reg.pid] = reg
        if reg.closed and (old is None or not old.closed):
            self.effects.events.append(VoterCommitted(reg.pid, rg.view(reg)))
        if self.planted_bug != "skip_persist":
            self.effects.writes.append((REGISTERS_TABLE, reg.pid, rg.to_record(reg)))

    def _apply(self, now_s: float, sender: NodeId, msg: Any, pid: bytes, epoch: int) -> Verdict:
        reg = self.registers.get(pid)
        if reg is None:
            return self._verdict(pid, epoch, Reason.UNKNOWN_PID, None)
        new, reason = self._transition(reg, now_s, sender, msg, epoch)
        if reason is Reason.OK and _durable_change(reg, new):
            self._put(new)
        else:
            self.registers[pid] = new  # a renew or a retransmitted claim: memory only
        return self._verdict(pid, epoch, reason, new)

    def _submit(self, now_s: float, sender: NodeId, msg: Submit) -> Verdict:
        terms = msg.terms
        pid = terms.pid
        if not self.has_role(sender, "submitter") or terms.submitter != sender:
            return self._verdict(pid, 0, Reason.NOT_ALLOWED, self.registers.get(pid))
        reg = self.registers.get(pid)
        if reg is None and len(self.registers) >= self.registers_max:
            return self._verdict(pid, 0, Reason.FULL, None)
        new, reason = rg.submit(reg, terms, now_s)
        if reason is Reason.OK and reg is None:
            self._put(new)
        return self._verdict(pid, 0, reason, new)

    def _repair(self, now_s: float, sender: NodeId, msg: Push | Merge) -> None:
        voters = self.voters() if self.voters is not None else ()
        if isinstance(msg, Push):
            reg = self.registers.get(msg.pid)
            if reg is None:
                return
            copy = Merge(rg.to_copy(reg))
            for to in msg.to[:PUSH_TO_MAX]:
                if to != self.node_id and to in voters:
                    self.effects.sends.append((to, copy))
            return
        if sender not in voters:
            return
        incoming = rg.from_copy(msg.copy)
        reg = self.registers.get(incoming.pid)
        if reg is None and len(self.registers) >= self.registers_max:
            return
        new, reason = rg.merge(reg, incoming, now_s, self.timing)
        if reason is Reason.OK:
            self.merged += 1
            self._put(new)

    def _scan(self, now_s: float, msg: Scan) -> Candidates:
        """Claimable and expirable processes, highest priority first."""
        found: list[Register] = []
        for reg in self.registers.values():
            if reg.closed:
                continue
            if reg.terms.executortype and reg.terms.executortype != msg.executortype:
                continue
            if reg.state is State.WAITING or rg.lease_expired(reg, now_s):
                found.append(reg)
        found.sort(key=lambda r: (-r.terms.priority, r.terms.seq, r.pid))
        limit = max(0, min(msg.limit, SCAN_MAX))
        return Candidates(
            tuple(
                Candidate(r.pid, r.epoch, r.terms.priority, r.terms.seq, rg.expirable(r, now_s))
                for r in found[:limit]
            )
        )

    # -- reads for tests and checkers ---------------------------------------------------

    def register(self, pid: bytes) -> Register | None:
        return self.registers.get(pid)


_TAGS: dict[type, Tag] = {Close: Tag.CLOSE, Release: Tag.RELEASE, Expire: Tag.EXPIRE}


def _durable_change(old: Register, new: Register) -> bool:
    """Did a transition change anything persisted (not only the local expiry)?"""
    return (
        old.state is not new.state
        or old.epoch != new.epoch
        or old.holder != new.holder
        or old.retries != new.retries
        or old.lease_s != new.lease_s
        or old.output != new.output
        or old.errors != new.errors
    )
