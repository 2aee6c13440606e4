"""What every part of the daemon's `Node` shares: its state and a few helpers.

`Node` (node/daemon.py) is assembled from mixins, one per concern: joining
(node/joining.py), status and roster changes for the API (node/node_api.py), and lease,
DHT and process calls for the API (node/services_api.py). This base declares the state
they read, so each module type-checks on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.ids import NodeId, node_id_from_peer_id

if TYPE_CHECKING:
    import trio

    from colonynode.core.identity import Identity
    from colonynode.gossip.core import GossipCore
    from colonynode.node.datadir import DataDir, NodeSettings
    from colonynode.node.dht_service import DhtService
    from colonynode.node.driver import CoreDriver
    from colonynode.node.leases import LeaseService
    from colonynode.node.membership import Membership
    from colonynode.node.p2p import P2PTransport
    from colonynode.node.processes import ProcessBook
    from colonynode.node.scheduler import Scheduler
    from colonynode.storage.api import Store, Write

__all__ = ["NodeBase", "nid_of", "pid_of"]


class NodeBase:
    datadir: DataDir
    identity: Identity
    settings: NodeSettings
    store: Store
    membership: Membership
    started_s: float
    api_url: str
    gossip: GossipCore | None
    leases: LeaseService | None
    dht: DhtService | None
    processes: ProcessBook
    scheduler: Scheduler | None
    _transport: P2PTransport | None
    _nursery: trio.Nursery | None
    _gossip_driver: CoreDriver | None
    _was_member: bool
    _processes_changed: trio.Event

    @property
    def transport(self) -> P2PTransport:
        assert self._transport is not None, "the node is not running"
        return self._transport

    def _persist(self, writes: list[Write]) -> None:
        if writes:
            self.store.apply(writes, sync=True)

    # Provided by Node (node/daemon.py).
    def _broadcast_roster(self, skip: NodeId | None = None) -> None:
        raise NotImplementedError

    def _gossip_roster(self) -> None:
        raise NotImplementedError

    def _roster_changed(self) -> None:
        raise NotImplementedError

    def _on_connect(self, peer: NodeId) -> None:
        raise NotImplementedError


def pid_of(value: Any) -> bytes:
    """A process id from its hex text (API input)."""
    if not isinstance(value, str) or not 2 <= len(value) <= 128:
        raise ValidationError("a process id is 1..64 bytes of hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValidationError(f"process id {value!r} is not hex") from None


def nid_of(peer_id: str) -> NodeId:
    try:
        return node_id_from_peer_id(peer_id)
    except ColonyError:
        raise ValidationError(f"{peer_id!r} is not a peer id") from None
