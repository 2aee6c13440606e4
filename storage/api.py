"""The Store protocol the protocol cores read through (DESIGN.md §2).

Cores read with `get` and `scan`; they never write. Their writes come out as
`Effects.writes` (see `colonynode.core.effects.Write`) and the driver applies one step's
writes with `apply`, atomically, before it sends that step's messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from colonynode.core.effects import Write

__all__ = ["Store", "Write"]


class Store(Protocol):
    def get(self, table: str, key: bytes) -> Any | None:
        """The value stored under `key` in `table`, or None."""
        ...

    def scan(
        self, table: str, prefix: bytes = b"", *, limit: int | None = None
    ) -> Iterator[tuple[bytes, Any]]:
        """(key, value) pairs of `table` whose key starts with `prefix`, in key order."""
        ...

    def apply(self, batch: Sequence[Write], *, sync: bool = True) -> None:
        """Apply a batch atomically: all of it is visible, or none of it.

        With sync=True the batch (and every batch before it) is durable when this returns:
        it survives a crash. With sync=False it is visible at once but a crash may lose it.
        """
        ...

    def close(self) -> None: ...


# Limits every Store enforces, the same in memory and on disk (STYLE.md 9). A write or a
# read over one of them raises InvalidRequest; nothing of the batch is applied.
TABLE_NAME_BYTES_MAX = 64  # a table name: [A-Za-z0-9_.:/-], 1..64 characters
TABLES_MAX = 60  # tables per store (LMDB named databases: TABLES_MAX + meta + spare)
KEY_BYTES_MAX = 511  # LMDB's compiled-in maximum key size; keys are 1..511 bytes
VALUE_BYTES_MAX = 16 << 20  # one encoded value; a signed envelope or a file chunk fits
BATCH_WRITES_MAX = 100_000  # writes in one batch (one LMDB write transaction)

__all__ += [
    "BATCH_WRITES_MAX",
    "KEY_BYTES_MAX",
    "TABLES_MAX",
    "TABLE_NAME_BYTES_MAX",
    "VALUE_BYTES_MAX",
    "StoreStats",
]


@dataclass(slots=True)
class StoreStats:
    """Counters a store keeps (the simulator and /metrics read them)."""

    batches: int = 0  # batches applied (empty ones included)
    records: int = 0  # writes applied, deletes included
    syncs: int = 0  # batches applied with sync=True
    map_resizes: int = 0  # LMDB only: times the map was grown because it was full
    crashes: int = 0  # MemoryStore only: crash() calls
    batches_lost: int = 0  # MemoryStore only: unsynced batches a crash discarded
