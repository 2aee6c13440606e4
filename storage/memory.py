"""MemoryStore: the Store of tests and simulations, with crash faults (STYLE.md 6).

It keeps one visible state and, for the batches applied with sync=False since the last
durable point, an undo log. `apply(sync=True)` makes everything so far durable (the undo
log is dropped); `crash()` undoes the unsynced batches, newest first, so the visible state
is the durable one again. No copy of the whole state is ever made: a batch costs its own
writes, which is what lets the simulator run thousands of nodes on it.

It refuses exactly what LmdbStore refuses (same checks, same limits) and stores values
as msgpack bytes, so a value read back is a fresh copy, as it is from disk: a core that
mutates what `get` returned cannot change the store behind the driver's back.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Final

from colonynode.core.effects import Write
from colonynode.storage._codec import (
    check_key,
    check_prefix,
    check_table,
    decode_value,
    encode_batch,
)
from colonynode.storage.api import TABLES_MAX, StoreStats
from colonynode.storage.errors import InvalidRequest, StoreClosed

__all__ = ["MemoryStore"]

# Keys read per step of a scan; a scan longer than this is not one snapshot (as in LMDB).
SCAN_CHUNK_MAX: Final = 256
# Unsynced writes kept undoable. Past this the oldest unsynced batches become durable,
# as a kernel eventually flushes dirty pages; it bounds the undo log's memory.
UNSYNCED_WRITES_MAX: Final = 1_000_000
# Keys per sorted run of a table's key index (a run splits at twice this).
SORTED_RUN_LOAD: Final = 256

# One undone-able write: (table, key, encoded value before it or None, value written).
_Undo = tuple[str, bytes, bytes | None, bytes | None]


class _SortedKeys:
    """Keys in order, as sorted runs of at most 2 * load keys (sortedcontainers' idea).

    An insert or a delete moves at most 2 * load pointers, however big the table: one
    sorted list would move them all, which made random keys cost O(n) each.
    """

    __slots__ = ("_load", "_maxes", "_runs")

    def __init__(self, load: int = SORTED_RUN_LOAD) -> None:
        self._load = load
        self._runs: list[list[bytes]] = []
        self._maxes: list[bytes] = []  # _maxes[i] == _runs[i][-1]

    def add(self, key: bytes) -> None:
        """Insert a key that is not present."""
        runs, maxes = self._runs, self._maxes
        if not runs:
            runs.append([key])
            maxes.append(key)
            return
        i = bisect_left(maxes, key)
        if i == len(maxes):
            i -= 1
            runs[i].append(key)
            maxes[i] = key
        else:
            insort(runs[i], key)
        run = runs[i]
        if len(run) > 2 * self._load:
            half = run[self._load :]
            del run[self._load :]
            runs.insert(i + 1, half)
            maxes.insert(i + 1, half[-1])
            maxes[i] = run[-1]

    def remove(self, key: bytes) -> None:
        """Delete a key that is present."""
        i = bisect_left(self._maxes, key)
        run = self._runs[i]
        del run[bisect_left(run, key)]
        if not run:
            del self._runs[i]
            del self._maxes[i]
        else:
            self._maxes[i] = run[-1]

    def take(self, start: bytes, *, after: bool, n: int) -> list[bytes]:
        """Up to `n` keys from `start` on (`after`: strictly greater than `start`)."""
        runs = self._runs
        find = bisect_right if after else bisect_left
        i = find(self._maxes, start)
        out: list[bytes] = []
        if i < len(runs):
            out.extend(runs[i][find(runs[i], start) :][:n])
            i += 1
        while len(out) < n and i < len(runs):
            out.extend(runs[i][: n - len(out)])
            i += 1
        return out


class _Table:
    """A dict for lookups and the keys in order for prefix scans."""

    __slots__ = ("keys", "values")

    def __init__(self) -> None:
        self.keys = _SortedKeys()
        self.values: dict[bytes, bytes] = {}

    def put(self, key: bytes, packed: bytes | None) -> bytes | None:
        """Store (or with None delete) `key`; return the value it replaced."""
        old = self.values.get(key)
        if packed is None:
            if old is not None:
                del self.values[key]
                self.keys.remove(key)
        else:
            if old is None:
                self.keys.add(key)
            self.values[key] = packed
        return old


class MemoryStore:
    """An in-memory Store with durable and visible state and crash faults.

    `crash()` changes the store in place and leaves it open: it models the process dying
    and the next one opening the same data dir, so the simulator keeps one MemoryStore
    per node across restarts.
    """

    def __init__(self) -> None:
        self._tables: dict[str, _Table] = {}
        self._unsynced: list[list[_Undo]] = []  # oldest first
        self._unsynced_writes = 0
        self._closed = False
        self.stats = StoreStats()

    # -- reads -----------------------------------------------------------------------

    def get(self, table: str, key: bytes) -> Any | None:
        self._check_open()
        t = self._tables.get(check_table(table))
        if t is None:
            check_key(table, key)
            return None
        packed = t.values.get(check_key(table, key))
        return None if packed is None else decode_value(packed)

    def scan(
        self, table: str, prefix: bytes = b"", *, limit: int | None = None
    ) -> Iterator[tuple[bytes, Any]]:
        self._check_open()
        check_table(table)
        check_prefix(table, prefix)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidRequest(f"scan limit {limit!r} is not None or an int >= 0")
        return self._scan(table, prefix, limit)

    def _scan(self, table: str, prefix: bytes, limit: int | None) -> Iterator[tuple[bytes, Any]]:
        remaining = limit
        last: bytes | None = None
        while remaining is None or remaining > 0:
            self._check_open()
            t = self._tables.get(table)
            if t is None:
                return
            n = SCAN_CHUNK_MAX if remaining is None else min(SCAN_CHUNK_MAX, remaining)
            if last is None:
                keys = t.keys.take(prefix, after=False, n=n)
            else:
                keys = t.keys.take(last, after=True, n=n)
            chunk: list[tuple[bytes, bytes]] = []
            for key in keys:
                if not key.startswith(prefix):
                    break
                chunk.append((key, t.values[key]))
            for key, packed in chunk:
                yield key, decode_value(packed)
            if len(chunk) < n:
                return
            last = chunk[-1][0]
            if remaining is not None:
                remaining -= len(chunk)

    # -- writes ----------------------------------------------------------------------

    def apply(self, batch: Sequence[Write], *, sync: bool = True) -> None:
        self._check_open()
        encoded = encode_batch(batch, on_disk=False)
        new_tables = {table for table, _, _ in encoded if table not in self._tables}
        if len(self._tables) + len(new_tables) > TABLES_MAX:
            raise InvalidRequest(
                f"batch would create tables {sorted(new_tables)}: over tables_max={TABLES_MAX}"
            )
        for table in new_tables:
            self._tables[table] = _Table()
        undo: list[_Undo] | None = None if sync else []
        tables = self._tables
        for table, key, packed in encoded:
            old = tables[table].put(key, packed)
            if undo is not None:
                undo.append((table, key, old, packed))
        if undo is None:
            self._unsynced.clear()  # this batch and every one before it are durable
            self._unsynced_writes = 0
            self.stats.syncs += 1
        else:
            self._unsynced.append(undo)
            self._unsynced_writes += len(undo)
            while self._unsynced_writes > UNSYNCED_WRITES_MAX:
                self._unsynced_writes -= len(self._unsynced.pop(0))
        self.stats.batches += 1
        self.stats.records += len(encoded)

    # -- faults and lifecycle ---------------------------------------------------------

    @property
    def unsynced_batches(self) -> int:
        """Batches applied with sync=False since the last durable point."""
        return len(self._unsynced)

    def durable_get(self, table: str, key: bytes) -> Any | None:
        """What a crash now (without an rng) would leave under `key`: for checkers."""
        for undo in self._unsynced:
            for t, k, old, _ in undo:
                if t == table and k == key:
                    return None if old is None else decode_value(old)
        return self.get(table, key)

    def crash(self, rng: random.Random | None = None, *, tear: bool = False) -> int:
        """The process dies and a new one opens the store; returns the batches lost.

        Without `rng`, every batch applied with sync=False since the last durable point
        is lost. With `rng`, a random prefix of them survives (0 to all: they reached the
        disk before the power went), whole and in order, as LMDB commits do. With
        `tear=True` as well, the first batch that does not survive is torn instead of
        lost: a random proper prefix of its writes (possibly none) survives, as on a disk
        without atomic batches, to test recovery code. A torn batch counts as lost.
        To model a crash *during* a batch, apply it with sync=False, then crash.
        The store is open again afterwards (a clean close() before it is forgotten).
        """
        if tear and rng is None:
            raise ValueError("crash(tear=True) needs an rng to choose what survives")
        unsynced = self._unsynced
        keep = rng.randint(0, len(unsynced)) if rng is not None and unsynced else 0
        torn = unsynced[keep] if tear and keep < len(unsynced) else []
        for undo in reversed(unsynced[keep:]):
            for table, key, old, _ in reversed(undo):
                self._tables[table].put(key, old)
        if torn:
            assert rng is not None
            for table, key, _, packed in torn[: rng.randrange(len(torn))]:
                self._tables[table].put(key, packed)
        lost = len(unsynced) - keep
        self._unsynced = []
        self._unsynced_writes = 0
        self._closed = False
        self.stats.crashes += 1
        self.stats.batches_lost += lost
        return lost

    def close(self) -> None:
        """A clean shutdown: everything applied is durable; further use raises."""
        self._unsynced = []
        self._unsynced_writes = 0
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("MemoryStore used after close()")

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
