"""The chaos checker's rules, each shown to fire on a planted anomaly (and a clean
history to pass), so a chaos run that reports nothing is known to be looking."""

from __future__ import annotations

import copy
from typing import Any

from tests.chaos.check import (
    FUNCNAME,
    Final,
    Pack,
    Submission,
    check,
    check_cron,
    check_files,
    check_generator,
    read_executions,
)


def proc(pid: str, i: int, output: list[Any], state: str = "SUCCESS") -> dict[str, Any]:
    return {"processid": pid, "state": state, "output": output,
            "spec": {"funcname": FUNCNAME, "args": ["log", i]}}  # fmt: skip


def clean() -> tuple[list[Submission], dict[int, set[str]], Final]:
    """Calls 0 and 1 acknowledged, call 2 unknown (never taken), on nodes a and b."""
    history = [Submission(0, "a", 0.0, 0.1, pid="p0"), Submission(1, "b", 0.0, 0.1, pid="p1"),
               Submission(2, "a", 0.0, 5.0, error="DaemonNotRunning: timed out")]  # fmt: skip
    executions = {0: {"n0"}, 1: {"n1", "n1-killed-run"}}
    view = {"p0": proc("p0", 0, [0, "n0"]), "p1": proc("p1", 1, [1, "n1"])}
    majority = {pid: {**p, "consistent": {"committed": True, "answered": 2}}
                for pid, p in view.items()}  # fmt: skip
    return history, executions, Final({"a": view, "b": copy.deepcopy(view)}, {}, majority)


def test_a_clean_history_holds_and_an_unknown_submission_may_be_missing() -> None:
    assert check(*clean()) == []


def test_an_unknown_submission_that_was_taken_after_all_is_no_violation() -> None:
    history, executions, final = clean()
    executions[2] = {"n2"}
    for view in final.views.values():
        assert view is not None
        view["p2"] = proc("p2", 2, [4, "n2"])
    assert check(history, executions, final) == []


def test_an_acknowledged_call_missing_at_a_node_is_lost() -> None:
    history, executions, final = clean()
    del final.views["b"]["p1"]  # type: ignore[index]
    assert check(history, executions, final) == ["acknowledged call 1 (p1, via b) is lost at b"]


def test_an_acknowledged_call_not_done_or_without_a_majority_read_is_reported() -> None:
    history, executions, final = clean()
    final.views["a"]["p0"]["state"] = "RUNNING"  # type: ignore[index]
    final.majority["p1"] = {"state": "SUCCESS", "consistent": {"committed": False}}
    assert check(history, executions, final) == [
        "acknowledged call 0 (p0) is RUNNING at a",
        "acknowledged call 1 (p1) has no majority read"
        " (SUCCESS at epoch None, {'committed': False})",
    ]


def test_with_a_short_retention_a_dropped_register_is_the_views_word() -> None:
    """Compacted: the majority read finds no register (every voter agreed on its result
    and dropped it); with `--retention-s` every view's SUCCESS with a run's output
    stands for it, and is counted. Not when a view disagrees, nor without a retention."""
    history, executions, final = clean()
    final.majority["p1"] = {"state": "SUCCESS", "consistent": {"committed": False, "answered": 2}}
    assert check(history, executions, final) != []  # no retention: a violation
    final.retention = True
    assert check(history, executions, final) == [] and final.dropped == 1
    final.views["b"]["p1"]["state"] = "RUNNING"  # type: ignore[index]
    assert check(history, executions, final) == ["acknowledged call 1 (p1) is RUNNING at b",
        "acknowledged call 1 (p1) has no majority read (SUCCESS at epoch None, "
        "{'committed': False, 'answered': 2})"]  # fmt: skip


def test_two_committed_runs_show_as_two_outputs() -> None:
    history, executions, final = clean()
    final.views["b"]["p1"]["output"] = [1, "n1-killed-run"]  # type: ignore[index]
    found = check(history, executions, final)
    assert len(found) == 1 and found[0].startswith("call 1 (p1) has 2 outputs")


def test_an_output_no_run_produced_or_of_the_wrong_value_is_reported() -> None:
    history, executions, final = clean()
    for view in [*final.views.values(), final.majority]:
        view["p0"]["output"] = [0, "never-ran"]  # type: ignore[index]
        view["p1"]["output"] = [2, "n1"]  # type: ignore[index]
    assert check(history, executions, final) == [
        "call 0 (p0) at a: output [0, 'never-ran'] is not one of its runs'",
        "call 1 (p1) at a: output [2, 'n1'] is not one of its runs'",
    ]


def test_a_process_nobody_submitted_or_a_second_process_for_a_call_is_reported() -> None:
    history, executions, final = clean()
    assert final.views["a"] is not None
    final.views["a"]["px"] = proc("px", 7, [49, "n7"])
    final.views["a"]["py"] = proc("py", 0, [0, "n0"])
    assert check(history, executions, final) == [
        "a: process px with args ['log', 7] was never submitted",
        "a: call 0 is process py, but p0 was acknowledged",
    ]


def test_a_node_that_gives_no_view_is_stuck() -> None:
    history, executions, final = clean()
    final.views["b"] = None
    final.unanswered["b"] = "timed out"
    assert check(history, executions, final) == ["node b gave no view after healing: timed out"]


def test_the_execution_log_skips_a_torn_last_line() -> None:
    assert read_executions("0 aa\n1 bb\n0 cc\n2") == {0: {"aa", "cc"}, 1: {"bb"}}


def test_a_node_that_did_not_reconnect_to_every_peer_is_reported() -> None:
    history, executions, final = clean()
    final.peers = {"a": 1, "b": 0}
    assert check(history, executions, final) == [
        "node b is connected to 0 of its 1 peers after healing"
    ]


def tick(pid: str, graph: str, at: str) -> dict[str, Any]:
    return {"processid": pid, "processgraphid": graph, "cronid": "c1", "submissiontime": at,
            "state": "SUCCESS", "spec": {"funcname": "tick"}}  # fmt: skip


def test_cron_ticks_once_each_hold_and_a_tick_fired_twice_does_not() -> None:
    t1, t2, healed = "2026-12-06T10:00:02.0Z", "2026-12-06T10:00:04.0Z", "2026-12-06T10:00:03.0Z"
    a = {"x": tick("x", "g1", t1), "y": tick("y", "g2", t2)}
    assert check_cron("c1", {"a": a, "b": dict(a)}, healed) == ([], 2)
    b = {**a, "z": tick("z", "g3", t2)}  # another graph for the tick of g2, seen at b only
    found, ticks = check_cron("c1", {"a": a, "b": b}, healed)
    assert ticks == 2 and found == [f"cron tick {t2} fired 2 times: graphs ['g2', 'g3']"]


def test_a_cron_that_fired_nothing_after_the_healing_is_reported() -> None:
    a = {"x": tick("x", "g1", "2026-12-06T10:00:02.0Z")}
    found, _ = check_cron("c1", {"a": a}, "2026-12-06T10:00:03.0Z")
    assert found == ["the cron fired no tick after the healing (1 ticks before)"]


def batch(pid: str, graph: str, args: list[str]) -> dict[str, Any]:
    return {"processid": pid, "processgraphid": graph, "generatorid": "g1", "parents": [],
            "state": "SUCCESS", "spec": {"funcname": "batch", "args": args}}  # fmt: skip


def test_each_acknowledged_arg_in_one_batch_holds() -> None:
    packs = [Pack("a0", "a", ok=True), Pack("a1", "b", ok=True), Pack("a2", "a")]  # a2 unknown
    view = {"x": batch("x", "g1", ["a0", "a1"])}
    assert check_generator("g1", packs, {"a": view, "b": dict(view)}) == ([], 1)


def test_an_arg_in_two_batches_a_lost_arg_and_an_invented_one_are_reported() -> None:
    packs = [Pack("a0", "a", ok=True), Pack("a1", "b", ok=True), Pack("a2", "a", ok=True)]
    a = {"x": batch("x", "g1", ["a0", "a1"]), "y": batch("y", "g2", ["a1", "zz"])}
    found, batches = check_generator("g1", packs, {"a": a})
    assert batches == 2 and found == [
        "packed arg 'a1' used by two batches: g1 and g2",
        "batch g2 has arg 'zz', never packed",
        "acknowledged arg 'a2' (via a) is in no batch",
    ]


def test_files_acknowledged_must_be_listed_everywhere_read_back_and_nothing_invented() -> None:
    from tests.chaos.files import FilePut, FilesFinal

    puts = [FilePut("f0", "a", "s0", fileid="r0"), FilePut("f1", "b", "s1", error="timeout")]
    ok = FilesFinal({"a": {"f0": "s0"}, "b": {"f0": "s0", "f1": "s1"}}, {"f0": ("s0", "a")})
    assert check_files(puts, ok) == []  # an unknown put may be there or not
    lost = FilesFinal({"a": {"f0": "s0"}, "b": {}}, {"f0": ("s0", "a")})
    assert check_files(puts, lost) == ["acknowledged file f0 (via a) is nothing at b"]
    wrong = FilesFinal({"a": {"f0": "s0"}, "b": {"f0": "s0"}}, {"f0": ("sX", "a")})
    assert check_files(puts, wrong) == ["acknowledged file f0 read back as sX"]
    made_up = FilesFinal({"a": {"f0": "s0", "f9": "s9"}, "b": {"f0": "s0"}}, {"f0": ("s0", "a")})
    assert check_files(puts, made_up) == ["a lists f9 with checksum s9, never put"]
    silent = FilesFinal({"a": {"f0": "s0"}, "b": None}, {"f0": ("s0", "a")})
    assert check_files(puts, silent) == ["node b gave no file listing after healing"]


def test_compacted_views_are_read_by_their_outputs() -> None:
    """A view compacts a closed process to its outcome (no args): a call is known by its
    output `[i * i, nonce]`, a batch by its output (its args); a made-up one still shows."""
    history, executions, final = clean()
    for view in final.views.values():
        assert view is not None
        view["p1"] = {**view["p1"], "spec": {"funcname": FUNCNAME}, "compacted": True}
    assert check(history, executions, final) == []
    final.views["a"]["p9"] = {"processid": "p9", "state": "SUCCESS", "output": [2, "x"],  # type: ignore[index]
                              "spec": {"funcname": FUNCNAME}, "compacted": True}  # fmt: skip
    assert check(history, executions, final) == ["a: process p9 with args None was never submitted"]
    packs = [Pack("a0", "a", ok=True), Pack("a1", "b", ok=True)]
    gone = {**batch("x", "g1", []), "output": ["a0", "a1"], "compacted": True}
    assert check_generator("g1", packs, {"a": {"x": gone}}) == ([], 1)
