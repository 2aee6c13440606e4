"""Messages of the membership protocols (roster and join). Tags are append-only: wire format."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from colonynode.core.codec import MessageCodec
from colonynode.core.envelope import Envelope
from colonynode.core.ids import NodeId

__all__ = [
    "JOIN_CODEC",
    "ROSTER_CODEC",
    "Hello",
    "JoinAccepted",
    "JoinForward",
    "JoinRequest",
    "KeysChange",
    "KeysChanged",
    "PeerAddrs",
    "RosterUpdate",
]

ADDRS_MAX = 16
SEEN_SEQ_LIMIT = 1 << 62  # far below the 8 bytes a record key gives a sequence


@dataclass(frozen=True, slots=True)
class PeerAddrs:
    node_id: NodeId
    addrs: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.addrs) > ADDRS_MAX or any(len(a) > 256 for a in self.addrs):
            raise ValueError("too many or too long addresses")


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a roster stream: my roster, my addresses, members I can reach."""

    roster: Envelope
    addrs: tuple[str, ...]
    peers: tuple[PeerAddrs, ...]


@dataclass(frozen=True, slots=True)
class RosterUpdate:
    roster: Envelope


@dataclass(frozen=True, slots=True)
class JoinRequest:
    invite: str
    name: str
    addrs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JoinForward:
    """A member relays a joiner's request to the owner's node (join through any member)."""

    joiner: NodeId
    request: JoinRequest


@dataclass(frozen=True, slots=True)
class JoinAccepted:
    roster: Envelope
    peers: tuple[PeerAddrs, ...]
    # the joiner's highest gossip sequence number the admitting node heard of (a node
    # that lost its store and kept its key must not number records again from 1)
    seen_seq: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.seen_seq < SEEN_SEQ_LIMIT:
            raise ValueError(f"seen_seq {self.seen_seq} out of range")


@dataclass(frozen=True, slots=True)
class KeysChange:
    """A member relays a change to the roster's Colonies keys to the owner's node
    (docs/colonies-api.md): the ColonyOS request that asks for it as signed (`payload`,
    `signature`: the owner checks the colony key's signature itself), or, with neither,
    the member's own user key (`key_id`, `name`)."""

    payload: str
    signature: str
    key_id: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class KeysChanged:
    """The owner's answer: the roster as it stands after the change."""

    roster: Envelope


class RosterTag(enum.IntEnum):
    """append-only: values are wire format"""

    HELLO = 1
    ROSTER_UPDATE = 2


class JoinTag(enum.IntEnum):
    """append-only: values are wire format"""

    JOIN_REQUEST = 1
    JOIN_ACCEPTED = 2
    JOIN_FORWARD = 3
    KEYS_CHANGE = 4
    KEYS_CHANGED = 5


ROSTER_CODEC = MessageCodec(
    "roster", {RosterTag.HELLO: Hello, RosterTag.ROSTER_UPDATE: RosterUpdate}
)
JOIN_CODEC = MessageCodec(
    "join",
    {
        JoinTag.JOIN_REQUEST: JoinRequest,
        JoinTag.JOIN_ACCEPTED: JoinAccepted,
        JoinTag.JOIN_FORWARD: JoinForward,
        JoinTag.KEYS_CHANGE: KeysChange,
        JoinTag.KEYS_CHANGED: KeysChanged,
    },
)
