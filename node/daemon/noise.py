"""libp2p's Noise handshake (the `/noise` security protocol), on a Trio socket, without
py-libp2p (importing it costs a daemon about 60 MiB; docs/decisions.md).

Byte for byte what py-libp2p and go-libp2p do (libp2p's noise spec), so a node of this
code and one that used py-libp2p's transport connect:

- `Noise_XX_25519_ChaChaPoly_SHA256` (the `noise` package), a fresh static X25519 key per
  daemon; every handshake message framed by a 2-byte big-endian length;
- -> e; <- e, ee, s, es + payload; -> s, se + payload; the payload is the protobuf
  `NoiseHandshakePayload {1: identity_key, 2: identity_sig}` (other fields ignored), the
  identity key the protobuf `PublicKey {1: Ed25519 (1), 2: 32 bytes}`, the signature the
  Ed25519 signature of ``"noise-libp2p-static-key:" + the static X25519 public key``;
- the remote's node id is its identity key (the peer id derives from it), checked against
  the one the dialer expected.

Afterwards the same `NoiseConnection` encrypts and decrypts the link's transport messages.
"""

from __future__ import annotations

import struct
from typing import Any

import nacl.exceptions
import nacl.signing
import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from noise.connection import Keypair, NoiseConnection

from colonynode.core.errors import DecodeError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId, node_id, short_id

__all__ = ["HandshakeFailed", "NoiseKey", "handshake"]

PROTOCOL = b"Noise_XX_25519_ChaChaPoly_SHA256"
SIGNED_PREFIX = b"noise-libp2p-static-key:"
ED25519 = 1  # libp2p's KeyType
_LEN = struct.Struct(">H")
HANDSHAKE_BYTES_MAX = 4096  # a handshake message (ours are about 200 bytes)


class HandshakeFailed(DecodeError):
    """The peer's handshake was malformed, its signature bad, or it was not the peer
    expected."""


class NoiseKey:
    """This daemon's static X25519 key and its signed identity payload."""

    def __init__(self, identity: Identity) -> None:
        key = X25519PrivateKey.generate()
        self.private = key.private_bytes_raw()
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        signature = identity.sign(SIGNED_PREFIX + public)
        identity_key = bytes([0x08, ED25519]) + _field(2, bytes(identity.node_id))  # Type, Data
        self.payload = _field(1, identity_key) + _field(2, signature)


async def handshake(
    sock: trio.SocketStream, key: NoiseKey, expect: NodeId | None
) -> tuple[NoiseConnection, NodeId]:
    """The XX handshake (as dialer when `expect` names the peer it must be): the
    transport state and the peer's node id; HandshakeFailed otherwise."""
    state = NoiseConnection.from_name(PROTOCOL)
    state.set_keypair_from_private_bytes(Keypair.STATIC, key.private)
    if expect is not None:
        state.set_as_initiator()
        state.start_handshake()
        await _send(sock, state.write_message(b""))
        shake = state.noise_protocol.handshake_state  # (dropped once the handshake ends)
        peer = _peer(shake, state.read_message(await _receive(sock)))
        if peer != expect:
            raise HandshakeFailed(f"dialled {short_id(expect)}, reached {short_id(peer)}")
        await _send(sock, state.write_message(key.payload))
    else:
        state.set_as_responder()
        state.start_handshake()
        state.read_message(await _receive(sock))
        await _send(sock, state.write_message(key.payload))
        shake = state.noise_protocol.handshake_state
        peer = _peer(shake, state.read_message(await _receive(sock)))
    if not state.handshake_finished:
        raise HandshakeFailed("the handshake did not finish")
    return state, peer


def _peer(shake: Any, payload: bytes) -> NodeId:
    """The node id a handshake payload proves, given the remote static key it came with
    (`shake`: the handshake state that read it)."""
    rs = shake.rs
    if rs is None:
        raise HandshakeFailed("no remote static key")
    static = rs.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    fields = _fields(bytes(payload))
    key = _fields(fields.get(1, b""))
    if key.get(1) != bytes([ED25519]):
        raise HandshakeFailed("the identity key is not Ed25519")
    raw = key.get(2, b"")
    try:
        peer = node_id(raw)
        nacl.signing.VerifyKey(raw).verify(SIGNED_PREFIX + static, fields.get(2, b""))
    except (ValueError, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise HandshakeFailed("a bad identity key or signature in the handshake") from None
    return peer


def _field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _fields(data: bytes) -> dict[int, Any]:
    """A protobuf message's fields: length-delimited ones as bytes, varints as one byte of
    their value (enough for the key type); the first of a repeated field wins."""
    out: dict[int, Any] = {}
    i = 0
    while i < len(data):
        tag, i = _read_varint(data, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            out.setdefault(number, bytes([value & 0xFF]))
        elif wire == 2:
            size, i = _read_varint(data, i)
            if i + size > len(data):
                raise HandshakeFailed("a truncated handshake payload")
            out.setdefault(number, data[i : i + size])
            i += size
        else:
            raise HandshakeFailed(f"an unexpected protobuf wire type {wire}")
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise HandshakeFailed("a malformed varint in the handshake payload")
        byte = data[i]
        i += 1
        n |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return n, i
        shift += 7


async def _send(sock: trio.SocketStream, message: bytes) -> None:
    await sock.send_all(_LEN.pack(len(message)) + message)


async def _receive(sock: trio.SocketStream) -> bytes:
    (n,) = _LEN.unpack(await _exactly(sock, _LEN.size))
    if n > HANDSHAKE_BYTES_MAX:
        raise HandshakeFailed(f"a handshake message of {n} bytes")
    return await _exactly(sock, n)


async def _exactly(sock: trio.SocketStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await sock.receive_some(n - len(buf))
        if not data:
            raise HandshakeFailed("the peer closed the connection during the handshake")
        buf += data
    return bytes(buf)
