"""`colonynode`, run as a member that forges closing records (#18's real-daemon test).

    python -m tests.integration.forging_member join ADDR --invite TOKEN --data-dir D ...

The same CLI and daemon as `colonynode`, with one addition to its NodeCore: every
FORGE_EVERY_S, for each process its view holds closed, it publishes (signed with its own
key, as any record of a member is, over the real gossip links) closing items that turn
the result around: SUCCESS announced FAILED, anything else announced SUCCESS with an
output it made up. Each lie goes out four ways, one record each:

- ``self``: certified by its own signature (it is no voter): held by the others, since a
  newer roster could name it a voter, and never taken;
- ``bare``: with no certificate: refused;
- ``impostor``: "signed" by the voters, with its own key: refused (forged signatures);
- ``stolen``: with the voters' real certificate of the true result, taken from the
  closing records it received: refused (the signatures are of another result).

And each process its view holds waiting it announces RUNNING under a lease of an hour it
was never granted (which, taken, would keep every other node from claiming it), self-
certified (``running-self``) and bare (``running-bare``): refused.

It counts the items it published in its status (`forged`, by kind). Nothing here is used by
the product: it exists so a test can show that real daemons refuse such records.
"""

from __future__ import annotations

from typing import Any

from colonynode.cli.main import main
from colonynode.consensus.certs import statement
from colonynode.consensus.messages import RegisterView
from colonynode.core.process import State
from colonynode.node.core.certs import HeldCloses
from colonynode.node.core.nodecore import NodeCore
from colonynode.node.core.processes import CLOSED_KIND, RUNNING_KIND

FORGE_EVERY_S = 1.0
ITEMS_MAX = 16  # closed processes lied about per record
KINDS = ("self", "bare", "impostor", "stolen", "running-self", "running-bare")

genuine: dict[bytes, list[list[bytes]]] = {}  # pid -> a real certificate it received
truth: dict[bytes, str] = {}  # pid -> the state its view held before its own lies
forged = dict.fromkeys(KINDS, 0)  # items published, by kind


def _lie(core: NodeCore, entry: dict[str, Any]) -> tuple[bytes, dict[str, Any], RegisterView]:
    pid = bytes.fromhex(entry["processid"])
    if truth.setdefault(pid, entry["state"]) == "SUCCESS":
        item: dict[str, Any] = {"processid": pid.hex(), "state": "FAILED", "output": []}
        return pid, item, RegisterView(pid, State.FAILED, 0, None, 0, None)
    item = {"processid": pid.hex(), "state": "SUCCESS", "output": ["forged"], "epoch": 1,
            "holder": bytes(core.node_id)}  # fmt: skip
    return pid, item, RegisterView(pid, State.SUCCESS, 1, core.node_id, 0, ["forged"])


def _forge(core: NodeCore, now_s: float) -> None:
    core.at(now_s + FORGE_EVERY_S, lambda t: _forge(core, t))
    roster = core.membership.roster
    voters = roster.voter_sets()[0] if roster is not None else ()
    closed = core.book.list(None, ITEMS_MAX, match=lambda e: e["state"].name in
                            ("SUCCESS", "FAILED", "CANCELLED"))  # fmt: skip
    waiting = core.book.list(None, ITEMS_MAX, match=lambda e: not e["state"].closed)
    for kind in ("running-self", "running-bare"):
        lies = []
        for entry in waiting:
            pid = bytes.fromhex(entry["processid"])
            lie: dict[str, Any] = {"processid": pid.hex(), "epoch": 99, "executor": "mallory",
                                   "lease_s": 3600.0}  # fmt: skip
            if kind == "running-self":
                grant = RegisterView(pid, State.RUNNING, 99, core.node_id, 0)
                lie["cert"] = [[bytes(core.node_id), core.identity.sign(statement(pid, grant))]]
            lies.append(lie)
        if lies:
            core.publish(RUNNING_KIND, {"processes": lies})
            forged[kind] += len(lies)
    for kind in KINDS[:4]:
        items = []
        for entry in closed:
            pid, item, view = _lie(core, entry)
            signed = core.identity.sign(statement(pid, view))
            if kind == "self":
                item["cert"] = [[bytes(core.node_id), signed]]
            elif kind == "impostor":
                item["cert"] = [[bytes(v), signed] for v in voters]
            elif kind == "stolen":
                if pid not in genuine:
                    continue
                item["cert"] = genuine[pid]
            items.append(item)
        if items:
            core.publish(CLOSED_KIND, {"processes": items})
            forged[kind] += len(items)


def _install() -> None:
    on_tick, keep, status = NodeCore.on_tick, HeldCloses.keep, NodeCore.status

    def forging_on_tick(self: NodeCore, now_s: float) -> None:
        first = not self._started
        on_tick(self, now_s)
        if first:
            self.at(now_s + FORGE_EVERY_S, lambda t: _forge(self, t))

    def keeping(self: HeldCloses, author: Any, body: Any, *args: Any) -> Any:
        for item in body.get("processes", []) if isinstance(body, dict) else []:
            if isinstance(item, dict) and item.get("cert"):
                genuine.setdefault(bytes.fromhex(str(item["processid"])), item["cert"])
        return keep(self, author, body, *args)

    def forging_status(self: NodeCore) -> dict[str, Any]:
        return {**status(self), "forged": dict(forged)}

    NodeCore.on_tick = forging_on_tick  # type: ignore[method-assign]
    NodeCore.status = forging_status  # type: ignore[method-assign]
    HeldCloses.keep = keeping  # type: ignore[method-assign]


if __name__ == "__main__":
    _install()
    main()
