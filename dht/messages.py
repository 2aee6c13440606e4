"""The DHT's wire messages (DESIGN.md §4, §8): frozen dataclasses under append-only tags.

Every request carries a request id `rid` that its answer echoes. Records travel as signed
envelopes (`Envelope`, domain ``dht/record``) whose exact signed bytes are kept; provider
announcements are not signed, because the provider is the authenticated sender.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from colonynode.core.codec import MessageCodec
from colonynode.core.envelope import Envelope
from colonynode.core.ids import NodeId

__all__ = [
    "CODEC",
    "AddProvider",
    "FindNode",
    "GetProviders",
    "GetValue",
    "MsgType",
    "Nodes",
    "PeerInfo",
    "Providers",
    "PutAck",
    "PutValue",
    "Value",
]


class MsgType(IntEnum):
    """Message tags. Append-only: values are wire format."""

    FIND_NODE = 1
    NODES = 2
    GET_VALUE = 3
    VALUE = 4
    PUT_VALUE = 5
    PUT_ACK = 6
    ADD_PROVIDER = 7
    GET_PROVIDERS = 8
    PROVIDERS = 9


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A peer and the multiaddrs it may be dialled at (possibly none known)."""

    node_id: NodeId
    addrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FindNode:
    rid: int
    target: bytes  # 32 bytes of key space: sha256 of a node id or of a record key


@dataclass(frozen=True, slots=True)
class Nodes:
    rid: int
    peers: tuple[PeerInfo, ...]  # at most k, closest to the target first


@dataclass(frozen=True, slots=True)
class GetValue:
    rid: int
    key: str


@dataclass(frozen=True, slots=True)
class Value:
    rid: int
    records: tuple[Envelope, ...]  # what the peer stores under the key (at most heads_max)
    peers: tuple[PeerInfo, ...]  # closer peers, as in Nodes


@dataclass(frozen=True, slots=True)
class PutValue:
    rid: int
    records: tuple[Envelope, ...]  # for one key; at most heads_max


@dataclass(frozen=True, slots=True)
class PutAck:
    rid: int
    stored: bool
    reason: str = ""  # why not: "invalid", "too big", "rate", "full", "stale"


@dataclass(frozen=True, slots=True)
class AddProvider:
    rid: int
    key: bytes  # a content id (a chunk's sha256)
    addrs: tuple[str, ...]  # where the sender, the provider, can be dialled


@dataclass(frozen=True, slots=True)
class GetProviders:
    rid: int
    key: bytes


@dataclass(frozen=True, slots=True)
class Providers:
    rid: int
    providers: tuple[PeerInfo, ...]
    peers: tuple[PeerInfo, ...]  # closer peers, as in Nodes


CODEC = MessageCodec(
    "dht",
    {
        MsgType.FIND_NODE: FindNode,
        MsgType.NODES: Nodes,
        MsgType.GET_VALUE: GetValue,
        MsgType.VALUE: Value,
        MsgType.PUT_VALUE: PutValue,
        MsgType.PUT_ACK: PutAck,
        MsgType.ADD_PROVIDER: AddProvider,
        MsgType.GET_PROVIDERS: GetProviders,
        MsgType.PROVIDERS: Providers,
    },
)
