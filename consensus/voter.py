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

Who may ask: Submit needs the `submitter` role (and to be the process's submitter),
Claim and Renew the `executor` role, Cancel the process's submitter or the `owner` role;
Close, Renew and Release need the current lease's holder (register.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from colonynode.consensus import register as rg
from colonynode.consensus.events import VoterCommitted
from colonynode.consensus.handover import (
    HANDOVER_CHUNK_MAX,
    HandoverProgress,
    VoterSet,
    merge_handover,
)
from colonynode.consensus.messages import (
    Cancel,
    Candidate,
    Candidates,
    Claim,
    Close,
    Expire,
    Handover,
    HandoverRequest,
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

__all__ = ["META_TABLE", "REGISTERS_TABLE", "VoterCore"]

REGISTERS_TABLE = "lease_registers"
META_TABLE = "lease_meta"
META_KEY = b"voters"  # the voter set known, the version served, the version sealed
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
        voter_set: VoterSet | None = None,
        registers_max: int = REGISTERS_MAX,
        retry_s: float = 0.25,
        planted_bug: str = "",
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.timing = timing or Timing()
        self.has_role = has_role
        self.retry_s = retry_s
        initial = voter_set or VoterSet(1, (node_id,))
        meta = store.get(META_TABLE, META_KEY)
        self._meta_unsaved = meta is None  # written at the first step, before any reply
        if meta is None:
            self.vset = initial
            first = not initial.previous and node_id in initial.voters
            self.serving = initial.version if first else 0  # the version it serves
            self.sealed = 0  # it refuses every change under a version below this
        else:
            self.vset = VoterSet.from_record(meta["vset"])
            self.serving = int(meta["serving"])
            self.sealed = int(meta["sealed"])
        # a newer set given at construction (it changed while this node was down)
        self._newer = initial if initial.version > self.vset.version else None
        self.handover: HandoverProgress | None = None
        self.registers_max = registers_max
        self.planted_bug = planted_bug
        self.registers: dict[bytes, Register] = {}
        for key, record in store.scan(REGISTERS_TABLE, limit=registers_max):
            self.registers[bytes(key)] = rg.from_record(record)
        self._stamped = False  # the restart rule (and a handover) start at the first step
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
            if self._meta_unsaved:
                self._save_meta()  # a restart must know which version it served
            if self._newer is not None:
                self.set_voters(now_s, self._newer)
            self._start_handover(now_s)

    def on_tick(self, now_s: float) -> None:
        self._stamp(now_s)
        h = self.handover
        if h is not None:
            for voter in h.pending():
                if now_s >= h.next_s.get(voter, now_s):
                    self._ask(now_s, voter)

    def next_wake_s(self) -> float | None:
        h = self.handover
        if h is None:
            return None
        times = [h.next_s[v] for v in h.pending() if v in h.next_s]
        return min(times) if times else None

    # -- voter-set changes (handover.py) ------------------------------------------------

    @property
    def serves(self) -> bool:
        return self.serving > 0 and self.serving >= self.sealed

    def set_voters(self, now_s: float, vset: VoterSet) -> None:
        """The roster names a newer voter set: seal, and hand over or take over."""
        self._stamp(now_s)
        if vset.version <= self.vset.version:
            return
        self.vset = vset
        self.sealed = max(self.sealed, vset.version)
        self._save_meta()
        self._start_handover(now_s)

    def _start_handover(self, now_s: float) -> None:
        vset = self.vset
        if self.serving >= vset.version or self.node_id not in vset.voters:
            return
        if self.handover is not None and self.handover.vset == vset:
            return
        if not vset.previous:
            self.serving = vset.version
            self._save_meta()
            return
        self.handover = HandoverProgress(vset, next_s={v: now_s for v in vset.previous})

    def _save_meta(self) -> None:
        self._meta_unsaved = False
        record = {"vset": self.vset.to_record(), "serving": self.serving, "sealed": self.sealed}
        self.effects.writes.append((META_TABLE, META_KEY, record))

    def _ask(self, now_s: float, voter: NodeId) -> None:
        h = self.handover
        assert h is not None
        h.next_s[voter] = now_s + self.retry_s
        request = HandoverRequest(h.vset.version, h.cursor.get(voter, b""))
        self.effects.sends.append((voter, request))

    def _on_handover_request(self, sender: NodeId, msg: HandoverRequest) -> None:
        if msg.version > self.sealed:
            self.sealed = msg.version  # durable before the registers go out
            self._save_meta()
        pids = sorted(p for p in self.registers if p > msg.after)
        page = pids[:HANDOVER_CHUNK_MAX]
        copies = tuple(rg.to_copy(self.registers[p]) for p in page)
        done = len(pids) <= HANDOVER_CHUNK_MAX
        self.effects.sends.append((sender, Handover(msg.version, msg.after, copies, done)))

    def _on_handover(self, now_s: float, sender: NodeId, msg: Handover) -> None:
        h = self.handover
        if (
            h is None
            or msg.version != h.vset.version
            or sender not in h.vset.previous
            or sender in h.done
            or msg.after != h.cursor.get(sender, b"")
        ):
            return  # a duplicate, a stale page, or not ours
        for copy in msg.copies:
            incoming = rg.from_copy(copy)
            local = self.registers.get(incoming.pid)
            if incoming.closed:
                h.note_closed(sender, incoming, local)
            if local is None and len(self.registers) >= self.registers_max:
                continue
            merged = merge_handover(local, incoming, now_s, self.timing)
            if merged != local:
                self._put(merged)
        if msg.copies:
            h.cursor[sender] = msg.copies[-1].terms.pid
        if msg.done:
            h.done.add(sender)
        else:
            self._ask(now_s, sender)
        complete, installs = h.settle()
        if complete:
            for reg in installs:
                self._put(reg)
            self.serving = h.vset.version
            self.handover = None
            self._save_meta()
            for reg in self.registers.values():  # the results it serves from now on
                if reg.closed:
                    self.effects.events.append(VoterCommitted(reg.pid, rg.view(reg), self.serving))

    def handles(self, msg: Any) -> bool:
        return isinstance(msg, _REQUESTS)

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        self._stamp(now_s)
        self.requests += 1
        if isinstance(msg, Scan):
            self._reply(sender, self._scan(now_s, msg))
            return
        if isinstance(msg, Push | Merge):
            self._repair(now_s, sender, msg)
            return
        if isinstance(msg, HandoverRequest):
            self._on_handover_request(sender, msg)
            return
        if isinstance(msg, Handover):
            self._on_handover(now_s, sender, msg)
            return
        if not isinstance(msg, Read) and (not self.serves or msg.version != self.serving):
            self._refuse_version(sender, msg)
            return
        nonce = 0
        if isinstance(msg, Submit):
            tag, verdicts = Tag.SUBMIT, [self._submit(now_s, sender, msg)]
        elif isinstance(msg, Claim | Renew):
            tag = Tag.CLAIM if isinstance(msg, Claim) else Tag.RENEW
            nonce = msg.nonce
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
        elif isinstance(msg, Cancel):
            tag, verdicts = Tag.CANCEL, [self._apply(now_s, sender, msg, msg.pid, 0)]
        elif isinstance(msg, Read):
            tag, nonce = Tag.READ, msg.nonce
            verdicts = [self._verdict(msg.pid, 0, Reason.OK, self.registers.get(msg.pid))]
        else:
            return
        self._reply(sender, Reply(tag, tuple(verdicts), nonce, self.serving))

    def _refuse_version(self, sender: NodeId, msg: Any) -> None:
        if isinstance(msg, Submit):
            tag, items = Tag.SUBMIT, [(msg.terms.pid, 0)]
        elif isinstance(msg, Claim | Renew):
            tag = Tag.CLAIM if isinstance(msg, Claim) else Tag.RENEW
            nonce = msg.nonce
            items = [(i.pid, i.epoch) for i in msg.items[:CLAIM_ITEMS_MAX]]
        elif isinstance(msg, Close | Release | Expire):
            tag, items = _TAGS[type(msg)], [(msg.pid, msg.epoch)]
        elif isinstance(msg, Cancel):
            tag, items = Tag.CANCEL, [(msg.pid, 0)]
        else:
            return
        verdicts = tuple(
            self._verdict(pid, epoch, Reason.WRONG_VERSION, None) for pid, epoch in items
        )
        nonce = msg.nonce if isinstance(msg, Claim | Renew) else 0
        self._reply(sender, Reply(tag, verdicts, nonce, msg.version))

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
                nonce=msg.nonce,
                ignore_epochs=ignore,
            )
        if isinstance(msg, Renew):
            return rg.renew(reg, epoch, sender, now_s, self.timing)
        if isinstance(msg, Close):
            return rg.close(
                reg,
                epoch,
                sender,
                msg.outcome,
                msg.output,
                msg.errors,
                now_s=now_s,
                ignore_epochs=ignore,
            )
        if isinstance(msg, Release):
            return rg.release(reg, epoch, sender, now_s)
        if isinstance(msg, Cancel):
            # the process's submitter may abort it, and so may an owner of the colony
            if sender != reg.terms.submitter and not self.has_role(sender, "owner"):
                return reg, Reason.NOT_ALLOWED
            overwrite = self.planted_bug == "abort_closed"
            return rg.abort(reg, msg.state, msg.errors, overwrite_closed=overwrite)
        assert isinstance(msg, Expire)
        return rg.expire(reg, now_s)

    def take_effects(self) -> Effects:
        effects, self.effects = self.effects, Effects()
        effects.wake_at_s = self.next_wake_s()
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
        if self.handover is None and reg.closed and (old is None or not old.closed):
            self.effects.events.append(VoterCommitted(reg.pid, rg.view(reg), self.serving))
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
        voters = self.vset.voters
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


_REQUESTS = (
    Submit,
    Claim,
    Renew,
    Close,
    Release,
    Expire,
    Cancel,
    Read,
    Scan,
    Push,
    Merge,
    HandoverRequest,
    Handover,
)
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
        or old.claim_nonce != new.claim_nonce
    )
