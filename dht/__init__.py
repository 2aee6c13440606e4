"""colonynode.dht: the sans-IO Kademlia core (DESIGN.md §8, docs/dht.md).

`DhtCore` is stepped by a driver (`on_message`, `on_tick`, `take_effects`); its messages
are in `messages` (`CODEC`), its results and driver requests in `events`, its parameters
in `DhtConfig`. Records: `/peer/<id>` address records and ColonyFS `/fs/` file records.
"""

from colonynode.dht.config import DhtConfig
from colonynode.dht.core import DhtCore
from colonynode.dht.events import (
    Dial,
    FindNodeResult,
    GetResult,
    Joined,
    ProvideResult,
    ProvidersResult,
    PutResult,
)
from colonynode.dht.fs import FileRecord, FileRevision, fs_key, merge
from colonynode.dht.messages import CODEC, PeerInfo
from colonynode.dht.records import PeerRecord, peer_key
from colonynode.dht.routing import RoutingTable, key_of

__all__ = [
    "CODEC",
    "DhtConfig",
    "DhtCore",
    "Dial",
    "FileRecord",
    "FileRevision",
    "FindNodeResult",
    "GetResult",
    "Joined",
    "PeerInfo",
    "PeerRecord",
    "ProvideResult",
    "ProvidersResult",
    "PutResult",
    "RoutingTable",
    "fs_key",
    "key_of",
    "merge",
    "peer_key",
]
