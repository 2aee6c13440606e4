"""A simulated node: one `ProtocolCore` with its store, clock and transport view.

`SimNode` is the simulator's driver, the counterpart of the Trio driver in node/: it
steps the core on each frame, timer or call, then does what `take_effects()` asks in the
order DESIGN.md §2 fixes: persist the writes, then send the messages (one frame per
destination and channel), then hand the events to the application (the scenario).

Faults of the host:

- `crash()`: the core and everything in memory are gone; the store loses its unsynced
  writes; frames that arrive are dropped; timers and running calls are forgotten.
- `restart()`: a new core is built by `core_factory(node_id, store, rng)` from what the
  store kept, and ticked at once.
- `pause()`: the node freezes (a GC pause, a stopped VM): frames and calls queue in a
  bounded buffer, its timers do not fire. `resume()` runs the overdue tick first (stale
  timers), then the buffered frames, each as its own step, at the resume instant.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from colonynode.core.effects import LAZY, Effects, ProtocolCore
from colonynode.core.ids import NodeId
from colonynode.simulations._flush import apply_effects
from colonynode.simulations.engine import CALL, TICK, NodeClock
from colonynode.simulations.network import Frame, SimTransport
from colonynode.storage.api import Store

if TYPE_CHECKING:
    from colonynode.simulations.world import World

__all__ = [
    "CoreFactory",
    "NodeStats",
    "SimClock",
    "SimNode",
    "SyncPolicy",
    "always_sync",
    "as_asked",
]

C = TypeVar("C", bound=ProtocolCore)

CoreFactory = Callable[[NodeId, Store, random.Random], C]
# Whether a step's writes must be durable before its effects go out. The default syncs
# every batch; a scenario may let write-only steps be lazy to exercise lost writes.
SyncPolicy = Callable[[Effects], bool]

PAUSE_BUFFER_MAX = 1024  # frames and calls a paused node holds; more are dropped
TIMER_MIN_S = 1e-6  # a timer asked for "now" fires this much later: no zero-time loops
# A core that asks for a timer already due this many times in a row is busy-looping:
# the world records a violation (checker "timers") instead of spinning.
OVERDUE_TIMERS_MAX = 10_000


def always_sync(effects: Effects) -> bool:
    return True


def as_asked(effects: Effects) -> bool:
    """Sync what the core says must be durable (`Effects.durability`), as the daemon's
    driver does: a LAZY batch is applied unsynced, so a crash loses it (and every lazy
    batch after the last synced one), as a crash of the daemon loses its deferred writes."""
    return effects.durability != LAZY


class NodeStats:
    __slots__ = (
        "calls",
        "crashes",
        "dropped_down",
        "dropped_paused",
        "frames",
        "lost_batches",
        "pauses",
        "restarts",
        "ticks",
    )

    def __init__(self) -> None:
        self.frames = 0  # frames handed to the core
        self.ticks = 0
        self.calls = 0
        self.crashes = 0
        self.restarts = 0
        self.pauses = 0
        self.dropped_down = 0  # frames that arrived while the node was down
        self.dropped_paused = 0  # over PAUSE_BUFFER_MAX while paused
        self.lost_batches = 0  # unsynced write batches lost by crashes


class SimClock:
    """A node's local clock as a `core.clock.Clock`, for cores that take one."""

    __slots__ = ("_clock", "_world")

    def __init__(self, world: World, clock: NodeClock) -> None:
        self._world = world
        self._clock = clock

    def now_s(self) -> float:
        return self._clock.local(self._world.queue.now_s)


class SimNode(Generic[C]):
    """One node of the simulated colony."""

    def __init__(
        self,
        world: World,
        index: int,
        node_id: NodeId,
        store: Store,
        clock: NodeClock,
        transport: SimTransport,
        core_factory: CoreFactory[C],
        rng: random.Random,
        channel: str,
        *,
        channel_of: Callable[[Any], str] | None = None,
        sync_policy: SyncPolicy = always_sync,
    ) -> None:
        self.world = world
        self.index = index
        self.node_id = node_id
        self.store = store
        self.clock = clock
        self.transport = transport
        self.core_factory = core_factory
        self.rng = rng
        self.channel = channel
        self.channel_of = channel_of
        self.sync_policy = sync_policy
        self.core: C | None = None
        self.booted = False
        self.alive = False
        self.paused = False
        self.woke_s = 0.0  # global time of the last boot, restart or resume
        self.incarnation = 0  # +1 per crash: work scheduled before a crash is dropped
        self.timer_local_s: float | None = None
        self.timer_gen = 0
        self.overdue_timers = 0
        self.tick_overdue = False
        self.unsynced = False
        self.buffer: list[tuple[int, Any]] = []  # (CALL/TICK kind tag, frame or fn)
        self.stats = NodeStats()
        self.clock_view = SimClock(world, clock)
        transport.set_receiver(channel, self._on_frame)

    def __repr__(self) -> str:
        state = "up" if self.alive else "down"
        return f"SimNode({self.index}, {state}{', paused' if self.paused else ''})"

    def listen(self, channel: str) -> None:
        """Also receive frames on `channel` (cores that speak several protocols)."""
        self.transport.set_receiver(channel, self._on_frame)

    # -- stepping -----------------------------------------------------------------------

    def local_now(self) -> float:
        return self.clock.local(self.world.queue.now_s)

    def boot(self) -> None:
        """Build the core from the store and tick it (start and restart)."""
        self.woke_s = self.world.queue.now_s
        self.core = self.core_factory(self.node_id, self.store, self.rng)
        self.booted = True
        self.alive = True
        self.world.network.up[self.index] = 1
        self.timer_local_s = None
        self._tick(self.local_now())

    def _on_frame(self, sender: NodeId, channel: str, msgs: Sequence[Any]) -> None:
        if not self.alive:
            self.stats.dropped_down += 1
            return
        if self.paused:
            src = self.world.network.index_of[sender]
            self._hold(0, (src, channel, msgs))
            return
        core = self.core
        assert core is not None
        self.world.step_node = self.index
        self.stats.frames += 1
        now_s = self.local_now()
        for msg in msgs:
            core.on_message(now_s, sender, msg)
        self.flush(core)

    def on_timer(self, generation: int) -> None:
        """A TICK event: fire unless cancelled (a newer timer, a crash) or paused."""
        if generation != self.timer_gen or not self.alive:
            return
        if self.paused:
            self.tick_overdue = True
            return
        local_s = self.timer_local_s
        self.timer_local_s = None
        now_s = (
            self.local_now()
            if local_s is None
            else self.clock.local_at_least(self.world.queue.now_s, local_s)
        )
        self._tick(now_s)

    def _tick(self, now_s: float) -> None:
        core = self.core
        assert core is not None
        self.world.step_node = self.index
        self.stats.ticks += 1
        core.on_tick(now_s)
        self.flush(core)

    def call(self, fn: Callable[[C, float], None], incarnation: int | None = None) -> bool:
        """Run `fn(core, local_now_s)` as a step of this node (workloads, executors).

        False when the node is down, or has crashed since `incarnation`. A paused node
        buffers the call and runs it when it resumes.
        """
        if not self.alive or (incarnation is not None and incarnation != self.incarnation):
            return False
        if self.paused:
            return self._hold(1, fn)
        core = self.core
        assert core is not None
        self.world.step_node = self.index
        self.stats.calls += 1
        fn(core, self.local_now())
        self.flush(core)
        return True

    def flush(self, core: C) -> None:
        """Persist, then send, then publish one step's effects; then arm the timer."""
        apply_effects(self, core.take_effects())

    # -- the EffectSink of apply_effects (simulations/_flush.py) ------------------------

    def persist(self, effects: Effects) -> None:
        """The step's writes in one batch, durable unless the sync policy says not; an
        earlier unsynced batch is made durable when a later step must sync."""
        writes = effects.writes
        sync = self.sync_policy(effects) if (writes or self.unsynced) else False
        if writes:
            self.store.apply(writes, sync=sync)
            self.unsynced = not sync
        elif sync:
            self.store.apply((), sync=True)
            self.unsynced = False

    def send(self, sends: list[tuple[NodeId, Any]]) -> None:
        """One frame per destination and channel."""
        if len(sends) == 1 and self.channel_of is None:
            dest, msg = sends[0]
            self.transport.send(dest, self.channel, (msg,))
        else:
            self._send_batched(sends)

    def publish(self, events: list[Any]) -> None:
        self.world.publish(self, events)

    def wake(self, at_local_s: float | None) -> None:
        if at_local_s is not None:
            self.set_timer(at_local_s)

    def _send_batched(self, sends: Sequence[tuple[NodeId, Any]]) -> None:
        """One frame per (destination, channel), in first-send order."""
        frames: dict[tuple[NodeId, str], list[Any]] = {}
        channel_of = self.channel_of
        for dest, msg in sends:
            key = (dest, self.channel if channel_of is None else channel_of(msg))
            batch = frames.get(key)
            if batch is None:
                frames[key] = [msg]
            else:
                batch.append(msg)
        for (dest, channel), msgs in frames.items():
            self.transport.send(dest, channel, msgs)

    def set_timer(self, wake_local_s: float) -> None:
        """Arm the timer for local time `wake_local_s` unless an earlier one is armed."""
        current = self.timer_local_s
        if current is not None and current <= wake_local_s:
            return
        self.timer_local_s = wake_local_s
        self.timer_gen += 1
        queue = self.world.queue
        at_s = self.clock.global_at(wake_local_s)
        floor_s = queue.now_s + TIMER_MIN_S
        if at_s > floor_s:
            self.overdue_timers = 0
        else:
            at_s = floor_s
            self.overdue_timers += 1
            if self.overdue_timers == OVERDUE_TIMERS_MAX:
                self.world.violation(
                    "timers",
                    f"node {self.index} asked for a timer already due {OVERDUE_TIMERS_MAX} "
                    f"times in a row (a busy loop)",
                )
        queue.push(at_s, TICK, self.index, self.timer_gen)

    # -- host faults --------------------------------------------------------------------

    def crash(self) -> None:
        if not self.alive:
            return
        if not self.paused:
            self.world.stopped += 1
        self.alive = False
        self.paused = False
        self.core = None
        self.incarnation += 1
        self.timer_gen += 1
        self.timer_local_s = None
        self.tick_overdue = False
        self.unsynced = False
        self.buffer.clear()
        self.world.network.up[self.index] = 0
        crash = getattr(self.store, "crash", None)
        if crash is not None:
            lost = crash(self.world.store_rng if self.world.partial_flush else None)
            self.stats.lost_batches += int(lost or 0)
        self.stats.crashes += 1

    def restart(self) -> None:
        if self.alive:
            return
        if self.booted:
            self.stats.restarts += 1
            self.world.stopped -= 1
        self.world.step_node = self.index
        self.boot()

    def pause(self) -> None:
        if self.alive and not self.paused:
            self.paused = True
            self.world.stopped += 1
            self.stats.pauses += 1

    def resume(self) -> None:
        """Unfreeze: the overdue tick, then the buffered frames and calls, as steps now."""
        if not self.paused:
            return
        self.paused = False
        self.woke_s = self.world.queue.now_s
        self.world.stopped -= 1
        queue = self.world.queue
        if self.tick_overdue:
            self.tick_overdue = False
            queue.push(queue.now_s, TICK, self.index, self.timer_gen)
        held, self.buffer = self.buffer, []
        incarnation = self.incarnation
        for kind, item in held:
            if kind == 0:
                queue.push(queue.now_s, CALL, _Redeliver(self, incarnation, item))
            else:
                queue.push(queue.now_s, CALL, _Recall(self, incarnation, item))

    def _hold(self, kind: int, item: Any) -> bool:
        if len(self.buffer) >= PAUSE_BUFFER_MAX:
            self.stats.dropped_paused += 1
            return False
        self.buffer.append((kind, item))
        return True


class _Redeliver:
    """A buffered frame, handed over when its paused node resumes."""

    __slots__ = ("frame", "incarnation", "node")

    def __init__(self, node: SimNode[Any], incarnation: int, frame: Frame) -> None:
        self.node = node
        self.incarnation = incarnation
        self.frame = frame

    def __call__(self, world: World) -> None:
        if self.node.incarnation == self.incarnation:
            world.network.redeliver(self.node.index, self.frame)


class _Recall:
    """A buffered call, run when its paused node resumes."""

    __slots__ = ("fn", "incarnation", "node")

    def __init__(self, node: SimNode[Any], incarnation: int, fn: Callable[[Any, float], None]):
        self.node = node
        self.incarnation = incarnation
        self.fn = fn

    def __call__(self, world: World) -> None:
        self.node.call(self.fn, self.incarnation)
