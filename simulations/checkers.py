"""Invariant checkers: run after every step and at the end of a run.

A checker looks at the world after each step (`after_step`) and once when the run ends
(`at_end`), and returns the rules it found broken as one-line messages. Checkers should be
incremental: a step is one event (a frame delivered, a timer, a call, a fault), and the
world says what it touched:

- `world.step`: the step number (1-based), `world.now_s`: the simulated time;
- `world.step_node`: index of the node that stepped, or -1;
- `world.step_frame`: (src, dst, channel, msgs) of the frame delivered, or None;
- `world.step_events`: [(node index, event), ...] the cores published in this step.

The world records each message as a `Violation` with the checker's name, the step and the
time; the runner prints the seed and a replay command for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from colonynode.simulations.world import World

__all__ = ["BaseChecker", "Checker", "NetworkSanity", "Violation"]


@dataclass(frozen=True, slots=True)
class Violation:
    checker: str
    message: str
    step: int
    time_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "message": self.message,
            "step": self.step,
            "time_s": round(self.time_s, 6),
        }

    def __str__(self) -> str:
        return f"[{self.checker}] step {self.step} at {self.time_s:.6f} s: {self.message}"


class Checker(Protocol):
    """What the world runs after every step and at the end."""

    name: str

    def after_step(self, world: World) -> list[str]: ...

    def at_end(self, world: World) -> list[str]: ...


class BaseChecker:
    """A checker that checks nothing: subclass and override what you need."""

    name = "checker"

    def after_step(self, world: World) -> list[str]:
        return []

    def at_end(self, world: World) -> list[str]:
        return []


class NetworkSanity(BaseChecker):
    """The simulated network itself: no frame crosses a partition, none reaches a node
    that is down. Every world installs it; it guards the fault model the other checkers
    rely on."""

    name = "network"

    def after_step(self, world: World) -> list[str]:
        frame = world.step_frame
        if frame is None or world.step_node < 0:
            return []
        src, dst, channel, _ = frame
        found = []
        if world.network.cut(src, dst):
            found.append(f"a {channel} frame crossed a partition: node {src} -> node {dst}")
        if not world.nodes[dst].alive:
            found.append(f"a {channel} frame reached node {dst} while it was down")
        return found
