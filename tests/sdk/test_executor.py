"""The executor loop (colonynode.sdk.executor) against a scripted node: what it does with
each answer the node may give. The node's side runs for real in tests/integration."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, cast

import pytest

from colonynode.node.apiclient import ApiClient
from colonynode.sdk.executor import Executor

PID = "ab" * 16


class ScriptedNode:
    """Answers the executor's calls; `close` and `heartbeat` say what the test wants."""

    def __init__(self, close_reply: dict[str, Any], heartbeat: str = "held") -> None:
        self.close_reply = close_reply
        self.heartbeat = heartbeat
        self.calls: list[tuple[str, Any]] = []
        self.assigned = False

    def post(self, path: str, body: Any = None) -> Any:
        self.calls.append((path, body))
        verb = path.rsplit("/", 1)[-1]
        if path == "/v1/executors":
            return {"executor_id": "e1"}
        if verb == "assign":
            if self.assigned:
                return {"process": None}
            self.assigned = True
            spec = {"funcname": "f", "args": [], "kwargs": {}, "maxexectime": 0}
            return {"process": {"processid": PID, "spec": spec, "input": []}}
        if verb == "heartbeat":
            return {"processes": {PID: self.heartbeat}}
        if verb == "log":
            return {"held": self.heartbeat == "held"}
        if verb in ("close", "fail"):
            return self.close_reply
        if verb == "detach":
            return {"released": []}
        raise AssertionError(f"unexpected call {path}")

    def verbs(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] for path, _ in self.calls]


@pytest.fixture(autouse=True)
def _restore_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # the executor routes print per thread


def executor(node: ScriptedNode, fn: Any) -> Executor:
    return Executor(cast(ApiClient, node), {"f": fn}, "py", "t-py", heartbeat_s=0.01)


def test_a_result_the_voters_refuse_because_it_was_cancelled_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = ScriptedNode({"committed": False, "reason": "CLOSED", "state": "CANCELLED"})
    ex = executor(node, lambda: 7)
    with caplog.at_level(logging.WARNING, "colonynode.sdk.executor"):
        assert ex.run_one()
    assert ("/v1/executors/e1/close", {"processid": PID, "output": [7]}) in node.calls
    assert ex.refused == 1 and ex.done == 1
    assert f"process {PID} was cancelled: its result was not committed" in caplog.text


def test_a_refused_failure_names_the_voters_reason(caplog: pytest.LogCaptureFixture) -> None:
    node = ScriptedNode({"committed": False, "reason": "STALE_EPOCH", "state": "RUNNING"})

    def broken() -> None:
        raise ValueError("nope")

    ex = executor(node, broken)
    with caplog.at_level(logging.WARNING, "colonynode.sdk.executor"):
        ex.run_one()
    assert ("/v1/executors/e1/fail", {"processid": PID, "errors": ["ValueError: nope"]}) in (
        node.calls
    )
    assert ex.refused == 1
    assert f"failure of {PID} not committed: the voters refused it (STALE_EPOCH)" in caplog.text


def test_a_committed_result_is_not_counted_as_refused(caplog: pytest.LogCaptureFixture) -> None:
    node = ScriptedNode({"committed": True, "reason": None, "state": "SUCCESS"})
    ex = executor(node, lambda: "ok")
    with caplog.at_level(logging.WARNING, "colonynode.sdk.executor"):
        ex.run_one()
    assert ex.refused == 0 and ex.abandoned == 0 and caplog.text == ""


def test_a_heartbeat_that_says_cancelled_abandons_the_run_and_commits_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = ScriptedNode({"committed": True}, heartbeat="cancelled")
    release = threading.Event()
    ex = executor(node, lambda: release.wait(10))
    with caplog.at_level(logging.WARNING, "colonynode.sdk.executor"):
        ex.run_one()
    release.set()
    assert "close" not in node.verbs() and ex.abandoned == 1
    assert f"process {PID} was cancelled (the node no longer holds its lease)" in caplog.text
