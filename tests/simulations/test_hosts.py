"""Simulated hosts (simulations/node.py): persist before send, crash, restart, pause."""

from __future__ import annotations

from colonynode.core.effects import Effects
from colonynode.storage.memory import MemoryStore

from .cores import booted_world, core, do


def _store(world: object, index: int) -> MemoryStore:
    store = world.nodes[index].store  # type: ignore[attr-defined]
    assert isinstance(store, MemoryStore)
    return store


def test_writes_are_durable_before_the_messages_of_the_step_leave() -> None:
    world = booted_world(2)
    dest = world.ids[1]

    def step(c, now_s):  # type: ignore[no-untyped-def]
        c.write("t", b"k", 7)
        c.send(dest, "hello")

    do(world, 0, step)
    # the frame is only on the wire; the write is already durable
    assert _store(world, 0).unsynced_batches == 0
    assert _store(world, 0).durable_get("t", b"k") == 7
    world.run_until(world.now_s + 1.0)
    assert [(k, m) for k, _, _, m in core(world, 1).log if k == "msg"] == [("msg", "hello")]


def test_one_frame_per_destination_per_step() -> None:
    world = booted_world(3)
    a, b = world.ids[1], world.ids[2]

    def step(c, now_s):  # type: ignore[no-untyped-def]
        for msg in ("x", "y", "z"):
            c.send(a, msg)
        c.send(b, "w")

    sent_before = world.network.stats.sent
    do(world, 0, step)
    assert world.network.stats.sent - sent_before == 2
    world.run_until(world.now_s + 1.0)
    assert [m for k, _, _, m in core(world, 1).log if k == "msg"] == ["x", "y", "z"]


def test_a_crash_loses_unsynced_writes_and_restart_rebuilds_from_the_store() -> None:
    world = booted_world(2, sync_policy=lambda effects: bool(effects.sends))
    node = world.nodes[0]
    do(world, 0, lambda c, now_s: c.write("t", b"lazy", 1))
    assert node.store.get("t", b"lazy") == 1
    boots = core(world, 0).boots
    node.crash()
    assert not node.alive and node.core is None
    assert node.stats.lost_batches >= 1
    node.restart()
    assert node.store.get("t", b"lazy") is None
    assert core(world, 0).boots == boots  # the boot counter was lazy too: lost
    assert core(world, 0).kinds() == ["tick"]  # a restarted core is ticked at once


def test_a_crashed_node_drops_frames_and_forgets_its_timer() -> None:
    world = booted_world(2)
    dest = world.ids[0]
    do(world, 0, lambda c, now_s: c.wake_at(now_s + 1.0))
    world.nodes[0].crash()
    do(world, 1, lambda c, now_s: c.send(dest, "into the void"))
    world.run_until(world.now_s + 5.0)
    assert world.nodes[0].stats.dropped_down == 1
    assert world.nodes[0].call(lambda c, now_s: None) is False
    world.nodes[0].restart()
    world.run_until(world.now_s + 5.0)
    assert core(world, 0).kinds() == ["tick"]  # the boot tick only: the old timer is gone


def test_a_paused_node_buffers_then_gets_its_stale_tick_first_then_the_frames() -> None:
    world = booted_world(2)
    node = world.nodes[0]
    c = core(world, 0)
    dest = world.ids[0]
    wake_s = node.local_now() + 1.0
    do(world, 0, lambda c, now_s: c.wake_at(wake_s))
    c.log.clear()
    node.pause()
    for msg in ("a", "b"):
        do(world, 1, lambda c, now_s, m=msg: c.send(dest, m))
    assert node.call(lambda c, now_s: c.log.append(("call", now_s, None, None))) is True
    world.run_until(world.now_s + 3.0)
    assert c.log == []  # frozen: no tick, no frame, no call
    resumed_local_s = node.local_now()
    node.resume()
    world.run_until(world.now_s + 0.5)
    assert c.kinds() == ["tick", "call", "msg", "msg"]  # the call was held before the frames
    tick_s = c.log[0][1]
    assert tick_s >= resumed_local_s > wake_s + 1.5  # the timer fired late: stale
    assert [m for k, _, _, m in c.log if k == "msg"] == ["a", "b"]


def test_a_paused_node_that_crashes_forgets_what_it_buffered() -> None:
    world = booted_world(2)
    dest = world.ids[0]
    world.nodes[0].pause()
    do(world, 1, lambda c, now_s: c.send(dest, "buffered"))
    world.run_until(world.now_s + 1.0)
    assert len(world.nodes[0].buffer) == 1
    world.nodes[0].crash()
    world.nodes[0].restart()
    world.run_until(world.now_s + 1.0)
    assert core(world, 0).kinds() == ["tick"]
    assert world.stopped == 0


def test_a_busy_timer_loop_is_a_violation_not_a_hang() -> None:
    world = booted_world(1)

    class Spinner:
        def on_message(self, now_s, sender, msg):  # type: ignore[no-untyped-def]
            pass

        def on_tick(self, now_s):  # type: ignore[no-untyped-def]
            pass

        def take_effects(self) -> Effects:
            return Effects(wake_at_s=0.0)  # always already due

    world.nodes[0].core = Spinner()
    world.nodes[0].call(lambda c, now_s: None)
    world.run_until(world.now_s + 1.0)
    assert [v.checker for v in world.violations] == ["timers"]
    assert world.halted


def test_an_exception_in_a_core_is_a_violation_at_its_step() -> None:
    world = booted_world(2)
    dest = world.ids[1]

    class Failing(RuntimeError):
        pass

    def explode(c: object, now_s: float) -> None:
        raise Failing("invariant broken")

    world.nodes[1].core.on_message = lambda now_s, sender, msg: explode(None, now_s)  # type: ignore[union-attr]
    do(world, 0, lambda c, now_s: c.send(dest, "boom"))
    assert world.run_until(world.now_s + 1.0) is False
    (violation,) = world.violations
    assert violation.checker == "exception"
    assert violation.step == world.step
    assert violation.message.startswith("Failing: invariant broken at test_hosts.py:")
    assert violation.message.endswith("in explode (node 1)")
