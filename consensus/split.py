"""Settling a split: every voter holds the process closed, with results no majority shares.

A close and a cancel (or a close and an expiry, or two closes under different epochs)
can race so that each voter holds a different closed result: none is committed, and
since a closed register is terminal nothing could ever commit (the liveness gap
docs/consensus.md described). A claimer whose majority read meets such a split, with
every voter answering, asks each voter to send its register to all the others
(`Push`). A voter that then holds the closed results of *every* voter of its set,
each from that voter itself (`Merge`), and sees no result held by a majority, replaces
its own with the greatest of them (`settle_order`, a function of the result alone).

Why it is safe. Results change only by this rule, and only to the greatest result of a
complete set with no majority. (1) A result K held by a majority is never left by its
holders: every complete set they see shows K at a majority (a K holder never changed,
so a stale report of it is K too), so they never settle. (2) The greatest result X of
the first complete split set is held by a voter that never leaves it (X is the greatest,
and a voter settles only to the greatest); every later complete set contains X and no
greater result (no new result can appear: all registers are closed), so every voter
that settles settles to X. So at most one result ever reaches a majority. A set with a
dead voter is never complete: such a split stays (a liveness gap, stated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from colonynode.consensus import register as rg
from colonynode.consensus.register import Register
from colonynode.core.codec import encode
from colonynode.core.ids import NodeId

__all__ = ["SPLITS_MAX", "SplitResults", "settle_order"]

SPLITS_MAX = 1024  # processes whose voters' results are being collected


def settle_order(reg: Register) -> tuple[Any, ...]:
    """A total order of closed results, a function of `commit_key` alone: a holder's
    close beats an abort or an expiry (its work is done), the later epoch beats the
    earlier, then state, holder and output decide."""
    if reg.holder is None:
        return (0, 0, int(reg.state), b"", b"")
    return (1, reg.epoch, int(reg.state), bytes(reg.holder), encode(reg.output))


@dataclass
class SplitResults:
    """What one voter has heard of the closed results the voters hold, per process."""

    seen: dict[bytes, dict[NodeId, Register]] = field(default_factory=dict)

    def note(
        self, voter: NodeId, theirs: Register, me: NodeId, mine: Register, voters: Sequence[NodeId]
    ) -> Register | None:
        """Voter `voter` holds `theirs` while this voter holds `mine` (both closed): the
        result to settle to, once known of every voter and split, or None."""
        assert theirs.closed and mine.closed, "a split is between closed results"
        pid = mine.pid
        if voter not in voters or me not in voters:
            return None
        seen = self.seen.get(pid)
        if seen is None:
            if len(self.seen) >= SPLITS_MAX:
                del self.seen[next(iter(self.seen))]
            seen = self.seen[pid] = {}
        seen[voter] = theirs
        seen[me] = mine
        if any(v not in seen for v in voters):
            return None
        del self.seen[pid]
        reports = [seen[v] for v in voters]
        keys = [rg.commit_key(rg.view(r)) for r in reports]
        need = len(voters) // 2 + 1
        if any(keys.count(k) >= need for k in keys):
            return None  # a result is (or is being) committed: nothing to settle
        return max(reports, key=settle_order)
