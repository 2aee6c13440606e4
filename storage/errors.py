"""Typed storage errors, each with a message a person can act on (STYLE.md 11).

StoreError
├── InvalidRequest   a table name, key, value or batch the store refuses (nothing applied)
├── StoreLocked      the data dir is held by another live process
├── SchemaError      the data dir's schema cannot be read by this version
│   └── SchemaTooNew written by a newer colonynode
├── StoreFull        the map reached map_bytes_max, or the disk is full
├── StoreCorrupt     bytes on disk that are not what this store wrote
└── StoreClosed      use after close()
"""

from __future__ import annotations

from pathlib import Path

from colonynode.core.errors import ColonyError

__all__ = [
    "InvalidRequest",
    "SchemaError",
    "SchemaTooNew",
    "StoreClosed",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
]


class StoreError(ColonyError):
    """Base of every error the storage layer raises on purpose."""


class InvalidRequest(StoreError):
    """A table name, key, value or batch over a limit or of the wrong type.

    Raised by `apply` before anything of the batch is applied, and by `get` and `scan`.
    It is a bug in the caller, not a fault of the disk: the store keeps working.
    """


class StoreLocked(StoreError):
    """Another live process holds the data dir's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"data dir {data_dir} is in use by a running colonynode daemon ({who}); "
            "stop it first, or use another --data-dir"
        )


class SchemaError(StoreError):
    """The data dir holds a store schema this version cannot read or migrate."""


class SchemaTooNew(SchemaError):
    """The data dir was written by a newer colonynode."""

    def __init__(self, data_dir: Path, found: int, supported: int) -> None:
        self.data_dir = data_dir
        self.found = found
        self.supported = supported
        super().__init__(
            f"data dir {data_dir} was written by a newer colonynode (store schema "
            f"v{found}; this version reads up to v{supported}); upgrade colonynode, "
            "or use another --data-dir"
        )


class StoreFull(StoreError):
    """No room left: the map reached map_bytes_max, or the disk is full."""


class StoreCorrupt(StoreError):
    """Bytes on disk that this store did not write (another program, or a bad disk)."""


class StoreClosed(StoreError):
    """The store was used after close()."""
