"""The libp2p Transport (core.transport.Transport) of the daemon.

One long-lived outbound stream per (peer, channel), fed by a bounded queue; whatever is
queued when the writer wakes is coalesced into one frame (frames, not bytes, are the CPU
budget in py-libp2p). Inbound streams are checked against the roster before a byte is
read: non-members reach only channels marked open (join, and the roster hello that proves
membership). A bad frame closes that stream, never the node.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from colonynode.core.codec import MessageCodec
from colonynode.core.errors import ColonyError, DecodeError, LimitExceeded
from colonynode.core.ids import NodeId, node_id_from_peer_id, peer_id_str, short_id
from colonynode.core.limits import FRAME_BYTES_MAX
from colonynode.core.transport import Receiver
from colonynode.node.daemon.host import dial_only, forget_failed_dial
from colonynode.node.daemon.wire import FrameStream, RemoteError, StreamClosed

__all__ = ["Channel", "DialError", "P2PTransport", "full_addr", "node_id_of"]

log = logging.getLogger(__name__)

OUTBOX_BATCHES_MAX = 1024  # batches queued per (peer, channel) before sends are dropped
COALESCE_MSGS_MAX = 512  # messages coalesced into one frame (split again if over the cap)
STREAM_OPEN_S = 10.0
DIAL_S = 10.0


class DialError(ColonyError):
    pass


def node_id_of(peer: ID) -> NodeId:
    return node_id_from_peer_id(peer.to_base58())


def full_addr(addr: str, nid: NodeId) -> str:
    """`addr` ending in /p2p/<peer id> (what `connect` dials)."""
    return addr if "/p2p/" in addr else f"{addr}/p2p/{peer_id_str(nid)}"


def peer_of(nid: NodeId) -> ID:
    return ID.from_base58(peer_id_str(nid))


@dataclass(frozen=True)
class Channel:
    name: str
    protocol: str
    codec: MessageCodec
    open_to_non_members: bool = False


# gate(peer, channel) -> True if `peer` may use `channel` now
Gate = Callable[[NodeId, str], bool]


class P2PTransport:
    def __init__(self, host: IHost, nursery: trio.Nursery, gate: Gate) -> None:
        self.host = host
        self._nursery = nursery
        self._gate = gate
        self._local = node_id_of(host.get_id())
        self._channels: dict[str, Channel] = {}
        self._receivers: dict[str, Receiver] = {}
        self._outboxes: dict[tuple[NodeId, str], trio.MemorySendChannel[Sequence[Any]]] = {}
        self.counters: Counter[str] = Counter()
        self.silenced = False  # set when this node must not talk to anyone (removed)
        # wall-clock time of the last frame from each peer, for people (`colonynode peers`)
        self.last_seen_unix_s: dict[NodeId, float] = {}

    # -- Transport protocol -------------------------------------------------------------

    @property
    def local_id(self) -> NodeId:
        return self._local

    def set_receiver(self, channel: str, receiver: Receiver) -> None:
        self._receivers[channel] = receiver

    def send(self, dest: NodeId, channel: str, msgs: Sequence[Any]) -> bool:
        if self.silenced:
            return False
        key = (dest, channel)
        outbox = self._outboxes.get(key)
        if outbox is None:
            send_ch, recv_ch = trio.open_memory_channel[Sequence[Any]](OUTBOX_BATCHES_MAX)
            self._outboxes[key] = outbox = send_ch
            self._nursery.start_soon(self._writer, dest, self._channels[channel], recv_ch)
        try:
            outbox.send_nowait(msgs)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.counters["send_dropped"] += 1
            return False
        return True

    def peers(self) -> Collection[NodeId]:
        out = []
        for p in self.host.get_connected_peers():
            try:
                out.append(node_id_of(p))
            except DecodeError:
                continue
        return out

    # -- set-up -------------------------------------------------------------------------

    def add_channel(self, channel: Channel) -> None:
        self._channels[channel.name] = channel
        self.host.set_stream_handler(TProtocol(channel.protocol), self._inbound(channel))

    def addrs(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()]

    async def connect(self, addr: str) -> NodeId:
        """Dial a full multiaddr ending in /p2p/<peer id>."""
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            raise DialError(f"not a peer address (…/p2p/<peer id>): {addr} ({exc})") from None
        if self.silenced:
            raise DialError("this node no longer talks to the colony")
        forget_failed_dial(self.host, info.peer_id)
        dial_only(self.host, info.peer_id)
        try:
            with trio.fail_after(DIAL_S):
                await self.host.connect(info)
        except trio.TooSlowError:
            raise DialError(f"no answer from {addr} within {DIAL_S:.0f} s") from None
        except Exception as exc:
            raise DialError(f"cannot reach {addr}: {_root_cause(exc)}") from None
        return node_id_of(info.peer_id)

    async def disconnect(self, nid: NodeId) -> None:
        for key in [k for k in self._outboxes if k[0] == nid]:
            self._outboxes.pop(key).close()
        try:
            await self.host.disconnect(peer_of(nid))
        except Exception as exc:
            log.debug("disconnect %s: %s", short_id(nid), exc)

    async def open(self, dest: NodeId, channel: str) -> FrameStream:
        """A new stream of `channel` to a connected (or dialable) peer."""
        ch = self._channels[channel]
        if self.silenced:
            raise StreamClosed("this node no longer talks to the colony")
        # Never dial implicitly (py-libp2p's new_stream would): whom to dial is the node's call.
        if not self.host.is_peer_connected(peer_of(dest)):  # type: ignore[attr-defined]
            raise StreamClosed(f"not connected to {short_id(dest)}")
        with trio.fail_after(STREAM_OPEN_S):
            stream = await self.host.new_stream(peer_of(dest), [TProtocol(ch.protocol)])
        return FrameStream(stream, ch.codec)

    # -- streams ------------------------------------------------------------------------

    async def _writer(
        self, dest: NodeId, channel: Channel, queue: trio.MemoryReceiveChannel[Sequence[Any]]
    ) -> None:
        frames: FrameStream | None = None
        try:
            async with queue:
                async for first in queue:
                    batch = list(first)
                    while len(batch) < COALESCE_MSGS_MAX:
                        try:
                            batch.extend(queue.receive_nowait())
                        except trio.WouldBlock:
                            break
                    if frames is None:
                        frames = await self.open(dest, channel.name)
                    await self._write_split(frames, batch, channel.name)
        except (StreamClosed, trio.TooSlowError, ColonyError, OSError) as exc:
            self.counters["stream_failures"] += 1
            log.debug("stream %s to %s ended: %s", channel.name, short_id(dest), exc)
        except Exception as exc:  # libp2p raises many types on dial/stream failure
            self.counters["stream_failures"] += 1
            log.debug("stream %s to %s failed: %s", channel.name, short_id(dest), _root_cause(exc))
        finally:
            if self._outboxes.get((dest, channel.name)) is not None:
                self._outboxes.pop((dest, channel.name)).close()
            if frames is not None:
                await frames.close()

    async def _write_split(self, frames: FrameStream, batch: list[Any], channel: str) -> None:
        """Write `batch` as one frame, or halves of it while a frame would be too big."""
        try:
            await frames.write_batch(batch)
            self.counters[f"frames_out_{channel}"] += 1
        except LimitExceeded:
            if len(batch) == 1:
                self.counters["oversized_dropped"] += 1
                log.warning("dropped a %s message over the frame cap", channel)
                return
            half = len(batch) // 2
            await self._write_split(frames, batch[:half], channel)
            await self._write_split(frames, batch[half:], channel)

    def _inbound(self, channel: Channel) -> Callable[[INetStream], Any]:
        async def handler(stream: INetStream) -> None:
            # An exception escaping a py-libp2p handler takes the whole host down: catch all.
            frames = FrameStream(stream, channel.codec, FRAME_BYTES_MAX)
            try:
                sender = node_id_of(stream.muxed_conn.peer_id)
                if not channel.open_to_non_members and not self._gate(sender, channel.name):
                    self.counters["refused_streams"] += 1
                    log.info("refused %s stream from non-member %s", channel.name, short_id(sender))
                    await frames.write_error("not_member", "you are not a member of this colony")
                    await frames.close()
                    return
                receiver = self._receivers.get(channel.name)
                while True:
                    msgs = await frames.read_batch()
                    self.counters[f"frames_in_{channel.name}"] += 1
                    self.last_seen_unix_s[sender] = time.time()
                    if receiver is not None and msgs:
                        receiver(sender, channel.name, msgs)
            except (StreamClosed, RemoteError):
                pass
            except DecodeError as exc:
                self.counters["bad_frames"] += 1
                log.info("bad %s frame: %s; closing that stream", channel.name, exc)
                with trio.move_on_after(1):
                    await frames.write_error("bad_frame", str(exc)[:300])
                await frames.reset()
            except Exception:
                self.counters["handler_errors"] += 1
                log.exception("%s handler failed", channel.name)
                await frames.reset()

        return handler


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}"[:300]
