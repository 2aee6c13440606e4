"""The Store contract, one suite run against MemoryStore and LmdbStore alike.

`reopen()` is a restart: LmdbStore is closed and opened again on the same data dir;
MemoryStore crashes (which a clean close would not be: it loses unsynced batches).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonynode.storage import (
    BATCH_WRITES_MAX,
    KEY_BYTES_MAX,
    TABLE_NAME_BYTES_MAX,
    TABLES_MAX,
    VALUE_BYTES_MAX,
    InvalidRequest,
    LmdbStore,
    MemoryStore,
    StoreClosed,
)


class Harness:
    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.data_dir = tmp_path / "node"
        self.store: MemoryStore | LmdbStore = (
            MemoryStore() if kind == "memory" else LmdbStore(self.data_dir)
        )

    def reopen(self) -> None:
        if isinstance(self.store, MemoryStore):
            self.store.crash()
        else:
            self.store.close()
            self.store = LmdbStore(self.data_dir)


@pytest.fixture(params=["memory", "lmdb"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(request.param, tmp_path)
    yield h
    h.store.close()


def rows(h: Harness, table: str, prefix: bytes = b"", limit: int | None = None) -> list[Any]:
    return list(h.store.scan(table, prefix, limit=limit))


# -- get, put, delete --------------------------------------------------------------------


def test_get_of_a_missing_key_or_table_is_none(harness: Harness) -> None:
    harness.store.apply([("t", b"a", 1)])
    assert harness.store.get("t", b"b") is None
    assert harness.store.get("never-written", b"a") is None
    assert rows(harness, "never-written") == []


def test_put_overwrite_delete(harness: Harness) -> None:
    s = harness.store
    s.apply([("t", b"k", "one")])
    assert s.get("t", b"k") == "one"
    s.apply([("t", b"k", "two")])
    assert s.get("t", b"k") == "two"
    s.apply([("t", b"k", None)])
    assert s.get("t", b"k") is None
    s.apply([("t", b"k", None)])  # deleting a missing key is a no-op
    assert rows(harness, "t") == []


def test_later_writes_in_a_batch_win(harness: Harness) -> None:
    s = harness.store
    s.apply([("t", b"k", 1), ("t", b"k", 2), ("t", b"gone", 3), ("t", b"gone", None)])
    assert rows(harness, "t") == [(b"k", 2)]


def test_tables_are_isolated(harness: Harness) -> None:
    s = harness.store
    s.apply([("a", b"k", "in a"), ("b", b"k", "in b"), ("a:b", b"k", "in a:b")])
    s.apply([("b", b"k", None)])
    assert s.get("a", b"k") == "in a"
    assert s.get("b", b"k") is None
    assert s.get("a:b", b"k") == "in a:b"
    assert rows(harness, "a") == [(b"k", "in a")]


ROUND_TRIP = [
    {"a": {"b": [1, 2, {"c": None}]}, "d": []},
    b"\x00\xff raw bytes",
    2**40,
    2**64 - 1,
    -(2**63),
    -1,
    0,
    1.5,
    -0.25,
    float("inf"),
    "ünïcödé",
    "",
    b"",
    [None, 1, None],
    {b"bytes key": 1, 2: "int key", "s": b"v"},
    True,
    False,
    [],
    {},
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_values_round_trip(harness: Harness, value: Any) -> None:
    harness.store.apply([("t", b"k", value)])
    got = harness.store.get("t", b"k")
    assert got == value and type(got) is type(value)
    harness.reopen()
    assert harness.store.get("t", b"k") == value


def test_tuples_come_back_as_lists(harness: Harness) -> None:
    harness.store.apply([("t", b"k", (1, (2, 3)))])
    assert harness.store.get("t", b"k") == [1, [2, 3]]


def test_a_value_read_is_a_copy(harness: Harness) -> None:
    harness.store.apply([("t", b"k", {"list": [1]})])
    got = harness.store.get("t", b"k")
    got["list"].append(2)
    assert harness.store.get("t", b"k") == {"list": [1]}


# -- scans -------------------------------------------------------------------------------


def test_scan_by_prefix_in_key_order(harness: Harness) -> None:
    keys = [b"a", b"a\x00", b"ab", b"abc", b"b", b"\x00", b"\xff", b"aa\xff"]
    shuffled = keys[:]
    random.Random(4).shuffle(shuffled)
    harness.store.apply([("t", k, k.hex()) for k in shuffled])
    assert [k for k, _ in rows(harness, "t")] == sorted(keys)
    assert rows(harness, "t", b"a") == [(k, k.hex()) for k in sorted(keys) if k[:1] == b"a"]
    assert [k for k, _ in rows(harness, "t", b"ab")] == [b"ab", b"abc"]
    assert rows(harness, "t", b"c") == []
    assert rows(harness, "t", b"\xff\xff") == []


def test_scan_limit(harness: Harness) -> None:
    harness.store.apply([("t", b"k%02d" % i, i) for i in range(10)])
    assert [v for _, v in rows(harness, "t", limit=3)] == [0, 1, 2]
    assert rows(harness, "t", limit=0) == []
    assert len(rows(harness, "t", limit=100)) == 10
    assert [v for _, v in rows(harness, "t", b"k0", limit=20)] == list(range(10))


def test_long_scans_cross_chunks(harness: Harness) -> None:
    n = 1_000  # both stores read 256 keys per step
    harness.store.apply([("t", b"x%05d" % i, i) for i in range(n)] + [("t", b"y", -1)])
    assert [v for _, v in rows(harness, "t", b"x")] == list(range(n))
    assert [v for _, v in rows(harness, "t", b"x", limit=600)] == list(range(600))
    assert [v for _, v in rows(harness, "t", b"x", limit=512)] == list(range(512))
    assert len(rows(harness, "t")) == n + 1


# -- atomic batches and limits -----------------------------------------------------------

BAD_WRITES = {
    "unencodable object": ("t", b"bad", object()),
    "a set": ("t", b"bad", {1, 2}),
    "int over 64 bits": ("t", b"bad", 2**64),
    "nested unencodable": ("t", b"bad", {"ok": [1, {"no": object()}]}),
    "key too long": ("t", b"k" * (KEY_BYTES_MAX + 1), 1),
    "empty key": ("t", b"", 1),
    "str key": ("t", "key", 1),
    "bytearray key": ("t", bytearray(b"key"), 1),
    "empty table name": ("", b"k", 1),
    "table name with space": ("my table", b"k", 1),
    "table name too long": ("t" * (TABLE_NAME_BYTES_MAX + 1), b"k", 1),
    "table not a str": (b"t", b"k", 1),
    "not a triple": ("t", b"k"),
    "a list, not a tuple": ["t", b"k", 1],
    "value too big": ("t", b"bad", b"x" * (VALUE_BYTES_MAX + 1)),
}


@pytest.mark.parametrize("bad", BAD_WRITES.values(), ids=BAD_WRITES.keys())
def test_a_bad_write_refuses_the_whole_batch(harness: Harness, bad: Any) -> None:
    s = harness.store
    s.apply([("t", b"before", 0)])
    batch = [("t", b"first", 1), ("other", b"second", 2), bad, ("t", b"after", 3)]
    with pytest.raises(InvalidRequest, match="write #2"):
        s.apply(batch)
    assert rows(harness, "t") == [(b"before", 0)]
    assert rows(harness, "other") == []
    s.apply([("t", b"later", 4)])  # the store keeps working
    harness.reopen()
    assert rows(harness, "t") == [(b"before", 0), (b"later", 4)]
    assert rows(harness, "other") == []


def test_a_batch_over_batch_writes_max_is_refused(harness: Harness) -> None:
    batch = [("t", b"k", 1)] * (BATCH_WRITES_MAX + 1)
    with pytest.raises(InvalidRequest, match="batch_writes_max"):
        harness.store.apply(batch)
    assert rows(harness, "t") == []


def test_tables_max(harness: Harness) -> None:
    s = harness.store
    s.apply([(f"t{i}", b"k", i) for i in range(TABLES_MAX)])
    with pytest.raises(InvalidRequest, match="tables_max"):
        s.apply([("t0", b"k2", 0), ("one-too-many", b"k", 1)])
    s.apply([("t0", b"k3", 0)])  # existing tables still take writes
    assert [k for k, _ in rows(harness, "t0")] == [b"k", b"k3"]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.get("t", "str"), "not bytes"),
        (lambda s: s.get("t", b""), "out of range"),
        (lambda s: s.get("bad name", b"k"), "table name"),
        (lambda s: s.scan("t", "str"), "not bytes"),
        (lambda s: s.scan("t", b"p" * (KEY_BYTES_MAX + 1)), "key_bytes_max"),
        (lambda s: s.scan("t", limit=-1), "limit"),
        (lambda s: s.scan("", b""), "table name"),
    ],
)
def test_bad_reads_are_refused_at_the_call(harness: Harness, call: Any, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        call(harness.store)


# -- durability --------------------------------------------------------------------------


def test_durable_batches_survive_a_restart(harness: Harness) -> None:
    s = harness.store
    s.apply([("t", b"a", 1), ("u", b"a", 2)])
    s.apply([("t", b"b", 3)], sync=True)
    s.apply([("t", b"unsynced-1", 4), ("t", b"unsynced-2", 5)], sync=False)
    harness.reopen()
    got = dict(rows(harness, "t"))
    assert got[b"a"] == 1 and got[b"b"] == 3
    assert harness.store.get("u", b"a") == 2
    # The unsynced batch may be lost by a restart, but never torn.
    assert (b"unsynced-1" in got) == (b"unsynced-2" in got)


def test_a_synced_batch_makes_earlier_unsynced_ones_durable(harness: Harness) -> None:
    s = harness.store
    s.apply([("t", b"early", 1)], sync=False)
    s.apply([("t", b"late", 2)], sync=True)
    harness.reopen()
    assert rows(harness, "t") == [(b"early", 1), (b"late", 2)]


def test_an_empty_synced_batch_makes_earlier_ones_durable(harness: Harness) -> None:
    harness.store.apply([("t", b"k", 1)], sync=False)
    harness.store.apply([], sync=True)
    harness.reopen()
    assert harness.store.get("t", b"k") == 1


def test_unsynced_writes_are_visible_at_once(harness: Harness) -> None:
    harness.store.apply([("t", b"k", 1)], sync=False)
    assert harness.store.get("t", b"k") == 1


def test_stats_count_batches_records_and_syncs(harness: Harness) -> None:
    s = harness.store
    s.apply([("t", b"a", 1), ("t", b"b", None)])
    s.apply([("t", b"c", 1)], sync=False)
    s.apply([])
    assert (s.stats.batches, s.stats.records, s.stats.syncs) == (3, 3, 2)


def test_use_after_close_raises_store_closed(harness: Harness) -> None:
    s = harness.store
    s.apply([("t", b"k", 1)])
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreClosed):
        s.get("t", b"k")
    with pytest.raises(StoreClosed):
        s.apply([("t", b"k", 2)])
    with pytest.raises(StoreClosed):
        list(s.scan("t"))
