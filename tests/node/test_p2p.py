"""The daemon's transport: Noise-secured links on real TCP sockets on 127.0.0.1. Queued
batches coalesce into frames under the cap, never over it; a link authenticates its
peer; non-members reach only the open channels; a bad frame closes that link, never the
transport; request streams answer and end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest
import trio

from colonynode.core.codec import MessageCodec
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.node.daemon.links import DATA, LinkStream, Noise, frame
from colonynode.node.daemon.p2p import Channel, DialError, P2PTransport, parse_addr
from colonynode.node.daemon.wire import FrameStream, RemoteError

LISTEN = ["/ip4/127.0.0.1/tcp/0"]


@dataclass(frozen=True, slots=True)
class Blob:
    n: int
    data: bytes


CODEC = MessageCodec("blob", {1: Blob})
BLOB = Channel("blob", "/test/blob/1", CODEC)
OPEN = Channel("open", "/test/open/1", CODEC, open_to_non_members=True)


class Changes:
    """A transport's link changes (its on_change), to wait on without polling."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def __call__(self) -> None:
        self.event.set()

    async def until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        with trio.fail_after(timeout_s):
            while not condition():
                await self.event.wait()
                self.event = trio.Event()


@asynccontextmanager
async def transports(
    n: int, gate: Callable[[NodeId, str], bool] = lambda p, c: True, **limits: Any
) -> AsyncIterator[tuple[list[Identity], list[P2PTransport]]]:
    ids = [Identity.generate() for _ in range(n)]
    async with trio.open_nursery() as nursery:
        ts = [P2PTransport(i, nursery, gate, Changes(), handshake_s=2.0, **limits) for i in ids]
        for t in ts:
            t.add_channel(BLOB)
            t.add_channel(OPEN)
            await t.listen(LISTEN)
        yield ids, ts
        for t in ts:
            await t.close()
        nursery.cancel_scope.cancel()


def collect(into: list[int], done: trio.Event, n: int) -> Callable[..., None]:
    def receive(sender: NodeId, channel: str, msgs: Sequence[Any]) -> None:
        into.extend(m.n for m in msgs)
        if len(into) >= n:
            done.set()

    return receive


async def test_big_batches_split_into_frames_and_an_oversized_message_is_dropped() -> None:
    got: list[int] = []
    done = trio.Event()
    async with transports(2) as (ids, ts):
        ts[1].set_receiver("blob", collect(got, done, 10))
        assert await ts[0].connect(ts[1].addrs()[0]) == ids[1].node_id
        # 2 MB queued at once: more than one frame may carry (1 MiB cap).
        too_big = Blob(-1, b"y" * (1_200_000))
        assert ts[0].send(ids[1].node_id, "blob", [Blob(i, b"x" * 200_000) for i in range(5)])
        assert ts[0].send(ids[1].node_id, "blob", [too_big])
        assert ts[0].send(ids[1].node_id, "blob", [Blob(i, b"x" * 200_000) for i in range(5, 10)])
        with trio.fail_after(20):
            await done.wait()
        assert got == list(range(10))
        assert ts[0].counters["oversized_dropped"] == 1
        assert ts[0].counters["frames_out_blob"] >= 2
        assert ts[1].counters["frames_in_blob"] == ts[0].counters["frames_out_blob"]


async def test_a_link_goes_both_ways_and_a_send_to_no_link_is_refused() -> None:
    got: list[int] = []
    done = trio.Event()
    async with transports(3) as (ids, ts):
        ts[0].set_receiver("blob", collect(got, done, 1))
        await ts[0].connect(ts[1].addrs()[0])
        changes = ts[1]._on_change
        assert isinstance(changes, Changes)  # the listener knows its dialer after the HELLOs
        await changes.until(lambda: ids[0].node_id in ts[1].peers())
        assert ts[1].send(ids[0].node_id, "blob", [Blob(7, b"")])  # back on the same link
        with trio.fail_after(5):
            await done.wait()
        assert got == [7]
        assert not ts[0].send(ids[2].node_id, "blob", [Blob(8, b"")])  # never dialled


async def test_a_dial_to_an_address_whose_peer_id_is_not_the_listeners_fails() -> None:
    async with transports(3) as (ids, ts):
        host, port, _ = parse_addr(ts[1].addrs()[0])
        wrong = f"/ip4/{host}/tcp/{port}/p2p/{ids[2].peer_id}"
        with trio.fail_after(10), pytest.raises(DialError):
            await ts[0].connect(wrong)
        assert list(ts[0].peers()) == []


async def test_a_non_member_reaches_only_the_open_channels() -> None:
    blobs: list[int] = []
    opens: list[int] = []
    done = trio.Event()
    async with transports(2, gate=lambda peer, channel: False) as (ids, ts):
        ts[1].set_receiver("blob", collect(blobs, trio.Event(), 1))
        ts[1].set_receiver("open", collect(opens, done, 1))
        await ts[0].connect(ts[1].addrs()[0])
        assert ts[0].send(ids[1].node_id, "blob", [Blob(1, b"")])
        assert ts[0].send(ids[1].node_id, "blob", [Blob(2, b"")])
        assert ts[0].send(ids[1].node_id, "open", [Blob(3, b"")])
        with trio.fail_after(5):
            await done.wait()  # after the blobs on the same link
        assert opens == [3] and blobs == []
        assert ts[1].counters["refused_streams"] == 1  # once a channel and link


@pytest.mark.parametrize(
    "bad", [b"\xff\xfe not cbor", cbor2.dumps([1, "oops", "an error frame on a channel"])]
)
async def test_a_bad_frame_closes_that_link_and_the_transport_keeps_serving(bad: bytes) -> None:
    async with transports(2) as (ids, ts):
        host, port, _ = parse_addr(ts[1].addrs()[0])
        sock = await trio.open_tcp_stream(host, port)
        link = await Noise(ids[0]).secure(sock, ids[1].node_id)
        await link.hello([BLOB.protocol])
        await link.read_hello()
        await link.write(frame(1, DATA, 0, bad))
        with trio.fail_after(5):  # the listener closes the link
            while True:
                try:
                    await link.read_frame()
                except Exception:
                    break
        await link.aclose()
        assert ts[1].counters["bad_frames"] == 1
        got: list[int] = []
        done = trio.Event()
        ts[1].set_receiver("blob", collect(got, done, 1))
        await ts[0].connect(ts[1].addrs()[0])  # a new link works
        assert ts[0].send(ids[1].node_id, "blob", [Blob(5, b"")])
        with trio.fail_after(5):
            await done.wait()


async def test_a_plaintext_dialer_is_dropped_and_counted() -> None:
    async with transports(1) as (_, ts):
        host, port, _ = parse_addr(ts[0].addrs()[0])
        sock = await trio.open_tcp_stream(host, port)
        hello = b"\x13/multistream/1.0.0\n\x0d/plaintext/2.0.0\n"
        await sock.send_all(hello * 200)  # its first 2 bytes say a 4,911-byte message:
        with trio.fail_after(10):  # over the handshake's cap, refused at once (a reset,
            try:  # as its bytes are left unread), else at the handshake's deadline
                while await sock.receive_some(4096):
                    pass
            except trio.BrokenResourceError:
                pass
        await sock.aclose()
        assert ts[0].counters["handshakes_failed"] == 1 and list(ts[0].peers()) == []


async def test_a_request_stream_is_answered_and_ended() -> None:
    async def echo(stream: LinkStream) -> None:
        frames = FrameStream(stream, CODEC)
        msgs = await frames.read_batch()
        await frames.write_batch([Blob(m.n + 1, m.data) for m in msgs])

    async def refuse(stream: LinkStream) -> None:
        await FrameStream(stream, CODEC).write_error("nope", "not today")

    async with transports(2) as (ids, ts):
        ts[1].set_stream_handler("blob", echo)
        ts[1].set_stream_handler("open", refuse)
        await ts[0].connect(ts[1].addrs()[0])
        with trio.fail_after(5):
            for k in range(3):  # streams one after another on one link
                frames = await ts[0].open(ids[1].node_id, "blob")
                await frames.write_batch([Blob(k, b"q")])
                assert await frames.read_batch() == [Blob(k + 1, b"q")]
                await frames.close()
            frames = await ts[0].open(ids[1].node_id, "open")
            await frames.write_batch([Blob(0, b"")])
            with pytest.raises(RemoteError, match="not today"):
                await frames.read_batch()


async def test_strangers_links_are_few_and_short_lived_members_links_stay() -> None:
    members: set[NodeId] = set()
    async with transports(5, lambda peer, c: peer in members, strangers_max=2,
                          stranger_link_s=1.0) as (ids, ts):  # fmt: skip
        members.update((ids[0].node_id, ids[4].node_id))
        await ts[4].connect(ts[0].addrs()[0])  # a member, first: its link is the oldest
        for t in ts[1:3]:  # two strangers: the most it keeps
            await t.connect(ts[0].addrs()[0])
        with trio.fail_after(5), pytest.raises(DialError):
            await ts[3].connect(ts[0].addrs()[0])  # a third is refused
        assert ts[0].counters["links_refused"] == 1
        changes = ts[0]._on_change
        assert isinstance(changes, Changes)
        await changes.until(lambda: set(ts[0].peers()) == {ids[4].node_id})
        assert ts[0].counters["stranger_links_closed"] == 2  # their time ran out, not its


async def test_a_links_socket_gives_up_on_a_silent_peer_within_seconds() -> None:
    """Keepalive and TCP_USER_TIMEOUT are set on both ends of a link (a peer that
    vanished without a FIN is noticed in ~30 s, not after TCP's ~15 minutes)."""
    import socket

    async with transports(2) as (ids, ts):
        await ts[0].connect(ts[1].addrs()[0])
        changes = ts[1]._on_change
        assert isinstance(changes, Changes)
        await changes.until(lambda: ids[0].node_id in ts[1].peers())
        for t, peer in ((ts[0], ids[1].node_id), (ts[1], ids[0].node_id)):
            link = t._link_to(peer)
            assert link is not None
            raw = link.sock.socket
            assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 15


async def test_drain_returns_once_the_queued_batches_are_written() -> None:
    # The driver drains a turn's early frames before it commits on the loop, so the
    # voters start while this node's disk works.
    got: list[int] = []
    done = trio.Event()
    async with transports(2) as (ids, ts):
        ts[1].set_receiver("blob", collect(got, done, 2))
        await ts[0].connect(ts[1].addrs()[0])
        to = ids[1].node_id
        assert ts[0].send(to, "blob", [Blob(1, b"")]) and ts[0].send(to, "blob", [Blob(2, b"")])
        assert ts[0].counters["frames_out_blob"] == 0  # queued: the writer has not run yet
        with trio.fail_after(5):
            await ts[0].drain({to}, timeout_s=5.0)
        assert ts[0].counters["frames_out_blob"] >= 1 and not ts[0]._unwritten
        with trio.fail_after(5):
            await done.wait()
        assert got == [1, 2]
        with trio.fail_after(1):  # nothing queued (and a peer with no link): at once
            await ts[0].drain({to, Identity.generate().node_id}, timeout_s=5.0)
