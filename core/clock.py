"""Time comes from outside: cores take `now_s`, drivers read a `Clock`."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Clock", "ManualClock"]


class Clock(Protocol):
    """Monotonic seconds. The daemon wraps `trio.current_time()`; the simulator its own."""

    def now_s(self) -> float: ...


class ManualClock:
    """A clock that moves only when told to: for unit tests of cores."""

    __slots__ = ("_now_s",)

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s

    def now_s(self) -> float:
        return self._now_s

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        self._now_s += seconds
        return self._now_s
