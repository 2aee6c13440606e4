"""The Trio driver: persist before send, timers, batching; and a core over real links."""

from __future__ import annotations

import random
import threading
from collections.abc import Collection, Sequence
from typing import Any

import trio
import trio.testing

from colonynode.core.codec import MessageCodec
from colonynode.core.effects import Effects
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.core.transport import Receiver
from colonynode.node.daemon.driver import CoreDriver
from colonynode.node.daemon.p2p import Channel, P2PTransport
from colonynode.simulations.ping import Echo, EchoReceived, Ping, PingCore
from colonynode.storage._trio import StoreWriter
from colonynode.storage.memory import MemoryStore

A, B = NodeId(b"\x01" * 32), NodeId(b"\x02" * 32)


class Progress:
    """Collects a driver's events and wakes waiters on each batch (no polling sleeps)."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._changed = trio.Event()

    def __call__(self, events: list[Any]) -> None:
        self.events.extend(events)
        self._changed.set()

    async def until(self, condition: Any, timeout_s: float = 20.0) -> None:
        with trio.fail_after(timeout_s):
            while not condition():
                await self._changed.wait()
                self._changed = trio.Event()


class LogTransport:
    """Records sends; checks that every send came after the writes before it were durable."""

    def __init__(self, local: NodeId, store: MemoryStore, log: list[str]) -> None:
        self._local, self.store, self.log = local, store, log
        self.receivers: dict[str, Receiver] = {}

    @property
    def local_id(self) -> NodeId:
        return self._local

    def set_receiver(self, channel: str, receiver: Receiver) -> None:
        self.receivers[channel] = receiver

    def send(self, dest: NodeId, channel: str, msgs: Sequence[Any]) -> bool:
        durable = self.store.durable_get("t", b"k")
        self.log.append(f"send {len(msgs)} to {dest.hex()[:2]} after durable={durable}")
        return True

    def peers(self) -> Collection[NodeId]:
        return [B]


class WriteThenSend:
    """Each tick: write a counter and send two messages to B; wakes every second."""

    def __init__(self) -> None:
        self.n = 0
        self.received: list[tuple[float, Any]] = []
        self._fx = Effects()

    def on_tick(self, now_s: float) -> None:
        self.n += 1
        self._fx.writes.append(("t", b"k", self.n))
        self._fx.sends += [(B, ("m", self.n)), (B, ("m2", self.n))]

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        self.received.append((now_s, msg))

    def take_effects(self) -> Effects:
        fx, self._fx = self._fx, Effects()
        fx.wake_at_s = float(self.n)  # ticks at local times 1, 2, 3, ...
        fx.events.append(self.n)
        return fx


async def test_writes_are_durable_before_sends_and_timers_fire() -> None:
    store, log = MemoryStore(), []
    transport = LogTransport(A, store, log)
    core = WriteThenSend()
    progress = Progress()
    driver = CoreDriver(core, "x", transport, StoreWriter(store, off_loop=False),
                        on_events=progress)  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        await progress.until(lambda: core.n >= 4)
        driver.deliver(B, "x", ["hello", "world"])
        await progress.until(lambda: len(core.received) >= 2)
        nursery.cancel_scope.cancel()
    # Two messages to one peer leave as one batch, after the write was durable.
    assert log[:3] == [f"send 2 to 02 after durable={i}" for i in (1, 2, 3)]
    assert [m for _, m in core.received] == ["hello", "world"]
    assert progress.events[:3] == [1, 2, 3]


def test_driver_runs_under_a_mock_clock() -> None:
    trio.run(test_writes_are_durable_before_sends_and_timers_fire,
             clock=trio.testing.MockClock(autojump_threshold=0))  # fmt: skip


class Publisher:
    """Writes what the application publishes; nothing else."""

    def __init__(self) -> None:
        self._fx = Effects()

    def publish(self, value: str) -> None:
        self._fx.writes.append(("t", value.encode(), value))

    def on_tick(self, now_s: float) -> None:
        pass

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        pass

    def take_effects(self) -> Effects:
        fx, self._fx = self._fx, Effects()
        return fx


class HeldStore(MemoryStore):
    """A store whose commits wait until the test lets them through (a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)

    def apply(self, batch: Any, *, sync: bool = True) -> None:
        self.entered.release()
        self.release.acquire(timeout=10)  # never hangs a failing test
        super().apply(batch, sync=sync)


async def test_persisted_returns_once_the_calls_before_it_are_durable() -> None:
    """`persisted()` after a publish made while an earlier turn is still being written
    waits for the turn that carries it, not just the one in progress."""
    store, core = HeldStore(), Publisher()
    driver = CoreDriver(core, "x", LogTransport(A, store, []), StoreWriter(store))
    done: list[str] = []
    both = trio.Event()

    async def publish(value: str) -> None:
        core.publish(value)
        await driver.persisted()
        done.append(value)
        assert store.durable_get("t", value.encode()) == value
        if len(done) == 2:
            both.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        nursery.start_soon(publish, "a")
        await trio.to_thread.run_sync(store.entered.acquire)  # "a" is being written
        nursery.start_soon(publish, "b")
        await trio.testing.wait_all_tasks_blocked()
        store.release.release()  # "a" is durable; "b" waits for the next turn
        await trio.to_thread.run_sync(store.entered.acquire)
        assert done == ["a"]
        store.release.release()
        with trio.fail_after(10):
            await both.wait()
        nursery.cancel_scope.cancel()
    assert done == ["a", "b"]


PING_CODEC = MessageCodec("ping", {1: Ping, 2: Echo})


async def test_ping_core_over_real_links_between_two_transports() -> None:
    ids = [Identity.generate(), Identity.generate()]
    progress = Progress()
    async with trio.open_nursery() as nursery:
        drivers = []
        for me, other in ((ids[0], ids[1]), (ids[1], ids[0])):
            transport = P2PTransport(me, nursery, gate=lambda peer, ch: True)
            transport.add_channel(Channel("ping", "/test/ping/1", PING_CODEC))
            await transport.listen(["/ip4/127.0.0.1/tcp/0"])
            core = PingCore(me.node_id, [other.node_id], random.Random(1), interval_s=0.05)
            driver = CoreDriver(
                core,
                "ping",
                transport,
                StoreWriter(MemoryStore(), off_loop=False),
                on_events=progress,
            )
            drivers.append((transport, driver))
        await drivers[0][0].connect(drivers[1][0].addrs()[0])
        for _, driver in drivers:
            await nursery.start(driver.run)

        def echoes() -> list[EchoReceived]:
            return [e for e in progress.events if isinstance(e, EchoReceived)]

        await progress.until(lambda: len({e.peer for e in echoes()}) == 2)
        await progress.until(lambda: len(echoes()) >= 10)
        for transport, _ in drivers:
            await transport.close()
        nursery.cancel_scope.cancel()
    got = [e for e in progress.events if isinstance(e, EchoReceived)]
    assert {e.peer for e in got} == {ids[0].node_id, ids[1].node_id}
    assert all(e.rtt_s < 5 for e in got)
