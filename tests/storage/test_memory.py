"""MemoryStore's crash faults, and a property test against a plain-dict reference."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonynode.core.effects import Write
from colonynode.storage import MemoryStore
from colonynode.storage import memory as memory_module


def contents(store: MemoryStore, table: str = "t") -> dict[bytes, Any]:
    return dict(store.scan(table))


def three_unsynced(store: MemoryStore) -> list[list[Write]]:
    store.apply([("t", b"durable", 0)])
    batches: list[list[Write]] = [
        [("t", b"b1-%d" % j, 1) for j in range(4)],
        [("t", b"b2-%d" % j, 2) for j in range(4)] + [("t", b"durable", None)],
        [("t", b"b3-%d" % j, 3) for j in range(4)],
    ]
    for batch in batches:
        store.apply(batch, sync=False)
    return batches


def test_crash_without_rng_loses_every_unsynced_batch() -> None:
    s = MemoryStore()
    three_unsynced(s)
    assert s.unsynced_batches == 3
    assert s.crash() == 3
    assert contents(s) == {b"durable": 0}
    assert (s.unsynced_batches, s.stats.crashes, s.stats.batches_lost) == (0, 1, 3)


def test_crash_restores_overwritten_and_deleted_values() -> None:
    s = MemoryStore()
    s.apply([("t", b"a", "old"), ("t", b"b", "kept")])
    s.apply([("t", b"a", "new"), ("t", b"b", None), ("u", b"c", 1)], sync=False)
    s.apply([("t", b"a", "newer")], sync=False)
    s.crash()
    assert contents(s) == {b"a": "old", b"b": "kept"}
    assert contents(s, "u") == {}


def test_durable_get_is_what_a_crash_would_leave() -> None:
    s = MemoryStore()
    s.apply([("t", b"a", 1)])
    s.apply([("t", b"a", 2), ("t", b"new", 3)], sync=False)
    assert (s.get("t", b"a"), s.durable_get("t", b"a")) == (2, 1)
    assert s.durable_get("t", b"new") is None
    s.apply([], sync=True)
    assert s.durable_get("t", b"a") == 2


def test_crash_with_rng_keeps_a_prefix_of_whole_batches() -> None:
    outcomes = set()
    for seed in range(40):
        s = MemoryStore()
        batches = three_unsynced(s)
        lost = s.crash(random.Random(seed))
        kept = 3 - lost
        expected = MemoryStore()
        expected.apply([("t", b"durable", 0)])
        for batch in batches[:kept]:
            expected.apply(batch)
        assert contents(s) == contents(expected)
        outcomes.add(kept)
    assert outcomes == {0, 1, 2, 3}


def test_tear_keeps_a_proper_prefix_of_the_first_lost_batch() -> None:
    def state(batches: list[list[Write]]) -> dict[bytes, Any]:
        expected = MemoryStore()
        expected.apply([("t", b"durable", 0)])
        for batch in batches:
            expected.apply(batch)
        return contents(expected)

    torn_lengths = set()
    for seed in range(60):
        s = MemoryStore()
        batches = three_unsynced(s)
        kept = 3 - s.crash(random.Random(seed), tear=True)
        if kept == 3:
            continue
        torn = batches[kept]
        got = contents(s)
        matches = [j for j in range(len(torn)) if got == state([*batches[:kept], torn[:j]])]
        assert matches, f"seed {seed}: not durable + whole batches + a proper prefix"
        torn_lengths.add(matches[0])
    assert torn_lengths == {0, 1, 2, 3, 4}


def test_tear_needs_an_rng() -> None:
    with pytest.raises(ValueError, match="rng"):
        MemoryStore().crash(tear=True)


def test_crash_reopens_a_closed_store() -> None:
    s = MemoryStore()
    s.apply([("t", b"k", 1)], sync=False)
    s.close()  # a clean close makes everything durable
    assert s.crash() == 0
    assert s.get("t", b"k") == 1


def test_unsynced_writes_max_bounds_the_undo_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_module, "UNSYNCED_WRITES_MAX", 10)
    s = MemoryStore()
    for i in range(5):
        s.apply([("t", b"%d-%d" % (i, j), i) for j in range(4)], sync=False)
    assert s.unsynced_batches == 2  # the three oldest were flushed, as a kernel would
    s.crash()
    assert len(contents(s)) == 12


# -- property: MemoryStore against a dict reference --------------------------------------

KEYS = st.binary(min_size=1, max_size=3)
VALUES = st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=4))
WRITES = st.tuples(st.sampled_from(["a", "b"]), KEYS, VALUES)
OPS = st.one_of(
    st.tuples(st.just("apply"), st.lists(WRITES, max_size=6), st.booleans()),
    st.tuples(st.just("crash"), st.just([]), st.just(False)),
)


class Reference:
    """The brute-force model: a dict per table, durable and visible copies."""

    def __init__(self) -> None:
        self.visible: dict[str, dict[bytes, Any]] = {"a": {}, "b": {}}
        self.durable: dict[str, dict[bytes, Any]] = {"a": {}, "b": {}}

    def apply(self, batch: list[Write], sync: bool) -> None:
        for table, key, value in batch:
            if value is None:
                self.visible[table].pop(key, None)
            else:
                self.visible[table][key] = value
        if sync:
            self.durable = {t: dict(rows) for t, rows in self.visible.items()}

    def crash(self) -> None:
        self.visible = {t: dict(rows) for t, rows in self.durable.items()}

    def scan(self, table: str, prefix: bytes, limit: int | None) -> list[tuple[bytes, Any]]:
        found = sorted((k, v) for k, v in self.visible[table].items() if k.startswith(prefix))
        return found if limit is None else found[:limit]


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(OPS, max_size=25),
    prefixes=st.lists(st.binary(max_size=2), min_size=1, max_size=3),
    limit=st.one_of(st.none(), st.integers(0, 5)),
)
def test_memory_store_matches_a_dict_reference(
    ops: list[tuple[str, list[Write], bool]], prefixes: list[bytes], limit: int | None
) -> None:
    store, ref = MemoryStore(), Reference()
    for op, batch, sync in ops:
        if op == "apply":
            store.apply(batch, sync=sync)
            ref.apply(batch, sync)
        else:
            store.crash()
            ref.crash()
        for table in ("a", "b"):
            assert list(store.scan(table)) == ref.scan(table, b"", None)
            for prefix in prefixes:
                assert list(store.scan(table, prefix, limit=limit)) == ref.scan(
                    table, prefix, limit
                )


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=2)), max_size=200),
    starts=st.lists(st.binary(max_size=2), min_size=1, max_size=4),
    n=st.integers(0, 12),
)
def test_sorted_key_runs_match_a_sorted_list(
    ops: list[tuple[bool, bytes]], starts: list[bytes], n: int
) -> None:
    keys, reference = memory_module._SortedKeys(load=2), set()  # tiny runs: many splits
    for add, key in ops:
        if add and key not in reference:
            keys.add(key)
            reference.add(key)
        elif not add and key in reference:
            keys.remove(key)
            reference.discard(key)
    ordered = sorted(reference)
    assert keys.take(b"", after=False, n=len(ordered) + 1) == ordered
    for start in starts:
        assert keys.take(start, after=False, n=n) == [k for k in ordered if k >= start][:n]
        assert keys.take(start, after=True, n=n) == [k for k in ordered if k > start][:n]
