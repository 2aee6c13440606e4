"""colonynode.node.core: NodeCore, the node's decisions, sans-IO (DESIGN.md §10).

The simulator imports this package and nothing else of node/; like core/, gossip/,
dht/ and consensus/ it never imports trio, libp2p, lmdb or sockets, nor reads the wall
clock (tests/test_layering.py). The Trio daemon that runs it is node/daemon/.
"""

from colonynode.node.core import requests
from colonynode.node.core.errors import (
    JoinFailed,
    NotFound,
    NotHolder,
    NotOwner,
    PermissionDenied,
    UnknownExecutor,
)
from colonynode.node.core.nodecore import CHANNELS, NodeConfig, NodeCore, channel_of
from colonynode.node.core.requests import Answer, Dial, Disconnect, RunStopped, Silenced

__all__ = [
    "CHANNELS",
    "Answer",
    "Dial",
    "Disconnect",
    "JoinFailed",
    "NodeConfig",
    "NodeCore",
    "NotFound",
    "NotHolder",
    "NotOwner",
    "PermissionDenied",
    "RunStopped",
    "Silenced",
    "UnknownExecutor",
    "channel_of",
    "requests",
]
