"""Matching, priority order and rendezvous spreading (ColonyOS semantics)."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from colonynode.core.process import DAY_NS, parse_spec
from colonynode.core.scheduling import (
    RANKED_CLAIMERS_MAX,
    STAGGER_STEP_S,
    ExecutorAdvert,
    Waiting,
    choose_claims,
    claim_delay_s,
    matches,
    plan_claims,
    ranked_claim_delay_s,
)

PY = ExecutorAdvert("b", "python-executor", "lab", cpu_millis=2000, mem_bytes=2**30)


def spec(**conditions: object):  # type: ignore[no-untyped-def]
    return parse_spec({"funcname": "f", "conditions": {"executortype": "python-executor",
                                                       **conditions}})  # fmt: skip


def test_matching_rules() -> None:
    assert matches(spec(), PY)
    assert not matches(spec(executortype="gpu"), PY)
    assert matches(spec(executornames=["b", "c"]), PY)
    assert matches(spec(executornames=["*"]), PY)
    assert not matches(spec(executornames=["c"]), PY)
    assert matches(spec(locationname="lab"), PY) and not matches(spec(locationname="x"), PY)
    assert matches(spec(cpu="2"), PY) and not matches(spec(cpu="2001m"), PY)
    assert matches(spec(mem="1Gi"), PY) and not matches(spec(mem="2Gi"), PY)
    only_g = ExecutorAdvert("b", "python-executor", functions=("g",))
    assert not matches(spec(), only_g)


def test_priority_point_beats_a_day_of_age() -> None:
    old = Waiting(b"old", spec(), submission_ns=0)
    urgent = parse_spec({"funcname": "f", "priority": 1,
                         "conditions": {"executortype": "python-executor"}})  # fmt: skip
    new_urgent = Waiting(b"new", urgent, submission_ns=DAY_NS - 1)
    assert choose_claims([old, new_urgent], PY, 1, spread=1) == [b"new"]
    assert choose_claims([old, new_urgent], PY, 2) == [b"new", b"old"]


def test_non_matching_processes_are_never_chosen() -> None:
    ws = [Waiting(bytes([i]), spec(executortype="gpu"), i) for i in range(10)]
    assert choose_claims(ws, PY, 5) == []


def test_rendezvous_spreads_executors_over_the_head_of_the_queue() -> None:
    ws = [Waiting(i.to_bytes(4, "big"), spec(), i) for i in range(400)]
    picks = Counter()
    firsts = set()
    for n in range(8):
        adv = ExecutorAdvert(f"e{n}", "python-executor", cpu_millis=1, mem_bytes=1)
        chosen = choose_claims(ws, adv, 4)
        picks.update(chosen)
        firsts.add(chosen[0])
    # Without spreading all eight would claim the same four processes; with it they
    # spread over the window of 16 at the head of the queue (deterministic hash).
    assert len(picks) >= 12 and len(firsts) >= 4
    assert all(int.from_bytes(p, "big") < 16 for p in picks)


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=60, unique=True),
       st.integers(min_value=1, max_value=10))  # fmt: skip
def test_choices_come_from_the_head_in_priority_order(times: list[int], want: int) -> None:
    ws = [Waiting(t.to_bytes(8, "big"), spec(), t) for t in times]
    chosen = choose_claims(ws, PY, want, spread=2)
    head = sorted(times)[: want * 2]
    got = [int.from_bytes(p, "big") for p in chosen]
    assert len(got) == min(want, len(times))
    assert got == sorted(got) and set(got) <= set(head)


def test_spreading_never_reorders_across_more_than_a_second() -> None:
    # Two processes a minute apart: every executor takes the older first.
    ws = [Waiting(b"old", spec(), 0), Waiting(b"new", spec(), 60 * 10**9)]
    for n in range(20):
        adv = ExecutorAdvert(f"e{n}", "python-executor", cpu_millis=1, mem_bytes=1)
        assert choose_claims(ws, adv, 1) == [b"old"]


def test_a_claim_round_gives_each_waiting_executor_a_distinct_match() -> None:
    gpu = ExecutorAdvert("b-gpu", "gpu")
    py2 = ExecutorAdvert("c", "python-executor", "lab", cpu_millis=2000, mem_bytes=2**30)
    ws = [Waiting(bytes([i]), spec(), submission_ns=i * 10**10) for i in range(3)]
    # The longest-waiting executor takes the head; the next takes what is left.
    assert plan_claims(ws, [PY, gpu, py2]) == [b"\x00", None, b"\x01"]
    assert plan_claims(ws[:1], [PY, py2]) == [b"\x00", None]
    assert plan_claims([], [PY]) == [None]


@given(st.integers(0, 40), st.integers(1, 12))
def test_a_claim_round_never_gives_one_pid_twice(n: int, executors: int) -> None:
    ws = [Waiting(i.to_bytes(2, "big"), spec(), submission_ns=i % 3) for i in range(n)]
    adverts = [ExecutorAdvert(f"e{i}", "python-executor", "lab", 2000, 2**30)
               for i in range(executors)]  # fmt: skip
    plan = plan_claims(ws, adverts)
    chosen = [p for p in plan if p is not None]
    assert len(chosen) == len(set(chosen)) == min(n, executors)


@given(st.binary(min_size=16, max_size=16), st.integers(1, RANKED_CLAIMERS_MAX))
def test_a_small_colony_staggers_its_nodes_one_a_step(pid: bytes, n: int) -> None:
    nodes = [bytes([i]) * 32 for i in range(n)]
    delays = sorted(ranked_claim_delay_s(pid, node, nodes) or 0.0 for node in nodes)
    assert delays == [rank * STAGGER_STEP_S for rank in range(n)]  # exactly one at step 0


def test_the_exact_rank_is_for_small_colonies_and_their_members_only() -> None:
    nodes = [bytes([i]) * 32 for i in range(RANKED_CLAIMERS_MAX + 1)]
    assert ranked_claim_delay_s(b"p" * 16, nodes[0], nodes) is None
    assert ranked_claim_delay_s(b"p" * 16, b"x" * 32, nodes[:3]) is None


def test_a_uniform_draw_sends_several_nodes_at_once_in_a_three_node_colony() -> None:
    """Why the exact rank: with the uniform draw, three of three nodes often try a new
    process in the same step (then three voters can split one-one-one)."""
    nodes = [bytes([i]) * 32 for i in range(3)]
    all_at_once = sum(
        all(claim_delay_s(i.to_bytes(16, "big"), node, 3) == 0.0 for node in nodes)
        for i in range(1000)
    )
    assert all_at_once > 100


def test_nodes_with_a_slot_each_take_the_processes_of_their_own_turn_first() -> None:
    """A burst of 60 ties seen by three nodes: each node's stagger ranks it first for
    about a third of them, and it takes one of those, so the three never duel."""
    nodes = [bytes([i]) * 32 for i in range(3)]
    pids = [i.to_bytes(16, "big") for i in range(60)]
    picks = []
    for node in nodes:
        ws = [Waiting(p, spec(), 0, 0.0, ranked_claim_delay_s(p, node, nodes) or 0.0)
              for p in pids]  # fmt: skip
        adv = ExecutorAdvert(f"e-{node[0]}", "python-executor", cpu_millis=1, mem_bytes=1)
        (pick,) = choose_claims(ws, adv, 1, now_s=1.0)
        assert ranked_claim_delay_s(pick, node, nodes) == 0.0  # its own turn
        picks.append(pick)
    assert len(set(picks)) == 3


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_a_claim_round_is_each_advert_choosing_one_in_turn_from_what_is_left(seed: int) -> None:
    """`plan_claims` is its definition, made faster: each advert in turn takes
    `choose_claims(..., 1)` over what the round left (stagger, near-ties, kinds)."""
    rng = random.Random(seed)
    kinds = ["python-executor", "gpu"]
    specs = {(k, p): parse_spec({"funcname": "f", "priority": p,
                                 "conditions": {"executortype": k}})
             for k in kinds for p in (0, 1)}  # fmt: skip
    ws = [
        Waiting(rng.randbytes(4), specs[rng.choice(kinds), rng.choice([0, 1])],
                rng.randrange(0, 3 * 10**9), rng.choice([0.0, 0.0, 0.5, 2.0]),
                rng.choice([0.0, 0.0, 0.02, 0.04]))
        for _ in range(rng.randrange(0, 80))
    ]  # fmt: skip
    names = [f"e{rng.randrange(3)}" for _ in range(rng.randrange(1, 40))]
    adverts = [ExecutorAdvert(n, kinds[int(n[1]) % 2]) for n in names]
    now_s = rng.choice([None, 1.0])
    taken: set[bytes] = set()
    want: list[bytes | None] = []
    for advert in adverts:
        got = choose_claims([w for w in ws if w.pid not in taken], advert, 1, now_s=now_s)
        want.append(got[0] if got else None)
        taken.update(got)
    assert plan_claims(ws, adverts, now_s) == want
