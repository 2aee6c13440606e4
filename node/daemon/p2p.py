"""The Transport (core.transport.Transport) of the daemon: links to peers (links.py).

One writer a peer, fed by a bounded queue; whatever is queued when it wakes goes out as
one frame a channel (split while over the cap), all of them in one socket write. A
peer's messages on a channel come in from its link's reader, checked against the roster
before they are decoded: non-members reach only the channels marked open (join, and the
roster hello that proves membership). A bad frame closes that link, never the node; a
bad request on a join stream, that stream.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio

from colonynode.core.codec import MessageCodec
from colonynode.core.errors import ColonyError, DecodeError, LimitExceeded
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId, node_id_from_peer_id, peer_id_str, short_id
from colonynode.core.limits import FRAME_BYTES_MAX
from colonynode.core.transport import Receiver
from colonynode.node.daemon.links import DATA, END, STREAMS_MAX, Link, LinkStream, Noise, frame
from colonynode.node.daemon.wire import (
    FrameStream,
    RemoteError,
    StreamClosed,
    decode_batch,
    encode_batch,
)

__all__ = ["Channel", "DialError", "P2PTransport", "parse_addr"]

log = logging.getLogger(__name__)

OUTBOX_BATCHES_MAX = 1024  # batches queued a peer before sends are dropped
COALESCE_MSGS_MAX = 512  # messages taken from a peer's queue for one write
LINKS_MAX = 512  # links in all (members, and non-members come to join)
NON_MEMBER_LINKS_MAX = 32  # links of non-members (joiners) at a time
NON_MEMBER_LINK_S = 60.0  # how long a link of a non-member lives, unless it joins
HANDSHAKES_MAX = 64  # inbound handshakes in progress at a time
LINKS_PER_PEER = 2  # one each way when both dialled at once
HANDSHAKE_S = 10.0  # an inbound connection's handshake and HELLO
DIAL_S = 10.0


class DialError(ColonyError):
    pass


def parse_addr(addr: str) -> tuple[str, int, NodeId | None]:
    """(host, port, peer) of `/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT[/p2p/ID]`."""
    try:
        ma = multiaddr.Multiaddr(addr)
        names = [p.name for p in ma.protocols()]
        host_proto = next(p for p in names if p in ("ip4", "ip6", "dns", "dns4", "dns6"))
        host, port = ma.value_for_protocol(host_proto), int(ma.value_for_protocol("tcp"))
        peer = node_id_from_peer_id(ma.value_for_protocol("p2p")) if "p2p" in names else None
    except Exception as exc:
        raise DialError(f"not a peer address (/ip4/HOST/tcp/PORT/p2p/ID): {addr} ({exc})") from None
    return str(host), port, peer


@dataclass(frozen=True)
class Channel:
    name: str
    protocol: str
    codec: MessageCodec
    open_to_non_members: bool = False


# gate(peer, channel) -> True if `peer` may use `channel` now
Gate = Callable[[NodeId, str], bool]
StreamHandler = Callable[[LinkStream], Awaitable[None]]


class P2PTransport:
    def __init__(
        self,
        identity: Identity,
        nursery: trio.Nursery,
        gate: Gate,
        on_change: Callable[[], None] | None = None,
        *,
        handshake_s: float = HANDSHAKE_S,
        stranger_link_s: float = NON_MEMBER_LINK_S,
        strangers_max: int = NON_MEMBER_LINKS_MAX,
    ) -> None:
        self._noise = Noise(identity)
        self._handshake_s = handshake_s
        self._stranger_link_s = stranger_link_s
        self._strangers_max = strangers_max
        self._nursery = nursery
        self._gate = gate
        self._on_change = on_change
        self._local = identity.node_id
        self._channels: list[Channel] = []  # a channel's index on the wire is its place + 1
        self._by_protocol: dict[str, int] = {}
        self._by_name: dict[str, int] = {}
        self._receivers: dict[str, Receiver] = {}
        self._handlers: dict[str, StreamHandler] = {}
        self._links: dict[NodeId, list[Link]] = {}
        self._outboxes: dict[NodeId, trio.MemorySendChannel[tuple[str, Sequence[Any]]]] = {}
        self._unwritten: Counter[NodeId] = Counter()  # batches queued, not yet on the socket
        self._written = trio.Event()  # set when a writer has written what it took
        self._serving = trio.CancelScope()  # the listeners' accept loops
        self._handshakes = 0  # inbound, in progress
        self._listen_addrs: list[str] = []
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
        if self.silenced or dest not in self._links:
            return False
        outbox = self._outboxes.get(dest)
        if outbox is None:
            send_ch, recv_ch = trio.open_memory_channel[tuple[str, Sequence[Any]]](
                OUTBOX_BATCHES_MAX
            )
            self._outboxes[dest] = outbox = send_ch
            self._unwritten.pop(dest, None)  # (a writer that failed left its count)
            self._nursery.start_soon(self._writer, dest, recv_ch)
        try:
            outbox.send_nowait((channel, msgs))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.counters["send_dropped"] += 1
            return False
        self._unwritten[dest] += 1
        return True

    async def drain(self, dests: Collection[NodeId], timeout_s: float) -> None:
        """Until what was queued for `dests` is on their sockets (or `timeout_s`): a
        caller about to hold the loop lets its frames leave first."""
        with trio.move_on_after(timeout_s):
            while any(self._unwritten[d] for d in dests if d in self._outboxes):
                await self._written.wait()

    def peers(self) -> Collection[NodeId]:
        return list(self._links)

    # -- set-up -------------------------------------------------------------------------

    def add_channel(self, channel: Channel) -> None:
        """Before any link: a link's HELLO lists the channels it was made with."""
        self._channels.append(channel)
        index = len(self._channels)
        self._by_protocol[channel.protocol] = self._by_name[channel.name] = index

    def set_stream_handler(self, channel: str, handler: StreamHandler) -> None:
        self._handlers[channel] = handler

    async def listen(self, addrs: Sequence[str]) -> None:
        for addr in addrs:
            host, port, _ = parse_addr(addr)
            listeners = await trio.open_tcp_listeners(port, host=host)
            for listener in listeners:
                sockname = listener.socket.getsockname()
                ip = "ip6" if ":" in sockname[0] else "ip4"
                self._listen_addrs.append(
                    f"/{ip}/{sockname[0]}/tcp/{sockname[1]}/p2p/{peer_id_str(self._local)}"
                )
            self._nursery.start_soon(self._serve, listeners)

    async def _serve(self, listeners: list[trio.SocketListener]) -> None:
        try:
            with self._serving:
                await trio.serve_listeners(self._accept, listeners)
        finally:
            for listener in listeners:
                await listener.aclose()

    def addrs(self) -> list[str]:
        return list(self._listen_addrs)

    async def connect(self, addr: str) -> NodeId:
        """Dial a full multiaddr ending in /p2p/<peer id> (at once if linked already)."""
        host, port, peer = parse_addr(addr)
        if peer is None:
            raise DialError(f"not a peer address (…/p2p/<peer id>): {addr}")
        if self.silenced:
            raise DialError("this node no longer talks to the colony")
        if peer in self._links:
            return peer
        try:
            with trio.fail_after(DIAL_S):
                sock = await trio.open_tcp_stream(host, port)
                try:
                    link = await self._noise.secure(sock, peer)
                    await link.hello([c.protocol for c in self._channels])
                    await link.read_hello()
                except BaseException:
                    await sock.aclose()
                    raise
        except trio.TooSlowError:
            raise DialError(f"no answer from {addr} within {DIAL_S:.0f} s") from None
        except Exception as exc:
            raise DialError(f"cannot reach {addr}: {_root_cause(exc)}") from None
        if not self._add(link):
            await link.aclose()
            if peer in self._links:
                return peer
            raise DialError(f"too many links: {addr} not kept")
        self._nursery.start_soon(self._read, link)
        return peer

    def remote_host(self, nid: NodeId) -> str | None:
        """The address a link to `nid` reaches it at (None without a link)."""
        link = self._link_to(nid)
        if link is None:
            return None
        try:
            host: str = link.sock.socket.getpeername()[0]
        except OSError:
            return None
        return host

    async def disconnect(self, nid: NodeId) -> None:
        for link in list(self._links.get(nid, ())):
            await link.aclose()
        self._drop_peer(nid)

    async def open(self, dest: NodeId, channel: str) -> FrameStream:
        """A new request stream of `channel` to a linked peer (never dials)."""
        ch = self._channels[self._by_name[channel] - 1]
        if self.silenced:
            raise StreamClosed("this node no longer talks to the colony")
        link = self._link_to(dest)
        if link is None:
            raise StreamClosed(f"not connected to {short_id(dest)}")
        return FrameStream(link.open_stream(self._by_name[channel]), ch.codec)

    async def close(self) -> None:
        self._serving.cancel()
        for nid in list(self._links):
            await self.disconnect(nid)

    # -- links --------------------------------------------------------------------------

    def _link_to(self, nid: NodeId) -> Link | None:
        for link in self._links.get(nid, ()):
            if not link.closed:
                return link
        return None

    def _room(self, peer: NodeId) -> bool:
        """Whether a new link to `peer` may be kept (counted if not)."""
        full = (
            len(self._links.get(peer, ())) >= LINKS_PER_PEER
            or sum(map(len, self._links.values())) >= LINKS_MAX
        )
        if not full and not self._gate(peer, ""):
            strangers = sum(1 for nid in self._links if not self._gate(nid, ""))
            full = strangers >= self._strangers_max
        if full:
            self.counters["links_refused"] += 1
        return not full

    def _add(self, link: Link) -> bool:
        if not self._room(link.peer):
            return False
        links = self._links.get(link.peer, [])
        self._links[link.peer] = [*links, link]
        if len(links) == 0 and self._on_change is not None:
            self._on_change()
        return True

    def _remove(self, link: Link) -> None:
        links = [x for x in self._links.get(link.peer, ()) if x is not link]
        if links:
            self._links[link.peer] = links
        elif link.peer in self._links:
            self._drop_peer(link.peer)

    def _drop_peer(self, nid: NodeId) -> None:
        self._links.pop(nid, None)
        outbox = self._outboxes.pop(nid, None)
        self._unwritten.pop(nid, None)
        if outbox is not None:
            outbox.close()
        if self._on_change is not None:
            self._on_change()

    async def _accept(self, sock: trio.SocketStream) -> None:
        if self.silenced or self._handshakes >= HANDSHAKES_MAX:
            if not self.silenced:
                self.counters["links_refused"] += 1
            await sock.aclose()
            return
        self._handshakes += 1
        try:
            with trio.fail_after(self._handshake_s):
                link = await self._noise.secure(sock, None)
                if not self._room(link.peer):  # before the HELLO: its dial fails
                    await sock.aclose()
                    return
                await link.hello([c.protocol for c in self._channels])
                await link.read_hello()
        except Exception as exc:  # a plaintext or broken dialer, a slow one: its problem
            self.counters["handshakes_failed"] += 1
            log.debug("inbound handshake failed: %s", _root_cause(exc))
            await sock.aclose()
            return
        finally:
            self._handshakes -= 1
        if not self._add(link):
            await link.aclose()
            return
        await self._read(link)

    async def _read(self, link: Link) -> None:
        """Every frame of `link` until it ends; then it is gone."""
        peer = link.peer
        local = [self._by_protocol.get(p) for p in link.remote_channels]  # theirs -> ours
        refused: set[int] = set()
        # a stranger's link (a joiner's) lives NON_MEMBER_LINK_S, unless it joins
        until_s = None if self._gate(peer, "") else trio.current_time() + self._stranger_link_s
        try:
            while True:
                with trio.move_on_at(until_s if until_s is not None else math.inf) as waited:
                    theirs, kind, sid, body = await link.read_frame()
                if waited.cancelled_caught:
                    if not self._gate(peer, ""):
                        self.counters["stranger_links_closed"] += 1
                        break
                    until_s = None
                    continue
                index = local[theirs - 1] if 0 < theirs <= len(local) else None
                if index is None:
                    self.counters["unknown_channel_frames"] += 1
                    continue
                channel = self._channels[index - 1]
                if not channel.open_to_non_members and not self._gate(peer, channel.name):
                    if index not in refused:
                        refused.add(index)
                        self.counters["refused_streams"] += 1
                        log.info("refused %s from non-member %s", channel.name, short_id(peer))
                    continue
                if sid == 0:
                    self._deliver(peer, channel, body)
                else:
                    self._stream_frame(link, index, kind, sid, body)
        except (StreamClosed, trio.ClosedResourceError):
            pass
        except (DecodeError, LimitExceeded, RemoteError) as exc:  # (nobody sends errors
            self.counters["bad_frames"] += 1  # on a channel's batches: it is a bad frame)
            log.info("bad frame from %s: %s; closing that link", short_id(peer), exc)
        except Exception:
            self.counters["handler_errors"] += 1
            log.exception("reading from %s failed", short_id(peer))
        finally:
            await link.aclose()
            self._remove(link)

    def _deliver(self, peer: NodeId, channel: Channel, body: bytes) -> None:
        msgs = decode_batch(body, channel.codec)  # DecodeError: the link goes
        self.counters[f"frames_in_{channel.name}"] += 1
        self.last_seen_unix_s[peer] = time.time()
        receiver = self._receivers.get(channel.name)
        if receiver is not None and msgs:
            receiver(peer, channel.name, msgs)

    def _stream_frame(self, link: Link, index: int, kind: int, sid: int, body: bytes) -> None:
        stream = link.streams.get(sid)
        if stream is None:
            if kind != DATA or (sid % 2 == 1) != (not link.outbound):
                return  # the end of a stream already gone, or a number that is ours
            handler = self._handlers.get(self._channels[index - 1].name)
            if handler is None or len(link.streams) >= STREAMS_MAX:
                self.counters["refused_streams"] += 1
                self._nursery.start_soon(_end, link, index, sid)
                return
            stream = link.streams[sid] = LinkStream(link, index, sid)
            self._nursery.start_soon(self._serve_stream, handler, stream)
        if not stream.feed(kind, body):
            self.counters["bad_frames"] += 1
            link.streams.pop(sid, None)
            stream.ended()

    async def _serve_stream(self, handler: StreamHandler, stream: LinkStream) -> None:
        try:
            await handler(stream)
        except Exception:
            self.counters["handler_errors"] += 1
            log.exception("stream handler failed")
        finally:
            await stream.close()

    async def _writer(
        self, dest: NodeId, queue: trio.MemoryReceiveChannel[tuple[str, Sequence[Any]]]
    ) -> None:
        try:
            await self._write_all(dest, queue)
        except Exception:  # a bug here must not take the node down: that peer's sends go
            self.counters["handler_errors"] += 1
            log.exception("the writer to %s failed", short_id(dest))
            if self._outboxes.get(dest) is not None:
                self._outboxes.pop(dest).close()

    async def _write_all(
        self, dest: NodeId, queue: trio.MemoryReceiveChannel[tuple[str, Sequence[Any]]]
    ) -> None:
        async with queue:
            async for first in queue:
                items, n = [first], len(first[1])
                while n < COALESCE_MSGS_MAX:
                    try:
                        item = queue.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    items.append(item)
                    n += len(item[1])
                try:
                    await self._write_items(dest, items)
                finally:
                    left = self._unwritten.pop(dest, 0) - len(items)
                    if left > 0:
                        self._unwritten[dest] = left
                    self._written.set()
                    self._written = trio.Event()

    async def _write_items(self, dest: NodeId, items: list[tuple[str, Sequence[Any]]]) -> None:
        by_channel: dict[str, list[Any]] = {}
        for name, msgs in items:
            by_channel.setdefault(name, []).extend(msgs)
        data = b"".join(self._frames(name, msgs) for name, msgs in by_channel.items())
        link = self._link_to(dest)
        if link is None:
            self.counters["stream_failures"] += 1
            return
        if not data:
            return
        try:
            await link.write(data)
        except StreamClosed as exc:
            self.counters["stream_failures"] += 1
            log.debug("link to %s ended: %s", short_id(dest), exc)

    def _frames(self, name: str, msgs: list[Any]) -> bytes:
        """`msgs` as one frame, or halves of it while a frame would be too big."""
        index = self._by_name[name]
        codec = self._channels[index - 1].codec
        body = encode_batch(msgs, codec)
        if len(body) <= FRAME_BYTES_MAX:
            self.counters[f"frames_out_{name}"] += 1
            return frame(index, DATA, 0, body)
        if len(msgs) == 1:
            self.counters["oversized_dropped"] += 1
            log.warning("dropped a %s message over the frame cap", name)
            return b""
        half = len(msgs) // 2
        return self._frames(name, msgs[:half]) + self._frames(name, msgs[half:])


async def _end(link: Link, index: int, sid: int) -> None:
    try:
        await link.write(frame(index, END, sid, b""))
    except StreamClosed:
        pass


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}"[:300]
