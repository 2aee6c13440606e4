"""StoreWriter: one commit at a time, off the loop, never abandoned once started."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from colonynode.core.effects import Write
from colonynode.storage import LmdbStore, MemoryStore
from colonynode.storage._trio import StoreWriter


class WatchedStore(MemoryStore):
    """Records the most applies that ever ran at once, and can hold one in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most_running = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.apply_threads: set[int] = set()

    def apply(self, batch: Sequence[Write], *, sync: bool = True) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.apply_threads.add(threading.get_ident())
        self.entered.set()
        self.release.wait()
        super().apply(batch, sync=sync)
        self.running -= 1


@pytest.mark.parametrize("off_loop", [True, False])
async def test_concurrent_callers_are_serialized(off_loop: bool) -> None:
    store = WatchedStore()
    writer = StoreWriter(store, off_loop=off_loop)
    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(writer.apply, [("t", b"k%02d" % i, i)])
    assert store.most_running == 1
    assert [v for _, v in store.scan("t")] == list(range(20))
    assert (threading.get_ident() in store.apply_threads) is not off_loop


async def test_off_loop_commits_reach_lmdb(tmp_path: Path) -> None:
    with LmdbStore(tmp_path) as store:
        writer = StoreWriter(store)
        await writer.apply([("t", b"a", 1), ("t", b"b", 2)])
        await writer.apply([("t", b"a", None)], sync=False)
        assert list(store.scan("t")) == [(b"b", 2)]


async def test_a_started_commit_completes_even_if_the_caller_is_cancelled() -> None:
    store = WatchedStore()
    store.release.clear()
    writer = StoreWriter(store)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.apply, [("t", b"k", "durable")])
            await trio.to_thread.run_sync(store.entered.wait)  # the commit has started
            scope.cancel()
            store.release.set()
    assert scope.cancel_called
    assert store.running == 0  # the commit finished before the cancelled caller returned
    assert store.get("t", b"k") == "durable"
    assert store.crash() == 0  # it was a synced batch: a crash keeps it
    assert store.get("t", b"k") == "durable"


class TimedStore(WatchedStore):
    """A disk whose synced commits take `sync_s` of its own clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now_s = 0.0
        self.sync_s = 0.0

    def clock(self) -> float:
        return self.now_s

    def apply(self, batch: Sequence[Write], *, sync: bool = True) -> None:
        super().apply(batch, sync=sync)
        self.now_s += self.sync_s if sync else 0.0


async def test_commits_leave_the_loop_while_the_disk_is_slow_and_come_back() -> None:
    store = TimedStore()
    writer = StoreWriter(store, off_loop=False, adaptive=True, clock=store.clock)
    loop_thread = threading.get_ident()

    async def commits(n: int, sync: bool = True) -> set[bool]:
        """Where each of `n` commits ran (True: on a thread of its own)."""
        where = set()
        for i in range(n):
            store.apply_threads.clear()
            await writer.apply([("t", b"k", i)], sync=sync)
            where.add(loop_thread not in store.apply_threads)
        return where

    store.sync_s = 0.0002  # a fast disk: every commit on the loop
    assert await commits(30) == {False}
    store.sync_s = 0.020  # a slow one: three commits to notice, then on the thread
    assert await commits(3) == {False} and await commits(30) == {True}
    assert await commits(10, sync=False) == {True}  # unsynced ones tell nothing
    store.sync_s = 0.0002  # fast again: the probes (one commit in 50) see it
    assert await commits(300) == {True, False} and await commits(50) == {False}
    figures = writer.figures()
    assert figures["commits_on_loop"] > 0 and figures["commits_on_thread"] > 0
    assert figures["sync_ms"] < 1.0
    writer.close()
