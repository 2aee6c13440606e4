"""Node ids and their textual forms.

A node's id is its 32-byte Ed25519 public key. Its libp2p peer id is derived from the same
key (an identity multihash of the protobuf-encoded public key, base58btc), so the Noise
handshake that authenticates a stream also authenticates the node id.
"""

from __future__ import annotations

import functools
from typing import NewType

from colonynode.core.errors import DecodeError

__all__ = [
    "NODE_ID_BYTES",
    "NodeId",
    "b58decode",
    "b58encode",
    "node_id",
    "node_id_from_peer_id",
    "peer_id_bytes",
    "peer_id_str",
    "short_id",
]

NODE_ID_BYTES = 32

NodeId = NewType("NodeId", bytes)

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}

# libp2p PublicKey protobuf: field 1 (KeyType) = 1 (Ed25519), field 2 (Data) = 32 bytes.
_ED25519_PB_PREFIX = bytes([0x08, 0x01, 0x12, 0x20])
# Identity multihash: code 0x00, length 36 (the protobuf above).
_IDENTITY_MH_PREFIX = bytes([0x00, len(_ED25519_PB_PREFIX) + NODE_ID_BYTES])
_PEER_ID_PREFIX = _IDENTITY_MH_PREFIX + _ED25519_PB_PREFIX


def node_id(raw: bytes) -> NodeId:
    """Check that `raw` is shaped like an Ed25519 public key and type it as a NodeId."""
    if len(raw) != NODE_ID_BYTES:
        raise DecodeError(f"a node id is {NODE_ID_BYTES} bytes, got {len(raw)}")
    return NodeId(bytes(raw))


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, rem = divmod(n, 58)
        out.append(_B58_ALPHABET[rem])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        try:
            n = n * 58 + _B58_INDEX[c]
        except KeyError:
            raise DecodeError(f"not base58: {c!r}") from None
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def peer_id_bytes(nid: NodeId) -> bytes:
    """The libp2p peer id (identity multihash) of a node id."""
    return _PEER_ID_PREFIX + nid


@functools.lru_cache(maxsize=4096)  # a colony's members, named in every view of a process
def peer_id_str(nid: NodeId) -> str:
    """The libp2p peer id text, `12D3KooW...`."""
    return b58encode(peer_id_bytes(nid))


def node_id_from_peer_id(text: str) -> NodeId:
    """The node id inside a libp2p Ed25519 peer id; other key types are refused."""
    raw = b58decode(text)
    if not raw.startswith(_PEER_ID_PREFIX) or len(raw) != len(_PEER_ID_PREFIX) + NODE_ID_BYTES:
        raise DecodeError(f"not an Ed25519 libp2p peer id: {text!r}")
    return NodeId(raw[len(_PEER_ID_PREFIX) :])


def short_id(nid: NodeId) -> str:
    """Six characters that name a node in logs: the tail of its peer id."""
    return peer_id_str(nid)[-6:]
