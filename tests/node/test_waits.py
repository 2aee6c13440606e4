"""NodeCore's long-polls on many processes (`WaitAny`, what `Client.as_completed` and
`Client.map` ask), on the stepped network."""

from __future__ import annotations

import pytest

from colonynode.core.errors import ValidationError
from colonynode.core.scheduling import ExecutorAdvert
from colonynode.node.core import requests as rq
from colonynode.node.core.waits import WAIT_ANY_PIDS_MAX
from tests.node.colony import Colony, spec, submit


def run_one(colony: Colony, node: int, executor: str, output: int) -> bytes:
    got = colony.result(node, rq.Assign(executor, timeout_s=5))
    pid = bytes.fromhex(got["processid"])
    assert colony.result(node, rq.CloseRun(executor, pid, True, [output]))["committed"]
    return pid


def attach(colony: Colony, node: int) -> str:
    advert = ExecutorAdvert("e", "py", cpu_millis=10**9, mem_bytes=10**15)
    return str(colony.result(node, rq.RegisterExecutor(advert))["executor_id"])


def test_wait_any_answers_once_the_first_closes_and_leaves_no_waits() -> None:
    colony = Colony(5)
    pids = [submit(colony, 0) for _ in range(3)]
    executor = attach(colony, 3)
    rid = colony.ask(0, rq.WaitAny(tuple(pids), timeout_s=20))
    colony.run_until(lambda: bool(colony.core(0).waits))
    assert colony.answer(0, rid) is None and set(colony.core(0).waits) == set(pids)
    first = run_one(colony, 3, executor, 7)
    colony.run_until(lambda: colony.answer(0, rid) is not None)
    answer = colony.answer(0, rid)
    assert answer is not None and answer.error is None
    assert [(v["processid"], v["output"]) for v in answer.value] == [(first.hex(), [7])]
    assert colony.core(0).waits == {}  # the other two pids' waits went with the answer
    # Asked again, everything closed by now comes at once, without waiting.
    second = run_one(colony, 3, executor, 8)
    colony.run_until(lambda: colony.core(0).book.state_of(second).closed)  # type: ignore[union-attr]
    closed = colony.result(0, rq.WaitAny(tuple(pids), timeout_s=20))
    assert sorted(v["processid"] for v in closed) == sorted([first.hex(), second.hex()])


def test_wait_any_answers_nothing_at_its_deadline_and_forgets_its_waits() -> None:
    colony = Colony(5)
    pids = (submit(colony, 0), b"\1" * 16)  # one this node has never heard of
    start = colony.net.t
    assert colony.result(0, rq.WaitAny(pids, timeout_s=1.5)) == []
    assert 1.5 <= colony.net.t - start < 1.6
    assert colony.core(0).waits == {}


def test_a_forgotten_wait_any_is_never_answered() -> None:
    colony = Colony(5)
    pid = submit(colony, 0)
    executor = attach(colony, 3)
    rid = colony.ask(0, rq.WaitAny((pid,), timeout_s=20))
    colony.run_until(lambda: bool(colony.core(0).waits))
    colony.net.call(0, lambda core, now: core.forget(now, rid))
    assert colony.core(0).waits == {}
    run_one(colony, 3, executor, 1)
    colony.run_until(lambda: colony.core(0).book.state_of(pid).closed)  # type: ignore[union-attr]
    colony.net.advance(25)
    colony.net.stabilize()
    assert colony.answer(0, rid) is None


@pytest.mark.parametrize(
    "pids", [(), tuple(i.to_bytes(16, "big") for i in range(WAIT_ANY_PIDS_MAX + 1))]
)
def test_wait_any_refuses_no_pids_or_too_many(pids: tuple[bytes, ...]) -> None:
    colony = Colony(3)
    with pytest.raises(ValidationError, match="processids"):
        colony.result(0, rq.WaitAny(pids, timeout_s=1))


def test_brief_answers_name_id_state_and_output_only() -> None:
    """`brief` (what Client.map asks): a submission answered by its id and state, a
    closed process by its id, state, output and errors; the whole process otherwise."""
    colony = Colony(5)
    sub = colony.result(0, rq.SubmitProcess(spec(), brief=True))
    assert set(sub) == {"processid", "state"} and sub["state"] == "WAITING"
    pid = bytes.fromhex(sub["processid"])
    executor = attach(colony, 3)
    assert run_one(colony, 3, executor, 5) == pid
    colony.run_until(lambda: colony.core(0).book.state_of(pid).closed)  # type: ignore[union-attr]
    brief = colony.result(0, rq.WaitAny((pid,), timeout_s=5, brief=True))
    assert brief == [{"processid": pid.hex(), "state": "SUCCESS", "output": [5], "errors": []}]
    whole = colony.result(0, rq.WaitAny((pid,), timeout_s=5))
    assert whole[0]["spec"]["funcname"] == "f" and whole[0]["output"] == [5]
