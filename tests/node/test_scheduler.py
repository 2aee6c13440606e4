"""The node's claim rounds (node/core/scheduler.py): executors that wait on one node at
the same time are served by one batched claim, each gets a distinct process, and a grant
whose executor went away is given back. The lease quorum is scripted here (a unit test
of the scheduler's decisions); it runs for real in tests/node/test_nodecore.py and in
tests/integration."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from colonynode.consensus import requests as lrq
from colonynode.consensus.events import ClaimFailed, Granted, Released
from colonynode.consensus.messages import Reason
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.core.scheduling import CLAIM_SPREAD, ExecutorAdvert, plan_claims
from colonynode.node.core.processes import PROCESS_KIND, ProcessBook
from colonynode.node.core.requests import Assign, RegisterExecutor
from colonynode.node.core.scheduler import Scheduler

ME = NodeId(b"\x01" * 32)


class ScriptedHost:
    """NodeCore as the scheduler sees it, with a scripted lease quorum: every claim is
    granted (or refused, for the pids in `refuse`) after `delay_s`."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.now_s = 0.0
        self.delay_s = delay_s
        self.node_id = ME
        self.rng = random.Random(1)
        self.claims: list[list[bytes]] = []
        self.granted: dict[bytes, int] = {}
        self.released: list[bytes] = []
        self.published: list[tuple[str, Any]] = []  # announcements other than RUNNING
        self.book = ProcessBook()
        self.refuse: set[bytes] = set()
        self.time_out_once: set[bytes] = set()  # no majority answers (reason None), once
        self.answers: dict[int, Any] = {}
        self.answered_at: dict[int, float] = {}
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = 0

    def unix_ns(self) -> int:
        return int(self.now_s * 1e9)

    def claimers(self) -> int:
        return 1

    def claimer_ids(self) -> tuple[bytes, ...]:
        return (bytes(self.node_id),)

    def holds(self, pid: bytes) -> bool:
        return pid in self.granted

    def publish(self, kind: str, body: Any) -> Any:
        return None

    def announce(self, kind: str, item: dict[str, Any]) -> None:
        self.book.on_record(ME, kind, item, self.now_s)
        if kind != "process-running":
            self.published.append((kind, item))

    def emit(self, event: Any) -> None:
        return None

    def answer(self, req: int, value: Any = None, error: ColonyError | None = None) -> None:
        assert req not in self.answers, "a request is answered once"
        self.answers[req] = error if error is not None else value
        self.answered_at[req] = self.now_s

    def at(self, at_s: float, fn: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (at_s, self._seq, fn))

    def lease(self, req: lrq.Request, on_event: Callable[[Any], None]) -> None:
        if isinstance(req, lrq.ReleaseLease):
            self.released.append(req.pid)
            on_event(Released((req.pid,) if self.granted.pop(req.pid, None) else ()))
            return
        assert isinstance(req, lrq.ClaimLeases)
        self.claims.append(list(req.pids))
        self.at(self.now_s + self.delay_s, lambda now: self._decide(req, on_event))

    def _decide(self, req: lrq.ClaimLeases, on_event: Callable[[Any], None]) -> None:
        for pid in req.pids:
            if pid in self.refuse:
                on_event(ClaimFailed(pid, 1, Reason.LEASE_HELD))
            elif pid in self.time_out_once:
                self.time_out_once.discard(pid)
                on_event(ClaimFailed(pid, 1, None))
            else:
                self.granted[pid] = 1
                on_event(Granted(pid, 1, self.now_s + 10))

    def run_until(self, end_s: float) -> None:
        while self._timers and self._timers[0][0] <= end_s:
            at_s, _, fn = heapq.heappop(self._timers)
            self.now_s = max(self.now_s, at_s)
            fn(self.now_s)
        self.now_s = max(self.now_s, end_s)


def book_with(n: int) -> ProcessBook:
    book = ProcessBook()
    for i in range(n):
        book.on_record(ME, PROCESS_KIND, {
            "processid": bytes([i]).hex() * 16, "submission_ns": i,
            "spec": {"funcname": "f", "conditions": {"executortype": "py"}}}, 0.0)  # fmt: skip
    return book


def scheduler(book: ProcessBook, host: ScriptedHost) -> Scheduler:
    host.book = book
    sched = Scheduler(host, book)
    book.on_change = sched.wake
    return sched


def attach(sched: Scheduler, host: ScriptedHost, name: str) -> str:
    req = 1000 + len(host.answers)
    sched.slots.register(req, RegisterExecutor(ExecutorAdvert(name, "py", "", 10**9, 10**15)))
    return str(host.answers[req]["executor_id"])


def assign(sched: Scheduler, host: ScriptedHost, req: int, executor: str, timeout_s: float) -> int:
    sched.slots.assign(req, Assign(executor, timeout_s))
    return req


def test_executors_waiting_together_share_one_batched_claim() -> None:
    host = ScriptedHost()
    sched = scheduler(book_with(5), host)
    ids = [attach(sched, host, f"e{i}") for i in range(3)]
    reqs = [assign(sched, host, i + 1, eid, 5) for i, eid in enumerate(ids)]
    host.run_until(1.0)
    assert len(host.claims) == 1 and len(host.claims[0]) == 3
    got = [host.answers[r] for r in reqs]
    assert len({g["processid"] for g in got}) == 3 and all(g["state"] == "RUNNING" for g in got)
    assert sched.counters["claim_rounds"] == 1 and sched.counters["claims_sent"] == 3
    assert {ex.advert.name for ex in sched.executors.values() if ex.running} == {"e0", "e1", "e2"}


def test_a_refused_claim_waits_for_the_next_round_and_nothing_waits_forever() -> None:
    host = ScriptedHost()
    only = bytes([0]) * 16
    host.refuse.add(only)
    sched = scheduler(book_with(1), host)
    executor = attach(sched, host, "e")
    first = assign(sched, host, 1, executor, 3)
    host.run_until(3.5)
    assert host.answers[first] is None  # refused, then timed out
    host.refuse.clear()
    second = assign(sched, host, 2, executor, 3)
    host.run_until(7.0)
    assert host.answers[second]["processid"] == only.hex()
    assert len(host.claims) >= 2  # tried again after the refusal's back-off


def test_a_claim_that_timed_out_is_tried_again_before_a_lower_priority_one() -> None:
    """A timeout is not a refusal: it earns no back-off, so the urgent process keeps its
    place ahead of the older, less urgent one (found by review: a slow voter let `low`
    start first in the integration priority test)."""
    book = book_with(1)
    high = bytes([1]) * 16
    spec = {"funcname": "f", "priority": 5, "conditions": {"executortype": "py"}}
    book.on_record(ME, PROCESS_KIND, {"processid": high.hex(), "submission_ns": 1, "spec": spec})
    host = ScriptedHost()
    host.time_out_once.add(high)
    sched = scheduler(book, host)
    req = assign(sched, host, 1, attach(sched, host, "e"), 5)
    host.run_until(5.0)
    assert host.answers[req]["processid"] == high.hex()
    assert host.claims == [[high], [high]]


def test_a_grant_that_outlives_its_call_waits_for_the_executors_next_call() -> None:
    host = ScriptedHost(delay_s=2.0)  # voters that answer a claim after 2 s
    sched = scheduler(book_with(1), host)
    executor = attach(sched, host, "e")
    first = assign(sched, host, 1, executor, 0.5)  # the claim is out past this
    host.run_until(2.5)
    assert host.answers[first] is None and host.answered_at[first] == 0.5
    second = assign(sched, host, 2, executor, 10)  # the slot asks again: it is there
    assert host.answers[second]["processid"] == (bytes([0]) * 16).hex()
    assert host.answered_at[second] == 2.5 and host.released == []


def test_a_grant_nobody_asks_for_is_given_back_after_its_hold() -> None:
    host = ScriptedHost(delay_s=2.0)
    sched = scheduler(book_with(1), host)
    req = assign(sched, host, 1, attach(sched, host, "e"), 10)
    host.run_until(0.5)
    assert sched.slots.forget(req)  # the executor hung up
    host.run_until(2.9)  # the claim is answered at 2 s; the grant waits in the queue
    assert host.released == [] and len(host.granted) == 1
    host.run_until(3.1)  # READY_HOLD_S later nobody took it: released, announced
    assert host.released == [bytes([0]) * 16] and not host.granted
    assert host.published == [("process-released", {"processid": (bytes([0]) * 16).hex(),
                                                     "epoch": 1})]  # fmt: skip
    assert req not in host.answers
    assert all(not ex.running and not ex.ready for ex in sched.executors.values())


def test_detaching_answers_a_waiting_assign_at_once() -> None:
    host = ScriptedHost()
    sched = scheduler(book_with(0), host)
    executor = attach(sched, host, "e")
    req = assign(sched, host, 1, executor, 30)
    host.run_until(1.0)
    assert req not in host.answers  # assign waits (30 s at most)
    sched.slots.detach(sched.executors[executor], release=True)
    assert host.answers[req] is None and host.answered_at[req] == 1.0


def test_an_executor_waits_for_at_most_as_many_processes_as_it_has_slots() -> None:
    host = ScriptedHost()
    sched = scheduler(book_with(0), host)
    executor = attach(sched, host, "e")
    assign(sched, host, 1, executor, 30)
    try:
        assign(sched, host, 2, executor, 30)
    except ColonyError as exc:
        assert "already waits for 1" in str(exc)
    else:
        raise AssertionError("a second Assign of a one-slot executor must be refused")


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_a_round_that_reads_the_head_of_the_queue_chooses_as_over_all_of_it(seed: int) -> None:
    """A claim round reads the queue in ColonyOS order only until every waiting advert
    has enough ready matches; its choice is the one over the whole view."""
    rng = random.Random(seed)
    book = ProcessBook()
    for i in range(rng.randrange(200, 900)):
        book.on_record(
            ME,
            PROCESS_KIND,
            {
                "processid": i.to_bytes(16, "big").hex(),
                "submission_ns": rng.randrange(0, 3 * 10**9),
                "spec": {
                    "funcname": "f",
                    "priority": rng.choice([0, 0, 1]),
                    "conditions": {"executortype": rng.choice(["py", "py", "gpu"])},
                },
            },
            rng.choice([0.0, 0.0, 0.0, 5.0]),
        )  # fmt: skip  (arrived later: not ready yet)
    host = ScriptedHost()
    others = tuple(bytes([9, i]) * 16 for i in range(rng.randrange(0, 6)))
    host.claimer_ids = lambda: (bytes(ME), *others)  # type: ignore[method-assign]
    host.claimers = lambda: 1 + len(others)  # type: ignore[method-assign]
    sched = scheduler(book, host)  # stagger turns differ: near-ties are chosen by turn
    kinds = [rng.choice(["py", "py", "py", "gpu", "tpu"]) for _ in range(rng.randrange(1, 6))]
    adverts = [ExecutorAdvert(f"e{i}", k, "", 10**9, 10**15) for i, k in enumerate(kinds)]
    now_s = 1.0
    head = sched.candidates(now_s, adverts)
    whole = sched.candidates(now_s)
    assert [w.pid for w in head] == [w.pid for w in whole[: len(head)]]  # a prefix
    assert plan_claims(head, adverts, now_s) == plan_claims(whole, adverts, now_s)


def test_a_round_over_a_long_queue_reads_only_its_head() -> None:
    sched = scheduler(book_with(200), ScriptedHost())
    for i in range(200, 2000):  # 2,000 ready py processes in all
        sched.book.on_record(ME, PROCESS_KIND, {
            "processid": i.to_bytes(16, "big").hex(), "submission_ns": i,
            "spec": {"funcname": "f", "conditions": {"executortype": "py"}}}, 0.0)  # fmt: skip
    advert = ExecutorAdvert("e", "py", "", 10**9, 10**15)
    # All near-ties, none staggered here: a round reads as many as it may share out.
    assert len(sched.candidates(1.0, [advert, advert])) == CLAIM_SPREAD + 1
    assert len(sched.candidates(1.0)) == 2000


def test_a_round_reads_past_the_near_ties_only_as_far_as_it_must() -> None:
    book = ProcessBook()
    for i in range(2000):  # 2 s apart: no near-ties
        book.on_record(ME, PROCESS_KIND, {
            "processid": i.to_bytes(16, "big").hex(), "submission_ns": 2 * i * 10**9,
            "spec": {"funcname": "f", "conditions": {"executortype": "py"}}}, 0.0)  # fmt: skip
    host = ScriptedHost()
    others = tuple(bytes([9, i]) * 16 for i in range(2))  # most pids are another's turn
    host.claimer_ids = lambda: (bytes(ME), *others)  # type: ignore[method-assign]
    host.claimers = lambda: 3  # type: ignore[method-assign]
    sched = scheduler(book, host)
    advert = ExecutorAdvert("e", "py", "", 10**9, 10**15)
    head = sched.candidates(10**4, [advert, advert])  # long after: all ready
    assert len(head) == 3  # two to take, and the first past the second's near-ties
    assert plan_claims(head, [advert, advert], 10**4) == [(0).to_bytes(16, "big"),
                                                        (1).to_bytes(16, "big")]  # fmt: skip
    # All near-ties, a third of them this node's first turn: it reads up to the
    # CLAIM_SPREAD + 1-th of those, not WINDOW_MAX + 2.
    tied = ProcessBook()
    for i in range(2000):
        tied.on_record(ME, PROCESS_KIND, {
            "processid": i.to_bytes(16, "big").hex(), "submission_ns": i,
            "spec": {"funcname": "f", "conditions": {"executortype": "py"}}}, 0.0)  # fmt: skip
    sched = scheduler(tied, host)
    head = sched.candidates(10**4, [advert, advert])
    firsts = [i for i, w in enumerate(sched.candidates(10**4)) if w.delay_s == 0.0]
    assert len(head) == firsts[CLAIM_SPREAD] + 1 < 60
    assert plan_claims(head, [advert, advert], 10**4) == plan_claims(
        sched.candidates(10**4), [advert, advert], 10**4
    )


def run_once(sched: Scheduler, host: ScriptedHost, executor: str, req: int, took_s: float) -> None:
    """One slot asks, gets a process, and reports it ran for `took_s`."""
    assign(sched, host, req, executor, 10)
    host.run_until(host.now_s + 0.2)
    pid = bytes.fromhex(host.answers[req]["processid"])
    sched.executors[executor].finish(pid, host.now_s, took_s, closed=True)


def with_a_queue() -> tuple[ScriptedHost, Scheduler, str]:
    """An executor of one slot whose runs take 10 ms, against claims of 50 ms: after two
    runs, 12 processes wait claimed ahead in its queue (see the test below)."""
    host = ScriptedHost(delay_s=0.05)
    sched = scheduler(book_with(30), host)
    executor = attach(sched, host, "e")
    run_once(sched, host, executor, 1, 0.01)
    run_once(sched, host, executor, 2, 0.01)
    return host, sched, executor


def test_an_executor_with_short_runs_gets_processes_claimed_ahead_in_one_batch() -> None:
    """Runs of 10 ms against claims of 50 ms (and 10 ms between rounds): the node claims
    AHEAD_COVER refills of runs ahead of the slot (2 x 60 / 10 = 12), in the same request
    as the slot's own, and the slot's next calls are answered from the queue without a
    claim."""
    host = ScriptedHost(delay_s=0.05)
    sched = scheduler(book_with(30), host)
    executor = attach(sched, host, "e")
    run_once(sched, host, executor, 1, 0.01)
    assert host.claims == [[bytes([0]) * 16]]  # nothing known of its runs: no claim ahead
    run_once(sched, host, executor, 2, 0.01)
    assert [len(c) for c in host.claims] == [1, 13]
    ex = sched.executors[executor]
    assert len(ex.ready) == 12 and sched.counters["claimed_ahead"] == 12
    queued = sorted(ex.ready)  # book_with: ColonyOS order is pid order
    asked_s = host.now_s
    assign(sched, host, 3, executor, 10)
    assert host.answered_at[3] == asked_s  # from the queue, at once
    assert host.answers[3]["processid"] == queued[0].hex()  # its first in ColonyOS order


def test_an_executor_with_long_runs_claims_only_for_its_waiting_slots() -> None:
    host = ScriptedHost(delay_s=0.05)
    sched = scheduler(book_with(30), host)
    executor = attach(sched, host, "e")
    run_once(sched, host, executor, 1, 1.0)  # 1 s runs: 2 x 0.06 / 1 < 1
    run_once(sched, host, executor, 2, 1.0)
    assert [len(c) for c in host.claims] == [1, 1]
    assert not sched.executors[executor].ready


def test_a_queue_that_waits_past_its_hold_is_given_back_and_claims_less_ahead() -> None:
    host, sched, executor = with_a_queue()  # 12 claimed ahead; the slot now runs long
    ex = sched.executors[executor]
    queued = list(ex.ready)
    run_s = ex.run_s
    claims = len(host.claims)
    host.run_until(max(r.until_s for r in ex.ready.values()))  # nobody took them
    assert host.released == queued and not set(queued) & set(ex.ready)
    assert [b["processid"] for k, b in host.published if k == "process-released"] == [
        p.hex() for p in queued
    ]
    assert sched.counters["ahead_given_back"] == 12
    assert ex.run_s == 2 * run_s  # doubled once for the queue, not once a process
    host.run_until(host.now_s + 0.2)
    assert [len(c) for c in host.claims[claims:]] == [6]  # half as far ahead, others first
    assert not set(host.claims[-1]) & set(queued)


def test_a_queued_process_closed_meanwhile_is_not_handed_to_a_slot() -> None:
    host, sched, executor = with_a_queue()
    ex = sched.executors[executor]
    cancelled = min(ex.ready)  # the first a slot would get
    sched.book.on_record(ME, "process-closed", {"processid": cancelled.hex(),
                                                "state": "CANCELLED"})  # fmt: skip
    assign(sched, host, 3, executor, 10)
    assert host.answers[3]["processid"] != cancelled.hex()
    assert cancelled in host.released and cancelled not in ex.ready


def test_detaching_gives_back_what_waited_in_the_queue() -> None:
    host, sched, executor = with_a_queue()
    queued = list(sched.executors[executor].ready)
    sched.slots.detach(sched.executors[executor], release=False)  # its connection died
    assert set(queued) <= set(host.released)  # never started: released, not dropped
