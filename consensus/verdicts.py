"""What a request's verdicts say: the most common refusal, whether the process waits,
the register a committed close leaves, and what a majority read can tell (pure
functions over the verdicts of one request; every count goes through quorum.tally)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from colonynode.consensus.messages import Reason, RegisterView, Verdict
from colonynode.consensus.quorum import VoteResult, tally
from colonynode.consensus.register import commit_key
from colonynode.core.ids import NodeId
from colonynode.core.process import State

__all__ = ["committed_view", "most_common_refusal", "read_outcome", "shows_waiting"]


def most_common_refusal(verdicts: Iterable[Verdict]) -> Reason:
    counts: dict[Reason, int] = {}
    for v in verdicts:
        if not v.ok:
            counts[v.reason] = counts.get(v.reason, 0) + 1
    return max(sorted(counts), key=lambda r: counts[r])


def shows_waiting(verdicts: dict[NodeId, Verdict]) -> bool:
    """Do the refusals show the process waiting (no lease held, not closed)?"""
    views = [v.view for v in verdicts.values() if not v.ok]
    return bool(views) and all(v is not None and v.state is State.WAITING for v in views)


def committed_view(verdicts: dict[NodeId, Verdict]) -> RegisterView | None:
    """The register the accepting voters hold after a committed close, expire or cancel
    (the one that saw the most retries, when they differ)."""
    views = [v.view for v in verdicts.values() if v.ok and v.view is not None]
    return max(views, key=lambda v: v.retries) if views else None


def read_outcome(
    voters: tuple[NodeId, ...], verdicts: dict[NodeId, Verdict]
) -> tuple[RegisterView | None, bool]:
    """(the closed register a majority reports, if any; whether the read is settled).

    Settled: a result is committed among the verdicts so far, or no closed result could
    reach a majority even if every voter yet to answer had it. Each closed result
    (`commit_key`) is tallied like any vote."""
    keys: list[tuple[Any, RegisterView]] = []
    for verdict in verdicts.values():
        view = verdict.view
        key = None if view is None else commit_key(view)
        if key is not None and all(k != key for k, _ in keys):
            keys.append((key, view))  # type: ignore[arg-type]
    settled = True
    for key, view in keys:

        def same(v: Verdict, key: Any = key) -> bool:
            return v.view is not None and commit_key(v.view) == key

        result = tally(voters, verdicts, same).result
        if result is VoteResult.WON:
            return view, True
        if result is VoteResult.PENDING:
            settled = False
    return None, settled
