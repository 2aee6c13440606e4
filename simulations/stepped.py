"""A stepped network of sans-IO cores for core unit tests (raft's rafttest interaction env).

No event queue, no latency, no randomness of its own: a test decides every step. Messages
wait in `inflight` until the test delivers them, so it can look at them, reorder them,
hold some back or drop them; one global time `t` moves only when the test advances it.

    net = SteppedNet(ids, lambda i, store, incarnation: Core(ids[i], store, ...))
    net.call(0, lambda core, now_s: core.submit(now_s, ...))  # a step of node 0
    net.deliver(drop=lambda src, dst, msg: dst == 2)  # node 2 hears nothing
    net.advance(1.0)  # every up node ticks at t + 1 s
    net.crash(1)
    net.restart(1)  # a new core from what node 1's store kept
    net.stabilize()  # FIFO until nothing is in flight

The rules it keeps, for every step (a message, a tick or a call):

- a step ends with a flush: `take_effects()`, then the writes are applied to the node's
  `MemoryStore` in one synced batch *before* the sends join `inflight` (persist before
  send, DESIGN.md §2, in the order of `simulations/_flush.py`), then the events are
  recorded for the node and its wake-up time is noted in `wake_at_s`;
- every send is logged in `sent`, whether or not it is ever delivered;
- a node's local time is `t × rate` (rate 1 unless `rates` says otherwise);
- with `wire`, every delivered message goes through the codec (encoded and decoded), so
  a test of the cores is also a test that their messages survive the wire;
- `link(src, dst)` False is a partition: what is sent across it is lost when sent and
  when it would arrive;
- nodes in `down` are off: they are not ticked and what arrives for them is lost.
  `crash(i)` puts a node there, drops its core and crashes its store (unsynced writes
  are lost); a test may also put a node in `down` by hand (unplugged: its core stays and
  continues where it was when it is taken out again). Messages a node sent before it
  went down are already on the wire: they are still delivered.

`deliver` goes round by round (everything in flight now, then what that caused) and
asserts that it ends within `rounds_max` rounds; `deliver_round` does one round;
`stabilize` delivers in FIFO order until nothing is in flight (a fixed point) and asserts
that it gets there within `steps_max` messages. Rounds and FIFO deliver in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar

from colonynode.core.codec import MessageCodec
from colonynode.core.effects import Effects, ProtocolCore
from colonynode.core.ids import NodeId
from colonynode.simulations._flush import apply_effects
from colonynode.storage.memory import MemoryStore

__all__ = [
    "INFLIGHT_MAX",
    "ROUNDS_MAX",
    "SENT_MAX",
    "STEPS_MAX",
    "CoreMaker",
    "Drop",
    "InFlight",
    "Link",
    "SteppedNet",
]

C = TypeVar("C", bound=ProtocolCore)
R = TypeVar("R")
E = TypeVar("E")

# make(index, store, incarnation): the node's core, built from what its store kept. The
# incarnation is 0 at first and +1 per restart (a fresh rng stream per life, say).
CoreMaker = Callable[[int, MemoryStore, int], C]
InFlight = tuple[int, int, Any]  # (src index, dst index, msg)
Drop = Callable[[int, int, Any], bool]  # drop(src, dst, msg) True: the message is lost
Link = Callable[[int, int], bool]  # link(src, dst) False: src cannot reach dst

ROUNDS_MAX: Final = 100  # rounds of one deliver(): a conversation that long is a bug
STEPS_MAX: Final = 100_000  # messages of one stabilize(): a pair that never settles
INFLIGHT_MAX: Final = 1_000_000  # messages waiting: a core that floods the network
SENT_MAX: Final = 10_000_000  # the log of sends: a test this long needs a new limit


class _Port:
    """One node's side of `apply_effects`: its store, its sends, its events."""

    __slots__ = ("index", "net")

    def __init__(self, net: SteppedNet[Any], index: int) -> None:
        self.net = net
        self.index = index

    def persist(self, effects: Effects) -> None:
        if effects.writes:
            self.net.stores[self.index].apply(effects.writes, sync=True)

    def send(self, sends: list[tuple[NodeId, Any]]) -> None:
        self.net._queue(self.index, sends)

    def publish(self, events: list[Any]) -> None:
        self.net.node_events[self.index].extend(events)

    def wake(self, at_local_s: float | None) -> None:
        self.net.wake_at_s[self.index] = at_local_s


class SteppedNet(Generic[C]):
    """Cores of the ids given, stepped by hand, each with its own MemoryStore."""

    def __init__(
        self,
        ids: Sequence[NodeId],
        make: CoreMaker[C],
        *,
        rates: Mapping[int, float] | None = None,
        wire: MessageCodec | None = None,
        link: Link | None = None,
    ) -> None:
        n = len(ids)
        assert n > 0, "a network of no nodes"
        self.ids: list[NodeId] = list(ids)
        self.index: dict[NodeId, int] = {node_id: i for i, node_id in enumerate(self.ids)}
        assert len(self.index) == n, "node ids must be distinct"
        self.make = make
        self.rates: list[float] = [(rates or {}).get(i, 1.0) for i in range(n)]
        assert all(rate > 0 for rate in self.rates), self.rates
        self.wire = wire
        self.link = link
        self.t = 0.0  # global time; node i's clock reads t * rates[i]
        # A test may replace a store (a fresh data dir) before a restart.
        self.stores: list[MemoryStore] = [MemoryStore() for _ in range(n)]
        self.incarnations: list[int] = [0] * n
        self.cores: list[C | None] = [make(i, self.stores[i], 0) for i in range(n)]
        self.down: set[int] = set()
        # Tests may read, reorder, filter or extend it (and assign a new list).
        self.inflight: list[InFlight] = []
        self.sent: list[InFlight] = []  # every send, in order, delivered or not
        self.node_events: list[list[Any]] = [[] for _ in range(n)]
        self.wake_at_s: list[float | None] = [None] * n  # from each node's last flush
        self.delivered = 0  # messages handed to a core
        self._ports = [_Port(self, i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (
            f"SteppedNet({len(self)} nodes, t={self.t}, {len(self.inflight)} in flight, "
            f"down={sorted(self.down)})"
        )

    # -- nodes ------------------------------------------------------------------------

    def core(self, i: int) -> C:
        core = self.cores[i]
        assert core is not None, f"node {i} is crashed: restart it first"
        return core

    def is_up(self, i: int) -> bool:
        return i not in self.down

    def local(self, i: int) -> float:
        """Node i's clock now."""
        return self.t * self.rates[i]

    def events(self, i: int, kind: type[E]) -> list[E]:
        """The events of node i of type `kind`, oldest first."""
        return [e for e in self.node_events[i] if isinstance(e, kind)]

    # -- steps ------------------------------------------------------------------------

    def flush(self, i: int) -> None:
        """Persist, then send, then record what node i's core has to do."""
        apply_effects(self._ports[i], self.core(i).take_effects())

    def flush_all(self) -> None:
        """Flush every up node, in order (after a test stepped cores by hand)."""
        for i in range(len(self)):
            if i not in self.down and self.cores[i] is not None:
                self.flush(i)

    def call(self, i: int, fn: Callable[[C, float], R]) -> R:
        """Run `fn(core, local_now_s)` as a step of node i (an application input)."""
        result = fn(self.core(i), self.local(i))
        self.flush(i)
        return result

    def tick(self, i: int) -> None:
        """A timer step of node i, unless it is down."""
        if i not in self.down:
            self.core(i).on_tick(self.local(i))
            self.flush(i)

    def tick_all(self) -> None:
        for i in range(len(self)):
            self.tick(i)

    def advance(self, dt_s: float, *, tick: bool = True) -> None:
        """Let `dt_s` pass, then (with `tick`) tick every up node. Nothing is delivered."""
        assert dt_s >= 0, f"time never goes back (dt_s={dt_s})"
        self.t += dt_s
        if tick:
            self.tick_all()

    # -- the network ------------------------------------------------------------------

    def _queue(self, src: int, sends: list[tuple[NodeId, Any]]) -> None:
        link = self.link
        for dest, msg in sends:
            dst = self.index.get(dest)
            assert dst is not None, f"node {src} sent {msg!r} to {dest!r}, not in the network"
            self.sent.append((src, dst, msg))
            if link is None or link(src, dst):
                self.inflight.append((src, dst, msg))
        assert len(self.sent) <= SENT_MAX, f"over {SENT_MAX} messages sent"
        assert len(self.inflight) <= INFLIGHT_MAX, f"over {INFLIGHT_MAX} messages in flight"

    def _deliver_one(self, src: int, dst: int, msg: Any, drop: Drop | None) -> None:
        if dst in self.down:
            return
        if self.link is not None and not self.link(src, dst):
            return
        if drop is not None and drop(src, dst, msg):
            return
        if self.wire is not None:
            [msg] = self.wire.decode_batch(self.wire.encode_batch([msg]))
        self.delivered += 1
        self.core(dst).on_message(self.local(dst), self.ids[src], msg)
        self.flush(dst)

    def _run(self, drop: Drop | None, rounds_max: int, steps_max: int | None) -> bool:
        """Deliver round by round; True when nothing is left in flight. Stops (False)
        before the round past `rounds_max` or the message past `steps_max`."""
        steps = 0
        for _ in range(rounds_max):
            if not self.inflight:
                return True
            batch, self.inflight = self.inflight, []
            k = 0
            try:
                while k < len(batch):
                    if steps == steps_max:
                        return False
                    src, dst, msg = batch[k]
                    k += 1
                    steps += 1
                    self._deliver_one(src, dst, msg, drop)
            finally:  # what was not taken (a limit, a core that raised) stays, in order
                self.inflight[:0] = batch[k:]
        return not self.inflight

    def deliver_round(self, drop: Drop | None = None) -> None:
        """Deliver what is in flight now; what it causes stays in flight."""
        self._run(drop, 1, None)

    def deliver(self, *, drop: Drop | None = None, rounds_max: int = ROUNDS_MAX) -> None:
        """Deliver everything in flight and what it causes, round by round, in order.

        `drop(src, dst, msg)` True loses a message (asked only for a message that would
        reach an up node across a link). AssertionError if messages are still in flight
        after `rounds_max` rounds (they stay in flight)."""
        if not self._run(drop, rounds_max, None):
            raise AssertionError(
                f"{len(self.inflight)} messages still in flight after {rounds_max} rounds"
            )

    def stabilize(self, steps_max: int = STEPS_MAX, *, drop: Drop | None = None) -> None:
        """Deliver in FIFO order until nothing is in flight: a fixed point.

        AssertionError if it takes more than `steps_max` messages (lost ones count): the
        cores never settle (say, a pair that answers each other forever)."""
        if not self._run(drop, steps_max + 1, steps_max):
            raise AssertionError(
                f"the network never settles: {len(self.inflight)} messages still in flight "
                f"after {steps_max} steps"
            )

    # -- host faults ------------------------------------------------------------------

    def crash(self, i: int) -> None:
        """Node i dies: its core is gone, its store loses every unsynced write, what
        arrives for it is lost. What it sent before is already on the wire."""
        self.down.add(i)
        self.cores[i] = None
        self.wake_at_s[i] = None
        self.stores[i].crash()

    def restart(self, i: int) -> None:
        """A new incarnation of node i: a core built from its store, ticked at once.
        A node that is running (or only unplugged) is crashed first."""
        if self.cores[i] is not None:
            self.crash(i)
        self.incarnations[i] += 1
        self.cores[i] = self.make(i, self.stores[i], self.incarnations[i])
        self.down.discard(i)
        self.tick(i)
