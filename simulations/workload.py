"""Workload: process submissions, and simulated executors that run them.

`Workload` submits jobs during the safety phase, as a Poisson process of
``rate_per_node_s × nodes`` jobs per simulated second, each to a node drawn at random.
Every job's fate is drawn when it is made, so a rerun of the same job (after a crash, a
retry) behaves the same way:

- ``ok``: the function returns after ``duration_s`` (exponential, mean duration_mean_s);
- ``hang``: it never returns (the core's timeout must deal with it);
- ``die``: the executor process dies part-way (uniform in [0, duration_s]).

`SimExecutor` runs a job for a node: it schedules the outcome as a call into the node's
core. The executor lives and dies with its node: an outcome due after the node crashed
(or restarted) is dropped, and a paused node gets it when it resumes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from colonynode.simulations.engine import CALL

if TYPE_CHECKING:
    from colonynode.simulations.node import SimNode
    from colonynode.simulations.world import World

__all__ = ["Fate", "Job", "SimExecutor", "Workload", "WorkloadConfig"]

JOBS_MAX = 1_000_000  # a workload never makes more jobs than this


class Fate(StrEnum):
    OK = "ok"
    HANG = "hang"
    DIE = "die"


@dataclass(frozen=True, slots=True)
class Job:
    job_id: int
    node: int  # index of the node it is submitted to
    submit_s: float
    fate: Fate
    duration_s: float


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    rate_per_node_s: float = 0.05
    duration_mean_s: float = 1.0
    hang_p: float = 0.05
    die_p: float = 0.05

    def __post_init__(self) -> None:
        if self.rate_per_node_s < 0 or self.duration_mean_s <= 0:
            raise ValueError("a workload needs rate >= 0 and a positive mean duration")
        if not 0 <= self.hang_p + self.die_p <= 1:
            raise ValueError("hang_p + die_p is a probability")


# submit(world, job): hand a new job to its node (the scenario decides how).
Submit = Callable[["World", Job], None]


class Workload:
    """Makes jobs while the world is in its safety phase."""

    def __init__(
        self, world: World, config: WorkloadConfig, rng: random.Random, submit: Submit
    ) -> None:
        self.world = world
        self.config = config
        self.rng = rng
        self.submit = submit
        self.jobs: dict[int, Job] = {}

    def start(self) -> None:
        if self.config.rate_per_node_s > 0:
            self._schedule_next()

    def _schedule_next(self) -> None:
        world = self.world
        rate = self.config.rate_per_node_s * world.n
        world.queue.push(world.now_s + self.rng.expovariate(rate), CALL, self._submit_one)

    def make_job(self, node: int) -> Job:
        rng = self.rng
        cfg = self.config
        draw = rng.random()
        if draw < cfg.hang_p:
            fate = Fate.HANG
        elif draw < cfg.hang_p + cfg.die_p:
            fate = Fate.DIE
        else:
            fate = Fate.OK
        job = Job(
            job_id=len(self.jobs) + 1,
            node=node,
            submit_s=self.world.now_s,
            fate=fate,
            duration_s=rng.expovariate(1.0 / cfg.duration_mean_s),
        )
        self.jobs[job.job_id] = job
        return job

    def _submit_one(self, world: World) -> None:
        if world.phase != "safety" or len(self.jobs) >= JOBS_MAX:
            return
        job = self.make_job(self.rng.randrange(world.n))
        world.step_node = job.node
        self.submit(world, job)
        self._schedule_next()


# done(core, local_now_s, job, outcome): the outcome reaches the node's core.
Done = Callable[[Any, float, Job, str], None]


class SimExecutor:
    """Runs jobs for nodes according to their fate."""

    def __init__(self, world: World, rng: random.Random, done: Done) -> None:
        self.world = world
        self.rng = rng
        self.done = done
        self.started = 0
        self.hung = 0

    def start(self, node: SimNode[Any], job: Job) -> None:
        world = self.world
        self.started += 1
        if job.fate is Fate.HANG:
            self.hung += 1
            return
        if job.fate is Fate.OK:
            at_s, outcome = world.now_s + job.duration_s, "ok"
        else:
            at_s, outcome = world.now_s + self.rng.uniform(0.0, job.duration_s), "died"
        incarnation = node.incarnation
        done = self.done

        def finish(w: World) -> None:
            node.call(lambda core, now_s: done(core, now_s, job, outcome), incarnation)

        world.queue.push(at_s, CALL, finish)
