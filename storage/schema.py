"""Store schema versions and migrations.

The `meta` database of a store holds `schema_version`, and every record carries the
version byte it was written with. At open (see LmdbStore):

- a fresh data dir is stamped with SCHEMA_VERSION;
- a newer version is refused (SchemaTooNew): this code would misread it;
- an older version v is migrated one step at a time, `MIGRATIONS[v]` bringing it to v+1.
  Each step runs in one LMDB write transaction together with the bump of
  `schema_version`, and is synced before the next one starts: a crash or a failing step
  leaves the data dir at the last completed version, never half-migrated;
- a version with no registered path to SCHEMA_VERSION is refused (SchemaError).

To change the on-disk format: bump SCHEMA_VERSION in `_codec.py`, register the step from
the previous version here, and test it on a data dir written by the previous code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Final

import lmdb
import msgpack

from colonynode.storage._codec import SCHEMA_VERSION, check_key, check_table
from colonynode.storage.errors import SchemaError, SchemaTooNew, StoreCorrupt

__all__ = [
    "META_DB",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TABLE_DB_PREFIX",
    "Migration",
    "MigrationTxn",
    "migration_path",
    "read_schema_version",
    "write_schema_version",
]

# LMDB database names: tables live under "t:<table>", so no table can shadow `_meta`.
META_DB: Final = b"_meta"
TABLE_DB_PREFIX: Final = b"t:"
SCHEMA_VERSION_KEY: Final = b"schema_version"
# Records a migration reads per cursor pass (it may write between passes).
MIGRATION_CHUNK_MAX: Final = 1024


class MigrationTxn:
    """What a migration step sees: raw records inside its one write transaction.

    Records are the stored bytes (version byte + msgpack for v1), so a step can read a
    format the current codec no longer decodes and write the new one.
    """

    def __init__(self, env: lmdb.Environment, txn: lmdb.Transaction[bytes]) -> None:
        self._env = env
        self._txn = txn
        self._dbs: dict[str, lmdb._Database] = {}

    def tables(self) -> list[str]:
        """The store's table names, sorted."""
        names = [key for key, _ in self._txn.cursor()]
        return sorted(
            n[len(TABLE_DB_PREFIX) :].decode() for n in names if n.startswith(TABLE_DB_PREFIX)
        )

    def records(self, table: str) -> Iterator[tuple[bytes, bytes]]:
        """(key, stored record) pairs of `table` in key order; writes in between are fine."""
        db = self._db(table, create=False)
        last: bytes | None = None
        while True:
            chunk: list[tuple[bytes, bytes]] = []
            with self._txn.cursor(db=db) as cursor:
                ok = cursor.first() if last is None else cursor.set_range(last)
                if ok and last is not None and cursor.key() == last:
                    ok = cursor.next()
                while ok and len(chunk) < MIGRATION_CHUNK_MAX:
                    chunk.append(cursor.item())
                    ok = cursor.next()
            yield from chunk
            if len(chunk) < MIGRATION_CHUNK_MAX:
                return
            last = chunk[-1][0]

    def put(self, table: str, key: bytes, record: bytes) -> None:
        """Store a raw record (creating the table if needed)."""
        self._txn.put(check_key(table, key), record, db=self._db(table, create=True))

    def delete(self, table: str, key: bytes) -> bool:
        return self._txn.delete(check_key(table, key), db=self._db(table, create=False))

    def _db(self, table: str, *, create: bool) -> lmdb._Database:
        db = self._dbs.get(table)
        if db is None:
            name = TABLE_DB_PREFIX + check_table(table).encode()
            db = self._env.open_db(name, txn=self._txn, create=create)
            self._dbs[table] = db
        return db


# A step that brings a store from version v (its key in MIGRATIONS) to v+1.
Migration = Callable[[MigrationTxn], None]

# The registry. Empty: v1 is the first schema colonynode shipped. The framework is
# exercised by tests/storage/test_lmdb.py with a fake v0 -> v1 step.
MIGRATIONS: Final[Mapping[int, Migration]] = {}


def migration_path(
    data_dir: Path, found: int, migrations: Mapping[int, Migration]
) -> list[tuple[int, Migration]]:
    """The steps from version `found` to SCHEMA_VERSION; refuse what cannot be read."""
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(data_dir, found, SCHEMA_VERSION)
    steps: list[tuple[int, Migration]] = []
    for version in range(found, SCHEMA_VERSION):
        step = migrations.get(version)
        if step is None:
            raise SchemaError(
                f"data dir {data_dir} has store schema v{found}, and this colonynode "
                f"(schema v{SCHEMA_VERSION}) has no migration from v{version}; open it "
                "with the colonynode version that wrote it, or start with an empty data dir"
            )
        steps.append((version, step))
    return steps


def read_schema_version(txn: lmdb.Transaction[bytes], meta: lmdb._Database, where: str) -> int:
    raw = txn.get(SCHEMA_VERSION_KEY, db=meta)
    try:
        version = None if raw is None else msgpack.unpackb(raw)
    except (ValueError, msgpack.UnpackException):
        version = None
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise StoreCorrupt(
            f"{where} has no valid schema_version (found {raw!r}): it is not a colonynode "
            "store or it was damaged; restore it from a backup or start with an empty one"
        )
    return version


def write_schema_version(txn: lmdb.Transaction[bytes], meta: lmdb._Database, version: int) -> None:
    txn.put(SCHEMA_VERSION_KEY, msgpack.packb(version), db=meta)
