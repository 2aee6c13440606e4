"""Repair: which voter should hand its register to which others (docs/consensus.md).

Pure functions over the verdicts one request collected. The claimer turns what they
return into a `Push(pid, to)` to the source voter, which sends its register to the
others as a `Merge` (voter.py); register.merge decides what a voter takes. Pushing is
always safe: a closed register replaces only an open one, and a missing process is
adopted; an open register never replaces another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from colonynode.consensus.messages import Push, Reason, Verdict
from colonynode.consensus.register import CLOSED_STATES, commit_key
from colonynode.core.ids import NodeId

__all__ = [
    "adopt_missing",
    "after_commit",
    "after_failed_claim",
    "is_closed",
    "is_split",
    "known",
]


def is_closed(verdict: Verdict | None) -> bool:
    return verdict is not None and verdict.view is not None and verdict.view.state in CLOSED_STATES


def known(verdict: Verdict | None) -> bool:
    return verdict is not None and verdict.view is not None


def adopt_missing(
    pid: bytes, voters: Sequence[NodeId], verdicts: Mapping[NodeId, Verdict]
) -> tuple[NodeId, Push] | None:
    """A close, cancel or expire that some voters refuse UNKNOWN_PID while another holds
    the process (they missed the submit): the source and the push that gives it to them
    (a closed copy first); their refusals must not count (`push.to`: ask them again). None when no
    voter has the process: then the refusals count. Without it two closed results (a
    holder's close and a cancel), one voter each, with the third lacking the process,
    would never reach a majority."""
    missing = tuple(v for v, verdict in verdicts.items() if verdict.reason is Reason.UNKNOWN_PID)
    if not missing:
        return None
    holding = [v for v in voters if known(verdicts.get(v))]
    if not holding:
        return None
    closed = [v for v in holding if is_closed(verdicts.get(v))]
    source = (closed or holding)[0]
    return source, Push(pid, missing)


def after_failed_claim(
    pid: bytes, voters: Sequence[NodeId], verdicts: Mapping[NodeId, Verdict]
) -> tuple[NodeId, Push] | None:
    """The voters disagree in a way no claim can fix (one lacks the process, or one has
    it closed): the most advanced one hands its register to the others."""
    closed = [v for v in voters if is_closed(verdicts.get(v))]
    holding = [v for v in voters if known(verdicts.get(v))]
    missing = [v for v in voters if v in verdicts and verdicts[v].view is None]
    source = closed[0] if closed else (holding[0] if missing and holding else None)
    if source is None:
        return behind_a_release(pid, voters, verdicts)
    to = tuple(v for v in voters if v != source and not is_closed(verdicts.get(v)))
    return (source, Push(pid, to)) if to else None


def behind_a_release(
    pid: bytes, voters: Sequence[NodeId], verdicts: Mapping[NodeId, Verdict]
) -> tuple[NodeId, Push] | None:
    """Some voters refused the claim RETRIES_SPENT (a lease of theirs ran out) while
    another granted it at a higher epoch (so it held the process WAITING: a Release they
    missed). The voter of the highest epoch hands its register to them; it gives the
    Release of this claim first, so they take it WAITING (register.merge)."""
    epochs = {v: d.view.epoch for v, d in verdicts.items() if d.view is not None}
    spent = [v for v in voters if v in epochs and verdicts[v].reason is Reason.RETRIES_SPENT]
    granted = [v for v in voters if v in epochs and verdicts[v].ok]
    if not spent or not granted:
        return None
    source = max(granted, key=epochs.__getitem__)
    to = tuple(v for v in spent if epochs[v] < epochs[source])
    return (source, Push(pid, to)) if to else None


def after_commit(
    pid: bytes, verdicts: Mapping[NodeId, Verdict]
) -> tuple[NodeId | None, Push | None]:
    """A close, expire or cancel committed: (a voter that accepted it, the push that
    brings the result to the voters that refused it and are still open). A straggler
    left open keeps the process open for good, and a majority read that meets it
    cannot see the majority."""
    source = next((v for v, verdict in verdicts.items() if verdict.ok), None)
    if source is None:
        return None, None
    behind = tuple(
        v for v, verdict in verdicts.items() if not verdict.ok and not is_closed(verdict)
    )
    return source, (Push(pid, behind) if behind else None)


def is_split(voters: Sequence[NodeId], verdicts: Mapping[NodeId, Verdict]) -> bool:
    """Every voter answered with the process closed, and no result has a majority."""
    if any(not is_closed(verdicts.get(v)) for v in voters):
        return False
    views = [verdicts[v].view for v in voters]
    keys = [commit_key(view) for view in views if view is not None]
    need = len(voters) // 2 + 1
    return not any(keys.count(k) >= need for k in keys)
