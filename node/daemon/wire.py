"""Length-prefixed frames of one protocol's messages, with our own error envelope
(DESIGN.md §4).

A frame body is canonical CBOR: ``[0, [msg, ...]]`` carries a batch of messages of the
channel's protocol, ``[1, code, message]`` an error the remote should show. On a link's
channel (links.py) a body is a link frame's; on a request stream (the join), a frame is
a 4-byte big-endian length and that many bytes (`FrameStream`).
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

import cbor2

from colonynode.core.codec import MessageCodec, decode_raw
from colonynode.core.errors import ColonyError, DecodeError, LimitExceeded
from colonynode.core.limits import FRAME_BYTES_MAX

__all__ = ["KIND_BATCH", "ByteStream", "FrameStream", "RemoteError", "StreamClosed",
           "decode_batch", "encode_batch"]  # fmt: skip

KIND_BATCH = 0
KIND_ERROR = 1
_LEN = struct.Struct(">I")


class StreamClosed(ColonyError):
    """The remote closed or reset the stream."""


class RemoteError(ColonyError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ByteStream(Protocol):
    """What FrameStream reads and writes (a link's request stream): `read` returns b""
    at the end; a closed stream raises StreamClosed."""

    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes, prefix: bytes = b"") -> None:
        """`prefix` then `data`."""

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


def encode_batch(msgs: list[Any], codec: MessageCodec) -> bytes:
    """A frame body of `msgs`."""
    return cbor2.dumps([KIND_BATCH, [codec.encode_one(m) for m in msgs]], canonical=True)


def decode_batch(body: bytes, codec: MessageCodec) -> list[Any]:
    """A frame body's messages; RemoteError if it is an error frame."""
    value = decode_raw(body, codec.limits)
    if type(value) is list and len(value) == 3 and value[0] == KIND_ERROR:
        raise RemoteError(str(value[1])[:64], str(value[2])[:500])
    if type(value) is not list or len(value) != 2 or value[0] != KIND_BATCH:
        raise DecodeError("frame is neither a batch nor an error")
    if type(value[1]) is not list:
        raise DecodeError(f"a {codec.name} batch is an array of messages")
    return codec.decode_list(value[1])  # each message's conversion checks limits


class FrameStream:
    """Read and write whole frames of one protocol's messages on one stream."""

    def __init__(
        self, stream: ByteStream, codec: MessageCodec, frame_bytes_max: int = FRAME_BYTES_MAX
    ) -> None:
        self.stream = stream
        self.codec = codec
        self.frame_bytes_max = frame_bytes_max
        self._buf = bytearray()

    async def _read_exactly(self, n: int) -> bytes:
        buf = self._buf
        if not buf:  # the common case: a whole frame in one read, taken without copies
            first = await self.stream.read(max(n, 65536))
            if not first:
                raise StreamClosed("stream closed")
            if len(first) == n:
                return first
            buf += first
        while len(buf) < n:
            chunk = await self.stream.read(max(n - len(buf), 65536))
            if not chunk:
                raise StreamClosed("stream closed")
            buf += chunk
        with memoryview(buf) as view:
            out = bytes(view[:n])
        del buf[:n]
        return out

    async def read_batch(self) -> list[Any]:
        """The next frame's messages; RemoteError if the remote sent an error frame."""
        (length,) = _LEN.unpack(await self._read_exactly(_LEN.size))
        if length > self.frame_bytes_max:
            raise LimitExceeded(f"frame of {length} bytes over the {self.frame_bytes_max} cap")
        return decode_batch(await self._read_exactly(length), self.codec)

    async def write_batch(self, msgs: list[Any]) -> int:
        return await self._write(encode_batch(msgs, self.codec))

    async def write_error(self, code: str, message: str) -> None:
        await self._write(cbor2.dumps([KIND_ERROR, code, message], canonical=True))

    async def _write(self, body: bytes) -> int:
        if len(body) > self.frame_bytes_max:
            raise LimitExceeded(f"frame of {len(body)} bytes over the {self.frame_bytes_max} cap")
        await self.stream.write(body, _LEN.pack(len(body)))  # the stream joins them once
        return len(body)

    async def close(self) -> None:
        try:
            await self.stream.close()
        except Exception:
            pass

    async def reset(self) -> None:
        try:
            await self.stream.reset()
        except Exception:
            pass
