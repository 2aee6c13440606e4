"""The order a driver carries out one step's effects in (DESIGN.md §2), written once.

Both drivers of the simulations package follow it: `SimNode` (the simulator) and
`SteppedNet` (the stepped network of core unit tests). Each is an `EffectSink`; what
"persist" or "send" means is theirs (a sync policy and frames on a simulated network,
or always-synced batches and a list of messages in flight), the order is not:

1. persist the writes: durable before anything of the step leaves the node, so a
   voter's grant is never acknowledged before a crash could lose it;
2. send the messages;
3. hand the events to the application;
4. note the wake-up time the core asked for.
"""

from __future__ import annotations

from typing import Any, Protocol

from colonynode.core.effects import Effects
from colonynode.core.ids import NodeId

__all__ = ["EffectSink", "apply_effects"]


class EffectSink(Protocol):
    """What a driver does with each kind of effect; `apply_effects` fixes the order."""

    def persist(self, effects: Effects) -> None:
        """Apply `effects.writes` to the store (called even when there are none: a
        driver may have an earlier unsynced batch to make durable)."""
        ...

    def send(self, sends: list[tuple[NodeId, Any]]) -> None:
        """Send the step's messages (never called with none)."""
        ...

    def publish(self, events: list[Any]) -> None:
        """Hand the step's events to the application (never called with none)."""
        ...

    def wake(self, at_local_s: float | None) -> None:
        """The core's next wake-up in its local time, or None: it asked for none."""
        ...


def apply_effects(sink: EffectSink, effects: Effects) -> None:
    """Persist, then send, then publish one step's effects; then note the wake-up."""
    sink.persist(effects)
    if effects.sends:
        sink.send(effects.sends)
    if effects.events:
        sink.publish(effects.events)
    sink.wake(effects.wake_at_s)
