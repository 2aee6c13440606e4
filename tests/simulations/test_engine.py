"""The event queue, node clocks and timers (simulations/engine.py, node.py)."""

from __future__ import annotations

import itertools
import random

import pytest

from colonynode.simulations.engine import CALL, EventQueue, NodeClock, make_clocks
from colonynode.simulations.faults import FaultProfile

from .cores import booted_world, core, do


def test_events_at_the_same_instant_pop_in_insertion_order() -> None:
    queue = EventQueue()
    for label in "abcde":
        queue.push(1.0, CALL, label)
    queue.push(0.5, CALL, "first")
    order = [queue.pop()[3] for _ in range(6)]
    assert order == ["first", "a", "b", "c", "d", "e"]


def test_the_clock_follows_popped_events_and_the_past_runs_now() -> None:
    queue = EventQueue()
    queue.push(2.0, CALL, "later")
    assert queue.pop()[0] == 2.0
    assert queue.now_s == 2.0
    queue.push(1.0, CALL, "in the past")
    assert queue.pop()[0] == 2.0


def test_clock_rates_respect_the_drift_bound() -> None:
    clocks = make_clocks(random.Random(7), 2000, drift_ppm=200.0)
    rates = [c.rate for c in clocks]
    assert all(abs(r - 1.0) <= 200e-6 for r in rates)
    # the bound is used, not just respected: both sides of 1 are reached closely
    assert max(rates) > 1 + 190e-6 and min(rates) < 1 - 190e-6
    assert len({c.offset_s for c in clocks}) == 2000


def test_no_drift_means_rate_one() -> None:
    assert {c.rate for c in make_clocks(random.Random(1), 50, drift_ppm=0.0)} == {1.0}


def test_node_clock_is_monotonic_and_inverts() -> None:
    clock = NodeClock(rate=1.0002, offset_s=500.0)
    assert clock.local(10.0) == pytest.approx(500.0 + 10.002)
    assert clock.global_at(clock.local(10.0)) == pytest.approx(10.0)
    later = clock.local(20.0)
    assert clock.local(5.0) == later  # never goes back
    assert clock.local_at_least(20.0, later + 1e-9) == later + 1e-9


def test_timers_are_in_local_time_and_fire_at_the_converted_global_time() -> None:
    world = booted_world(2, profile=FaultProfile("drift", clock_drift_ppm=1000.0))
    node = world.nodes[0]
    rate = node.clock.rate
    assert rate != 1.0
    c = core(world, 0)
    c.wake_every_s = 1.0
    do(world, 0, lambda core, now_s: core.wake_at(now_s + 1.0))
    world.run_until(world.now_s + 10.5)
    ticks = [now_s for kind, now_s, _, _ in c.log if kind == "tick"][1:]  # after the boot
    assert len(ticks) == 10
    local_gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert all(gap == pytest.approx(1.0, abs=1e-6) for gap in local_gaps)
    # in global time a fast clock's second is shorter: 1 / rate
    first_global_s = node.clock.global_at(ticks[0])
    last_global_s = node.clock.global_at(ticks[-1])
    assert (last_global_s - first_global_s) / 9 == pytest.approx(1.0 / rate, rel=1e-9)


def test_a_timer_fires_no_earlier_than_asked_in_local_time() -> None:
    world = booted_world(1, profile=FaultProfile("drift", clock_drift_ppm=1000.0))
    c = core(world, 0)
    for k in range(1, 50):
        wake_s = world.nodes[0].local_now() + k * 0.0137
        do(world, 0, lambda core, now_s, w=wake_s: core.wake_at(w))
        world.run_until(world.now_s + 1.0)
        assert c.log[-1][0] == "tick"
        assert c.log[-1][1] >= wake_s


def test_an_earlier_timer_replaces_a_later_one() -> None:
    world = booted_world(1)
    c = core(world, 0)
    start_s = world.nodes[0].local_now()
    do(world, 0, lambda core, now_s: core.wake_at(now_s + 5.0))
    do(world, 0, lambda core, now_s: core.wake_at(now_s + 2.0))
    c.next_wake_s = None
    world.run_until(world.now_s + 10.0)
    ticks = [now_s - start_s for kind, now_s, _, _ in c.log if kind == "tick"][1:]
    # the earlier one fires; the later one was never armed separately (one timer)
    assert ticks == [pytest.approx(2.0, abs=1e-6)]
