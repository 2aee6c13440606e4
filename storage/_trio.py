"""StoreWriter: the one task-side writer of a Store, committing on the loop while the
disk is fast and on a thread of its own while it is slow.

Measured (benchmarks/bench_storage.py, 2 s per case, LMDB on the dev VM's virtio disk,
whose fdatasync takes ~0.15 ms: a fast disk): a synced commit blocks its caller
p50 0.25 / p99 0.76 ms for 1 record and p50 1.4 / p99 2.6 ms for 100 records (random
keys: ~100 dirty pages per commit). py-lmdb releases the GIL during the commit, so on a
thread the loop goes on reading frames and requests meanwhile; but the hand-off costs
CPU and wake-ups on both sides (85 µs of CPU through a queue and the loop's token on
this machine type, 143 µs through `trio.to_thread.run_sync`), and a busy daemon commits
a few hundred times a second. On a fast disk the hand-off costs more than the commit.

So `adaptive=True` (the daemon's) times synced commits on the loop and keeps an average:
while it is under SLOW_SYNC_S the commits run on the loop (the driver first lets the
frames that may leave before them go out: `P2P.drain`); once it is over, on the writer's
thread (a consumer SSD or a cloud volume fsyncs in 1-10 ms: held on the loop, that would
stall every frame and request behind it). There, one commit in PROBE_EVERY still runs
on the loop, timed, and the commits come back once the average is under FAST_SYNC_S (a
commit timed on the thread would count its waits for the GIL). Under the benchmark's
load here (three daemons sharing one disk and two cores) commits on the loop average
1.1-1.2 ms.

Measured on three daemons on this 2-core machine (`Client.map` of 3,000 no-op calls,
alternating runs against the thread, 2026-12-08): 504-515 calls/s against 465-485,
3.55-3.62 ms of CPU a call against 3.77-3.95, sequential p50 8.0-8.5 against
8.6-9.4 ms (docs/performance.md).

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
import time
from collections.abc import Callable, Sequence
from typing import Any

import outcome
import trio

from colonynode.core.effects import Write
from colonynode.storage.api import Store

__all__ = ["FAST_SYNC_S", "SLOW_SYNC_S", "StoreWriter"]

SLOW_SYNC_S = 0.005  # synced commits averaging longer than this go to the thread ...
FAST_SYNC_S = 0.0025  # ... and come back to the loop once they average under this
SYNC_WEIGHT = 0.1  # the average's weight of the newest commit ...
PROBE_WEIGHT = 0.5  # ... and of a probe: while on the thread, one commit in PROBE_EVERY
PROBE_EVERY = 50  # runs on the loop, timed, to tell when the disk is fast again


Job = tuple[Callable[[], Any], trio.lowlevel.Task, trio.lowlevel.TrioToken]


class StoreWriter:
    """Serializes a store's batches and runs each commit on the loop or on the writer's
    thread.

    `off_loop`: where commits run (MemoryStore in tests and MockClock runs: False, a
    thread buys nothing); `adaptive`: the writer moves them by the time synced commits
    take (above). `close()` ends the thread (a daemon thread: it never holds a process
    open).
    """

    def __init__(
        self,
        store: Store,
        *,
        off_loop: bool = True,
        adaptive: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.store = store
        self.off_loop = off_loop
        self.adaptive = adaptive
        self.clock = clock  # times the commits (tests: a store's own)
        self.sync_s = 0.0  # the average synced commit (adaptive)
        self.commits = [0, 0]  # on the loop, on the thread
        self._since_probe = 0
        self._lock = trio.Lock()
        self._jobs: queue.SimpleQueue[Job | None] | None = None

    async def apply(self, batch: Sequence[Write], *, sync: bool = True) -> None:
        """`store.apply(batch, sync=sync)`; durable (if sync) when this returns."""
        async with self._lock:
            on_thread = self.off_loop
            if on_thread and self.adaptive and sync:
                self._since_probe += 1
                if self._since_probe >= PROBE_EVERY:  # is the disk fast again?
                    self._since_probe, on_thread = 0, False
            self.commits[on_thread] += 1
            if on_thread:
                await self._on_thread(functools.partial(self.store.apply, batch, sync=sync))
                return
            t0 = self.clock()
            self.store.apply(batch, sync=sync)
            if self.adaptive and sync:
                # timed on the loop only: on the thread, waits for the GIL would count
                weight = PROBE_WEIGHT if self.off_loop else SYNC_WEIGHT
                self.sync_s += (self.clock() - t0 - self.sync_s) * weight
                self.off_loop = self.sync_s > (FAST_SYNC_S if self.off_loop else SLOW_SYNC_S)
            await trio.lowlevel.checkpoint()

    def figures(self) -> dict[str, float | int]:
        """For `colonynode status`: where commits ran, and the average synced one."""
        return {
            "commits_on_loop": self.commits[0],
            "commits_on_thread": self.commits[1],
            "sync_ms": round(self.sync_s * 1000, 3),
        }

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
