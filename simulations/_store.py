"""A minimal in-memory `Store` with crash faults, private to the simulator.

It stands in for `colonynode.storage.memory.MemoryStore` until that lands; the two have
the same shape (visible vs durable state, `apply(sync=False)` visible only, `crash()`
drops what is not durable), so swapping is a one-line change in `world.py`.

- `apply(batch, sync=False)` makes the batch visible at once and queues it as unsynced;
- `apply(batch, sync=True)` makes it and every unsynced batch before it durable;
- `crash(rng)` throws away the visible state and rebuilds it from the durable one. With
  an rng, a random prefix of the unsynced batches survives (they reached the disk before
  the power went): batches are atomic and ordered, as LMDB transactions are.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from colonynode.core.effects import Write

__all__ = ["SimStore"]

Tables = dict[str, dict[bytes, Any]]


def _apply(tables: Tables, batch: Sequence[Write]) -> None:
    for table, key, value in batch:
        rows = tables.get(table)
        if rows is None:
            rows = tables[table] = {}
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value


class SimStore:
    """Visible and durable tables; unsynced batches are lost by `crash`."""

    __slots__ = ("_durable", "_unsynced", "_visible", "closed", "lost_batches", "syncs")

    def __init__(self) -> None:
        self._visible: Tables = {}
        self._durable: Tables = {}
        self._unsynced: list[Sequence[Write]] = []
        self.syncs = 0
        self.lost_batches = 0
        self.closed = False

    # -- Store --------------------------------------------------------------------------

    def get(self, table: str, key: bytes) -> Any | None:
        rows = self._visible.get(table)
        return None if rows is None else rows.get(key)

    def scan(
        self, table: str, prefix: bytes = b"", *, limit: int | None = None
    ) -> Iterator[tuple[bytes, Any]]:
        rows = self._visible.get(table)
        if not rows:
            return
        count = 0
        for key in sorted(rows):
            if not key.startswith(prefix):
                continue
            if limit is not None and count >= limit:
                return
            count += 1
            yield key, rows[key]

    def apply(self, batch: Sequence[Write], *, sync: bool = True) -> None:
        batch = list(batch)
        _apply(self._visible, batch)
        if not sync:
            if batch:
                self._unsynced.append(batch)
            return
        for pending in self._unsynced:
            _apply(self._durable, pending)
        self._unsynced.clear()
        _apply(self._durable, batch)
        self.syncs += 1

    def close(self) -> None:
        self.closed = True

    # -- faults and inspection ----------------------------------------------------------

    @property
    def unsynced(self) -> int:
        """Batches visible but not yet durable."""
        return len(self._unsynced)

    def durable_get(self, table: str, key: bytes) -> Any | None:
        """What a restart would read: for checkers."""
        rows = self._durable.get(table)
        return None if rows is None else rows.get(key)

    def crash(self, rng: random.Random | None = None) -> int:
        """Lose what is not durable (a random suffix of it with `rng`). Returns batches lost."""
        keep = rng.randint(0, len(self._unsynced)) if rng is not None and self._unsynced else 0
        for pending in self._unsynced[:keep]:
            _apply(self._durable, pending)
        lost = len(self._unsynced) - keep
        self._unsynced.clear()
        self._visible = {table: dict(rows) for table, rows in self._durable.items()}
        self.lost_batches += lost
        self.closed = False
        return lost
