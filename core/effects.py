"""The sans-IO core contract (DESIGN.md §2).

Every protocol core is a synchronous state machine::

    core.on_message(now_s, sender, msg) -> None
    core.on_tick(now_s) -> None
    core.take_effects() -> Effects

Reads of durable state go through an injected Store; writes come out as effects. The
driver makes `Effects.writes` durable in one batch *before* it sends `Effects.sends`,
as far as `Effects.durability` asks:

- BEFORE_ALL (the default): durable before the batch's sends and its events (answers):
  a voter's vote, a register, a roster;
- BEFORE_SENDS: durable before its sends, not before its answers: a node's own gossip
  records (a sequence number it sent is never used again; an answer does not depend on
  them);
- LAZY: no need at all: the driver may commit them with a later batch (received gossip
  records, which peers send again to a node that lost them). A crash loses a suffix of
  lazy batches, never part of one and never one an earlier durable batch came after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from colonynode.core.ids import NodeId

__all__ = ["BEFORE_ALL", "BEFORE_SENDS", "LAZY", "Effects", "ProtocolCore", "Write"]

LAZY, BEFORE_SENDS, BEFORE_ALL = 0, 1, 2  # how durable writes must be (stricter is larger)

# One durable write: (table, key, value). A value of None deletes the key. Values are
# plain msgpack-able data; the store adds the schema version.
Write = tuple[str, bytes, Any]


@dataclass(slots=True)
class Effects:
    """What a core wants done after a step, in this order: persist, then send."""

    sends: list[tuple[NodeId, Any]] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    wake_at_s: float | None = None
    durability: int = BEFORE_ALL  # what `writes` need (meaningless without writes)

    def __bool__(self) -> bool:
        return bool(self.sends or self.writes or self.events)

    def merge(self, other: Effects) -> None:
        """Append `other` to this batch (the driver coalesces a loop turn's effects)."""
        if other.writes:
            self.durability = (
                max(self.durability, other.durability) if self.writes else other.durability
            )
        self.sends.extend(other.sends)
        self.writes.extend(other.writes)
        self.events.extend(other.events)
        if other.wake_at_s is not None and (
            self.wake_at_s is None or other.wake_at_s < self.wake_at_s
        ):
            self.wake_at_s = other.wake_at_s


class ProtocolCore(Protocol):
    """What a driver (the Trio daemon or the simulator) steps."""

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None: ...

    def on_tick(self, now_s: float) -> None: ...

    def take_effects(self) -> Effects: ...
