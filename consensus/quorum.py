"""The one vote tally (etcd-io/raft `quorum/majority.go`'s `VoteResult`).

Every decision of the claimer counts its voters' verdicts here: a claim, a renew, a
submit, a close, an expire, a cancel and a read. `tally` asserts that every verdict
counted comes from a voter of the set it is counted for: a verdict from anyone else
(an old voter set, a node that is no voter) can never decide anything.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from colonynode.core.ids import NodeId

__all__ = ["Tally", "VoteResult", "majority", "tally"]

V = TypeVar("V")


class VoteResult(enum.Enum):
    PENDING = "pending"  # neither side can be sure yet
    WON = "won"  # a majority said yes
    LOST = "lost"  # so many said no that a majority of yes is impossible


@dataclass(frozen=True, slots=True)
class Tally:
    result: VoteResult
    yes: int
    no: int
    need: int  # a majority of the voter set

    @property
    def answered(self) -> int:
        return self.yes + self.no


def majority(voters: Sequence[NodeId]) -> int:
    return len(voters) // 2 + 1


def tally(
    voters: Sequence[NodeId], verdicts: Mapping[NodeId, V], yes: Callable[[V], bool]
) -> Tally:
    """Count `verdicts` (voter -> verdict) for the voter set `voters`."""
    assert all(v in voters for v in verdicts), "a verdict from a node outside the voter set"
    need = majority(voters)
    ayes = sum(1 for v in verdicts.values() if yes(v))
    nays = len(verdicts) - ayes
    if ayes >= need:
        result = VoteResult.WON
    elif nays > len(voters) - need:
        result = VoteResult.LOST
    else:
        result = VoteResult.PENDING
    return Tally(result, ayes, nays, need)
