"""Links: Noise-secured TCP connections that carry every channel's frames to one peer.

The handshake is libp2p's Noise XX (node/daemon/noise.py, byte for byte py-libp2p's): the
same Ed25519 identity, peer id and signed handshake payload as a libp2p connection, so a
link authenticates its peer as one did (DESIGN.md §3). What follows differs
(docs/decisions.md, "Links, not libp2p streams"): no multistream-select and no Yamux,
but on libp2p's Noise transport messages (a 2-byte length and at most 65,535 bytes of
ciphertext) a byte stream of

    frame := length (u32) | channel (u8) | kind (u8) | stream (u32) | body (length bytes)

Many frames go in one socket write; reads take 64 KiB at a time. Each side's first frame
is a HELLO naming the link protocol and its channels' protocol ids; a frame's `channel`
is the sender's index into its own list. Stream 0 of a channel carries its message
batches; other streams are request-and-answer exchanges (the join), opened by their
first frame and ended by an END frame; the dialer numbers its streams odd, the listener
even. Every buffer is bounded: a frame by FRAME_BYTES_MAX, a stream's unread frames by
STREAM_FRAMES_MAX, streams a link by STREAMS_MAX.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import cbor2
import trio

from colonynode.core.errors import DecodeError, LimitExceeded
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.core.limits import FRAME_BYTES_MAX
from colonynode.node.daemon.noise import NoiseKey, handshake
from colonynode.node.daemon.wire import StreamClosed

__all__ = ["DATA", "END", "HELLO", "LINK_PROTOCOL", "Link", "LinkStream", "Noise"]

LINK_PROTOCOL = "/colonynode/link/1"
HELLO, DATA, END = 0, 1, 2
_HEADER = struct.Struct(">IBBI")  # length, channel, kind, stream
_NOISE_LEN = struct.Struct(">H")
NOISE_PLAINTEXT_MAX = 65535 - 16  # a Noise transport message, less its tag
READ_BYTES = 256 * 1024  # a bulk transfer's reads: fewer turns of the loop
STREAMS_MAX = 16  # request streams open on one link at a time
STREAM_FRAMES_MAX = 16  # frames a request stream holds unread
CHANNELS_MAX = 32  # protocol ids a HELLO may list
PROTOCOL_CHARS_MAX = 128


# A peer that vanished without a FIN or RST (a laptop that slept, a cut cable): the
# link errors once sent data has waited LINK_UNACKED_S for an acknowledgement, or, idle,
# after KEEPALIVE probes go unanswered, instead of TCP's ~15 minutes of retransmissions.
LINK_UNACKED_S = 30
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 15, 5, 3


def tune_socket(sock: trio.SocketStream) -> None:
    """Keepalive and a bound on unacknowledged data (Linux; elsewhere what exists)."""
    raw = sock.socket
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
        ("TCP_USER_TIMEOUT", LINK_UNACKED_S * 1000),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            raw.setsockopt(socket.IPPROTO_TCP, option, value)


class Noise:
    """This node's side of the handshake: its identity key, a fresh static X25519 key."""

    def __init__(self, identity: Identity) -> None:
        self._key = NoiseKey(identity)

    async def secure(self, sock: trio.SocketStream, expect: NodeId | None) -> Link:
        """Run the handshake on `sock` (as dialer when `expect`, the peer it must be)."""
        tune_socket(sock)
        state, remote = await handshake(sock, self._key, expect)
        return Link(sock, state, remote, outbound=expect is not None)


class Link:
    """One secured connection: frames out under a lock (the Noise nonce is the order of
    the writes), frames in from one reader."""

    def __init__(
        self, sock: trio.SocketStream, noise: Any, peer: NodeId, *, outbound: bool
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.outbound = outbound
        self._noise = noise
        self._lock = trio.Lock()
        self._cipher = bytearray()  # bytes read, not yet decrypted
        self._plain = bytearray()  # decrypted, not yet framed
        self.closed = False
        self.streams: dict[int, LinkStream] = {}
        self._next_stream = 1 if outbound else 2
        self.remote_channels: list[str] = []  # the peer's HELLO

    # -- out ----------------------------------------------------------------------------

    async def write(self, frames: bytes) -> None:
        """Frames (already framed plaintext) in as few Noise messages and one send."""
        if self.closed:
            raise StreamClosed("link closed")
        async with self._lock:
            out = []
            for i in range(0, len(frames), NOISE_PLAINTEXT_MAX):
                sealed = self._noise.encrypt(frames[i : i + NOISE_PLAINTEXT_MAX])
                out.append(_NOISE_LEN.pack(len(sealed)))
                out.append(sealed)
            try:
                await self.sock.send_all(b"".join(out))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.closed = True
                raise StreamClosed(f"link closed: {type(exc).__name__}") from None

    async def hello(self, protocols: list[str]) -> None:
        body = cbor2.dumps([LINK_PROTOCOL, protocols])
        await self.write(frame(0, HELLO, 0, body))

    # -- in -----------------------------------------------------------------------------

    async def read_frame(self) -> tuple[int, int, int, bytes]:
        """The next frame (channel, kind, stream, body); StreamClosed at the end."""
        plain = self._plain
        while True:
            if len(plain) >= _HEADER.size:
                length, channel, kind, stream = _HEADER.unpack_from(plain)
                if length > FRAME_BYTES_MAX:
                    raise LimitExceeded(f"frame of {length} bytes over the {FRAME_BYTES_MAX} cap")
                end = _HEADER.size + length
                if len(plain) >= end:
                    with memoryview(plain) as view:  # one copy, not a slice and a copy
                        body = bytes(view[_HEADER.size : end])
                    del plain[:end]
                    return channel, kind, stream, body
            if not self._decrypt_one():
                await self._receive()

    def _decrypt_one(self) -> bool:
        cipher = self._cipher
        if len(cipher) < _NOISE_LEN.size:
            return False
        (n,) = _NOISE_LEN.unpack_from(cipher)
        if len(cipher) < _NOISE_LEN.size + n:
            return False
        with memoryview(cipher) as view:
            sealed = bytes(view[_NOISE_LEN.size : _NOISE_LEN.size + n])
        del cipher[: _NOISE_LEN.size + n]
        try:
            self._plain += self._noise.decrypt(sealed)
        except Exception as exc:  # the cipher raises its own types
            raise DecodeError(f"a Noise message did not decrypt: {type(exc).__name__}") from None
        return True

    async def _receive(self) -> None:
        try:
            data = await self.sock.receive_some(READ_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise StreamClosed(f"link closed: {type(exc).__name__}") from None
        if not data:
            raise StreamClosed("link closed by the peer")
        self._cipher += data

    async def read_hello(self) -> list[str]:
        channel, kind, stream, body = await self.read_frame()
        if kind != HELLO or channel or stream:
            raise DecodeError("a link's first frame is its HELLO")
        try:
            value = cbor2.loads(body)
        except Exception as exc:
            raise DecodeError(f"a HELLO that is not CBOR: {type(exc).__name__}") from None
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and value[0] == LINK_PROTOCOL
            and isinstance(value[1], list)
            and len(value[1]) <= CHANNELS_MAX
            and all(isinstance(p, str) and len(p) <= PROTOCOL_CHARS_MAX for p in value[1])
        )
        if not ok:
            raise DecodeError(f"not a {LINK_PROTOCOL} HELLO")
        self.remote_channels = list(value[1])
        return self.remote_channels

    # -- streams ------------------------------------------------------------------------

    def open_stream(self, channel: int) -> LinkStream:
        if len(self.streams) >= STREAMS_MAX:
            raise StreamClosed(f"{STREAMS_MAX} streams already open on this link")
        sid, self._next_stream = self._next_stream, self._next_stream + 2
        stream = self.streams[sid] = LinkStream(self, channel, sid)
        return stream

    async def aclose(self) -> None:
        self.closed = True
        for stream in list(self.streams.values()):
            stream.ended()
        with trio.move_on_after(1) as cleanup:
            cleanup.shield = True
            await self.sock.aclose()


def frame(channel: int, kind: int, stream: int, body: bytes, prefix: bytes = b"") -> bytes:
    """One frame of `prefix` + `body` (joined once: a bulk body is not copied twice)."""
    head = _HEADER.pack(len(prefix) + len(body), channel, kind, stream)
    return b"".join((head, prefix, body))


class LinkStream:
    """A request-and-answer stream on a link: bytes in and out, as FrameStream reads and
    writes them (node/daemon/wire.py)."""

    def __init__(self, link: Link, channel: int, sid: int) -> None:
        self.link = link
        self.peer = link.peer
        self.channel = channel  # this side's index of its channel
        self.sid = sid
        self._in, self._out = trio.open_memory_channel[bytes](STREAM_FRAMES_MAX)
        self._buf = b""
        self._done = False  # END sent
        self._in_ended = False  # END received (or the link or a reset ended it)

    def feed(self, kind: int, body: bytes) -> bool:
        """From the link's reader; False if the stream holds too much unread."""
        if kind == END:
            self.ended()
            if self._done:  # both ways closed
                self.link.streams.pop(self.sid, None)
            return True
        try:
            self._in.send_nowait(body)
        except (trio.WouldBlock, trio.ClosedResourceError):
            return False
        return True

    def ended(self) -> None:
        self._in_ended = True
        self._in.close()

    async def read(self, n: int | None = None) -> bytes:
        if not self._buf:
            try:
                self._buf = await self._out.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return b""
        if n is None or n >= len(self._buf):
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def write(self, data: bytes, prefix: bytes = b"") -> None:
        """`prefix` + `data` as one frame."""
        if self._done:
            raise StreamClosed("stream closed")
        await self.link.write(frame(self.channel, DATA, self.sid, data, prefix))

    async def close(self) -> None:
        """No more writes (an END); reads go on until the peer's END."""
        if self._in_ended:
            self.link.streams.pop(self.sid, None)
        if not self._done and not self.link.closed:
            self._done = True
            try:
                await self.link.write(frame(self.channel, END, self.sid, b""))
            except StreamClosed:
                pass
        self._done = True

    async def reset(self) -> None:
        """Closed both ways at once."""
        self.ended()
        self.link.streams.pop(self.sid, None)
        await self.close()
