"""colonynode.storage: the Store protocol, LMDB and in-memory stores (DESIGN.md §2, §4).

`LmdbStore(data_dir)` is a node's durable state; `MemoryStore()` is the same contract in
memory, with crash faults, for tests and the simulator. See docs/storage.md.
"""

from colonynode.storage.api import (
    BATCH_WRITES_MAX,
    KEY_BYTES_MAX,
    TABLE_NAME_BYTES_MAX,
    TABLES_MAX,
    VALUE_BYTES_MAX,
    Store,
    StoreStats,
    Write,
)
from colonynode.storage.errors import (
    InvalidRequest,
    SchemaError,
    SchemaTooNew,
    StoreClosed,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
)
from colonynode.storage.lmdb_store import LmdbStore
from colonynode.storage.memory import MemoryStore
from colonynode.storage.schema import SCHEMA_VERSION

__all__ = [
    "BATCH_WRITES_MAX",
    "KEY_BYTES_MAX",
    "SCHEMA_VERSION",
    "TABLES_MAX",
    "TABLE_NAME_BYTES_MAX",
    "VALUE_BYTES_MAX",
    "InvalidRequest",
    "LmdbStore",
    "MemoryStore",
    "SchemaError",
    "SchemaTooNew",
    "Store",
    "StoreClosed",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "StoreStats",
    "Write",
]
