"""A voter's answers to handover requests (DESIGN.md §6, docs/consensus.md): the pages
of its registers a voter of the newest set takes over, and its answers about the frozen
processes of an older change (settle.py). Part of the voter: no I/O, no clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from colonynode.consensus import settle as st
from colonynode.consensus.handover import page_of
from colonynode.consensus.messages import SERIES_MAX, Handover, HandoverRequest
from colonynode.core.ids import NodeId

if TYPE_CHECKING:
    from colonynode.consensus.voter import VoterCore

__all__ = ["answer_handover_request"]


def answer_handover_request(voter: VoterCore, now_s: float, sender: NodeId,
                            msg: HandoverRequest) -> None:  # fmt: skip
    """An old voter's side of a handover: a page of its registers for a voter of the
    newest set, or its answer about an older change's frozen processes."""
    # About frozen processes of an older change (settle.py): sealed past it already
    # (`set_voters`), this voter only reads them out.
    late = msg.only if msg.only and msg.version < voter.vset.version else ()
    if not late and (msg.version != voter.vset.version or sender not in voter.vset.voters):
        # Only a voter of the newest set this voter knows (from the owner's roster)
        # may seal it: any member could otherwise seal every voter and stall the
        # colony. A new voter that asked too early asks again.
        voter.handovers_refused += 1
        return
    if msg.version > voter.sealed:
        voter.sealed = msg.version  # durable before the registers go out
        voter.save_meta()
    # A process frozen here is handed over to the voters of the change that froze it
    # (they settle it alike), not on to a newer set: its result is not this voter's
    # to give. (It names them, withheld: the new voter freezes them too, rather than
    # serve a stale copy of its own.) Nor to a later change this voter serves too:
    # its own copy is its vote in the set before the first change, no result of the
    # set the asker takes over from (voters chaos seed 271: a double commit).
    asked = st.asked_of(msg)
    copies, withheld, done = page_of(voter.registers, msg.after, st.hold(voter, asked, late=late),
                                     msg.only, st.unvoted(voter, asked))  # fmt: skip
    c = voter.compaction
    last = done and not msg.only  # (the last page of a handover brings the series')
    series = tuple(sorted(c.series.items())[: 2 * SERIES_MAX]) if last else ()
    answer = Handover(msg.version, msg.after, copies, done, withheld, c.horizon, series,
                      msg.only)  # fmt: skip
    voter.effects.sends.append((sender, answer))
