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
The commits run on the writer's own thread, kept for its life, not through
`trio.to_thread.run_sync`: a hand-off cost 143 µs of CPU that way on this machine type
against 85 µs through a queue and the loop's token (one at a time either way), and a
busy daemon commits a few hundred times a second (docs/performance.md).

Batches are applied one at a time in the order `apply` was called (trio.Lock is FIFO),
so the driver may call it from several tasks. A commit that has started is never
abandoned: if the caller is cancelled meanwhile, the batch still completes (and is
durable) before the cancellation is delivered, so "persist before send" holds: a
message is sent only after `apply` returned.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import outcome
import trio

from colonynode.core.effects import Write
from colonynode.storage.api import Store

__all__ = ["StoreWriter"]


Job = tuple[Callable[[], Any], trio.lowlevel.Task, trio.lowlevel.TrioToken]


class StoreWriter:
    """Serializes a store's batches and runs each commit on the writer's thread.

    `off_loop=False` applies inline (MemoryStore in tests and MockClock runs, where a
    thread buys nothing). `close()` ends the thread (a daemon thread: it never holds a
    process open).
    """

    def __init__(self, store: Store, *, off_loop: bool = True) -> None:
        self.store = store
        self.off_loop = off_loop
        self._lock = trio.Lock()
        self._jobs: queue.SimpleQueue[Job | None] | None = None

    async def apply(self, batch: Sequence[Write], *, sync: bool = True) -> None:
        """`store.apply(batch, sync=sync)`; durable (if sync) when this returns."""
        async with self._lock:
            if self.off_loop:
                await self._on_thread(functools.partial(self.store.apply, batch, sync=sync))
            else:
                self.store.apply(batch, sync=sync)
                await trio.lowlevel.checkpoint()

    async def _on_thread(self, fn: Callable[[], Any]) -> Any:
        """`fn()` on the writer's thread; a cancellation waits for it to finish."""
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=_work, args=(self._jobs,), name="store-writer",
                             daemon=True).start()  # fmt: skip
        self._jobs.put((fn, trio.lowlevel.current_task(), trio.lowlevel.current_trio_token()))
        return await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)

    def close(self) -> None:
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None


def _work(jobs: queue.SimpleQueue[Job | None]) -> None:
    while (job := jobs.get()) is not None:
        fn, task, token = job
        result = outcome.capture(fn)
        try:
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)
        except trio.RunFinishedError:
            return
