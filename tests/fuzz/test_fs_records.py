"""Fuzzed ColonyFS records (issue 15): whatever body a member signs, the index applies it
whole or refuses it and counts it, never raises, and never holds a label or name that
could leave a directory."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.node.core.fs import (
    PUT_KIND,
    RM_KIND,
    SNAPSHOT_KIND,
    SNAPSHOT_RM_KIND,
    FsIndex,
    check_label,
    check_name,
)
from tests.fuzz.strategies import EXAMPLES

AUTHOR = NodeId(b"\x07" * 32)
parts = st.sampled_from(["a", "..", ".", "", "b\0", "x" * 300, "c\\d", "ok", "/"])
labels = st.lists(parts, max_size=4).map(lambda p: "/" + "/".join(p)) | st.text(max_size=20)
values: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.text(max_size=10),
    st.binary(max_size=40), st.lists(st.binary(min_size=32, max_size=32), max_size=3),
)  # fmt: skip
revisions = st.fixed_dictionaries(
    {"l": labels, "n": parts | st.text(max_size=10), "i": st.text(max_size=40) | values,
     "h": st.binary(min_size=31, max_size=33) | values, "s": st.integers(-1, 10) | values,
     "c": st.lists(st.binary(min_size=32, max_size=32), max_size=2) | values,
     "m": values, "t": st.integers(0, 10) | values},
    optional={"x": values},
)  # fmt: skip
bodies = st.one_of(
    st.fixed_dictionaries({"files": st.lists(revisions, max_size=3)}),
    st.fixed_dictionaries({"files": st.lists(st.fixed_dictionaries(
        {"l": labels, "n": parts, "ids": st.lists(st.text(max_size=5), max_size=3) | values}),
        max_size=2)}),
    st.fixed_dictionaries({"id": st.text(max_size=5), "name": parts, "label": labels,
                           "t": st.integers(0, 9) | values,
                           "files": st.lists(st.lists(parts | labels, max_size=3), max_size=2)}),
    values, st.dictionaries(st.text(max_size=3), values, max_size=3),
)  # fmt: skip


def _safe(text: str, check: Any) -> bool:
    try:
        return check(text) == text
    except ColonyError:
        return False


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([PUT_KIND, RM_KIND, SNAPSHOT_KIND,
                                           SNAPSHOT_RM_KIND]), bodies), max_size=6))  # fmt: skip
def test_any_record_is_applied_whole_or_refused_and_counted(records: list[Any]) -> None:
    index = FsIndex()
    for kind, body in records:
        index.on_record(AUTHOR, kind, body)  # never raises
    for label, names in index.labels.items():
        assert _safe(label, check_label)
        assert all(_safe(name, check_name) for name in names)
    for snap in index.snapshots.values():
        assert all(_safe(f[0], check_label) and _safe(f[1], check_name) for f in snap.files)
