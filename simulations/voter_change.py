"""The claims scenario's pinned voter-set change (`--param voter_change=grow|shrink|replace`):
what the owner asks, and asking again as a person running `voters set` would."""

from __future__ import annotations

from typing import TYPE_CHECKING

from colonynode.node.core import Answer
from colonynode.node.core import requests as rq

if TYPE_CHECKING:
    from colonynode.simulations.claims_scenario import ClaimsScenario
    from colonynode.simulations.world import World

__all__ = ["change_voters"]

RETRY_S = 1.0
PATIENCE_S = 30.0  # no answer this long (`voters set` waits up to 15 s): ask again


def change_voters(sc: ClaimsScenario, world: World) -> None:
    """The owner changes the voter set (roster v -> v+1); it reaches every node by
    RosterUpdate and gossip, and the new voters take over (seal-then-serve)."""
    change = sc.param_str("voter_change")
    if change == "grow":
        new = [0, 1, 2, 3, 4]
    elif change == "shrink":
        new = [0, 1, 2]
    else:  # replace: voter 0 dies for good, node 3 takes its place
        world.nodes[0].crash()
        sc.dead.add(0)
        new = [1, 2, 3]
    sc.voter_indexes = new
    sc.commits.add_config(2, new)
    names = tuple(f"n{i}" for i in new)
    wanted = {world.ids[i] for i in new}

    def ask(w: World) -> None:
        core = w.nodes[sc.owner].core
        roster = None if core is None else core.membership.roster
        if roster is not None and set(roster.voters) == wanted:
            return  # an earlier ask got there
        if sc.ask(w, sc.owner, rq.SetVoters(names), refused):
            w.schedule(w.now_s + PATIENCE_S, ask)  # no answer: its node crashed, say
        else:
            w.schedule(w.now_s + RETRY_S, ask)

    def refused(answer: Answer) -> None:
        if answer.error is not None:
            world.schedule(world.now_s + RETRY_S, ask)

    ask(world)
