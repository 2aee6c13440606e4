"""LmdbStore: a node's durable state in one LMDB environment (DESIGN.md §2, §4).

Layout: `<data_dir>/store/` holds `data.mdb` and `lock.mdb` (LMDB's) and `LOCK` (ours:
an exclusive flock with the holder's pid, see `_lock.py`). Each table is a named
database `t:<table>`; `_meta` holds `schema_version` (see `schema.py`). A record is one
schema-version byte followed by the msgpack of the value.

Durability. The environment is opened with `sync=True, metasync=False`: every commit
fdatasyncs its data pages before it writes the meta page, so the file is consistent
after any crash, power loss included; a commit alone may be undone by a power loss (the
meta page is not yet on disk). `apply(sync=True)` therefore follows the commit with
`env.sync(True)`, a second fdatasync: when it returns, the batch and every one before
it are on disk. `apply(sync=False)` skips that second flush. A kill -9 never loses a
committed batch in either case (the page cache survives the process), and no crash
ever shows part of one. LMDB's `sync=False` would make unsynced commits free, but then
a power loss between two syncs can leave a meta page pointing at pages never written,
which corrupts the file (LMDB's documentation of MDB_NOSYNC); not worth it.

Threads. `apply` may run on a worker thread (see `_trio.py`) while the event loop reads:
LMDB readers never wait for the writer. Writers are serialized by `_write_lock`. A full
map is grown by reopening the environment with twice the map size, under `_map_lock`,
which every read also takes for the few microseconds it holds a read transaction, so no
reader ever sees the map change under it. A scan reads SCAN_CHUNK_MAX records per
read transaction: a long scan is consistent per chunk, not one snapshot.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import lmdb

from colonynode.core.effects import Write
from colonynode.storage._codec import (
    SCHEMA_VERSION,
    EncodedWrite,
    check_key,
    check_prefix,
    check_table,
    decode_record,
    encode_batch,
)
from colonynode.storage._lock import DirLock
from colonynode.storage.api import TABLES_MAX, StoreStats
from colonynode.storage.errors import (
    InvalidRequest,
    SchemaError,
    StoreClosed,
    StoreCorrupt,
    StoreError,
    StoreFull,
)
from colonynode.storage.schema import (
    META_DB,
    MIGRATIONS,
    TABLE_DB_PREFIX,
    Migration,
    MigrationTxn,
    migration_path,
    read_schema_version,
    write_schema_version,
)

__all__ = ["MAP_BYTES_INITIAL", "MAP_BYTES_MAX", "LmdbStore"]

MAP_BYTES_INITIAL: Final = 64 << 20  # grown by doubling when full
MAP_BYTES_MAX: Final = 1 << 40  # address space, not disk: data.mdb grows as it is written
SCAN_CHUNK_MAX: Final = 256  # records per read transaction of a scan
_DBS_MAX: Final = TABLES_MAX + 4  # tables, _meta, spare


class LmdbStore:
    """The Store of a running node: `LmdbStore(data_dir)` opens (or creates) it.

    Raises StoreLocked if another live process has the data dir open, SchemaTooNew if a
    newer colonynode wrote it, SchemaError if it cannot be migrated, StoreError if LMDB
    cannot open it. `migrations` is for tests; the default is the registry.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        map_bytes_initial: int = MAP_BYTES_INITIAL,
        map_bytes_max: int = MAP_BYTES_MAX,
        migrations: Mapping[int, Migration] = MIGRATIONS,
    ) -> None:
        if not 0 < map_bytes_initial <= map_bytes_max:
            raise ValueError("need 0 < map_bytes_initial <= map_bytes_max")
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "store"
        self.stats = StoreStats()
        self._map_bytes_max = map_bytes_max
        self._write_lock = threading.Lock()
        self._map_lock = threading.Lock()
        self._dbs: dict[str, lmdb._Database] = {}
        self._closed = False
        self._sync_failed: str | None = None
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store dir {self.path}: {e}") from None
        self._lock = DirLock(self.path / "LOCK", self.data_dir)
        try:
            self._map_bytes = _initial_map_bytes(self.path, map_bytes_initial, map_bytes_max)
            self._env = self._open_env()
            try:
                self._open_schema(migrations)
            except lmdb.Error as e:
                self._env.close()
                raise StoreError(f"cannot open the store in {self.path}: {e}") from e
            except BaseException:
                self._env.close()
                raise
        except BaseException:
            self._lock.release()
            raise

    # -- reads -----------------------------------------------------------------------

    def get(self, table: str, key: bytes) -> Any | None:
        check_key(check_table(table), key)
        with self._map_lock:
            self._check_open()
            db = self._dbs.get(table)
            if db is None:
                return None
            with self._env.begin(db=db) as txn:
                record = txn.get(key)
        return None if record is None else decode_record(table, key, record, str(self.path))

    def scan(
        self, table: str, prefix: bytes = b"", *, limit: int | None = None
    ) -> Iterator[tuple[bytes, Any]]:
        check_prefix(check_table(table), prefix)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidRequest(f"scan limit {limit!r} is not None or an int >= 0")
        self._check_open()
        return self._scan(table, prefix, limit)

    def _scan(self, table: str, prefix: bytes, limit: int | None) -> Iterator[tuple[bytes, Any]]:
        where = str(self.path)
        remaining = limit
        last: bytes | None = None
        while remaining is None or remaining > 0:
            n = SCAN_CHUNK_MAX if remaining is None else min(SCAN_CHUNK_MAX, remaining)
            chunk: list[tuple[bytes, bytes]] = []
            with self._map_lock:
                self._check_open()
                db = self._dbs.get(table)
                if db is None:
                    return
                with self._env.begin(db=db) as txn, txn.cursor() as cursor:
                    ok = cursor.set_range(prefix if last is None else last)
                    if ok and last is not None and cursor.key() == last:
                        ok = cursor.next()
                    while ok and len(chunk) < n:
                        key = cursor.key()
                        if not key.startswith(prefix):
                            break
                        chunk.append((key, cursor.value()))
                        ok = cursor.next()
            for key, record in chunk:
                yield key, decode_record(table, key, record, where)
            if len(chunk) < n:
                return
            last = chunk[-1][0]
            if remaining is not None:
                remaining -= len(chunk)

    # -- writes ----------------------------------------------------------------------

    def apply(self, batch: Sequence[Write], *, sync: bool = True) -> None:
        """One LMDB write transaction; with sync=True, on disk when this returns."""
        encoded = encode_batch(batch, on_disk=True)
        with self._write_lock:
            self._check_open()
            if self._sync_failed is not None:
                raise StoreError(self._sync_failed)
            try:
                new_tables = sorted({t for t, _, _ in encoded if t not in self._dbs})
                if new_tables:
                    self._create_tables(new_tables)
                if encoded:
                    self._write(lambda txn: self._put_all(txn, encoded))
            except lmdb.Error as e:
                raise self._error(e) from e
            if sync:
                try:
                    self._env.sync(True)
                except lmdb.Error as e:
                    # After a failed fsync the kernel may have dropped the dirty pages:
                    # what is visible is no longer known to be on disk. Refuse writes
                    # until a restart reads back what is (PostgreSQL's "fsyncgate").
                    self._sync_failed = (
                        f"store {self.path}: the disk failed a sync ({e}); restart the "
                        "daemon to continue from what is on disk"
                    )
                    raise StoreError(self._sync_failed) from e
            self.stats.batches += 1
            self.stats.records += len(encoded)
            self.stats.syncs += sync

    def _put_all(self, txn: lmdb.Transaction[bytes], encoded: list[EncodedWrite]) -> None:
        dbs = self._dbs
        for table, key, record in encoded:
            if record is None:
                txn.delete(key, db=dbs[table])
            else:
                txn.put(key, record, db=dbs[table])

    def _create_tables(self, tables: list[str]) -> None:
        """Create tables in their own transaction, so a batch never aborts a new handle."""
        if len(self._dbs) + len(tables) > TABLES_MAX:
            raise InvalidRequest(
                f"batch would create tables {tables}: over tables_max={TABLES_MAX}"
            )
        created: dict[str, lmdb._Database] = {}

        def create(txn: lmdb.Transaction[bytes]) -> None:
            created.clear()
            for table in tables:
                name = TABLE_DB_PREFIX + table.encode()
                created[table] = self._env.open_db(name, txn=txn, create=True)

        self._write(create)
        self._dbs.update(created)

    def _write(self, body: Callable[[lmdb.Transaction[bytes]], None]) -> None:
        """Run `body` in one write transaction and commit it, growing the map when full."""
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    body(txn)
                return
            except lmdb.MapFullError:
                self._grow()

    def _grow(self) -> None:
        """Reopen the environment with twice the map (the aborted batch is then retried)."""
        new_bytes = min(self._map_bytes * 2, self._map_bytes_max)
        if new_bytes <= self._map_bytes:
            raise StoreFull(
                f"store {self.path} is full: it reached map_bytes_max={self._map_bytes_max} "
                "bytes; delete data or raise the limit"
            )
        with self._map_lock:
            self._env.close()
            self._map_bytes = new_bytes
            self._env = self._open_env()
            self._open_handles()
        self.stats.map_resizes += 1

    # -- opening ---------------------------------------------------------------------

    def _open_env(self) -> lmdb.Environment:
        try:
            env = lmdb.open(
                str(self.path),
                map_size=self._map_bytes,
                subdir=True,
                mode=0o600,
                max_dbs=_DBS_MAX,
                sync=True,
                metasync=False,
                max_spare_txns=1,
            )
        except lmdb.Error as e:
            raise StoreError(
                f"cannot open the store in {self.path}: {e}; is it a colonynode data dir?"
            ) from None
        if env.max_key_size() < 511:
            env.close()
            raise StoreError(f"this LMDB build allows keys of {env.max_key_size()} bytes only")
        return env

    def _open_schema(self, migrations: Mapping[int, Migration]) -> None:
        """Stamp a fresh store, refuse a newer one, migrate an older one."""
        with self._env.begin(write=True) as txn:
            names = [key for key, _ in txn.cursor()]
            strays = [n for n in names if n != META_DB and not n.startswith(TABLE_DB_PREFIX)]
            if strays or (names and META_DB not in names):
                raise StoreCorrupt(
                    f"{self.path} holds an LMDB environment that is not a colonynode store "
                    f"(databases {sorted(names)}); use another --data-dir"
                )
            if not names:
                meta = self._env.open_db(META_DB, txn=txn, create=True)
                write_schema_version(txn, meta, SCHEMA_VERSION)
        self._env.sync(True)
        self._open_handles()
        with self._env.begin() as txn:
            found = read_schema_version(txn, self._meta, str(self.path))
        for version, step in migration_path(self.data_dir, found, migrations):
            self._migrate(version, step)
        self._open_handles()

    def _migrate(self, version: int, step: Migration) -> None:
        """One step, v -> v+1, and the version bump in one transaction, then synced."""

        def body(txn: lmdb.Transaction[bytes]) -> None:
            step(MigrationTxn(self._env, txn))
            write_schema_version(txn, self._meta, version + 1)

        try:
            self._write(body)
            self._env.sync(True)
        except StoreFull:
            raise
        except Exception as e:
            raise SchemaError(
                f"migrating data dir {self.data_dir} from store schema v{version} to "
                f"v{version + 1} failed ({e!r}); nothing was changed, it is still at "
                f"v{version}: report this as a bug"
            ) from e

    def _open_handles(self) -> None:
        """(Re)open the meta and every table handle of the current environment."""
        with self._env.begin(write=True) as txn:
            names = [key for key, _ in txn.cursor()]
            self._meta = self._env.open_db(META_DB, txn=txn, create=False)
            self._dbs = {
                n[len(TABLE_DB_PREFIX) :].decode(): self._env.open_db(n, txn=txn, create=False)
                for n in names
                if n.startswith(TABLE_DB_PREFIX)
            }

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Make everything durable, close the environment, release the data dir."""
        with self._write_lock, self._map_lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._env.sync(True)
            finally:
                self._env.close()
                self._lock.release()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"store {self.path} used after close()")

    def _error(self, e: lmdb.Error) -> StoreError:
        if isinstance(e, lmdb.DiskError) or getattr(e, "code", 0) == errno.ENOSPC:
            return StoreFull(f"disk full writing the store {self.path}: free some space ({e})")
        return StoreError(f"store {self.path}: {e}")

    def __enter__(self) -> LmdbStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _initial_map_bytes(path: Path, initial: int, maximum: int) -> int:
    """At least the data file's size, so a store that grew before opens without regrowing."""
    try:
        size = (path / "data.mdb").stat().st_size
    except FileNotFoundError:
        size = 0
    map_bytes = initial
    while map_bytes <= size and map_bytes < maximum:
        map_bytes *= 2
    return min(map_bytes, maximum)
