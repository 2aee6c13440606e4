"""LmdbStore specifics: on-disk layout, locking, map growth, schema versions, migrations."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest

from colonynode.storage import (
    SCHEMA_VERSION,
    LmdbStore,
    SchemaError,
    SchemaTooNew,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
)
from colonynode.storage.schema import MigrationTxn


def raw_env(data_dir: Path) -> lmdb.Environment:
    return lmdb.open(str(data_dir / "store"), max_dbs=8, map_size=1 << 24)


def raw_meta_version(data_dir: Path) -> int:
    with raw_env(data_dir) as env:
        meta = env.open_db(b"_meta")
        with env.begin(db=meta) as txn:
            raw = txn.get(b"schema_version")
    assert raw is not None
    version = msgpack.unpackb(raw)
    assert isinstance(version, int)
    return version


def set_raw_meta_version(data_dir: Path, version: int) -> None:
    with raw_env(data_dir) as env:
        meta = env.open_db(b"_meta")
        with env.begin(write=True, db=meta) as txn:
            txn.put(b"schema_version", msgpack.packb(version))


# -- layout and locking ------------------------------------------------------------------


def test_on_disk_layout_and_pid_in_lock_file(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path)
    store.apply([("t", b"k", 1)])
    files = {p.name for p in (tmp_path / "store").iterdir()}
    assert {"data.mdb", "lock.mdb", "LOCK"} <= files
    assert (tmp_path / "store" / "LOCK").read_text().strip() == str(os.getpid())
    store.close()
    assert (tmp_path / "store" / "LOCK").read_text() == ""
    assert raw_meta_version(tmp_path) == SCHEMA_VERSION


def test_a_second_open_is_refused_while_the_first_is_open(tmp_path: Path) -> None:
    first = LmdbStore(tmp_path)
    with pytest.raises(StoreLocked) as caught:
        LmdbStore(tmp_path)
    assert caught.value.pid == os.getpid()
    assert str(tmp_path) in str(caught.value) and "stop it first" in str(caught.value)
    first.close()
    LmdbStore(tmp_path).close()  # close released the lock


def test_records_carry_the_schema_version_byte(tmp_path: Path) -> None:
    with LmdbStore(tmp_path) as store:
        store.apply([("t", b"k", {"v": 1})])
    with raw_env(tmp_path) as env:
        db = env.open_db(b"t:t")
        with env.begin(db=db) as txn:
            record = txn.get(b"k")
    assert record is not None
    assert record[0] == SCHEMA_VERSION
    assert msgpack.unpackb(record[1:]) == {"v": 1}


class FailingSync:
    """An environment whose fsync reports an I/O error, as a failing disk does."""

    def __init__(self, env: lmdb.Environment) -> None:
        self.env = env

    def sync(self, force: bool = False) -> None:
        raise lmdb.Error("mdb_env_sync", errno.EIO)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)


def test_after_a_failed_sync_writes_are_refused_until_a_restart(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path)
    store.apply([("t", b"a", 1)])
    real_env = store._env
    store._env = FailingSync(real_env)  # type: ignore[assignment]
    with pytest.raises(StoreError, match="failed a sync"):
        store.apply([("t", b"b", 2)])
    with pytest.raises(StoreError, match="restart the daemon"):
        store.apply([("t", b"c", 3)], sync=False)
    assert store.get("t", b"a") == 1  # reads still work
    assert store.get("t", b"c") is None
    store._env = real_env
    store.close()
    with LmdbStore(tmp_path) as again:
        again.apply([("t", b"d", 4)])  # a restart clears it
        assert again.get("t", b"d") == 4


# -- map growth --------------------------------------------------------------------------


def test_a_full_map_grows_instead_of_failing(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_bytes_initial=64 << 10)
    for i in range(50):  # many small batches, then one batch bigger than the first map
        store.apply([("t", b"small-%03d" % i, b"x" * 4000)], sync=False)
    store.apply([("t", b"big-%04d" % i, b"y" * 1000) for i in range(1000)])
    assert store.stats.map_resizes >= 4
    assert len(list(store.scan("t", b"small-"))) == 50
    assert len(list(store.scan("t", b"big-"))) == 1000
    store.close()
    with LmdbStore(tmp_path, map_bytes_initial=64 << 10) as again:
        assert again.get("t", b"big-0999") == b"y" * 1000
        again.apply([("t", b"one-more", 1)])
        assert again.stats.map_resizes == 0  # opened at the size the file needs


def test_map_bytes_max_is_a_hard_limit(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_bytes_initial=64 << 10, map_bytes_max=256 << 10)
    store.apply([("t", b"kept", 1)])
    with pytest.raises(StoreFull, match="map_bytes_max"):
        store.apply([("t", b"big-%04d" % i, b"y" * 1000) for i in range(1000)])
    assert list(store.scan("t")) == [(b"kept", 1)]
    store.apply([("t", b"small", 2)])
    assert store.get("t", b"small") == 2
    store.close()


def test_readers_on_another_thread_see_whole_batches_while_the_map_grows(
    tmp_path: Path,
) -> None:
    store = LmdbStore(tmp_path, map_bytes_initial=64 << 10)
    batches = 300
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(1, batches + 1):
                filler = [("fill", b"%05d-%d" % (i, j), b"z" * 500) for j in range(4)]
                store.apply([("t", b"head", i), *filler, ("t", b"tail", i)], sync=False)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while thread.is_alive():
        pairs = dict(store.scan("t"))  # two keys: one read transaction
        assert pairs.get(b"head") == pairs.get(b"tail")
        reads += 1
    thread.join()
    assert errors == []
    assert reads > 0
    assert dict(store.scan("t")) == {b"head": batches, b"tail": batches}
    assert store.stats.map_resizes >= 3
    store.close()


# -- schema versions ---------------------------------------------------------------------


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    LmdbStore(tmp_path).close()
    set_raw_meta_version(tmp_path, SCHEMA_VERSION + 1)
    with pytest.raises(SchemaTooNew) as caught:
        LmdbStore(tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert f"v{SCHEMA_VERSION + 1}" in message and "upgrade colonynode" in message
    set_raw_meta_version(tmp_path, SCHEMA_VERSION)
    LmdbStore(tmp_path).close()  # the refusal released the lock


def write_v0_store(data_dir: Path, records: dict[bytes, Any]) -> None:
    """A made-up schema v0: the same layout, values as plain msgpack with no version byte."""
    (data_dir / "store").mkdir(parents=True)
    with raw_env(data_dir) as env:
        meta = env.open_db(b"_meta")
        things = env.open_db(b"t:things")
        with env.begin(write=True) as txn:
            txn.put(b"schema_version", msgpack.packb(0), db=meta)
            for key, value in records.items():
                txn.put(key, msgpack.packb(value, use_bin_type=True), db=things)


V0_RECORDS = {b"k%04d" % i: {"n": i, "b": b"\x01"} for i in range(1500)}


def test_an_older_schema_is_migrated_once(tmp_path: Path) -> None:
    write_v0_store(tmp_path, V0_RECORDS)
    calls: list[list[str]] = []

    def v0_to_v1(m: MigrationTxn) -> None:
        calls.append(m.tables())
        for table in m.tables():
            for key, record in m.records(table):
                m.put(table, key, bytes([1]) + record)

    with LmdbStore(tmp_path, migrations={0: v0_to_v1}) as store:
        assert dict(store.scan("things")) == V0_RECORDS
    assert calls == [["things"]]
    assert raw_meta_version(tmp_path) == 1
    with LmdbStore(tmp_path, migrations={0: v0_to_v1}) as store:
        assert store.get("things", b"k0007") == {"n": 7, "b": b"\x01"}
    assert len(calls) == 1


def test_a_migration_that_fills_the_map_grows_it_and_reruns(tmp_path: Path) -> None:
    write_v0_store(tmp_path, {b"k%04d" % i: "v" * 400 for i in range(500)})
    calls = 0

    def v0_to_v1(m: MigrationTxn) -> None:
        nonlocal calls
        calls += 1
        for key, record in m.records("things"):
            m.put("things", key, bytes([1]) + record)
            m.put("copy", key, bytes([1]) + record)  # a new table, in the same step

    with LmdbStore(tmp_path, map_bytes_initial=64 << 10, migrations={0: v0_to_v1}) as store:
        assert store.stats.map_resizes >= 1
        assert calls == store.stats.map_resizes + 1  # every retry reran the whole step
        assert dict(store.scan("copy")) == dict(store.scan("things"))
        assert len(dict(store.scan("copy"))) == 500
    assert raw_meta_version(tmp_path) == 1


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    write_v0_store(tmp_path, V0_RECORDS)

    def broken(m: MigrationTxn) -> None:
        for n, (key, record) in enumerate(m.records("things")):
            m.put("things", key, bytes([1]) + record)
            if n == 700:
                raise RuntimeError("bug in the migration")

    with pytest.raises(SchemaError, match="still at v0") as caught:
        LmdbStore(tmp_path, migrations={0: broken})
    assert "bug in the migration" in str(caught.value)
    assert raw_meta_version(tmp_path) == 0
    with raw_env(tmp_path) as env:
        things = env.open_db(b"t:things")
        with env.begin(db=things) as txn:
            assert all(msgpack.unpackb(v) == V0_RECORDS[k] for k, v in txn.cursor())


def test_an_older_schema_without_a_migration_is_refused(tmp_path: Path) -> None:
    write_v0_store(tmp_path, {b"k": 1})
    with pytest.raises(SchemaError, match="no migration from v0"):
        LmdbStore(tmp_path, migrations={})
    assert raw_meta_version(tmp_path) == 0


def test_an_lmdb_env_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    with raw_env(tmp_path) as env, env.begin(write=True) as txn:
        txn.put(b"someone-else", b"data")
    with pytest.raises(StoreCorrupt, match="not a colonynode store"):
        LmdbStore(tmp_path)


def test_a_record_with_a_foreign_version_byte_is_reported(tmp_path: Path) -> None:
    with LmdbStore(tmp_path) as store:
        store.apply([("t", b"k", 1)])
    with raw_env(tmp_path) as env:
        db = env.open_db(b"t:t")
        with env.begin(write=True, db=db) as txn:
            txn.put(b"k", bytes([9]) + msgpack.packb(1))
    with LmdbStore(tmp_path) as store, pytest.raises(StoreCorrupt, match="schema version 9"):
        store.get("t", b"k")
