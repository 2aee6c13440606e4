"""The chunk store: content-addressed chunks as files under ``<data dir>/chunks``.

A chunk's path is ``chunks/<first two hex digits>/<64 hex digits>``; it is written to a
temporary name and renamed into place, so a reader sees a whole chunk or none. Writes are
made durable in batches: `flush` syncs the file system holding the store (syncfs(2), one
call for every chunk written since), so a transfer pays one sync, not one per chunk.
Every read checks the bytes against the id; a chunk that fails is deleted and counted
(but `read_into`, the bulk path's, whose reader checks them and names a corrupt one back).
Blocking work runs off the Trio thread (`trio.to_thread`). A quota bounds the bytes held.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import secrets
from pathlib import Path

import trio

from colonynode.core.errors import ColonyError

__all__ = ["ChunkStore", "QuotaExceeded", "chunk_id"]

DEFAULT_QUOTA_BYTES = 64 << 30


class QuotaExceeded(ColonyError):
    """This node holds its quota of chunk bytes."""


def chunk_id(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def _syncfs(path: Path) -> None:
    """Make every write to the file system holding `path` durable (Linux's syncfs(2);
    elsewhere a global sync)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
            os.sync()
    except OSError:
        os.sync()
    finally:
        os.close(fd)


class ChunkStore:
    def __init__(self, root: Path, quota_bytes: int = DEFAULT_QUOTA_BYTES) -> None:
        self.root = root
        self.quota_bytes = quota_bytes
        root.mkdir(parents=True, exist_ok=True)
        self.used_bytes = 0
        self.chunks = 0
        self.counters = {"stored": 0, "bad": 0, "quota_refused": 0, "collected": 0}
        self._unsynced = 0

    def scan(self) -> None:
        """Count what the store holds (at start); left-over temporary files go."""
        used = n = 0
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub):
                if entry.name.startswith("."):
                    os.unlink(entry.path)
                    continue
                used += entry.stat().st_size
                n += 1
        self.used_bytes, self.chunks = used, n

    def path(self, cid: bytes) -> Path:
        h = cid.hex()
        return self.root / h[:2] / h

    def has(self, cid: bytes) -> bool:
        return self.path(cid).exists()

    def ids(self) -> list[bytes]:
        out = []
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                out += [bytes.fromhex(e.name) for e in os.scandir(sub)
                        if len(e.name) == 64 and not e.name.startswith(".")]  # fmt: skip
        return out

    # -- blocking parts (run in a thread) -----------------------------------------------

    def write(self, cid: bytes, data: bytes | memoryview) -> bool:
        """Keep one chunk (off the Trio thread; `added` after): whether it is new here."""
        path = self.path(cid)
        if path.exists():
            os.utime(path)  # stored again: young for collection's grace (repair.py)
            return False
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return True

    def count_bad(self, freed: list[int]) -> None:
        """Corrupt copies `read_verified` deleted (their sizes)."""
        for size in freed:
            self.counters["bad"] += 1
            self.used_bytes -= size
            self.chunks -= 1

    def read_verified(self, cid: bytes) -> tuple[bytes | None, int]:
        """(the verified bytes or None, the bytes freed by deleting a corrupt copy): off
        the Trio thread only; `count_bad` the frees after."""
        try:
            data = self.path(cid).read_bytes()
        except FileNotFoundError:
            return None, 0
        if chunk_id(data) != cid:
            return None, self._delete(cid)
        return data, 0

    def read_into(self, cid: bytes, out: memoryview) -> int | None:
        """The bytes of chunk `cid` read into `out`, NOT verified (the bulk path's reader
        verifies them, and names a corrupt one back: transfer.Verify): its length, or None
        when it is missing or does not fit."""
        try:
            with open(self.path(cid), "rb", buffering=0) as f:
                n = f.readinto(out)
                if n is None or (n == len(out) and f.read(1)):
                    return None  # bigger than the room left: the next request has it
        except FileNotFoundError:
            return None
        return n

    def _delete(self, cid: bytes) -> int:
        try:
            size = self.path(cid).stat().st_size
            self.path(cid).unlink()
        except FileNotFoundError:
            return 0
        return size

    # -- async API ----------------------------------------------------------------------

    async def put(self, datas: list[bytes], ids: list[bytes] | None = None) -> list[bytes]:
        """Keep chunks (their `ids` when the caller hashed them, else hashed here, off the
        Trio thread): their ids. QuotaExceeded when full. Not durable until `flush`."""
        full = self.room(sum(len(d) for d in datas))
        if full:
            raise QuotaExceeded(full)

        def write_all() -> tuple[list[bytes], int, int]:
            cids = ids if ids is not None else [chunk_id(d) for d in datas]
            n = added = 0
            for cid, data in zip(cids, datas, strict=True):
                if self.write(cid, data):
                    n += 1
                    added += len(data)
            return cids, n, added

        cids, n, added = await trio.to_thread.run_sync(write_all)
        self.added(n, added)
        return cids

    def room(self, size: int) -> str:
        """ "" when `size` more bytes fit the quota; else why not (counted)."""
        if self.used_bytes + size <= self.quota_bytes:
            return ""
        self.counters["quota_refused"] += 1
        return (
            f"this node's ColonyFS quota of {self.quota_bytes} bytes is full "
            f"({self.used_bytes} held); free space or raise fs_quota_bytes"
        )

    def added(self, n: int, size: int) -> None:
        """`n` new chunks of `size` bytes written (on the Trio thread)."""
        self.used_bytes += size
        self.chunks += n
        self.counters["stored"] += n
        self._unsynced += n

    def sync(self) -> None:
        """`flush`, blocking (off the Trio thread only)."""
        _syncfs(self.root)

    async def flush(self) -> None:
        """Everything written so far is durable when this returns."""
        if self._unsynced:
            self._unsynced = 0
            await trio.to_thread.run_sync(_syncfs, self.root)

    async def get(self, cids: list[bytes]) -> list[bytes | None]:
        """Each chunk's verified bytes, or None (missing, or corrupt: then deleted)."""
        got = await trio.to_thread.run_sync(lambda: [self.read_verified(c) for c in cids])
        self.count_bad([freed for data, freed in got if data is None and freed])
        return [data for data, _ in got]

    async def delete(self, cids: list[bytes]) -> int:
        freed = await trio.to_thread.run_sync(lambda: [self._delete(c) for c in cids])
        self.used_bytes -= sum(freed)
        gone = sum(1 for f in freed if f)
        self.chunks -= gone
        self.counters["collected"] += gone
        return gone

    def stats(self) -> dict[str, int]:
        return {"chunks": self.chunks, "used_bytes": self.used_bytes,
                "quota_bytes": self.quota_bytes, **self.counters}  # fmt: skip
