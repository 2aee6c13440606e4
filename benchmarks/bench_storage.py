"""Store throughput and commit latency: `python benchmarks/bench_storage.py [--seconds S]`.

Prints batches/s and records/s for LmdbStore with 1 record per batch synced, 100
records per batch synced and 1 record per batch unsynced (MemoryStore alongside), with
the latency of one `apply` (p50/p99/max: how long an inline commit blocks the caller).

Then it answers "commit on the Trio loop, or off it?": a Trio task writes synced
batches, inline or through `trio.to_thread.run_sync`, while another task measures how
late the loop wakes it (loop lag) and how many loop turns it gets per second.

Records are ~200 bytes (a process register's size), keys are 16 random bytes. Runs in a
temporary directory (or --dir, to measure another disk).
"""

from __future__ import annotations

import argparse
import functools
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from colonynode.core.effects import Write
from colonynode.storage import LmdbStore, MemoryStore

Batch = list[Write]


def make_batches(records: int, rng: random.Random) -> Callable[[int], Batch]:
    def batch(i: int) -> Batch:
        return [
            (
                "processes",
                rng.randbytes(16),
                {
                    "pid": rng.randbytes(32),
                    "state": "RUNNING",
                    "epoch": i,
                    "holder": rng.randbytes(32),
                    "expiry_s": 1234.5 + i,
                    "retries": j,
                    "label": "bench",
                },
            )
            for j in range(records)
        ]

    return batch


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def run_plain(name: str, store: Any, records: int, sync: bool, seconds: float) -> None:
    rng = random.Random(1)
    batch = make_batches(records, rng)
    latencies: list[float] = []
    i = 0
    start = time.perf_counter()
    end = start + seconds
    while (now := time.perf_counter()) < end:
        b = batch(i)
        t0 = time.perf_counter()
        store.apply(b, sync=sync)
        latencies.append(time.perf_counter() - t0)
        i += 1
    elapsed = now - start
    latencies.sort()
    print(
        f"{name:<34} {i / elapsed:>10,.0f} {i * records / elapsed:>12,.0f}"
        f" {percentile(latencies, 0.5) * 1e3:>8.3f} {percentile(latencies, 0.99) * 1e3:>8.3f}"
        f" {latencies[-1] * 1e3:>8.3f}"
    )


async def loop_lag(store: LmdbStore, records: int, off_loop: bool, seconds: float) -> str:
    """Write synced batches while a ticker measures how late the loop runs it."""
    batch = make_batches(records, random.Random(2))
    lags: list[float] = []
    turns = 0
    done = trio.Event()

    async def writer() -> int:
        i = 0
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            b = batch(i)
            if off_loop:
                await trio.to_thread.run_sync(functools.partial(store.apply, b, sync=True))
            else:
                store.apply(b, sync=True)
                await trio.lowlevel.checkpoint()
            i += 1
        done.set()
        return i

    async def ticker() -> None:
        nonlocal turns
        while not done.is_set():
            t0 = time.perf_counter()
            await trio.sleep(0.001)
            lags.append(time.perf_counter() - t0 - 0.001)
            turns += 1

    result: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        result.append(await writer())
    lags.sort()
    mode = "to_thread" if off_loop else "inline"
    return (
        f"{mode:<10} {records:>4} rec {result[0] / seconds:>8,.0f} batches/s   loop lag"
        f" p50 {percentile(lags, 0.5) * 1e3:.3f} p99 {percentile(lags, 0.99) * 1e3:.3f}"
        f" max {lags[-1] * 1e3:.3f} ms   ticks/s {turns / seconds:,.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per scenario")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"store in {tmp}, {args.seconds:g} s per scenario")
        print(
            f"{'scenario':<34} {'batches/s':>10} {'records/s':>12} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'max ms':>8}"
        )
        scenarios = [(1, True), (100, True), (1, False), (100, False)]
        for n, (records, sync) in enumerate(scenarios):
            with LmdbStore(Path(tmp) / f"plain{n}") as store:
                label = f"lmdb  {records:>3} rec/batch {'sync' if sync else 'no sync'}"
                run_plain(label, store, records, sync, args.seconds)
        for records, sync in [(1, True), (100, True)]:
            label = f"memory {records:>3} rec/batch {'sync' if sync else 'no sync'}"
            run_plain(label, MemoryStore(), records, sync, args.seconds)
        print("\ncommits on the Trio loop or off it (synced batches; a ticker sleeps 1 ms):")
        for records in (1, 100):
            for off_loop in (False, True):
                with LmdbStore(Path(tmp) / f"trio{records}{off_loop}") as store:
                    print(trio.run(loop_lag, store, records, off_loop, args.seconds))


if __name__ == "__main__":
    main()
