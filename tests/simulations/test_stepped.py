"""The stepped network of core unit tests (simulations/stepped.py), on a tiny echo core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from colonynode.core.codec import MessageCodec
from colonynode.core.effects import Effects
from colonynode.core.ids import NodeId
from colonynode.simulations.stepped import SteppedNet
from colonynode.storage.memory import MemoryStore

IDS = [NodeId(bytes([i + 1]) * 32) for i in range(4)]


@dataclass(frozen=True, slots=True)
class Ping:
    hops: int  # answered with hops - 1 until 0; a negative count is answered forever


@dataclass(frozen=True, slots=True)
class Got:
    sender: NodeId
    hops: int
    now_s: float


class EchoCore:
    """Answers pings, records each as an event; sends and writes when a test says so."""

    def __init__(self, index: int, store: MemoryStore, incarnation: int) -> None:
        self.index = index
        self.store = store
        self.incarnation = incarnation
        self.ticks: list[float] = []
        self.received: list[Any] = []
        self.wake_every_s = 1.0
        self._effects = Effects()

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        assert isinstance(msg, Ping)
        self.received.append(msg)
        self._effects.events.append(Got(sender, msg.hops, now_s))
        if msg.hops != 0:
            self._effects.sends.append((sender, Ping(msg.hops - 1 if msg.hops > 0 else -1)))

    def on_tick(self, now_s: float) -> None:
        self.ticks.append(now_s)
        self._effects.wake_at_s = now_s + self.wake_every_s

    def take_effects(self) -> Effects:
        effects, self._effects = self._effects, Effects()
        return effects

    # application inputs (through net.call, so each is a step)
    def ping(self, dest: int, hops: int = 0, *, write: bytes | None = None) -> None:
        if write is not None:
            self._effects.writes.append(("echo", b"last", write))
        self._effects.sends.append((IDS[dest], Ping(hops)))


def make_net(n: int = 3, **kwargs: Any) -> SteppedNet[EchoCore]:
    return SteppedNet(IDS[:n], EchoCore, **kwargs)


def got(net: SteppedNet[EchoCore], i: int) -> list[tuple[int, int]]:
    return [(net.index[e.sender], e.hops) for e in net.events(i, Got)]


def test_a_step_persists_its_writes_before_its_sends_leave() -> None:
    net = make_net()
    store = net.stores[0]
    real_apply = store.apply
    at_persist: list[tuple[bool, int]] = []  # (sync, messages sent by then)

    def apply(batch: Any, *, sync: bool = True) -> None:
        at_persist.append((sync, len(net.sent)))
        real_apply(batch, sync=sync)

    store.apply = apply  # type: ignore[method-assign]
    net.call(0, lambda core, now_s: core.ping(1, write=b"v1"))
    assert at_persist == [(True, 0)]  # synced, and nothing was sent yet
    assert net.inflight == [(0, 1, Ping(0))]
    # what the receiver hears, a crash of the sender can no longer take back
    net.crash(0)
    assert store.durable_get("echo", b"last") == b"v1"
    net.deliver()
    assert got(net, 1) == [(0, 0)]


def test_a_crash_loses_unsynced_writes_and_a_restart_builds_a_new_core_from_the_store() -> None:
    net = make_net()
    net.call(0, lambda core, now_s: core.ping(1, write=b"synced"))
    net.stores[0].apply([("echo", b"lazy", b"x")], sync=False)  # not yet on disk
    old = net.core(0)
    net.crash(0)
    assert net.cores[0] is None and not net.is_up(0)
    assert net.stores[0].get("echo", b"lazy") is None
    assert net.stores[0].get("echo", b"last") == b"synced"
    with pytest.raises(AssertionError, match="crashed"):
        net.call(0, lambda core, now_s: core.ping(1))
    net.deliver()  # sent before the crash: already on the wire, delivered
    assert got(net, 1) == [(0, 0)]
    net.call(1, lambda core, now_s: core.ping(0))
    net.deliver()  # to a crashed node: lost
    assert net.delivered == 1 and net.events(0, Got) == []
    net.advance(1.0)
    net.restart(0)
    new = net.core(0)
    assert new is not old and new.incarnation == 1 and new.store is net.stores[0]
    assert new.ticks == [1.0] and net.is_up(0)  # ticked at once
    assert net.wake_at_s[0] == 2.0


def test_stabilize_reaches_a_fixed_point_and_rounds_deliver_in_the_same_order() -> None:
    fifo, rounds = make_net(), make_net()
    for net in (fifo, rounds):
        net.call(0, lambda core, now_s: core.ping(1, hops=3))
        net.call(2, lambda core, now_s: core.ping(1, hops=1))
    fifo.stabilize()
    rounds.deliver()
    assert not fifo.inflight and not rounds.inflight
    assert got(fifo, 1) == got(rounds, 1) == [(0, 3), (2, 1), (0, 1)]
    assert fifo.sent == rounds.sent
    assert len(fifo.sent) == 6 and fifo.delivered == 6


def test_stabilize_detects_a_pair_that_never_settles() -> None:
    net = make_net()
    net.call(0, lambda core, now_s: core.ping(1, hops=-1))  # answered forever
    with pytest.raises(AssertionError, match="never settles"):
        net.stabilize(steps_max=50)
    assert net.delivered == 50 and len(net.inflight) == 1  # the next one is kept
    with pytest.raises(AssertionError, match="after 10 rounds"):
        net.deliver(rounds_max=10)
    assert net.delivered == 60


def test_deliver_round_keeps_what_it_caused_in_flight() -> None:
    net = make_net()
    net.call(0, lambda core, now_s: core.ping(1, hops=2))
    net.deliver_round()
    assert net.inflight == [(1, 0, Ping(1))]
    net.inflight.append((2, 0, Ping(0)))  # tests may add, reorder, hold back
    net.deliver_round()
    assert got(net, 0) == [(1, 1), (2, 0)]
    assert net.inflight == [(0, 1, Ping(0))]


def test_drop_loses_the_messages_it_names_and_only_those() -> None:
    net = make_net()
    asked: list[tuple[int, int]] = []

    def drop(src: int, dst: int, msg: Any) -> bool:
        asked.append((src, dst))
        return dst == 2

    net.call(0, lambda core, now_s: core.ping(1))
    net.call(0, lambda core, now_s: core.ping(2))
    net.crash(1)
    net.deliver(drop=drop)
    assert asked == [(0, 2)]  # a message to a down node is lost before drop is asked
    assert net.delivered == 0 and len(net.sent) == 2


def test_a_link_cut_loses_messages_when_sent_and_when_they_arrive() -> None:
    cut: set[tuple[int, int]] = {(0, 2)}
    net = make_net(link=lambda src, dst: (src, dst) not in cut)
    net.call(0, lambda core, now_s: core.ping(2))
    assert net.inflight == [] and len(net.sent) == 1  # logged, never on the wire
    net.call(0, lambda core, now_s: core.ping(1))
    cut.add((0, 1))  # the partition starts while it is in flight
    cut.discard((0, 2))
    net.call(0, lambda core, now_s: core.ping(2))
    net.stabilize()
    assert got(net, 1) == [] and got(net, 2) == [(0, 0)]


def test_an_unplugged_node_keeps_its_core_and_misses_ticks_and_messages() -> None:
    net = make_net()
    core = net.core(1)
    net.down.add(1)
    net.call(0, lambda c, now_s: c.ping(1))
    net.advance(1.0)
    net.deliver()
    net.down.discard(1)
    net.advance(1.0)
    assert net.core(1) is core and core.ticks == [2.0] and got(net, 1) == []


def test_each_node_reads_global_time_at_its_own_rate() -> None:
    net = make_net(rates={1: 1.5, 2: 0.5})
    net.advance(2.0)
    assert [net.core(i).ticks for i in range(3)] == [[2.0], [3.0], [1.0]]
    assert net.wake_at_s == [3.0, 4.0, 2.0]  # local times, as the cores asked
    net.call(0, lambda core, now_s: core.ping(1))
    net.deliver()
    assert net.events(1, Got)[0].now_s == 3.0
    net.advance(1.0, tick=False)
    assert net.local(2) == 1.5 and net.core(2).ticks == [1.0]


def test_wire_encodes_and_decodes_every_delivered_message() -> None:
    codec = MessageCodec("echo", {1: Ping})
    net = make_net(wire=codec)
    net.call(0, lambda core, now_s: core.ping(1, hops=1))
    sent = net.inflight[0][2]
    net.stabilize()
    assert got(net, 1) == [(0, 1)] and got(net, 0) == [(1, 0)]
    [heard] = net.core(1).received
    assert heard == sent and heard is not sent  # a copy, decoded from its bytes
    net.inflight.append((0, 1, Got(IDS[0], 0, 0.0)))  # not a message of the codec
    net.inflight.append((0, 1, Ping(0)))
    with pytest.raises(TypeError, match="not a echo message"):
        net.stabilize()
    assert net.inflight == [(0, 1, Ping(0))]  # what was not taken yet is still in flight
