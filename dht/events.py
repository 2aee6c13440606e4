"""Events the DHT core publishes (`Effects.events`): results of application calls, and
requests to the driver (`Dial`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from colonynode.core.ids import NodeId
from colonynode.dht.messages import PeerInfo

__all__ = [
    "Dial",
    "FindNodeResult",
    "GetResult",
    "Joined",
    "ProvideResult",
    "ProvidersResult",
    "PutResult",
]


@dataclass(frozen=True, slots=True)
class FindNodeResult:
    req_id: int
    target: bytes
    peers: tuple[PeerInfo, ...]  # the k closest that answered, closest first
    hops: int | None  # query rounds until the closest was found (None: nobody answered)
    queries: int
    failures: int


@dataclass(frozen=True, slots=True)
class GetResult:
    req_id: int
    key: str
    value: Any  # the namespace's view: PeerRecord, FileRecord (merged), or plain data
    seq: int | None  # highest sequence number among the best records (None: not found)
    answers: int  # peers that answered
    quorum: bool  # at least get_quorum peers answered
    hops: int | None
    repaired: int  # peers sent the best record because they held an older one or none
    expired: bool = False  # the lookup ended at its deadline, not having asked the k closest


@dataclass(frozen=True, slots=True)
class PutResult:
    req_id: int
    key: str
    seq: int  # the sequence number written (-1: nothing was written)
    stored: int  # peers that acknowledged the store
    ok: bool  # stored >= put_quorum
    reason: str = ""  # why not ok


@dataclass(frozen=True, slots=True)
class ProvideResult:
    req_id: int
    key: bytes
    stored: int
    ok: bool


@dataclass(frozen=True, slots=True)
class ProvidersResult:
    req_id: int
    key: bytes
    providers: tuple[PeerInfo, ...]
    hops: int | None


@dataclass(frozen=True, slots=True)
class Joined:
    """The self-lookup after a join (or a restart) reached the network."""

    contacts: int  # contacts in the routing table
    hops: int | None


@dataclass(frozen=True, slots=True)
class Dial:
    """The core is about to send to a peer the driver is not connected to."""

    node_id: NodeId
    addrs: tuple[str, ...]  # what the core knows (possibly nothing: see /peer/ records)
