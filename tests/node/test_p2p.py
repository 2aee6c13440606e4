"""The libp2p transport: queued batches coalesce into frames under the cap, never over it;
a stream's receive window is credited back once half of it was read, not every frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import multiaddr
import pytest
import trio
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from colonynode.core.codec import MessageCodec
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.node.daemon.host import build_host
from colonynode.node.daemon.p2p import Channel, P2PTransport


@dataclass(frozen=True, slots=True)
class Blob:
    n: int
    data: bytes


CODEC = MessageCodec("blob", {1: Blob})


async def test_big_batches_split_into_frames_and_an_oversized_message_is_dropped() -> None:
    ids = [Identity.generate(), Identity.generate()]
    hosts = [build_host(i) for i in ids]
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    got: list[int] = []
    done = trio.Event()

    def receive(sender: NodeId, channel: str, msgs: Sequence[Any]) -> None:
        got.extend(m.n for m in msgs)
        if len(got) >= 10:
            done.set()

    async with trio.open_nursery() as nursery:
        async with hosts[0].run(listen_addrs=listen), hosts[1].run(listen_addrs=listen):
            ts = [P2PTransport(h, nursery, gate=lambda p, c: True) for h in hosts]
            for t in ts:
                t.add_channel(Channel("blob", "/test/blob/1", CODEC))
            ts[1].set_receiver("blob", receive)
            await ts[0].connect(str(hosts[1].get_addrs()[0]))
            # 2 MB queued at once: more than one frame may carry (1 MiB cap).
            too_big = Blob(-1, b"y" * (1_200_000))
            batch = [Blob(i, b"x" * 200_000) for i in range(5)]
            assert ts[0].send(ids[1].node_id, "blob", batch)
            assert ts[0].send(ids[1].node_id, "blob", [too_big])
            assert ts[0].send(
                ids[1].node_id, "blob", [Blob(i, b"x" * 200_000) for i in range(5, 10)]
            )
            with trio.fail_after(20):
                await done.wait()
            for h in hosts:
                await h.close()
        nursery.cancel_scope.cancel()
    assert got == list(range(10))
    assert ts[0].counters["oversized_dropped"] == 1
    assert ts[0].counters["frames_out_blob"] >= 3


async def test_frames_one_at_a_time_are_not_each_answered_with_a_window_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    updates: list[int] = []
    send_update = YamuxStream.send_window_update

    async def counted(self: YamuxStream, increment: int, skip_lock: bool = False) -> None:
        updates.append(increment)
        await send_update(self, increment, skip_lock)

    monkeypatch.setattr(YamuxStream, "send_window_update", counted)
    ids = [Identity.generate(), Identity.generate()]
    hosts = [build_host(i) for i in ids]
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    got: list[int] = []
    arrived = trio.Event()

    def receive(sender: NodeId, channel: str, msgs: Sequence[Any]) -> None:
        got.extend(m.n for m in msgs)
        arrived.set()

    frames, size = 300, 2_000  # 600 KB in all: more than two 256 KiB windows
    async with trio.open_nursery() as nursery:
        async with hosts[0].run(listen_addrs=listen), hosts[1].run(listen_addrs=listen):
            ts = [P2PTransport(h, nursery, gate=lambda p, c: True) for h in hosts]
            for t in ts:
                t.add_channel(Channel("blob", "/test/blob/1", CODEC))
            ts[1].set_receiver("blob", receive)
            await ts[0].connect(str(hosts[1].get_addrs()[0]))
            before = len(updates)  # the handshake's streams may have credited some
            with trio.fail_after(30):
                for i in range(frames):  # each waits for the last: one frame each
                    arrived = trio.Event()
                    assert ts[0].send(ids[1].node_id, "blob", [Blob(i, b"x" * size)])
                    await arrived.wait()
            sent = updates[before:]
            for h in hosts:
                await h.close()
        nursery.cancel_scope.cancel()
    assert got == list(range(frames))
    assert ts[0].counters["frames_out_blob"] == frames
    # Credit goes back once per half window read (~128 KiB): about 5 for 600 KB, where
    # a credit for every read is one a frame.
    assert 2 <= len(sent) <= 10, len(sent)
    assert sum(sent) >= frames * size - 256 * 1024  # what was read was credited back
