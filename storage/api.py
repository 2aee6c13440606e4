"""The Store protocol the protocol cores read through (DESIGN.md §2).

Cores read with `get` and `scan`; they never write. Their writes come out as
`Effects.writes` (see `colonynode.core.effects.Write`) and the driver applies one step's
writes with `apply`, atomically, before it sends that step's messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
