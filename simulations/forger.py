"""A member that forges closing records (claims scenario, param `forgers` > 0; #18).

The last node, a member like any other, runs the same NodeCore, but every FORGE_EVERY_S
it also publishes, signed with its own key as any record is, closing records that turn
results around: a process the voters closed SUCCESS announced FAILED, any other
announced SUCCESS with an output it made up, each with a certificate of its own
signature only; and RUNNING records of the processes that wait, under a lease of an
hour, so that no other node would claim them. The claims scenario's liveness checker
then sees any view that took one: it shows a state the voters did not commit, or
processes that never run. With quorum certificates every other node refuses them, or
holds them until a roster makes their signers a majority (never); the planted bug
`uncertified_closes` takes them.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from colonynode.consensus.certs import statement
from colonynode.consensus.messages import RegisterView
from colonynode.core.process import State
from colonynode.node.core.processes import CLOSED_KIND, PROCESSES_MAX, RUNNING_KIND

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore
    from colonynode.simulations.world import World

__all__ = ["Forger"]

FORGE_EVERY_S = 1.0
FORGED_A_TIME = 3  # closing items a forged record holds
CLOSED = ("SUCCESS", "FAILED", "CANCELLED")


class Forger:
    def __init__(self, index: int, rng: random.Random) -> None:
        self.index = index
        self.rng = rng
        self.forged = 0
        self.running_forged = 0

    def start(self, world: World) -> None:
        world.schedule(world.now_s + FORGE_EVERY_S, self._forge)

    def _forge(self, world: World) -> None:
        if world.now_s + FORGE_EVERY_S < world.safety_s:
            world.schedule(world.now_s + FORGE_EVERY_S, self._forge)
        world.nodes[self.index].call(self._publish)

    def _publish(self, core: NodeCore, now_s: float) -> None:
        closed = core.book.list(None, PROCESSES_MAX, match=lambda e: e["state"].name in CLOSED)
        picked = self.rng.sample(closed, min(FORGED_A_TIME, len(closed)))
        items = [self._turned(core, view) for view in picked]
        if items:
            core.publish(CLOSED_KIND, {"processes": items})
            self.forged += len(items)
        waiting = core.book.list(None, FORGED_A_TIME, match=lambda e: not e["state"].closed)
        lies = [self._running(core, view) for view in waiting]
        if lies:
            core.publish(RUNNING_KIND, {"processes": lies})
            self.running_forged += len(lies)

    def _running(self, core: NodeCore, view: dict[str, Any]) -> dict[str, Any]:
        """A RUNNING item of a lease the voters never granted, self-certified."""
        pid = bytes.fromhex(view["processid"])
        epoch = 1_000 + self.running_forged
        grant = RegisterView(pid, State.RUNNING, epoch, core.node_id, 0)
        signed = core.identity.sign(statement(pid, grant))
        return {"processid": pid.hex(), "epoch": epoch, "executor": "forged",
                "lease_s": 3600.0, "cert": [[bytes(core.node_id), signed]]}  # fmt: skip

    def _turned(self, core: NodeCore, view: dict[str, Any]) -> dict[str, Any]:
        """A closing item of the result the voters did not commit, self-certified."""
        pid = bytes.fromhex(view["processid"])
        if view["state"] == "SUCCESS":
            lie = RegisterView(pid, State.FAILED, 0, None, 0, None)
            item: dict[str, Any] = {"processid": pid.hex(), "state": "FAILED", "output": []}
        else:
            lie = RegisterView(pid, State.SUCCESS, 1, core.node_id, 0, ["forged"])
            item = {"processid": pid.hex(), "state": "SUCCESS", "output": ["forged"],
                    "epoch": 1, "holder": bytes(core.node_id)}  # fmt: skip
        item["cert"] = [[bytes(core.node_id), core.identity.sign(statement(pid, lie))]]
        return item
