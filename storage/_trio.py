"""StoreWriter: the one task-side writer of a Store, committing off the Trio loop.

Measured (benchmarks/bench_storage.py, 2 s per case, LMDB on the dev VM's virtio disk,
whose fdatasync takes ~0.15 ms: a fast disk): a synced commit blocks its caller
p50 0.25 / p99 0.76 ms for 1 record and p50 1.4 / p99 2.6 ms for 100 records (random
keys: ~100 dirty pages per commit). A frame costs ~0.35 ms of loop CPU (DESIGN.md §4),
so an inline group commit under load holds the loop for several frames, and for longer
on slower disks (a consumer SSD or cloud volume fsyncs in 1-10 ms). Run through
`trio.to_thread.run_sync`, the loop lag a 1 ms ticker sees drops from p99 1.2 to 0.6 ms
(1 record) and from 3.0 to 1.1 ms (100 records); the thread hop costs ~0.1 ms of
throughput per batch (1-record batches: 3,060 -> 2,330 batches/s). py-lmdb releases the
GIL during the commit, which is what makes this pay. Hence: off the loop by default.

Batches are applied one at a time in the order `apply` was called (trio.Lock is FIFO),
so the driver may call it from several tasks. A commit that has started is never
abandoned: if the caller is cancelled meanwhile, the batch still completes (and is
durable) before the cancellation is delivered, so "persist before send" holds: a
message is sent only after `apply` returned.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import trio

from colonynode.core.effects import Write
from colonynode.storage.api import Store

__all__ = ["StoreWriter"]


class StoreWriter:
    """Serializes a store's batches and runs each commit on a worker thread.

    `off_loop=False` applies inline (MemoryStore in tests and MockClock runs, where a
    thread buys nothing).
    """

    def __init__(self, store: Store, *, off_loop: bool = True) -> None:
        self.store = store
        self.off_loop = off_loop
        self._lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(1)

    async def apply(self, batch: Sequence[Write], *, sync: bool = True) -> None:
        """`store.apply(batch, sync=sync)`; durable (if sync) when this returns."""
        async with self._lock:
            if self.off_loop:
                await trio.to_thread.run_sync(
                    functools.partial(self.store.apply, batch, sync=sync),
                    limiter=self._limiter,
                )
            else:
                self.store.apply(batch, sync=sync)
                await trio.lowlevel.checkpoint()
