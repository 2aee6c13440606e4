"""Workload and simulated executors (simulations/workload.py)."""

from __future__ import annotations

from typing import Any

import pytest

from colonynode.simulations.workload import Fate, Job, SimExecutor, Workload, WorkloadConfig
from colonynode.simulations.world import World

from .cores import RecorderCore, booted_world, core


def test_jobs_come_at_the_configured_rate_with_the_configured_fates() -> None:
    world = booted_world(10, safety_s=200.0)
    submitted: list[Job] = []
    config = WorkloadConfig(rate_per_node_s=0.5, duration_mean_s=2.0, hang_p=0.1, die_p=0.2)
    workload = Workload(world, config, world.rng_for("w"), lambda w, job: submitted.append(job))
    workload.start()
    world.run_until(201.0)
    # 5 jobs/s for ~199 s, submissions stop with the safety phase
    assert abs(len(submitted) - 995) < 4 * 995**0.5
    assert all(job.submit_s < 200.0 for job in submitted)
    assert [job.job_id for job in submitted] == list(range(1, len(submitted) + 1))
    fates = [job.fate for job in submitted]
    assert fates.count(Fate.HANG) / len(fates) == pytest.approx(0.1, abs=0.03)
    assert fates.count(Fate.DIE) / len(fates) == pytest.approx(0.2, abs=0.04)
    assert sum(j.duration_s for j in submitted) / len(submitted) == pytest.approx(2.0, rel=0.15)
    assert {job.node for job in submitted} == set(range(10))


def _executor(world: World) -> tuple[SimExecutor, list[tuple[int, str]]]:
    outcomes: list[tuple[int, str]] = []

    def done(c: Any, now_s: float, job: Job, outcome: str) -> None:
        assert isinstance(c, RecorderCore)
        outcomes.append((job.job_id, outcome))

    return SimExecutor(world, world.rng_for("x"), done), outcomes


def test_executor_outcomes_follow_the_fate() -> None:
    world = booted_world(1)
    executor, outcomes = _executor(world)
    now_s = world.now_s
    jobs = [
        Job(1, 0, now_s, Fate.OK, 2.0),
        Job(2, 0, now_s, Fate.DIE, 2.0),
        Job(3, 0, now_s, Fate.HANG, 2.0),
    ]
    for job in jobs:
        executor.start(world.nodes[0], job)
    world.run_until(now_s + 1.999)
    assert outcomes == [(2, "died")]  # dies part-way
    world.run_until(now_s + 100.0)
    assert outcomes == [(2, "died"), (1, "ok")]  # the hung one never returns
    assert executor.hung == 1


def test_an_executor_dies_with_its_node() -> None:
    world = booted_world(1)
    executor, outcomes = _executor(world)
    executor.start(world.nodes[0], Job(1, 0, world.now_s, Fate.OK, 1.0))
    world.nodes[0].crash()
    world.nodes[0].restart()
    world.run_until(world.now_s + 10.0)
    assert outcomes == []
    assert core(world, 0).kinds() == ["tick"]
