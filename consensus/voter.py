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

Dispatch is one table, `_ROUTES`: per message type its tag, its (pid, epoch) items,
whether it must name the version served, and its handler or register transition.
Every durable change goes through `_put`, which asserts the invariants (closed is
terminal, epochs never decrease; a lease runs the full Timing rule from now).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from colonynode.consensus import certs
from colonynode.consensus import compaction as cp
from colonynode.consensus import register as rg
from colonynode.consensus import settle as st
from colonynode.consensus.certs import Sign
from colonynode.consensus.compaction import Compaction, Pinned, Retention
from colonynode.consensus.events import Registered, VoterCommitted
from colonynode.consensus.handover import (
    HandoverProgress,
    VoterSet,
    expected,
    merge_handover,
    page_end,
)
from colonynode.consensus.messages import (
    LEASE_S_MAX,
    Cancel,
    Claim,
    Close,
    Compact,
    CompactAnswer,
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
    State,
    Submit,
    Tag,
    Verdict,
)
from colonynode.consensus.register import Register, Timing
from colonynode.consensus.split import SplitResults
from colonynode.consensus.voter_handover import answer_handover_request
from colonynode.consensus.voter_invariants import (
    Change,
    assert_epoch,
    assert_full_lease,
    assert_terminal,
)
from colonynode.consensus.voter_routes import (  # noqa: F401 (CLAIM_ITEMS_MAX: re-exported)
    CLAIM_ITEMS_MAX,
    Route,
    batch,
    one_unfenced,
    submitted,
    with_frozen,
)
from colonynode.core.effects import Effects
from colonynode.core.ids import NodeId
from colonynode.storage.api import Store

__all__ = ["META_TABLE", "REGISTERS_TABLE", "VoterCore"]

REGISTERS_TABLE = "lease_registers"
META_TABLE = "lease_meta"
META_KEY = b"voters"  # the voter set known, the version served, the version sealed
REGISTERS_MAX = 100_000  # registers a voter holds; a Submit beyond is refused (FULL)
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
        retention: Retention | None = None,
        unix_ns: Callable[[], int | None] = lambda: None,
        pinned: Pinned | None = None,
        sign: Sign | None = None,
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
        # processes a handover could not settle (handover.py): answered FROZEN
        self.frozen: set[bytes] = set()
        # pid -> the version of the set whose vote this voter's register of it is (settle.py)
        self.vote_of: dict[bytes, int] = {}
        # the changes that froze processes and still ask the old voters (settle.py)
        self.unsettled: list[HandoverProgress] = []
        self.compaction = Compaction(retention or Retention())
        self.unix_ns = unix_ns  # wall-clock time, for compaction (None: not known)
        self.pinned = pinned or cp.unpinned  # the application's (compaction.py, "pins")
        self.sign = sign  # this voter's signature of a closed result (certs.py)
        if meta is None:
            self.vset = initial
            first = not initial.previous and node_id in initial.voters
            self.serving = initial.version if first else 0  # the version it serves
            self.sealed = 0  # it refuses every change under a version below this
        else:
            self.vset = VoterSet.from_record(meta["vset"])
            self.serving = int(meta["serving"])
            self.sealed = int(meta["sealed"])
            self.frozen = {bytes(p) for p in meta.get("frozen", ())}
            of = {bytes(p): int(v) for p, v in meta.get("vote_of", ())}
            self.vote_of = {p: of.get(p, self.serving - 1) for p in self.frozen}
            self.unsettled = st.from_record(meta.get("unsettled", []))
            self.compaction.horizon = int(meta.get("horizon", 0))
            self.compaction.series = {bytes(k): int(v) for k, v in meta.get("series", ())}
        # a newer set given at construction (it changed while this node was down)
        self._newer = initial if initial.version > self.vset.version else None
        self.handover: HandoverProgress | None = None
        self.registers_max = registers_max
        self.planted_bug = planted_bug
        self.registers: dict[bytes, Register] = {}
        for key, record in store.scan(REGISTERS_TABLE, limit=registers_max):
            reg = self.registers[bytes(key)] = rg.from_record(record)
            self.compaction.index(reg)
        self.now_s = 0.0  # the time of the request being answered
        self._stamped = False  # the restart rule (and a handover) start at the first step
        self.effects = Effects()
        self.requests = 0
        self.refused = 0
        self.merged = 0
        self.settled = 0  # splits settled here
        self.handovers_refused = 0  # handover requests from no voter of the newest set
        self.splits = SplitResults()

    # -- the voter's step ---------------------------------------------------------------

    def _stamp(self, now_s: float) -> None:
        if not self._stamped:
            self._stamped = True
            timing = self.timing
            self.registers = {
                pid: rg.restarted(reg, now_s, timing) for pid, reg in self.registers.items()
            }
            for pid in sorted(p for p, reg in self.registers.items() if reg.closed):
                self.compaction.saw_closed(self.registers[pid], now_s, self.unix_ns())
            if self._meta_unsaved:
                self.save_meta()  # a restart must know which version it served
            if self._newer is not None:
                self.set_voters(now_s, self._newer)
            self._start_handover(now_s)
            tracked = {p for h in self.unsettled for p in h.pids}
            if self.frozen - tracked and self.vset.previous:  # (frozen before progresses
                h = HandoverProgress(self.vset)  # were kept: the last change's voters)
                h.pids = self.frozen - tracked
                self.unsettled.append(h)

    def on_tick(self, now_s: float) -> None:
        self._stamp(now_s)
        h = self.handover
        if h is not None:
            for voter in h.pending():
                if now_s >= h.next_s.get(voter, now_s):
                    self._ask(now_s, voter)
        st.on_tick(self, now_s)
        cp.on_tick(self, now_s)

    def next_wake_s(self) -> float | None:
        h = self.handover
        times = [h.next_s[v] for v in h.pending() if v in h.next_s] if h is not None else []
        settle_s = st.next_wake_s(self)
        if settle_s is not None:
            times.append(settle_s)
        compact_s = self.compaction.next_wake_s(len(self.registers), self.registers_max)
        if compact_s is not None and self.serves and h is None:
            times.append(compact_s)
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
        self.save_meta()
        self._start_handover(now_s)

    def _start_handover(self, now_s: float) -> None:
        vset = self.vset
        if self.serving >= vset.version or self.node_id not in vset.voters:
            return
        if self.handover is not None and self.handover.vset == vset:
            return
        if not vset.previous:
            self.serving = vset.version
            self.save_meta()
            return
        self.handover = HandoverProgress(vset, next_s={v: now_s for v in vset.previous})

    def save_meta(self) -> None:
        self._meta_unsaved = False
        record = {"vset": self.vset.to_record(), "serving": self.serving, "sealed": self.sealed,
                  "frozen": sorted(self.frozen), "vote_of": sorted(self.vote_of.items()),
                  "unsettled": st.to_record(self), "horizon": self.compaction.horizon,
                  "series": sorted(self.compaction.series.items())}  # fmt: skip
        self.effects.writes.append((META_TABLE, META_KEY, record))

    def keep(self, reg: Register) -> None:
        """Hold a register as it is, durably: no transition (a frozen process's own
        vote, settle.py). A closed one is signed, as `_put` signs: the copy it comes
        from (a handover's) carries no signature, and once the process settles every
        verdict of it must (replace seeds 793, 1122, 1317: a committed result whose
        certificate stayed one signature short, so no node took its closing record)."""
        reg = self._signed(reg)
        self.registers[reg.pid] = reg
        self.compaction.index(reg)
        self.effects.writes.append((REGISTERS_TABLE, reg.pid, rg.to_record(reg)))

    def forget(self, pid: bytes) -> None:
        """Drop a register (durably, with this step's reply)."""
        if (reg := self.registers.pop(pid, None)) is not None:
            self.compaction.unindex(reg)
            self.effects.writes.append((REGISTERS_TABLE, pid, None))

    def _ask(self, now_s: float, voter: NodeId) -> None:
        h = self.handover
        assert h is not None
        h.next_s[voter] = now_s + self.retry_s
        request = HandoverRequest(h.vset.version, h.cursor.get(voter, b""), (),
                                  h.vset.previous_version)  # fmt: skip
        self.effects.sends.append((voter, request))

    def _on_handover(self, now_s: float, sender: NodeId, msg: Handover) -> None:
        if msg.only:
            st.on_answer(self, now_s, sender, msg)
            return
        h = self.handover
        if h is None or not expected(h, sender, msg):
            return  # a duplicate, a stale page, or not ours
        h.withheld.update(msg.withheld)
        h.seen.update([*(c.terms.pid for c in msg.copies), *msg.withheld])
        raised = self.compaction.raise_horizon(msg.horizon)
        for series, seq in msg.series:  # (all of them, room or not: the old set's fence)
            raised = self.compaction.raise_series(series, seq, kept=True) or raised
        if raised:
            self.save_meta()
        for copy in msg.copies:
            incoming = rg.from_copy(copy)
            local = self.registers.get(incoming.pid)
            if incoming.closed:
                h.note_closed(sender, incoming, local)
            if incoming.pid in self.frozen:
                continue  # (frozen by an earlier change: its own vote stays, settle.py)
            if local is None and len(self.registers) >= self.registers_max:
                continue
            h.before.setdefault(incoming.pid, local)
            merged = merge_handover(local, incoming, now_s, self.timing)
            if merged != local:
                self._put(merged, now_s, Change.MERGE)
        self._paged(now_s, sender, msg, h)
        complete, installs, frozen = h.settle()
        if complete:
            st.complete(self, now_s, h, installs, frozen)

    def _paged(self, now_s: float, sender: NodeId, msg: Handover, h: HandoverProgress) -> None:
        """One old voter's page is taken: note where it ended; ask for the next."""
        end = page_end(msg)
        if end is not None:
            h.cursor[sender] = end
        if msg.done:
            h.done.add(sender)
        else:
            self._ask(now_s, sender)

    def handles(self, msg: Any) -> bool:
        return type(msg) in _ROUTES

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        self._stamp(now_s)
        self.now_s = now_s
        self.requests += 1
        route = _ROUTES.get(type(msg))
        if route is None:
            return
        if route.handle is not None:
            route.handle(self, now_s, sender, msg)
        else:
            self._decide(now_s, sender, msg, route)

    def _decide(self, now_s: float, sender: NodeId, msg: Any, route: Route) -> None:
        """One verdict per item of a request, in one Reply under the request's tag."""
        items = route.items(msg)
        nonce = msg.nonce if route.nonce else 0
        if route.versioned and (not self.serves or msg.version != self.serving):
            refused = tuple(
                self._verdict(pid, epoch, Reason.WRONG_VERSION, None) for pid, epoch in items
            )
            self._reply(sender, Reply(route.tag, refused, nonce, msg.version))
            return
        if self.frozen and any(pid in self.frozen for pid, _ in items):
            verdicts = with_frozen(self, now_s, sender, msg, route, items)
        elif route.role and not self.has_role(sender, route.role):
            verdicts = tuple(
                self._verdict(pid, epoch, Reason.NOT_ALLOWED, None) for pid, epoch in items
            )
        elif route.transition is not None:
            verdicts = tuple(
                self._apply(now_s, sender, msg, pid, epoch, route) for pid, epoch in items
            )
        else:
            assert route.decide is not None, f"{route.tag.name}: no transition and no decide"
            decide = route.decide
            verdicts = tuple(decide(self, now_s, sender, msg, pid, epoch) for pid, epoch in items)
        frozen = len(self.frozen) if route.tag is Tag.READ else 0
        self._reply(sender, Reply(route.tag, verdicts, nonce, self.serving, frozen))

    # -- register transitions (register.py decides; one per request type in _ROUTES) ----

    def _claim(
        self, reg: Register, now_s: float, sender: NodeId, msg: Claim, epoch: int
    ) -> tuple[Register, Reason]:
        if not 0 < msg.lease_s <= LEASE_S_MAX:
            return reg, Reason.NOT_ALLOWED
        new, reason = rg.claim(
            reg,
            epoch,
            sender,
            msg.lease_s,
            msg.executortype,
            now_s,
            self.timing,
            nonce=msg.nonce,
            ignore_epochs=self.planted_bug == "ignore_epochs",
        )
        if reason is Reason.OK:
            assert_full_lease(self.timing, new, now_s, msg.lease_s, "a granted claim")
        return new, reason

    def _renew(
        self, reg: Register, now_s: float, sender: NodeId, msg: Renew, epoch: int
    ) -> tuple[Register, Reason]:
        new, reason = rg.renew(reg, epoch, sender, now_s, self.timing)
        if reason is Reason.OK:
            assert_full_lease(self.timing, new, now_s, new.lease_s, "a renewal")
        return new, reason

    def _close(
        self, reg: Register, now_s: float, sender: NodeId, msg: Close, epoch: int
    ) -> tuple[Register, Reason]:
        ignore = self.planted_bug == "ignore_epochs"
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

    def _release(
        self, reg: Register, now_s: float, sender: NodeId, msg: Release, epoch: int
    ) -> tuple[Register, Reason]:
        return rg.release(reg, epoch, sender, now_s)

    def _expire(
        self, reg: Register, now_s: float, sender: NodeId, msg: Expire, epoch: int
    ) -> tuple[Register, Reason]:
        return rg.expire(reg, now_s)

    def _cancel(
        self, reg: Register, now_s: float, sender: NodeId, msg: Cancel, epoch: int
    ) -> tuple[Register, Reason]:
        # the process's submitter may abort it, and so may an owner of the colony; a cron
        # tick's process belongs to no one member (any may have fired it): any submitter
        tick_member = bool(reg.terms.tick) and self.has_role(sender, "submitter")
        if sender != reg.terms.submitter and not self.has_role(sender, "owner") and not tick_member:
            return reg, Reason.NOT_ALLOWED
        overwrite = self.planted_bug == "abort_closed"
        return rg.abort(reg, msg.state, msg.errors, overwrite_closed=overwrite)

    def take_effects(self) -> Effects:
        effects, self.effects = self.effects, Effects()
        effects.wake_at_s = self.next_wake_s()
        return effects

    # -- requests -----------------------------------------------------------------------

    def _reply(self, to: NodeId, msg: Any) -> None:
        self.effects.sends.append((to, msg))

    def _verdict(self, pid: bytes, epoch: int, reason: Reason, reg: Register | None,
                 grant: bool = False) -> Verdict:  # fmt: skip
        """`grant`: the verdict of a claim, whose lease (if granted) it signs (certs.py)."""
        if reason is not Reason.OK:
            self.refused += 1
        left_s = 0.0
        if reason is Reason.LEASE_HELD and reg is not None:
            left_s = max(0.0, reg.expiry_s - self.now_s)
        view, horizon = (None, -1) if reg is None else (rg.view(reg), self.compaction.of(reg))
        sig = b""
        if reg is not None and reg.closed:  # (one written before certificates: signed now)
            sig = self._signed(reg).sig
        if grant and reason is Reason.OK and view is not None and self.sign is not None:
            sig = self.sign(certs.statement(pid, view))  # (RUNNING, epoch, the claimer)
        return Verdict(pid, epoch, reason, view, left_s, horizon if reason is Reason.OK else -1,
                       sig)  # fmt: skip

    def _apply(
        self,
        now_s: float,
        sender: NodeId,
        msg: Any,
        pid: bytes,
        epoch: int,
        route: Route,
    ) -> Verdict:
        reg = self.registers.get(pid)
        if reg is None:
            return self._verdict(pid, epoch, Reason.UNKNOWN_PID, None)
        assert route.transition is not None
        new, reason = route.transition(self, reg, now_s, sender, msg, epoch)
        assert reason is Reason.OK or new is reg, f"a refusal changes nothing ({reason.name})"
        if reason is Reason.OK and rg.durable_change(reg, new):
            self._put(new, now_s, Change.STEP)
            new = self.registers[pid]  # (signed, if it closed)
        else:
            self.registers[pid] = new  # a renew or a retransmitted claim: memory only
        return self._verdict(pid, epoch, reason, new, route.grants)

    def _submit(self, now_s: float, sender: NodeId, msg: Submit, pid: bytes, _: int) -> Verdict:
        terms = msg.terms
        if not self.has_role(sender, "submitter") or terms.submitter != sender:
            return self._verdict(pid, 0, Reason.NOT_ALLOWED, self.registers.get(pid))
        reg = self.registers.get(pid)
        fence = self.planted_bug != "series_unfenced"
        if reg is None and self.compaction.refuses(terms, now_s, submit=True, fence_series=fence):
            return self._verdict(pid, 0, Reason.COMPACTED, None)
        if reg is None and len(self.registers) >= self.registers_max:
            return self._verdict(pid, 0, Reason.FULL, None)
        new, reason = rg.submit(reg, terms, now_s)
        if reason is Reason.OK and reg is None:
            self._put(new, now_s, Change.STEP)
            self.effects.events.append(Registered(terms))
        return self._verdict(pid, 0, reason, new)

    def _read(self, now_s: float, sender: NodeId, msg: Read, pid: bytes, _: int) -> Verdict:
        return self._verdict(pid, 0, Reason.OK, self.registers.get(pid))

    def _on_push(self, now_s: float, sender: NodeId, msg: Push) -> None:
        reg = self.registers.get(msg.pid)
        if reg is None or msg.pid in self.frozen:
            return
        copy = Merge(rg.to_copy(reg), self.serving)
        voters = self.vset.voters
        for to in msg.to[:PUSH_TO_MAX]:
            if to != self.node_id and to in voters:
                self.effects.sends.append((to, copy))

    def _on_merge(self, now_s: float, sender: NodeId, msg: Merge) -> None:
        if not self.serves or sender not in self.vset.voters or msg.version != self.serving:
            # Sealed (or handing over): what it hands over is final (handover.py). From a
            # voter of another set: a copy must not count as a vote of this one.
            return
        incoming = rg.from_copy(msg.copy)
        if incoming.pid in self.frozen:
            return  # repair waits until the handover settles it
        reg = self.registers.get(incoming.pid)
        if reg is None and len(self.registers) >= self.registers_max:
            return
        late = reg is None and not incoming.closed  # an open copy sent before a drop, late?
        if late and self.compaction.refuses(incoming.terms, now_s, submit=False):
            return  # (compaction.py)
        if reg is not None and reg.closed and incoming.closed:
            if msg.majority and rg.commit_key(rg.view(reg)) != rg.commit_key(rg.view(incoming)):
                self.compaction.adopted += 1  # a majority holds it: ours never committed
                self._put(replace(incoming, expiry_s=0.0, started_s=0.0), now_s, Change.SPLIT)
                return
            self._note_split(now_s, sender, reg, incoming)
            return
        new, reason = rg.merge(reg, incoming, now_s, self.timing)
        if reason is Reason.OK:
            self.merged += 1
            self._put(new, now_s, Change.MERGE)

    def _note_split(self, now_s: float, sender: NodeId, mine: Register, theirs: Register) -> None:
        """Another voter's closed result for a process this voter holds closed: once
        every voter's is known and they are split, settle (split.py)."""
        if not self.serves or self.handover is not None:
            return
        chosen = self.splits.note(sender, theirs, self.node_id, mine, self.vset.voters)
        if chosen is None or rg.commit_key(rg.view(chosen)) == rg.commit_key(rg.view(mine)):
            return
        self.settled += 1
        self._put(replace(chosen, expiry_s=0.0, started_s=0.0), now_s, Change.SPLIT)

    # -- durable changes, and the invariants they keep (TIGER_STYLE) --------------------

    def _put(self, reg: Register, now_s: float, change: Change) -> None:
        """Keep a changed register and make it durable with this step's reply."""
        old = self.registers.get(reg.pid)
        if old is not None:
            assert_terminal(old, reg, change, self.planted_bug)
            assert_epoch(old, reg, change, self.planted_bug)
        if change is not Change.STEP and reg.state is State.RUNNING:
            assert_full_lease(self.timing, reg, now_s, reg.lease_s, change.value)
        reg = self._signed(reg)
        self.registers[reg.pid] = reg
        self.compaction.index(reg)
        if reg.closed:
            self.compaction.saw_closed(reg, now_s, self.unix_ns())
        newly = old is None or not old.closed or change is Change.SPLIT
        if self.handover is None and reg.closed and newly and reg.pid not in self.frozen:
            self.effects.events.append(VoterCommitted(reg.pid, rg.view(reg), self.serving))
        if self.planted_bug != "skip_persist":
            self.effects.writes.append((REGISTERS_TABLE, reg.pid, rg.to_record(reg)))

    def _signed(self, reg: Register) -> Register:
        """`reg`, with this voter's signature of its result if it is closed (once)."""
        if reg.closed and not reg.sig and self.sign is not None:
            reg = replace(reg, sig=self.sign(certs.statement(reg.pid, rg.view(reg))))
        return reg

    # -- reads for tests and checkers ---------------------------------------------------

    def register(self, pid: bytes) -> Register | None:
        return self.registers.get(pid)


_ROUTES: dict[type, Route] = {
    Submit: Route(Tag.SUBMIT, items=submitted, decide=VoterCore._submit),
    Claim: Route(
        Tag.CLAIM,
        items=batch,
        nonce=True,
        role="executor",
        transition=VoterCore._claim,
        grants=True,
    ),
    Renew: Route(Tag.RENEW, items=batch, nonce=True, role="executor", transition=VoterCore._renew),
    Close: Route(Tag.CLOSE, transition=VoterCore._close),
    Release: Route(Tag.RELEASE, transition=VoterCore._release),
    Expire: Route(Tag.EXPIRE, transition=VoterCore._expire),
    Cancel: Route(Tag.CANCEL, items=one_unfenced, transition=VoterCore._cancel),
    Read: Route(Tag.READ, items=one_unfenced, versioned=False, nonce=True, decide=VoterCore._read),
    Push: Route(Tag.PUSH, handle=VoterCore._on_push),
    Merge: Route(Tag.MERGE, handle=VoterCore._on_merge),
    HandoverRequest: Route(Tag.HANDOVER_REQUEST, handle=answer_handover_request),
    Handover: Route(Tag.HANDOVER, handle=VoterCore._on_handover),
    Compact: Route(Tag.COMPACT, handle=cp.on_compact),
    CompactAnswer: Route(Tag.COMPACT_ANSWER, handle=cp.on_answer),
}
