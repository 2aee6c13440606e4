"""The Colonies-compatible API (docs/colonies-api.md): ColonyOS's RPC over HTTP and its
`/pubsub` websocket, so pycolonies programs run unmodified against any node."""

from colonynode.node.daemon.colonies.server import ColoniesGateway

__all__ = ["ColoniesGateway"]
