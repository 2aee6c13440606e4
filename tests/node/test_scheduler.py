"""The node's claim rounds (node/scheduler.py): executors that wait on one node at the
same time are served by one batched claim, each gets a distinct process, and a grant
whose executor went away is given back. The lease quorum is scripted here; it runs for
real in tests/integration."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from colonynode.consensus.events import ClaimFailed, Granted
from colonynode.consensus.messages import Reason
from colonynode.core.ids import NodeId
from colonynode.node.processes import PROCESS_KIND, ProcessBook
from colonynode.node.scheduler import Scheduler

ME = NodeId(b"\x01" * 32)


class ScriptedLeases:
    """Grants every claim (or refuses the pids in `refuse`) after `delay_s`."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self.claims: list[list[bytes]] = []
        self.granted: dict[bytes, int] = {}
        self.released: list[bytes] = []
        self.refuse: set[bytes] = set()
        self.time_out_once: set[bytes] = set()  # no majority answers (reason None), once
        self.released_one = trio.Event()

    async def claim(self, pids: list[bytes], lease_s: float | None = None) -> list[Any]:
        self.claims.append(list(pids))
        await trio.sleep(self.delay_s)
        out: list[Any] = []
        for pid in pids:
            if pid in self.refuse:
                out.append(ClaimFailed(pid, 1, Reason.LEASE_HELD))
            elif pid in self.time_out_once:
                self.time_out_once.discard(pid)
                out.append(ClaimFailed(pid, 1, None))
            else:
                self.granted[pid] = 1
                out.append(Granted(pid, 1, trio.current_time() + 10))
        return out

    async def release(self, pid: bytes) -> bool:
        self.released.append(pid)
        self.released_one.set()
        return self.granted.pop(pid, None) is not None

    def drop(self, pid: bytes) -> bool:
        return self.granted.pop(pid, None) is not None


def book_with(n: int) -> ProcessBook:
    book = ProcessBook()
    for i in range(n):
        book.on_record(ME, PROCESS_KIND, {
            "processid": bytes([i]).hex() * 16, "submission_ns": i,
            "spec": {"funcname": "f", "conditions": {"executortype": "py"}}})  # fmt: skip
    return book


def scheduler(book: ProcessBook, leases: ScriptedLeases) -> Scheduler:
    sched = Scheduler(book, leases, lambda kind, body: None, lambda: "me")  # type: ignore[arg-type]
    book.on_change = sched.wake
    return sched


def attach(sched: Scheduler, name: str) -> str:
    return str(sched.register({"name": name, "executortype": "py"})["executor_id"])


async def test_executors_waiting_together_share_one_batched_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    book, leases = book_with(5), ScriptedLeases()
    sched = scheduler(book, leases)
    ids = [attach(sched, f"e{i}") for i in range(3)]
    got: dict[str, Any] = {}

    async def ask(executor_id: str) -> None:
        got[executor_id] = await sched.assign(executor_id, timeout_s=5)

    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as asking:
            for executor_id in ids:
                asking.start_soon(ask, executor_id)
            await trio.testing.wait_all_tasks_blocked()  # all three wait: then a round
            nursery.start_soon(sched.claim_rounds)
        nursery.cancel_scope.cancel()
    assert len(leases.claims) == 1 and len(leases.claims[0]) == 3
    pids = {got[i]["processid"] for i in ids}
    assert len(pids) == 3 and all(got[i]["state"] == "RUNNING" for i in ids)
    assert sched.counters["claim_rounds"] == 1 and sched.counters["claims_sent"] == 3
    assert {ex.advert.name for ex in sched.executors.values() if ex.running} == {"e0", "e1", "e2"}


async def test_a_refused_claim_waits_for_the_next_round_and_nothing_waits_forever(
    autojump_clock: trio.testing.MockClock,
) -> None:
    book, leases = book_with(1), ScriptedLeases()
    only = bytes([0]) * 16
    leases.refuse.add(only)
    sched = scheduler(book, leases)
    executor_id = attach(sched, "e")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.claim_rounds)
        assert await sched.assign(executor_id, timeout_s=3) is None  # refused, then timed out
        leases.refuse.clear()
        got = await sched.assign(executor_id, timeout_s=3)
        nursery.cancel_scope.cancel()
    assert got is not None and got["processid"] == only.hex()
    assert len(leases.claims) >= 2  # tried again after the refusal's back-off


async def test_a_claim_that_timed_out_is_tried_again_before_a_lower_priority_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A timeout is not a refusal: it earns no back-off, so the urgent process keeps its
    place ahead of the older, less urgent one (found by review: a slow voter let `low`
    start first in the integration priority test)."""
    book = book_with(1)
    high = bytes([1]) * 16
    spec = {"funcname": "f", "priority": 5, "conditions": {"executortype": "py"}}
    book.on_record(ME, PROCESS_KIND, {"processid": high.hex(), "submission_ns": 1, "spec": spec})
    leases = ScriptedLeases()
    leases.time_out_once.add(high)
    sched = scheduler(book, leases)
    executor_id = attach(sched, "e")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.claim_rounds)
        got = await sched.assign(executor_id, timeout_s=5)
        nursery.cancel_scope.cancel()
    assert got is not None and got["processid"] == high.hex()
    assert leases.claims == [[high], [high]]


def one_slow_claim() -> tuple[Scheduler, ScriptedLeases, str]:
    """One WAITING process, one executor, and voters that answer a claim after 2 s."""
    leases = ScriptedLeases(delay_s=2.0)
    sched = scheduler(book_with(1), leases)
    return sched, leases, attach(sched, "e")


async def test_a_grant_that_outlives_its_call_still_reaches_the_executor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sched, leases, executor_id = one_slow_claim()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.claim_rounds)
        got = await sched.assign(executor_id, timeout_s=0.5)  # the claim is out past this
        nursery.cancel_scope.cancel()
    assert got is not None and leases.released == []


async def test_a_grant_for_a_call_that_went_away_is_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sched, leases, executor_id = one_slow_claim()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.claim_rounds)
        with trio.move_on_after(0.5):  # the HTTP client hung up
            await sched.assign(executor_id, timeout_s=10)
        await leases.released_one.wait()  # once the claim is answered, at 2 s
        nursery.cancel_scope.cancel()
    assert leases.released == [bytes([0]) * 16] and not leases.granted
    assert all(not ex.running for ex in sched.executors.values())


async def test_detaching_answers_a_waiting_assign_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    book, leases = book_with(0), ScriptedLeases()
    sched = scheduler(book, leases)
    executor_id = attach(sched, "e")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.claim_rounds)
        done: list[tuple[Any, float]] = []

        async def ask() -> None:
            done.append((await sched.assign(executor_id, timeout_s=30), trio.current_time()))

        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()  # assign waits (30 s at most)
        detached_at = trio.current_time()
        await sched.detach(executor_id)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert len(done) == 1 and done[0][0] is None and done[0][1] == detached_at
