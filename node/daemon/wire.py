"""Length-prefixed frames on libp2p streams, with our own error envelope (DESIGN.md §4).

A frame is a 4-byte big-endian length and that many bytes of canonical CBOR:
``[0, [msg, ...]]`` carries a batch of messages of the stream's protocol,
``[1, code, message]`` an error the remote should show (handler exceptions in py-libp2p
reach the client only as a generic failure, so we send ours).
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2
from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamError

from colonynode.core.codec import MessageCodec, decode_raw
from colonynode.core.errors import ColonyError, DecodeError, LimitExceeded
from colonynode.core.limits import FRAME_BYTES_MAX

__all__ = ["FrameStream", "RemoteError", "StreamClosed"]

KIND_BATCH = 0
KIND_ERROR = 1
_LEN = struct.Struct(">I")


class StreamClosed(ColonyError):
    """The remote closed or reset the stream."""


class RemoteError(ColonyError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class FrameStream:
    """Read and write whole frames of one protocol's messages on one stream."""

    def __init__(
        self, stream: INetStream, codec: MessageCodec, frame_bytes_max: int = FRAME_BYTES_MAX
    ) -> None:
        self.stream = stream
        self.codec = codec
        self.frame_bytes_max = frame_bytes_max
        self._buf = bytearray()

    async def _read_exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            try:
                chunk = await self.stream.read(max(n - len(self._buf), 65536))
            except StreamError as exc:
                raise StreamClosed(f"stream closed: {type(exc).__name__}") from None
            if not chunk:
                raise StreamClosed("stream closed")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def read_batch(self) -> list[Any]:
        """The next frame's messages; RemoteError if the remote sent an error frame."""
        (length,) = _LEN.unpack(await self._read_exactly(_LEN.size))
        if length > self.frame_bytes_max:
            raise LimitExceeded(f"frame of {length} bytes over the {self.frame_bytes_max} cap")
        value = decode_raw(await self._read_exactly(length), self.codec.limits)
        if type(value) is list and len(value) == 3 and value[0] == KIND_ERROR:
            raise RemoteError(str(value[1])[:64], str(value[2])[:500])
        if type(value) is not list or len(value) != 2 or value[0] != KIND_BATCH:
            raise DecodeError("frame is neither a batch nor an error")
        if type(value[1]) is not list:
            raise DecodeError(f"a {self.codec.name} batch is an array of messages")
        return self.codec.decode_list(value[1])  # each message's conversion checks limits

    async def write_batch(self, msgs: list[Any]) -> int:
        wire = [KIND_BATCH, [self.codec.encode_one(m) for m in msgs]]
        return await self._write(cbor2.dumps(wire, canonical=True))

    async def write_error(self, code: str, message: str) -> None:
        await self._write(cbor2.dumps([KIND_ERROR, code, message], canonical=True))

    async def _write(self, body: bytes) -> int:
        if len(body) > self.frame_bytes_max:
            raise LimitExceeded(f"frame of {len(body)} bytes over the {self.frame_bytes_max} cap")
        try:
            await self.stream.write(_LEN.pack(len(body)) + body)
        except StreamError as exc:
            raise StreamClosed(f"stream closed: {type(exc).__name__}") from None
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
