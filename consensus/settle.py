"""Frozen processes, settled across later voter-set changes (docs/consensus.md).

A handover to set V freezes a process whose result it cannot settle yet (handover.py):
two closed results at the voters of set V-1 and no majority of them for one, or a voter
of V-1 that withheld it (frozen there too). Before, the new voter kept asking only the
old voters still out, and only until the next change: a process frozen across two
changes stayed frozen for good (voters chaos seeds 52, 80, 144; partitions 93), and one
voter's own old vote, handed on to a later set, was counted as that set's result (a
double commit, chaos 271).

Now each change that froze something keeps its progress (`VoterCore.unsettled`, one per
change, durable) with the pids it froze, and asks the voters of its previous set that
have not answered for them, every RESETTLE_S, for those pids alone
(`HandoverRequest.only`), whatever set anyone serves by then. Its verdict for a pid
(`verdict`): a majority of set V-1 holds one closed result (it is the committed one:
install it); every voter of V-1 answered and none withholds it (none committed: keep a
closed copy, the first in set order, as a handover would); else frozen still.

What a voter answers for a frozen pid: its own register, the vote it cast in the set
it served before the change that froze it (`vote_of`: the register is kept as it was,
merged copies undone, handover.py `own_vote`), to a request about that set alone; the
pid withheld to any other. A later change that found the pid withheld freezes it too,
and settles once the voters before it can hand it on: once their own earlier progress
settled it (a pid's vote then becomes that of the set its progress took over). An
install is the committed result: no later set can have committed another (it was
closed or frozen at every voter since), so every progress here drops the pid. A "none
committed" verdict drops it from that progress only: a later set may have committed it.

Part of the voter: pure functions of its state, no I/O, no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from colonynode.consensus import register as rg
from colonynode.consensus.compaction import forget_dropped
from colonynode.consensus.events import VoterCommitted
from colonynode.consensus.handover import HandoverProgress, VoterSet, merge_handover, own_vote
from colonynode.consensus.messages import SETTLE_PIDS_MAX, Handover, HandoverRequest
from colonynode.consensus.register import Register
from colonynode.consensus.voter_invariants import Change
from colonynode.core.ids import NodeId

if TYPE_CHECKING:
    from colonynode.consensus.voter import VoterCore

__all__ = ["RESETTLE_S", "complete", "hold", "next_wake_s", "on_answer", "on_tick"]

RESETTLE_S = 1.0  # a progress asks the old voters about its frozen pids this often


def asked_of(msg: HandoverRequest) -> int:
    """The version of the set a request asks about: the set before `msg.version` (its
    asker's word; an older asker's: the version just before, as versions once were)."""
    return msg.asked or msg.version - 1


def hold(voter: VoterCore, asked: int, *, late: tuple[bytes, ...] = ()) -> set[bytes]:
    """The frozen pids not to hand on to a change asking about set `asked`: all but
    those whose register here is this voter's vote in that set. It is, from the set it
    voted in (`vote_of`) until the first change that froze it here and is not settled:
    this voter cast no vote for it in a set it did not serve, and served every set from
    that change on with it frozen (no vote: withheld until that change settles it).
    `late`: the pids an older change than this voter's newest asks about
    (`HandoverRequest.only`): once it served a set after `asked`, a process not frozen
    here may hold what a later set did with it, no vote of that set's, or be gone
    (compacted by a later set: no "none" either): withheld too."""
    first: dict[bytes, int] = {}
    for h in voter.unsettled:
        for p in h.pids:
            first[p] = min(first.get(p, h.vset.version), h.vset.version)
    out = {p for p in voter.frozen
           if not voter.vote_of.get(p, asked + 1) <= asked < first.get(p, asked + 1)}  # fmt: skip
    if late and voter.serving > asked:
        out |= {p for p in late if p not in voter.frozen}
    return out - unvoted(voter, asked)


def unvoted(voter: VoterCore, asked: int) -> set[bytes]:
    """The frozen pids this voter answers "none" for to a change asking about set
    `asked` (neither handed on nor withheld): it never served that set (it serves an
    older one), so it voted nothing there and held nothing it passed on (a set changes
    only once a majority of it serves it: that majority holds what it committed). Its
    register, frozen in an earlier change, is no vote of that set; withheld, it held a
    later change's verdict up for good (voters chaos seed 52)."""
    return set(voter.frozen) if voter.serving < asked else set()


def complete(voter: VoterCore, now_s: float, h: HandoverProgress, installs: list[Register],
             frozen: set[bytes]) -> None:  # fmt: skip
    """The handover to `h.vset` is complete: install what it settled, keep tracking
    what it froze (this voter's own votes kept: `_hold_own_vote`)."""
    before = voter.serving  # (the set whose vote a newly frozen register holds)
    for reg in installs:
        _untrack(voter, reg.pid)
        voter._put(reg, now_s, Change.SETTLE)
    voter.serving = h.vset.version
    voter.handover = None
    newly = frozen - voter.frozen
    voter.frozen |= frozen
    for pid in newly:
        voter.vote_of[pid] = before
    if frozen:
        h.pids = set(frozen)
        h.resettle_s = now_s + RESETTLE_S
        voter.unsettled.append(h)
    forget_dropped(voter, h)
    voter.save_meta()  # frozen, before any copy is dropped (a crash keeps a prefix)
    for pid in sorted(newly):
        _hold_own_vote(voter, pid, h)
    for pid in sorted(h.pids):  # what the answers so far already decide (`verdict`)
        _settle(voter, now_s, h, pid)
    _prune(voter)  # (an install ends a pid in every progress)
    for reg in voter.registers.values():  # the results it serves from now on
        if reg.closed and reg.pid not in voter.frozen:
            voter.effects.events.append(VoterCommitted(reg.pid, rg.view(reg), voter.serving))


def _hold_own_vote(voter: VoterCore, pid: bytes, h: HandoverProgress) -> None:
    """A frozen process keeps only what this voter held itself (handover.py
    `own_vote`)."""
    own = own_vote(h, voter.node_id, pid, voter.registers.get(pid))
    if own is not None:
        voter.keep(own)
    else:
        voter.forget(pid)


def on_tick(voter: VoterCore, now_s: float) -> None:
    """Each progress asks the old voters that have not answered for its frozen pids."""
    for h in voter.unsettled:
        if now_s < h.resettle_s:
            continue
        h.resettle_s = now_s + RESETTLE_S
        for old in h.vset.previous:
            pids = sorted(p for p in h.pids if not _answered(h, p, old))[:SETTLE_PIDS_MAX]
            if pids:
                request = HandoverRequest(h.vset.version, b"", tuple(pids),
                                          h.vset.previous_version)  # fmt: skip
                voter.effects.sends.append((old, request))


def next_wake_s(voter: VoterCore) -> float | None:
    return min((h.resettle_s for h in voter.unsettled), default=None)


def on_answer(voter: VoterCore, now_s: float, sender: NodeId, msg: Handover) -> None:
    """An old voter's answer about frozen pids: note it; settle what it decides."""
    h = next((u for u in voter.unsettled if u.vset.version == msg.version), None)
    if h is None or sender not in h.vset.previous:
        return
    copies = {c.terms.pid: rg.from_copy(c) for c in msg.copies}
    withheld = set(msg.withheld)
    for pid in msg.only:
        if pid not in h.pids:
            continue
        h.closed_by.get(pid, {}).pop(sender, None)
        h.withheld_by.setdefault(pid, set()).discard(sender)
        h.none_by.setdefault(pid, set()).discard(sender)
        reg = copies.get(pid)
        if pid in withheld:
            h.withheld_by[pid].add(sender)
        elif reg is not None and reg.closed:
            h.closed_by.setdefault(pid, {})[sender] = reg
        else:
            h.none_by[pid].add(sender)
    for pid in sorted(set(msg.only) & h.pids):
        _settle(voter, now_s, h, pid)
    _prune(voter)
    voter.save_meta()


def _answered(h: HandoverProgress, pid: bytes, old: NodeId) -> bool:
    """Has voter `old` of the previous set answered for `pid` (a closed copy, or none)?"""
    if old in h.closed_by.get(pid, {}) or old in h.none_by.get(pid, ()):
        return True
    return old in h.done and old not in h.withheld_by.get(pid, ()) and pid not in h.withheld


def verdict(h: HandoverProgress, pid: bytes) -> tuple[str, Register | None]:
    """("install", the one result the previous set may have committed), ("none", the
    first closed copy in set order, or None: none can have been), or ("frozen", None).

    A result may have been committed if the old voters that hold it, and those that have
    not answered (or withheld it), make a majority. Held by a majority, it was. When only
    one may have been, it is the only one that can have been committed, so every voter
    that settles the pid with any answers the old voters give takes that one: if it
    was committed, it is the committed one; if not, nothing was and it is as good as
    any (seed 144: a dead old voter whose vote could only have made one of two results
    a majority)."""
    previous = h.vset.previous
    need = len(previous) // 2 + 1
    copies = h.closed_by.get(pid, {})
    counts: dict[Any, list[Register]] = {}
    for old in previous:
        reg = copies.get(old)
        if reg is not None:
            counts.setdefault(rg.commit_key(rg.view(reg)), []).append(reg)
    unknown = sum(not _answered(h, pid, old) for old in previous)
    possible = [regs[0] for regs in counts.values() if len(regs) + unknown >= need]
    if unknown >= need:  # (a result no answer shows may have been committed too)
        return "frozen", None
    if len(possible) == 1:
        return "install", possible[0]
    if not possible:
        return "none", next((copies[v] for v in previous if v in copies), None)
    return "frozen", None


def _settle(voter: VoterCore, now_s: float, h: HandoverProgress, pid: bytes) -> None:
    kind, reg = verdict(h, pid)
    if kind == "frozen":
        return
    held = voter.registers.get(pid)
    told = False  # (`_put` announces a result this voter held open, once not frozen)
    if kind == "install":
        assert reg is not None
        _untrack(voter, pid)  # the committed result: every progress here is done with it
        told = held is None or not held.closed
        voter._put(reg, now_s, Change.SETTLE)
    else:
        h.pids.discard(pid)
        still = any(pid in u.pids for u in voter.unsettled)
        if still:
            voter.vote_of[pid] = h.vset.version  # still frozen: its vote is now that set's
        else:
            voter.frozen.discard(pid)
            voter.vote_of.pop(pid, None)
        if reg is not None and (held is None or not held.closed):  # hold a closed copy,
            voter._put(merge_handover(held, reg, now_s, voter.timing), now_s, Change.SETTLE)
            told = True  # (as a handover would, so that split settlement can end it)
        if still:
            return
    now = voter.registers.get(pid)
    if not told and now is not None and now.closed:  # the result it serves from now on
        voter.effects.events.append(VoterCommitted(pid, rg.view(now), voter.serving))


def _prune(voter: VoterCore) -> None:
    voter.unsettled = [u for u in voter.unsettled if u.pids]


def _untrack(voter: VoterCore, pid: bytes) -> None:
    for u in voter.unsettled:
        u.pids.discard(pid)
    voter.frozen.discard(pid)
    voter.vote_of.pop(pid, None)


# -- durable: the progresses a restart goes on with ----------------------------------


def to_record(voter: VoterCore) -> list[Any]:
    return [[h.vset.version, [bytes(v) for v in h.vset.previous], sorted(h.pids),
             h.vset.previous_version] for h in voter.unsettled]  # fmt: skip


def from_record(record: list[Any]) -> list[HandoverProgress]:
    out = []
    for version, previous, pids, previous_version in record:
        old = tuple(NodeId(bytes(v)) for v in previous)
        h = HandoverProgress(VoterSet(int(version), (), old, int(previous_version)))
        h.pids = {bytes(p) for p in pids}
        out.append(h)  # (asks at the first tick: `resettle_s` 0)
    return out
