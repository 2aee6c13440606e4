"""The voter's invariants (TIGER_STYLE: asserted where the state changes, in `_put` and
the lease transitions): closed is terminal, epochs never decrease, a lease runs at least
its full length at the voter. `Change` names what made a register change."""

from __future__ import annotations

from enum import Enum

from colonynode.consensus import register as rg
from colonynode.consensus.register import Register, Timing

__all__ = ["Change", "assert_epoch", "assert_full_lease", "assert_terminal"]


class Change(Enum):
    """What made a durable register change (the invariants name it)."""

    STEP = "a request's transition"
    MERGE = "a merge of another voter's register"  # repair (Merge) and handover pages
    SETTLE = "a handover's settling of a contested result"
    SPLIT = "the settling of a split (split.py)"


def assert_terminal(old: Register, new: Register, change: Change, planted_bug: str = "") -> None:
    """Closed is terminal: a closed register keeps its result (register.py), so each
    voter changes a process's result at most once. The one exception is a handover's
    settling of a contested process (handover.py): the result a majority of the
    previous set holds replaces this voter's, and it is closed too."""
    if not old.closed:
        return
    if change in (Change.SETTLE, Change.SPLIT):
        assert new.closed, (
            f"closed is terminal: {change.value} reopened {old.pid.hex()} ({old.state.name}"
            f" -> {new.state.name})"
        )
        return
    if change is Change.STEP and planted_bug == "abort_closed":
        return  # the planted bug: the simulator's checkers must catch it, not this
    assert rg.commit_key(rg.view(new)) == rg.commit_key(rg.view(old)), (
        f"closed is terminal: {change.value} replaced the result of {old.pid.hex()}"
        f" ({old.state.name} at epoch {old.epoch} -> {new.state.name} at epoch {new.epoch})"
    )


def assert_epoch(old: Register, new: Register, change: Change, planted_bug: str = "") -> None:
    """Epochs never decrease: an open register's epoch is the highest this voter
    granted (or merged), the fence every older holder is refused by. A closed result
    merged from another voter keeps the epoch it closed at (its commit key, for a
    holder's close), which may be below this voter's: a closed register grants
    nothing, so the fence has no more use there."""
    if change is Change.STEP and planted_bug == "ignore_epochs":
        return  # the planted bug: the simulator's checkers must catch it, not this
    assert new.epoch >= old.epoch or (change is not Change.STEP and new.closed), (
        f"epochs never decrease: {change.value} took {old.pid.hex()} from epoch"
        f" {old.epoch} to {new.epoch} ({old.state.name} -> {new.state.name})"
    )


def assert_full_lease(timing: Timing, reg: Register, now_s: float, lease_s: float,
                  what: str) -> None:  # fmt: skip
    """A lease this voter grants, renews or merges runs until at least
    now + lease·(1+drift) + margin (register.Timing; never less than now + lease_s):
    so the claimer's deadline comes first in real time (docs/consensus.md, "Why no
    two valid leases overlap")."""
    floor_s = timing.voter_expiry_s(now_s, lease_s)
    assert reg.expiry_s >= floor_s, (
        f"a voter's lease runs at least now + lease·(1+drift) + margin: {what} of"
        f" {reg.pid.hex()} at epoch {reg.epoch} expires at {reg.expiry_s!r} < {floor_s!r}"
        f" (now {now_s!r}, lease {lease_s!r} s)"
    )
