"""The discrete-event core of the simulator: one event queue, one simulated clock.

Every event is a tuple ``(at_s, seq, kind, a, b)`` on a binary heap. ``seq`` grows by one
per push, so events at the same simulated instant run in the order they were scheduled:
ties never depend on anything but the order of the program, which the seed fixes.

Nodes do not read the global clock. Each has a `NodeClock`: a monotonic local clock that
runs at ``rate`` (1 ± the drift bound) from an arbitrary ``offset_s``, the way two
machines' monotonic clocks disagree in both origin and speed (DESIGN.md §6: no clock
synchronisation is assumed, only a bound on rates). Cores get local time; the timers they
ask for (`Effects.wake_at_s`) are in local time and converted back to global time here.
"""

from __future__ import annotations

import heapq
import random
from typing import Any, Final

__all__ = [
    "CALL",
    "DELIVER",
    "INTERNAL",
    "TICK",
    "Event",
    "EventQueue",
    "NodeClock",
    "make_clocks",
]

# Event kinds. The world loop dispatches on these.
DELIVER: Final = 0  # a: destination node index, b: frame (src index, channel, msgs)
TICK: Final = 1  # a: node index, b: the node's timer generation when it was scheduled
CALL: Final = 2  # a: fn(world) -> None, b: unused. A step: checkers run after it.
INTERNAL: Final = 3  # a: fn(world) -> None. Book-keeping (samples, probes): not a step.

Event = tuple[float, int, int, Any, Any]


class EventQueue:
    """A heap of events and the simulated clock that follows the events it pops."""

    __slots__ = ("heap", "now_s", "pushed", "seq")

    def __init__(self) -> None:
        self.heap: list[Event] = []
        self.seq = 0
        self.now_s = 0.0
        self.pushed = 0

    def push(self, at_s: float, kind: int, a: Any, b: Any = None) -> None:
        """Schedule an event; one in the past runs at the current instant."""
        if at_s < self.now_s:
            at_s = self.now_s
        heapq.heappush(self.heap, (at_s, self.seq, kind, a, b))
        self.seq += 1

    def pop(self) -> Event:
        """The earliest event (insertion order among equals); the clock moves to it."""
        event = heapq.heappop(self.heap)
        self.now_s = event[0]
        return event

    def peek_s(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def __len__(self) -> int:
        return len(self.heap)


class NodeClock:
    """One node's monotonic clock: ``local = offset_s + rate * global``, never going back.

    `local` is clamped to the last value it returned, so a node never sees time run
    backwards even where float rounding of the inverse (`global_at`) would make it.
    """

    __slots__ = ("_last_local_s", "offset_s", "rate")

    def __init__(self, rate: float = 1.0, offset_s: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("a clock rate is positive")
        self.rate = rate
        self.offset_s = offset_s
        self._last_local_s = offset_s

    def local(self, global_s: float) -> float:
        """The node's reading at global time `global_s` (monotonic)."""
        local_s = self.offset_s + self.rate * global_s
        if local_s < self._last_local_s:
            return self._last_local_s
        self._last_local_s = local_s
        return local_s

    def local_at_least(self, global_s: float, floor_s: float) -> float:
        """Like `local`, but never below `floor_s`: a timer for `floor_s` sees it as due."""
        local_s = self.local(global_s)
        if local_s < floor_s:
            self._last_local_s = local_s = floor_s
        return local_s

    def global_at(self, local_s: float) -> float:
        """The global time at which this clock reads `local_s`."""
        return (local_s - self.offset_s) / self.rate

    @property
    def drift_ppm(self) -> float:
        return (self.rate - 1.0) * 1e6


def make_clocks(
    rng: random.Random, count: int, drift_ppm: float, offset_max_s: float = 10_000.0
) -> list[NodeClock]:
    """`count` clocks with rates uniform in 1 ± drift_ppm·10⁻⁶ and arbitrary origins."""
    if drift_ppm < 0:
        raise ValueError("the drift bound is not negative")
    bound = drift_ppm * 1e-6
    clocks: list[NodeClock] = []
    for _ in range(count):
        rate = 1.0 + rng.uniform(-bound, bound) if bound else 1.0
        clocks.append(NodeClock(rate, rng.uniform(0.0, offset_max_s)))
    return clocks
