"""Simulated executors for the claims scenario: one per executor node, with `slots` slots,
attached through the requests `colonynode executor run` makes (RegisterExecutor, Assign,
CloseRun, Heartbeat, Detach).

An executor lives in its node: when the node crashes it is gone, and the restarted node
gets a new one. It keeps one Assign waiting per free slot. A run does what its job's
fate says (workload.py): it finishes after `duration_s` (a close, or an explicit fail),
hangs until its node says to stop (`RunStopped`: the lease was lost at maxexectime or
the process cancelled), or its executor dies part-way: the executor process is gone
(its connection closes: `Detach(release=False)`, the node drops its leases, they
expire at the voters, a retry) and a new one attaches. A run decides to close at its
finish time from what it knew then: a run on a node that was paused sends its close when
the node wakes, and the voters (or the node, whose lease ran out) refuse it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from colonynode.core.scheduling import ExecutorAdvert
from colonynode.node.core import Answer
from colonynode.node.core import requests as rq
from colonynode.simulations.engine import CALL
from colonynode.simulations.workload import Fate

if TYPE_CHECKING:
    from colonynode.simulations.claims_scenario import ClaimsScenario
    from colonynode.simulations.world import World

__all__ = ["EXECUTORTYPE", "SimExecutors"]

EXECUTORTYPE = "sim"
ASSIGN_TIMEOUT_S = 10.0
HEARTBEAT_S = 5.0
RETRY_S = 0.5  # an Assign refused with an error is asked again after this


@dataclass
class _Executor:
    node: int
    incarnation: int
    generation: int  # +1 per new executor of the node (a dead one's news is dropped)
    id: str = ""
    runs: dict[bytes, int] = field(default_factory=dict)  # pid -> run token
    waiting: int = 0  # Assign calls out


class SimExecutors:
    def __init__(self, scenario: ClaimsScenario, world: World, slots: int) -> None:
        self.scenario = scenario
        self.world = world
        self.slots = slots
        self.by_node: dict[int, _Executor] = {}
        self.started = 0
        self._tokens = 0
        self._generations = 0

    def _current(self, ex: _Executor) -> bool:
        node = self.world.nodes[ex.node]
        live = self.by_node.get(ex.node) is ex and node.incarnation == ex.incarnation
        return live and node.alive

    def start(self, index: int) -> None:
        """A new executor process attaches to node `index`."""
        self._generations += 1
        node = self.world.nodes[index]
        ex = _Executor(index, node.incarnation, self._generations)
        self.by_node[index] = ex
        advert = ExecutorAdvert(f"x{index}-{ex.generation}", EXECUTORTYPE, "", 10**9, 10**15)

        def registered(answer: Answer) -> None:
            if not self._current(ex) or answer.error is not None:
                return
            ex.id = str(answer.value["executor_id"])
            for _ in range(self.slots):
                self._assign(ex)
            self.world.schedule(self.world.now_s + HEARTBEAT_S, lambda w: self._beat(ex))

        self.scenario.ask(self.world, index, rq.RegisterExecutor(advert, self.slots), registered)

    def _assign(self, ex: _Executor) -> None:
        if not self._current(ex) or ex.waiting + len(ex.runs) >= self.slots:
            return

        def given(answer: Answer) -> None:
            ex.waiting -= 1
            if not self._current(ex):
                return
            if answer.error is not None:  # as the real executor does (sdk/executor.py)
                if "register again" in str(answer.error):
                    self.start(ex.node)  # detached after a silence: a new executor
                else:  # later, not at once: a refusal answered in the same step looped
                    self.world.schedule(self.world.now_s + RETRY_S, lambda w: self._assign(ex))
                return
            if answer.value is None:  # the long-poll ran out: ask again
                self._assign(ex)
                return
            self._run(ex, answer.value)

        if self.scenario.ask(self.world, ex.node, rq.Assign(ex.id, ASSIGN_TIMEOUT_S), given):
            ex.waiting += 1

    def _run(self, ex: _Executor, process: dict[str, Any]) -> None:
        world = self.world
        scenario = self.scenario
        pid = bytes.fromhex(process["processid"])
        job = scenario.jobs.get(int(process["spec"]["args"][0]))
        self._tokens += 1
        token = ex.runs[pid] = self._tokens
        self.started += 1
        if job is None or job.fate is Fate.HANG:
            return  # runs until the node says to stop
        if job.fate is Fate.OK:
            at_s = world.now_s + job.duration_s
        else:
            at_s = world.now_s + scenario.rng.uniform(0.0, job.duration_s)
        died = job.fate is Fate.DIE
        failing = job.job_id in scenario.fails
        started_s = world.now_s

        def finish(w: World) -> None:
            if not self._current(ex) or ex.runs.get(pid) != token:
                return  # told to stop before it finished, or its executor is gone
            if died:
                self._die(ex)
                return
            del ex.runs[pid]
            took_s = w.now_s - started_s  # as the real executor measures a run
            if failing:
                req = rq.CloseRun(ex.id, pid, False, None, ("the function raised",), took_s)
            else:
                req = rq.CloseRun(ex.id, pid, True, [f"out-{job.job_id}"], (), took_s)
            scenario.ask(w, ex.node, req, scenario.fenced_close)
            self._assign(ex)

        world.queue.push(at_s, CALL, finish)

    def _die(self, ex: _Executor) -> None:
        """The executor process died: its node notices (its connection closed) and drops
        what it ran; a new executor attaches."""
        del self.by_node[ex.node]
        self.scenario.ask(self.world, ex.node, rq.Detach(ex.id, release=False))
        self.start(ex.node)

    def stopped(self, index: int, notice: rq.RunStopped) -> None:
        ex = self.by_node.get(index)
        if ex is None or ex.id != notice.executor_id or notice.pid not in ex.runs:
            return
        del ex.runs[notice.pid]
        self._assign(ex)

    def _beat(self, ex: _Executor) -> None:
        if not self._current(ex):
            return
        self.world.schedule(self.world.now_s + HEARTBEAT_S, lambda w: self._beat(ex))
        if not ex.runs:
            return

        def told(answer: Answer) -> None:
            if not self._current(ex) or answer.error is not None:
                return
            for pid_hex, word in answer.value["processes"].items():
                pid = bytes.fromhex(pid_hex)
                if word != "held" and pid in ex.runs:
                    del ex.runs[pid]
                    self._assign(ex)

        self.scenario.ask(self.world, ex.node, rq.Heartbeat(ex.id), told)
