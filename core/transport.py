"""The Transport protocol a driver sends through (DESIGN.md §2, §4).

Sends never block: a transport queues a batch for a peer in a bounded queue and says
whether it took it. Received batches go to the handler the driver registered, one call
per frame, with the authenticated sender.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from colonynode.core.ids import NodeId

__all__ = ["Receiver", "Transport"]

# handler(sender, channel, msgs): one frame's batch of messages on a channel
# (a channel is a protocol name such as "gossip", "dht", "lease").
Receiver = Callable[[NodeId, str, Sequence[Any]], None]


class Transport(Protocol):
    @property
    def local_id(self) -> NodeId: ...

    def set_receiver(self, channel: str, receiver: Receiver) -> None:
        """Deliver every batch that arrives on `channel` to `receiver`."""
        ...

    def send(self, dest: NodeId, channel: str, msgs: Sequence[Any]) -> bool:
        """Queue one batch for `dest`. False when it was dropped (queue full, no route)."""
        ...

    def peers(self) -> Collection[NodeId]:
        """The peers this transport can currently reach."""
        ...
