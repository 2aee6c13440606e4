"""The data dir lock: one process at a time opens a store.

LMDB's own lock file coordinates readers and writers, it does not stop a second daemon
from opening the same environment. So the store takes an exclusive `flock` on
`<data_dir>/store/LOCK` and writes its pid into it. The kernel drops the lock when the
process dies, even by kill -9, so a stale LOCK file never blocks a restart. The file is
opened O_CLOEXEC: executor processes the daemon spawns do not inherit the lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final

from colonynode.storage.errors import StoreLocked

__all__ = ["DirLock"]

_PID_BYTES_MAX: Final = 32


class DirLock:
    """An exclusive, non-blocking flock on a file, held until release()."""

    def __init__(self, path: Path, data_dir: Path) -> None:
        """Take the lock at `path`; StoreLocked (naming `data_dir`) if another holds it."""
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StoreLocked(data_dir, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent). The pid is cleared first, then the file closed."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote, or None if it has not written it yet."""
    try:
        text = os.pread(fd, _PID_BYTES_MAX, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
