"""The nemesis: faults injected into real daemons and executors, drawn from a seed.

Every fault has a start and an end, both recorded:

| kind | start | end |
| --- | --- | --- |
| kill | SIGKILL the daemon | start it again on its data dir |
| pause | SIGSTOP the daemon | SIGCONT |
| cut | take its network link down (netns only) | up again |
| slow | a token-bucket link, both ways (netns only) | the plain link |
| exec-kill | SIGKILL its executor (its workers exit with it) | start a new executor |
| exec-pause | SIGSTOP its executor (its workers run on) | SIGCONT |

A node carries at most one of kill, pause and cut at a time; at most `down_max` nodes
do, and at most a minority of the voters, so a majority of voters is always up and
connected and the colony is expected to make progress throughout. The schedule (which
fault, where, when, for how long) comes from the seed; the processes' own timing does
not, so a seed replays the faults, not every interleaving.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.netns import Net
from tests.integration.harness import Daemon, Executors

NODE_FAULTS = ("kill", "pause", "cut")
KINDS = (*NODE_FAULTS, "slow", "exec-kill", "exec-pause")
GAP_S = (0.3, 1.5)  # between the starts of two faults
LENGTH_S = (0.5, 4.0)  # how long a fault lasts


@dataclass
class Injected:
    at_s: float
    kind: str
    node: str
    length_s: float
    ended_s: float | None = None


@dataclass
class Nemesis:
    rng: random.Random
    daemons: dict[str, Daemon]
    executors: Executors
    voters: set[str]
    kinds: tuple[str, ...]
    net: Net | None = None
    down_max: int = 2
    log: list[Injected] = field(default_factory=list)
    t0_s: float = field(default_factory=time.monotonic)
    _ends: list[tuple[float, Injected, Callable[[], None]]] = field(default_factory=list)
    _faulty: dict[str, str] = field(default_factory=dict)  # node -> its node fault
    _busy: set[tuple[str, str]] = field(default_factory=set)  # (node, kind) running
    _stop: threading.Event = field(default_factory=threading.Event)
    restarted: int = 0  # executors that had exited (started while their node was down)
    _tried_s: dict[str, float] = field(default_factory=dict)

    def run(self, until_s: float) -> None:
        """Inject faults until `until_s` (monotonic), then end every one still on."""
        next_s = time.monotonic() + self.rng.uniform(*GAP_S)
        while not self._stop.is_set():
            now = time.monotonic()
            self._end_due(now)
            self._supervise(now)
            if now >= until_s:
                break
            if now >= next_s:
                self._start_one(now)
                next_s = now + self.rng.uniform(*GAP_S)
            soonest = min([next_s, until_s, *(e[0] for e in self._ends)])
            self._stop.wait(max(0.0, min(soonest - time.monotonic(), 0.5)))
        self.end_all()

    def stop(self) -> None:
        self._stop.set()

    def end_all(self) -> None:
        self._end_due(float("inf"))

    def down_now(self) -> set[str]:
        return set(self._faulty)

    def killed(self) -> set[str]:
        """The nodes killed now (clients leave them alone until they are back)."""
        return {n for n, kind in self._faulty.items() if kind == "kill"}

    def counts(self) -> Counter[str]:
        return Counter(f.kind for f in self.log)

    def _start_one(self, now: float) -> None:
        kind = self.rng.choice(self.kinds)
        node = self.rng.choice(sorted(self.daemons))
        if (node, kind) in self._busy or not self._allowed(kind, node):
            return
        length_s = self.rng.uniform(*LENGTH_S)
        fault = Injected(round(now - self.t0_s, 3), kind, node, round(length_s, 3))
        end = getattr(self, "_" + kind.replace("-", "_"))(node)
        self.log.append(fault)
        self._busy.add((node, kind))
        if kind in NODE_FAULTS:
            self._faulty[node] = kind
        self._ends.append((now + length_s, fault, end))

    def _allowed(self, kind: str, node: str) -> bool:
        if kind not in NODE_FAULTS:
            return True
        if node in self._faulty or len(self._faulty) >= self.down_max:
            return False
        voters_down = len(self.voters & {*self._faulty, node})
        return voters_down <= (len(self.voters) - 1) // 2

    def _supervise(self, now: float) -> None:
        """An executor started while its node was down exits at once (`executor run`
        needs a running node to start; once running, it waits out its node's restarts):
        start it again once the node is back, as a service manager would."""
        for node, proc in self.executors.procs.items():
            if proc.poll() is None or (node, "exec-kill") in self._busy:
                continue
            d = self.daemons[node]
            if d.proc is None or d.proc.poll() is not None or not (d.dir / "api.json").exists():
                continue
            if now - self._tried_s.get(node, 0.0) >= 1.0:
                self._tried_s[node] = now
                self.executors.start(d)
                self.restarted += 1

    def _end_due(self, now: float) -> None:
        due = [e for e in self._ends if e[0] <= now]
        self._ends = [e for e in self._ends if e[0] > now]
        for _, fault, end in sorted(due, key=lambda e: e[0]):
            end()
            fault.ended_s = round(time.monotonic() - self.t0_s, 3)
            self._busy.discard((fault.node, fault.kind))
            if fault.kind in NODE_FAULTS:
                del self._faulty[fault.node]

    # -- the faults: each starts one and returns what ends it ----------------------------

    def _kill(self, node: str) -> Callable[[], None]:
        d = self.daemons[node]
        d.stop(signal.SIGKILL)
        return lambda: d.start(wait=False)

    def _pause(self, node: str) -> Callable[[], None]:
        d = self.daemons[node]
        assert d.proc is not None
        d.proc.send_signal(signal.SIGSTOP)
        return lambda: _signal(d, signal.SIGCONT)

    def _cut(self, node: str) -> Callable[[], None]:
        assert self.net is not None
        self.net.cut(node)
        return lambda: self.net.mend(node) if self.net else None

    def _slow(self, node: str) -> Callable[[], None]:
        assert self.net is not None
        self.net.slow(node)
        return lambda: self.net.fast(node) if self.net else None

    def _exec_kill(self, node: str) -> Callable[[], None]:
        proc = self.executors.procs[node]
        proc.kill()
        proc.wait(timeout=10)
        return lambda: self.executors.start(self.daemons[node])

    def _exec_pause(self, node: str) -> Callable[[], None]:
        proc = self.executors.procs[node]
        proc.send_signal(signal.SIGSTOP)
        return lambda: proc.send_signal(signal.SIGCONT) if proc.poll() is None else None


def _signal(d: Daemon, sig: int) -> None:
    if d.proc is not None and d.proc.poll() is None:
        d.proc.send_signal(sig)
