"""Voter-set changes: seal-then-serve (DESIGN.md §6, docs/consensus.md).

The roster's voter set has a version. When version v+1 names a new set:

- every voter of set v **seals**: it refuses every change under v (and persists that it
  is sealed before it answers anything else), so what it hands over is final;
- every voter of set v+1 asks each voter of set v for its registers (`HandoverRequest`,
  paged by pid) and merges them (`merge_handover`); it serves v+1 once a majority of set
  v has handed over completely. A process on which those voters hold two different
  closed results is settled: the result a majority of set v holds wins (it is the one
  that may have committed); if every voter of set v answered and none has a majority,
  nothing committed and the first result is kept. If neither (an old voter that may
  hold the deciding copy has not answered: it may be dead for good), the process is
  *frozen*: the new voter serves everything else, answers FROZEN for it and keeps asking
  the old voters about it (settle.py, across later changes too), and settles it when
  enough of them answer. (Before, it
  waited for them to serve anything: the whole colony stalled on one such process when
  an old voter was dead; `voter_change=replace`, 21 seeds in 3,000.)

Why it is safe: a lease, a commit or an acknowledged submission under v is held by a
majority of set v, which intersects the majority every new voter merged from. Merging
keeps the highest epoch and, if any copy was RUNNING, a full lease from now (it can only
outlast the leases it stands for); a closed result replaces an open register. Requests
name the version they address and a voter answers only for the version it serves, so a
majority never mixes the two sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from colonynode.consensus import register as rg
from colonynode.consensus.messages import Handover, RegisterCopy, State
from colonynode.consensus.register import Register, Timing
from colonynode.core.ids import NodeId

if TYPE_CHECKING:
    pass

__all__ = [
    "HANDOVER_CHUNK_MAX",
    "HandoverProgress",
    "VoterSet",
    "expected",
    "merge_handover",
    "own_vote",
    "page_end",
    "page_of",
]

HANDOVER_CHUNK_MAX = 256  # registers per Handover message


@dataclass(frozen=True, slots=True)
class VoterSet:
    version: int
    voters: tuple[NodeId, ...]
    previous: tuple[NodeId, ...] = ()  # the set before (empty for the first)
    # ... and its version, as this node knew it (0: not known). Versions are the roster's
    # and not consecutive: a roster change that keeps the voters names no set.
    previous_version: int = 0

    def majority(self) -> int:
        return len(self.voters) // 2 + 1

    def to_record(self) -> list[Any]:
        return [self.version, [bytes(v) for v in self.voters], [bytes(v) for v in self.previous],
                self.previous_version]  # fmt: skip

    @staticmethod
    def from_record(record: list[Any]) -> VoterSet:
        version, voters, previous, *rest = record
        return VoterSet(
            int(version),
            tuple(NodeId(bytes(v)) for v in voters),
            tuple(NodeId(bytes(v)) for v in previous),
            int(rest[0]) if rest else 0,  # (written before it was kept)
        )


def merge_handover(
    local: Register | None, incoming: Register, now_s: float, timing: Timing
) -> Register:
    """One old voter's register merged into what a new voter holds (closed results are
    settled by `HandoverProgress`, not here: a closed local register is kept)."""
    if local is None:
        return rg.restarted(incoming, now_s, timing)
    if local.closed:
        return local
    if incoming.closed:
        return replace(incoming, expiry_s=0.0, started_s=0.0, waiting_since_s=now_s)
    top = incoming if incoming.epoch > local.epoch else local
    running = [r for r in (local, incoming) if r.state is State.RUNNING]
    retries = max(local.retries, incoming.retries)
    if not running:
        return replace(top, retries=retries, waiting_since_s=local.waiting_since_s)
    holder = max(running, key=lambda r: r.epoch)
    lease_s = max(r.lease_s for r in running)
    expiry_s = timing.voter_expiry_s(now_s, lease_s)
    if local.state is State.RUNNING:
        expiry_s = max(expiry_s, local.expiry_s)
    return replace(
        top,
        state=State.RUNNING,
        epoch=max(local.epoch, incoming.epoch),
        holder=holder.holder,
        lease_s=lease_s,
        retries=retries,
        expiry_s=expiry_s,
        started_s=now_s,
    )


@dataclass(slots=True)
class HandoverProgress:
    """A new voter's handover from the voters of the previous set."""

    vset: VoterSet
    cursor: dict[NodeId, bytes] = field(default_factory=dict)  # next page after this pid
    done: set[NodeId] = field(default_factory=set)
    next_s: dict[NodeId, float] = field(default_factory=dict)
    # pid -> old voter -> its closed register (to settle two different closed results)
    closed_by: dict[bytes, dict[NodeId, Register]] = field(default_factory=dict)
    contested: set[bytes] = field(default_factory=set)
    # pids an old voter withheld (frozen at it: its own old vote is no result to hand
    # on); frozen here too unless a majority of the old set handed over one result
    withheld: set[bytes] = field(default_factory=set)
    # pid -> this voter's own register (None: none) before the first copy was merged
    # into it (what a frozen process goes back to: see settle.py `_hold_own_vote`)
    before: dict[bytes, Register | None] = field(default_factory=dict)
    # once complete (settle.py): the pids it froze and still asks about, and per pid the
    # old voters that withheld it or answered with no closed copy
    pids: set[bytes] = field(default_factory=set)
    seen: set[bytes] = field(default_factory=set)  # every pid a page named (copy or withheld)
    withheld_by: dict[bytes, set[NodeId]] = field(default_factory=dict)
    none_by: dict[bytes, set[NodeId]] = field(default_factory=dict)
    resettle_s: float = 0.0

    def pending(self) -> list[NodeId]:
        return [v for v in self.vset.previous if v not in self.done]

    def note_closed(self, voter: NodeId, reg: Register, local: Register | None) -> None:
        copies = self.closed_by.setdefault(reg.pid, {})
        copies[voter] = reg
        keys = {_key(r) for r in copies.values()}
        if local is not None and local.closed:
            keys.add(_key(local))
        if len(keys) > 1:
            self.contested.add(reg.pid)

    def settle(self) -> tuple[bool, list[Register], set[bytes]]:
        """(complete, registers to install, processes frozen): complete once a majority
        of the previous set is done; a contested process that cannot be settled yet is
        frozen."""
        previous = self.vset.previous
        need = len(previous) // 2 + 1
        if len(self.done) < need:
            return False, [], set()
        installs: list[Register] = []
        frozen: set[bytes] = set()
        for pid in sorted(self.contested | self.withheld):
            copies = self.closed_by.get(pid, {})
            counts: dict[Any, list[Register]] = {}
            for voter in previous:
                reg = copies.get(voter)
                if reg is not None and voter in self.done:
                    counts.setdefault(_key(reg), []).append(reg)
            winner = next((regs[0] for regs in counts.values() if len(regs) >= need), None)
            if winner is None and (pid in self.withheld or len(self.done) < len(previous)):
                # No majority yet: either result may have committed under the old set.
                # (Picking the highest epoch is not safe: a repair or an earlier handover
                # can make a lower-epoch close the committed one.) Frozen until more answer.
                # Withheld by an old voter: that voter's answer for it is still out.
                frozen.add(pid)
            elif winner is not None:
                installs.append(winner)
        return True, installs, frozen


def _key(reg: Register) -> Any:
    return rg.commit_key(rg.view(reg))


def own_vote(h: HandoverProgress, me: NodeId, pid: bytes, held: Register | None) -> Register | None:
    """What voter `me` keeps of a process frozen at the end of handover `h` (`held`: its
    register now; None: drop it): the closed result it voted for in the old set, or what
    it held before the handover: its own vote in the last set it served (settle.py
    `vote_of`), open or closed, withheld from any other set. A copy merged from another
    old voter must not help the new set make a majority of a result the old set may not
    have committed; an open register keeps the process's terms (an acknowledged
    submission stays held), and a merged closed copy alone is kept as an open register
    with the same terms. (A voter that was no old voter, closed before: its vote in an
    earlier set, kept as it is; it was once made open, and the vote that decided an
    earlier frozen process was lost: voters chaos seed 271.)"""
    own = h.closed_by.get(pid, {}).get(me)
    if own is not None:
        return own
    mine = h.before.get(pid, held)  # (a stored None: it held nothing before)
    if mine is not None:
        return mine
    if held is None:
        return None
    # Only a merged closed copy: keep the process's terms, open (it is frozen: nothing
    # is decided with it), so the acknowledged submission stays held at a majority.
    return Register(held.terms, State.WAITING, held.epoch, retries=held.retries)


def page_of(
    registers: dict[bytes, Register],
    after: bytes,
    hold: set[bytes],
    only: tuple[bytes, ...] = (),
    omit: set[bytes] | None = None,
) -> tuple[tuple[RegisterCopy, ...], tuple[bytes, ...], bool]:
    """An old voter's next Handover page after pid `after`, or of the pids `only`:
    (copies, withheld, done). The pids in `hold` (frozen at it) are named, not handed on;
    those in `omit` are left out (held as none)."""
    if omit:
        registers = {p: r for p, r in registers.items() if p not in omit}
    if only:
        pids = sorted(p for p in set(only) if p in registers or p in hold)
        copies = tuple(rg.to_copy(registers[p]) for p in pids if p not in hold)
        return copies, tuple(p for p in pids if p in hold), True
    pids = sorted(p for p in registers.keys() | hold if p > after)  # (a frozen one may
    page = pids[:HANDOVER_CHUNK_MAX]  # have no register here: its vote was not closed)
    copies = tuple(rg.to_copy(registers[p]) for p in page if p not in hold)
    withheld = tuple(p for p in page if p in hold)
    return copies, withheld, len(pids) <= HANDOVER_CHUNK_MAX


def page_end(msg: Any) -> bytes | None:
    """The last pid a Handover page covers (None: an empty page)."""
    last = [*(c.terms.pid for c in msg.copies[-1:]), *msg.withheld[-1:]]
    return max(last) if last else None


def expected(h: HandoverProgress, sender: NodeId, msg: Handover) -> bool:
    """Is `msg` the next page this handover waits for from `sender`?"""
    return (msg.version == h.vset.version and sender in h.vset.previous
            and sender not in h.done and msg.after == h.cursor.get(sender, b""))  # fmt: skip
