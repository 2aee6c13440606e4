"""How a voter handles each message type: the shape of one row of its routing table
(voter.py's `_ROUTES`, dispatch by table as in h11's `_state.py`), and the verdicts of
a request that names a frozen process (`with_frozen`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from colonynode.consensus.messages import Reason, Tag, Verdict
from colonynode.consensus.register import Register
from colonynode.core.ids import NodeId

if TYPE_CHECKING:
    from colonynode.consensus.voter import VoterCore

__all__ = ["CLAIM_ITEMS_MAX", "Route", "batch", "one", "one_unfenced", "submitted"]

CLAIM_ITEMS_MAX = 64  # processes per Claim or Renew request; the rest are ignored

# (voter, now_s, sender, msg) -> None: a message handled whole (scan, repair, handover)
Handler = Callable[["VoterCore", float, NodeId, Any], None]
# (voter, register, now_s, sender, msg, epoch) -> (register', reason): see register.py
Transition = Callable[["VoterCore", Register, float, NodeId, Any, int], tuple[Register, Reason]]
# (voter, now_s, sender, msg, pid, epoch) -> verdict: an item decided otherwise
Decide = Callable[["VoterCore", float, NodeId, Any, bytes, int], Verdict]


def one(msg: Any) -> list[tuple[bytes, int]]:
    return [(msg.pid, msg.epoch)]


def one_unfenced(msg: Any) -> list[tuple[bytes, int]]:
    return [(msg.pid, 0)]


def batch(msg: Any) -> list[tuple[bytes, int]]:
    return [(item.pid, item.epoch) for item in msg.items[:CLAIM_ITEMS_MAX]]


def submitted(msg: Any) -> list[tuple[bytes, int]]:
    return [(msg.terms.pid, 0)]


@dataclass(frozen=True, slots=True)
class Route:
    """How a voter handles one message type (one row of voter.py's `_ROUTES`).

    A message is either handled whole (`handle`), or decided: one `Verdict` per
    (pid, epoch) of `items`, each by `transition` (register.py, through `_apply`) or by
    `decide`, all in one `Reply` under `tag`. A `versioned` request that names another
    voter-set version than the one served is refused WRONG_VERSION item by item; with a
    `role`, a sender without it is refused NOT_ALLOWED item by item."""

    tag: Tag  # the type's tag in CODEC, and a decided request's Reply.request
    handle: Handler | None = None
    items: Callable[[Any], list[tuple[bytes, int]]] = one
    versioned: bool = True
    nonce: bool = False  # the Reply echoes msg.nonce
    role: str = ""
    transition: Transition | None = None
    decide: Decide | None = None
    grants: bool = False  # its verdicts sign the leases they grant (certs.py: a claim's)


def with_frozen(voter: VoterCore, now_s: float, sender: NodeId, msg: Any, route: Route,
                items: list[tuple[bytes, int]]) -> tuple[Verdict, ...]:  # fmt: skip
    """The verdicts of a request that names a frozen process: FROZEN for it (no
    claim, close, cancel or read of it counts until it is settled), the usual for
    the others."""
    out = []
    for pid, epoch in items:
        if pid in voter.frozen:
            out.append(voter._verdict(pid, epoch, Reason.FROZEN, None))
        elif route.role and not voter.has_role(sender, route.role):
            out.append(voter._verdict(pid, epoch, Reason.NOT_ALLOWED, None))
        elif route.transition is not None:
            out.append(voter._apply(now_s, sender, msg, pid, epoch, route))
        else:
            assert route.decide is not None
            out.append(route.decide(voter, now_s, sender, msg, pid, epoch))
    return tuple(out)
