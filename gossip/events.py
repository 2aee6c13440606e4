"""What the gossip core tells the application (`Effects.events`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from colonynode.core.envelope import Envelope
from colonynode.core.ids import NodeId

__all__ = ["Accepted"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A record this node holds for the first time (its signature and author checked).

    Emitted once per record per node, including the node's own records (`local`), and
    never again after a restart (the store remembers). Not ordered by sequence: a record
    that fills a gap may come after later records of the same author.
    """

    author: NodeId
    seq: int
    kind: str
    body: Any
    envelope: Envelope
    local: bool = False
