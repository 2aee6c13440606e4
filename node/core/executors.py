"""The executors attached to a node: their slots, their waiting `Assign` calls, and the
processes claimed ahead for them (part of NodeCore's scheduler, DESIGN.md §10).

An executor declares `slots`, how many processes it runs at once; each free slot asks
with an `Assign` long-poll. The scheduler claims for the slots that wait, and, when the
executor's runs are short, *ahead* of them: granted processes wait in the executor's
queue (`ready`), so a slot that frees takes its next process from the queue at once
instead of after a claim's round trip to the voters, and claims (and the closes that
follow them) reach the voters in batches.

How far ahead: what the executor finishes while a claim is out, twice over,

    ahead = ⌊AHEAD_COVER · slots · claim_rtt_s / run_s⌋, at most AHEAD_MAX,

with `run_s` a moving average of its runs (as the executor reports them, else from the
hand-over to the close) and `claim_rtt_s` the node's. A new executor, and one whose runs
take longer than AHEAD_COVER claim round trips a slot, claims for its waiting slots only.

A granted process waits in the queue at most `hold_s` (READY_HOLD_S, or a tenth of its
maxexectime if that is shorter: the voters count maxexectime from the grant); past it
the lease is given back (no retry counted) and the executor's estimate of its runs is
doubled (once a hold), so it claims less far ahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colonynode.consensus.held import CLAIM_BATCH_MAX
from colonynode.core.process import FunctionSpec
from colonynode.core.scheduling import ExecutorAdvert

__all__ = [
    "AHEAD_COVER",
    "AHEAD_MAX",
    "READY_HOLD_S",
    "Executor",
    "Ready",
    "Want",
    "hold_s",
]

AHEAD_COVER = 2.0  # claim round trips of runs the queue covers
AHEAD_MAX = 32  # processes claimed ahead for one executor, at most
READY_HOLD_S = 1.0  # the longest a granted process waits in an executor's queue
RUN_AVERAGE = 0.2  # weight of the newest run in `run_s`
assert AHEAD_MAX <= CLAIM_BATCH_MAX


def hold_s(spec: FunctionSpec) -> float:
    """How long a process claimed ahead may wait for a free slot."""
    if spec.maxexectime > 0:
        return min(READY_HOLD_S, spec.maxexectime / 10)
    return READY_HOLD_S


@dataclass(eq=False, slots=True)
class Want:
    """A slot's `Assign`, waiting for a process."""

    req: int
    ex: Executor
    since_s: float  # when it began to wait
    deadline_s: float
    open: bool = True  # False once answered, or once its caller went away


@dataclass(frozen=True, slots=True)
class Ready:
    """A process granted for an executor, waiting in its queue for a free slot."""

    epoch: int
    until_s: float  # given back if no slot took it by then


@dataclass(eq=False)
class Executor:
    id: str
    advert: ExecutorAdvert
    slots: int
    running: dict[bytes, int] = field(default_factory=dict)  # pid -> epoch: handed to it
    last_heard_s: float = 0.0
    log_lines: dict[bytes, int] = field(default_factory=dict)  # pid -> lines published
    wants: list[Want] = field(default_factory=list)  # its slots' Assign calls, oldest first
    ready: dict[bytes, Ready] = field(default_factory=dict)  # granted ahead, oldest first
    claims: int = 0  # claims out for it
    claim_done_s: float = 0.0  # when its last claim was answered
    run_s: float = 0.0  # moving average of its runs' times (0: none yet)
    handed_s: dict[bytes, float] = field(default_factory=dict)  # pid -> when a slot got it
    slowed_s: float = float("-inf")  # when `run_s` was last doubled

    def ahead(self, claim_rtt_s: float) -> int:
        """How many processes to hold granted beyond its waiting slots."""
        if self.run_s <= 0.0 or claim_rtt_s <= 0.0:
            return 0
        return min(AHEAD_MAX, int(AHEAD_COVER * self.slots * claim_rtt_s / self.run_s))

    def idle(self) -> int:
        """Slots that wait with nothing granted or claimed for them."""
        return max(0, len(self.wants) - len(self.ready) - self.claims)

    def wanted(self, claim_rtt_s: float) -> int:
        """Claims to make for it now: its idle slots, and its queue's shortfall."""
        target = len(self.wants) + self.ahead(claim_rtt_s)
        return max(0, target - len(self.ready) - self.claims)

    def idle_since_s(self) -> float:
        """Since when its longest-waiting idle slot has had no claim out for it."""
        return max(self.wants[0].since_s, self.claim_done_s) if self.wants else 0.0

    def finish(
        self, pid: bytes, now_s: float, elapsed_s: float | None = None, *, closed: bool = False
    ) -> int | None:
        """A run of `pid` ended: its epoch, if it ran here. A close (`closed`) teaches
        `run_s` how long runs take: `elapsed_s` as the executor measured it, else the
        time since the hand-over (and never more than that)."""
        epoch = self.running.pop(pid, None)
        self.log_lines.pop(pid, None)
        handed_s = self.handed_s.pop(pid, None)
        if closed and handed_s is not None:
            took_s = now_s - handed_s
            self.ran(took_s if elapsed_s is None else min(max(elapsed_s, 0.0), took_s))
        return epoch

    def slower(self, now_s: float) -> None:
        """Its queue waited a hold out: take its runs for twice as long, once a hold
        (a whole queue given back together doubles it once, not once a process)."""
        if now_s - self.slowed_s >= READY_HOLD_S:
            self.slowed_s = now_s
            self.run_s *= 2

    def ran(self, took_s: float) -> None:
        took_s = max(took_s, 1e-4)
        if self.run_s <= 0.0:
            self.run_s = took_s
        else:
            self.run_s += RUN_AVERAGE * (took_s - self.run_s)

    def held(self) -> int:
        """Processes it holds or is about to: running, queued, claimed."""
        return len(self.running) + len(self.ready) + self.claims
