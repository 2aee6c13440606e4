"""kill -9 a writing process, many times: durable batches survive, no batch is ever torn.

A child process (`_crash_child.py`) applies numbered batches with sync=True and prints
each number once `apply` returned. The parent waits for a seeded random number of
acknowledgements, SIGKILLs the child, reopens the store and checks it; the next child
continues from the highest batch found. No sleeps: every wait reads the child's output
with a deadline.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from colonynode.storage import LmdbStore, StoreLocked
from tests.storage._crash_child import batch_records

CHILD = Path(__file__).with_name("_crash_child.py")
KILLS = 40
SEED = 0xC0105
WAIT_S = 30.0  # per child: generous for a loaded CI machine, never reached when healthy


class Child:
    """A child process whose stdout is read line by line, with a deadline."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self._buffer = b""
        self._eof = False

    def _read(self, timeout_s: float) -> None:
        if self._selector.select(timeout_s):
            chunk = os.read(self._fd, 65536)
            self._eof = not chunk
            self._buffer += chunk

    def lines(self, count: int) -> list[str]:
        """The first `count` complete lines (fails at the deadline or if the child exits)."""
        deadline = time.monotonic() + WAIT_S
        while self._buffer.count(b"\n") < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._eof:
                self.proc.kill()
                _, err = self.proc.communicate()
                pytest.fail(f"child gave {self._buffer!r}, not {count} lines; stderr:\n{err!r}")
            self._read(remaining)
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line.decode() for line in lines]

    def kill(self) -> list[str]:
        """SIGKILL it; the complete lines it wrote before dying."""
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=WAIT_S) == -signal.SIGKILL
        while not self._eof:
            self._read(WAIT_S)
        self.close()
        return [line.decode() for line in self._buffer.split(b"\n")[:-1]]

    def close(self) -> None:
        self._selector.close()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def check_store(data_dir: Path, acked: list[int]) -> int:
    """Every acknowledged batch is whole, no batch is partial; the highest batch present."""
    by_batch: dict[int, set[int]] = defaultdict(set)
    with LmdbStore(data_dir) as store:
        for key, (i, j, n) in store.scan("crash"):
            assert key == b"b%08d-%03d" % (i, j) and n == batch_records(i)
            by_batch[i].add(j)
        head = store.get("head", b"head")
    present = sorted(by_batch)
    for i in present:
        assert by_batch[i] == set(range(batch_records(i))), f"batch {i} is torn"
    assert present == list(range(len(present))), "batches are missing in the middle"
    highest = present[-1] if present else -1
    assert head == (highest if present else None), "head and its batch were split"
    lost = [i for i in acked if i > highest]
    assert lost == [], f"acknowledged batches {lost} were lost"
    return highest


def test_kill_9_loses_no_durable_batch_and_tears_none(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    highest = -1
    acked_total = 0
    for _ in range(KILLS):
        child = Child(str(tmp_path), "write", str(highest + 1))
        # Kill after a random number of acknowledgements; 0 kills it while it starts up
        # or opens the store, the others while it is somewhere in a later batch.
        acked = child.lines(rng.choice([0, 0, 1, 2, 3, 5, 8, 13, 21]))
        acked += child.kill()
        assert [int(a) for a in acked] == list(range(highest + 1, highest + 1 + len(acked)))
        acked_total += len(acked)
        highest = check_store(tmp_path, [int(a) for a in acked])
    assert acked_total > KILLS
    assert highest >= acked_total - 1


def test_a_store_held_by_a_live_process_is_refused(tmp_path: Path) -> None:
    holder = Child(str(tmp_path), "hold")
    assert holder.lines(1) == ["ready"]
    with pytest.raises(StoreLocked) as caught:
        LmdbStore(tmp_path)
    assert caught.value.pid == holder.proc.pid
    assert f"pid {holder.proc.pid}" in str(caught.value)
    assert holder.proc.stdin is not None
    holder.proc.stdin.close()  # the holder closes its store and exits
    assert holder.proc.wait(timeout=WAIT_S) == 0
    holder.close()
    LmdbStore(tmp_path).close()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = Child(str(tmp_path), "hold")
    assert holder.lines(1) == ["ready"]
    holder.kill()
    assert (tmp_path / "store" / "LOCK").read_text().strip() == str(holder.proc.pid)
    LmdbStore(tmp_path).close()  # the pid is still written, but the flock died with it
