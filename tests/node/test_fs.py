"""ColonyFS's core parts without daemons: names and labels, the index's order-free merge of
records, removals and snapshots, what it says is collectable, placement, the chunk store,
and a get's target path that cannot leave its directory."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import pytest
import trio

from colonynode.core.errors import ValidationError
from colonynode.core.ids import NodeId
from colonynode.node.core.fs import (
    PUT_KIND,
    RM_KIND,
    SNAPSHOT_KIND,
    SNAPSHOT_RM_KIND,
    FsIndex,
    Revision,
    check_label,
    check_name,
    placement,
)
from colonynode.node.daemon.fs.chunks import ChunkStore, QuotaExceeded, chunk_id
from colonynode.node.daemon.fs.dirsync import relative_label, safe_join

A, B = NodeId(b"\x01" * 32), NodeId(b"\x02" * 32)


def rev(name: str, rid: str, t: int, data: bytes = b"x", label: str = "/d") -> Revision:
    h = hashlib.sha256(data).digest()
    return Revision(label, name, rid, h, len(data), (h,), False, A, t)


def put(*revs: Revision) -> tuple[str, dict[str, object]]:
    return PUT_KIND, {"files": [r.body() for r in revs]}


@pytest.mark.parametrize(
    ("label", "normal"), [("data", "/data"), ("/data/raw/", "/data/raw"), ("/a//b", None),
                          ("/a/../b", None), ("/a/./b", None), ("/", None), ("/a\0", None),
                          ("/" + "x" * 256, None), ("/a\\b", None)],
)  # fmt: skip
def test_labels_are_paths_without_dot_parts_nul_or_long_parts(label: str, normal: str) -> None:
    if normal is None:
        with pytest.raises(ValidationError):
            check_label(label)
    else:
        assert check_label(label) == normal


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "a\0", "x" * 256, "a\\b"])
def test_names_are_one_plain_component(name: str) -> None:
    with pytest.raises(ValidationError):
        check_name(name)
    assert check_name("report v2.txt") == "report v2.txt"


def test_records_merge_in_any_order_to_the_same_index() -> None:
    records = [
        put(rev("f", "r1", 10, b"one")),
        put(rev("f", "r2", 20, b"two"), rev("g", "r3", 5)),
        (RM_KIND, {"files": [{"l": "/d", "n": "f", "ids": ["r2"]}]}),
        put(rev("f", "r4", 15, b"four")),
    ]
    views = set()
    for order in itertools.permutations(records):
        index = FsIndex()
        for kind, body in order:
            index.on_record(A, kind, body)
        f = index.latest("/d", "f")
        assert f is not None
        views.add((f[0].id, f[1], tuple(r.id for r in index.entry("/d", "f").live())))  # type: ignore[union-attr]
    # r2 removed wherever its removal came: r4 (t=15) is the latest of r1, r4
    assert views == {("r4", 2, ("r1", "r4"))}


def test_a_removal_names_what_it_saw_so_a_later_revision_lives() -> None:
    index = FsIndex()
    index.on_record(A, *put(rev("f", "r1", 10)))
    index.on_record(B, RM_KIND, {"files": [{"l": "/d", "n": "f", "ids": ["r1"]}]})
    assert index.latest("/d", "f") is None and index.label_counts() == {}
    index.on_record(A, *put(rev("f", "r2", 5)))  # written by a node that had not seen it
    assert index.latest("/d", "f") == (index.by_id["r2"], 1)


def test_files_lists_a_label_or_its_tree_and_labels_count_live_files() -> None:
    index = FsIndex()
    index.on_record(A, *put(rev("a", "1", 1), rev("b", "2", 2, label="/d/sub"),
                            rev("c", "3", 3, label="/dx")))  # fmt: skip
    assert [r.name for r, _ in index.files("/d")] == ["a"]
    assert [r.name for r, _ in index.files("/d", recursive=True)] == ["a", "b"]
    assert index.label_counts() == {"/d": 1, "/d/sub": 1, "/dx": 1}


def test_a_snapshot_keeps_its_revisions_from_collection() -> None:
    index = FsIndex()
    old, new = rev("f", "r1", 1, b"old"), rev("f", "r2", 2, b"new")
    index.on_record(A, *put(old))
    index.on_record(A, SNAPSHOT_KIND, {"id": "s1", "name": "v1", "label": "/d", "t": 3,
                                       "files": [["/d", "f", "r1"]]})  # fmt: skip
    index.on_record(A, *put(new))
    index.on_record(A, RM_KIND, {"files": [{"l": "/d", "n": "f", "ids": ["r1", "r2"]}]})
    live, dead, _ = index.referenced()
    assert old.chunks[0] in live and new.chunks[0] in dead  # r1 is in a snapshot
    assert index.snapshot_named("v1") is not None
    index.on_record(A, SNAPSHOT_RM_KIND, {"id": "s1"})
    live, dead, _ = index.referenced()
    assert live == set() and dead == {old.chunks[0], new.chunks[0]}
    # a snapshot record that arrives after its removal stays removed
    index.on_record(A, SNAPSHOT_KIND, {"id": "s1", "name": "v1", "label": "/d", "t": 3,
                                       "files": [["/d", "f", "r1"]]})  # fmt: skip
    assert index.snapshot_named("v1") is None


@pytest.mark.parametrize(
    "bad",
    [
        {"files": [{"l": "/x/../../etc", "n": "passwd", "i": "r", "h": b"\0" * 32, "s": 0,
                    "c": [], "m": False, "t": 1}]},
        {"files": [{"l": "/x", "n": "../passwd", "i": "r", "h": b"\0" * 32, "s": 0,
                    "c": [], "m": False, "t": 1}]},
        {"files": [{"l": "/x", "n": "f", "i": "r", "h": b"\0" * 31, "s": 0, "c": [],
                    "m": False, "t": 1}]},
        {"files": [{"l": "/x", "n": "f", "i": "r", "h": b"\0" * 32, "s": 5, "c": [],
                    "m": False, "t": 1}]},
        {"files": "nope"},
    ],
)  # fmt: skip
def test_a_malformed_record_is_refused_counted_and_changes_nothing(bad: object) -> None:
    index = FsIndex()
    index.on_record(A, PUT_KIND, bad)
    assert index.counters["records_refused"] == 1 and index.labels == {}


def test_placement_is_stable_and_a_new_member_moves_only_what_it_ranks_in() -> None:
    members = [NodeId(bytes([i]) * 32) for i in range(1, 11)]
    chunks = [hashlib.sha256(bytes([i])).digest() for i in range(200)]
    before = {c: placement(c, members, 3) for c in chunks}
    assert all(len(set(p)) == 3 for p in before.values())
    assert before == {c: placement(c, list(reversed(members)), 3) for c in chunks}
    new = NodeId(b"\xee" * 32)
    after = {c: placement(c, [*members, new], 3) for c in chunks}
    for c in chunks:
        if new not in after[c]:
            assert after[c] == before[c]
        else:
            assert set(after[c]) - {new} <= set(before[c])
    assert placement(chunks[0], members[:2], 3) == placement(chunks[0], members[:2], 2)


def test_the_chunk_store_verifies_reads_and_keeps_its_quota(tmp_path: Path) -> None:
    async def main() -> None:
        store = ChunkStore(tmp_path / "chunks", quota_bytes=100)
        good = b"a" * 60
        assert await store.put([good]) == [chunk_id(good)]
        await store.flush()
        assert store.has(chunk_id(good)) and store.used_bytes == 60
        with pytest.raises(QuotaExceeded, match="quota"):
            await store.put([b"b" * 50])
        assert store.counters["quota_refused"] == 1
        store.path(chunk_id(good)).write_bytes(b"z" * 60)  # the disk rotted
        assert await store.get([chunk_id(good)]) == [None]
        assert store.counters["bad"] == 1 and not store.has(chunk_id(good))
        assert store.used_bytes == 0
        again = ChunkStore(tmp_path / "chunks")
        await trio.to_thread.run_sync(again.scan)
        assert again.chunks == 0

    trio.run(main)


def test_a_gets_target_cannot_leave_its_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert safe_join(root, ["a", "b"], "f") == root / "a" / "b" / "f"
    for parts, name in ((["..", "x"], "f"), (["a"], ".."), ([], "a/b")):
        with pytest.raises(ValidationError):
            safe_join(root, parts, name)
    os.symlink(tmp_path, root / "out")  # a symlink in the directory that points out of it
    with pytest.raises(ValidationError, match="outside"):
        safe_join(root, ["out"], "f")
    assert relative_label("/d/x/y", "/d") == ["x", "y"] and relative_label("/d", "/d") == []
