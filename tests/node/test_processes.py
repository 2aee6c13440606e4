"""The node's process view (node/processes.py): workflow gating and input, closing
records that win over late running records, log indexes, attributes, paging."""

from __future__ import annotations

from typing import Any

from colonynode.core.ids import NodeId
from colonynode.core.process import State
from colonynode.node.core.processes import (
    ATTRIBUTE_KIND,
    CLOSED_KIND,
    LOG_KIND,
    PROCESS_KIND,
    RUNNING_KIND,
    ProcessBook,
)

ME = NodeId(b"\x01" * 32)


def submit(book: ProcessBook, pid: bytes, parents: tuple[bytes, ...] = (), **spec: Any) -> None:
    body: dict[str, Any] = {"processid": pid.hex(), "submission_ns": 1,
                            "spec": {"funcname": "f", "conditions": {"executortype": "py"},
                                     **spec}}  # fmt: skip
    if parents:
        body.update(processgraphid="aa" * 16, parents=[p.hex() for p in parents], children=[])
    book.on_record(ME, PROCESS_KIND, body)


def close(book: ProcessBook, pid: bytes, state: str, output: list[Any]) -> None:
    book.on_record(ME, CLOSED_KIND, {"processid": pid.hex(), "state": state, "output": output})


def waiting(book: ProcessBook) -> list[bytes]:
    return [pid for pid, *_ in book.waiting(0.0)]


A, B, C = b"\xaa" * 16, b"\xbb" * 16, b"\xcc" * 16


def test_a_child_waits_until_every_parent_succeeded_and_takes_their_outputs() -> None:
    book = ProcessBook()
    submit(book, C, parents=(A, B))  # the child's record may come first
    assert waiting(book) == [] and book.parents_state(C) is None
    submit(book, A)
    submit(book, B)
    assert waiting(book) == [A, B]
    close(book, B, "SUCCESS", [30])
    assert waiting(book) == [A]  # one parent still open
    close(book, A, "SUCCESS", [1, 2])
    assert waiting(book) == [C]
    assert book.input_of(C) == [1, 2, 30]  # in the order of its dependencies
    assert book.get(C)["input"] == [1, 2, 30]  # type: ignore[index]


def test_a_failed_parent_blocks_its_children_for_good() -> None:
    book = ProcessBook()
    submit(book, A)
    submit(book, B, parents=(A,))
    submit(book, C, parents=(B,))
    assert book.blocked_by_failed_parent() == []
    close(book, A, "FAILED", [])
    assert book.parents_state(B) is False and waiting(book) == []
    assert book.blocked_by_failed_parent() == [(B, A)]  # C follows once B is failed
    close(book, B, "FAILED", [])
    assert book.blocked_by_failed_parent() == [(C, B)]


def test_a_late_running_record_does_not_reopen_a_closed_process() -> None:
    changes: list[bytes] = []
    book = ProcessBook(on_change=changes.append)
    submit(book, A)
    close(book, A, "CANCELLED", [])
    book.on_record(ME, RUNNING_KIND, {"processid": A.hex(), "epoch": 1, "executor": "x"}, 5.0)
    assert book.state_of(A) is State.CANCELLED
    assert changes == [A, A, A]


def test_log_records_are_indexed_not_copied_and_attributes_kept() -> None:
    book = ProcessBook()
    submit(book, A)
    for seq in (7, 9):
        book.on_record(ME, LOG_KIND, {"processid": A.hex(), "lines": ["x"]}, seq=seq)
    book.on_record(ME, ATTRIBUTE_KIND, {"processid": A.hex(), "key": "k", "value": "v"})
    assert book.log_index(A) == [(ME, 7), (ME, 9)]
    assert book.get(A)["attributes"] == [  # type: ignore[index]
        {"key": "k", "value": "v", "attributetype": "OUT", "epoch": 0}
    ]


def test_list_filters_and_pages_newest_first() -> None:
    book = ProcessBook()
    pids = [bytes([i]) * 16 for i in range(1, 8)]
    for i, pid in enumerate(pids):
        submit(book, pid, label="even" if i % 2 == 0 else "odd")
    even = book.list(None, 10, match=lambda e: e["spec"].label == "even")
    assert [p["processid"] for p in even] == [pids[i].hex() for i in (6, 4, 2, 0)]
    page = book.list(None, 2, offset=2)
    assert [p["processid"] for p in page] == [pids[4].hex(), pids[3].hex()]


def test_a_closed_process_keeps_only_its_outcome_after_the_retention() -> None:
    book = ProcessBook()
    submit(book, A, args=[1, "big"], env={"K": "v"})
    book.on_record(ME, LOG_KIND, {"processid": A.hex()}, seq=7)
    book.on_record(ME, ATTRIBUTE_KIND, {"processid": A.hex(), "key": "k", "value": 1})
    book.on_record(ME, CLOSED_KIND, {"processid": A.hex(), "state": "SUCCESS",
                                     "output": [42], "end_ns": 10 * 10**9})  # fmt: skip
    submit(book, B)  # open: never compacted
    assert book.compact(now_ns=15 * 10**9, retention_s=10.0) == 0  # 5 s after: kept whole
    assert book.compact(now_ns=21 * 10**9, retention_s=10.0) == 1
    view = book.get(A)
    assert view is not None and view["compacted"] is True
    assert view["state"] == "SUCCESS" and view["output"] == [42]
    assert view["spec"]["funcname"] == "f" and view["spec"]["args"] == []
    assert view["spec"]["env"] == {} and view["attributes"] == [] and book.log_index(A) == []
    assert "compacted" not in (book.get(B) or {})
    assert book.compact(now_ns=99 * 10**9, retention_s=10.0) == 0  # once


def test_a_full_view_forgets_the_oldest_closed_process_not_an_open_one(monkeypatch: Any) -> None:
    import colonynode.node.core.processes as processes

    monkeypatch.setattr(processes, "PROCESSES_MAX", 3)
    book = ProcessBook()
    submit(book, A)  # the oldest, and open
    submit(book, B)
    close(book, B, "SUCCESS", [1])
    submit(book, C)
    submit(book, b"\xdd" * 16)  # one too many
    assert book.state_of(B) is None  # the closed one went
    assert book.state_of(A) is State.WAITING and book.forgotten_open == 0
    submit(book, b"\xee" * 16)  # every one held is open now: the oldest goes, counted
    assert book.state_of(A) is None and book.forgotten_open == 1
