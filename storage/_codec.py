"""Validation and value encoding shared by MemoryStore and LmdbStore.

Both stores check a batch the same way before they touch any state, so a batch that one
refuses the other refuses too, with the same InvalidRequest message.

Values are msgpack (`use_bin_type=True`: bytes stay bytes, str stays str; decoded with
`raw=False, strict_map_key=False` so maps with bytes or int keys round-trip). Tuples come
back as lists. On disk a record is one schema-version byte followed by the msgpack
bytes (`encode_record`); MemoryStore keeps the msgpack bytes alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import msgpack

from colonynode.core.effects import Write
from colonynode.storage.api import (
    BATCH_WRITES_MAX,
    KEY_BYTES_MAX,
    TABLE_NAME_BYTES_MAX,
    VALUE_BYTES_MAX,
)
from colonynode.storage.errors import InvalidRequest, StoreCorrupt

__all__ = [
    "SCHEMA_VERSION",
    "EncodedWrite",
    "check_key",
    "check_prefix",
    "check_table",
    "decode_record",
    "decode_value",
    "encode_batch",
    "encode_record",
    "encode_value",
]

# The store schema this code writes and reads. Bump it only with a migration from the
# previous version registered in colonynode.storage.schema.MIGRATIONS.
SCHEMA_VERSION: Final = 1

# (table, key, encoded value or None for a delete)
EncodedWrite = tuple[str, bytes, bytes | None]

_TABLE_RE: Final = re.compile(rf"[A-Za-z0-9_.:/-]{{1,{TABLE_NAME_BYTES_MAX}}}")
_VERSION_BYTE: Final = bytes([SCHEMA_VERSION])
_valid_tables: set[str] = set()
_VALID_TABLES_CACHED_MAX: Final = 1024

_PLAIN_DATA = "values are plain data: dict, list, str, bytes, int (64-bit), float, bool, None"


def check_table(table: object) -> str:
    """`table` if it is a valid table name, else InvalidRequest."""
    if isinstance(table, str) and table in _valid_tables:
        return table
    if not isinstance(table, str) or _TABLE_RE.fullmatch(table) is None:
        raise InvalidRequest(
            f"table name {table!r} is invalid: use 1..{TABLE_NAME_BYTES_MAX} characters "
            "of A-Z a-z 0-9 _ . : / -"
        )
    if len(_valid_tables) < _VALID_TABLES_CACHED_MAX:
        _valid_tables.add(table)
    return table


def check_key(table: str, key: object) -> bytes:
    """`key` if it is a valid key (bytes, 1..KEY_BYTES_MAX long), else InvalidRequest."""
    if not isinstance(key, bytes):
        raise InvalidRequest(f"key {key!r} in table {table!r} is not bytes")
    if not 0 < len(key) <= KEY_BYTES_MAX:
        raise InvalidRequest(
            f"key of {len(key)} bytes in table {table!r} is out of range: keys are "
            f"1..{KEY_BYTES_MAX} bytes (key_bytes_max)"
        )
    return key


def check_prefix(table: str, prefix: object) -> bytes:
    """A scan prefix: bytes, 0..KEY_BYTES_MAX long."""
    if not isinstance(prefix, bytes):
        raise InvalidRequest(f"scan prefix {prefix!r} for table {table!r} is not bytes")
    if len(prefix) > KEY_BYTES_MAX:
        raise InvalidRequest(
            f"scan prefix of {len(prefix)} bytes for table {table!r} is longer than "
            f"key_bytes_max={KEY_BYTES_MAX}"
        )
    return prefix


def encode_value(table: str, key: bytes, value: Any) -> bytes:
    """msgpack bytes of `value`, or InvalidRequest naming the table and key."""
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidRequest(
            f"value for {table!r}/{key!r} cannot be stored ({e}); {_PLAIN_DATA}"
        ) from None
    if len(packed) > VALUE_BYTES_MAX:
        raise InvalidRequest(
            f"value for {table!r}/{key!r} is {len(packed)} bytes encoded, over "
            f"value_bytes_max={VALUE_BYTES_MAX}"
        )
    return packed


def decode_value(packed: bytes) -> Any:
    """The value `encode_value` encoded (MemoryStore's records: trusted bytes)."""
    return msgpack.unpackb(packed, raw=False, strict_map_key=False)


def encode_record(table: str, key: bytes, value: Any) -> bytes:
    """The on-disk record: the schema version byte, then msgpack."""
    return _VERSION_BYTE + encode_value(table, key, value)


def decode_record(table: str, key: bytes, record: bytes, where: str) -> Any:
    """The value of an on-disk record; StoreCorrupt if it is not one this version wrote."""
    if record[:1] != _VERSION_BYTE:
        found = record[0] if record else "none"
        raise StoreCorrupt(
            f"record {table!r}/{key!r} in {where} has schema version {found}, expected "
            f"{SCHEMA_VERSION}: the store was changed by another program; restore the "
            "data dir from a backup or start with an empty one"
        )
    try:
        return msgpack.unpackb(memoryview(record)[1:], raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as e:
        raise StoreCorrupt(
            f"record {table!r}/{key!r} in {where} is not valid msgpack ({e}); restore the "
            "data dir from a backup or start with an empty one"
        ) from None


def encode_batch(batch: Sequence[Write], *, on_disk: bool) -> list[EncodedWrite]:
    """Check and encode a whole batch before any of it is applied.

    `on_disk` selects `encode_record` (LMDB) rather than `encode_value` (memory).
    Raises InvalidRequest, naming the write's index, for the first bad write.
    """
    if len(batch) > BATCH_WRITES_MAX:
        raise InvalidRequest(
            f"batch of {len(batch)} writes is over batch_writes_max={BATCH_WRITES_MAX}; split it"
        )
    encode = encode_record if on_disk else encode_value
    out: list[EncodedWrite] = []
    for index, write in enumerate(batch):
        if not isinstance(write, tuple) or len(write) != 3:
            raise InvalidRequest(f"write #{index} is not a (table, key, value) tuple")
        table, key, value = write
        try:
            table = check_table(table)
            key = check_key(table, key)
            packed = None if value is None else encode(table, key, value)
        except InvalidRequest as e:
            raise InvalidRequest(f"write #{index}: {e}") from None
        out.append((table, key, packed))
    return out
