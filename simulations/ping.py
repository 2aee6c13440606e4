"""Two trivial sans-IO cores that prove the simulator: ping/echo, and durable counters.

`PingCore`: every `interval_s` a node pings the next of its fixed peers (round robin);
a node that gets a `Ping(nonce)` answers `Echo(nonce)`; an echo that matches an
outstanding ping is published as `EchoReceived` with its round-trip time; a ping
unanswered after `timeout_s` is published as `PingTimedOut`.

`CounterCore` adds state that must survive crashes: it counts the echoes it received and
the jobs it finished in the store (table ``counters``), accepts jobs submitted to it
(table ``jobs``: accepted, then the outcome), asks the executor to run them (`RunJob`),
times out jobs that hang, and after a restart re-runs the jobs it had accepted but not
finished. Counting an echo is a write-only step: a driver may leave it unsynced, so a
crash can lose it; accepting and finishing a job are published, so they are durable first.

Both take `planted_bug` to break themselves on purpose (the tests check that the
checkers catch it): ``wrong_nonce`` (PingCore: some echoes carry a nonce never sent),
``forget_counters`` and ``rerun_finished`` (CounterCore: restarts lose the counters, or
run finished jobs again).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from colonynode.core.effects import Effects
from colonynode.core.ids import NodeId
from colonynode.storage.api import Store

__all__ = [
    "CounterCore",
    "Echo",
    "EchoReceived",
    "JobAccepted",
    "JobFinished",
    "Ping",
    "PingCore",
    "PingTimedOut",
    "RunJob",
    "StrayEcho",
    "job_key",
]

OUTSTANDING_MAX = 256  # pings awaiting an echo; no new ping while full
RUNNING_MAX = 10_000  # jobs a node runs at once; more are refused


# -- messages (the ping protocol's wire format: append-only) ---------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int


@dataclass(frozen=True, slots=True)
class Echo:
    nonce: int


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EchoReceived:
    peer: NodeId
    nonce: int
    rtt_s: float


@dataclass(frozen=True, slots=True)
class PingTimedOut:
    peer: NodeId
    nonce: int


@dataclass(frozen=True, slots=True)
class StrayEcho:
    peer: NodeId
    nonce: int


@dataclass(frozen=True, slots=True)
class JobAccepted:
    job_id: int


@dataclass(frozen=True, slots=True)
class RunJob:
    job_id: int


@dataclass(frozen=True, slots=True)
class JobFinished:
    job_id: int
    outcome: str  # ok, died, timeout


class PingCore:
    """Pings a fixed list of peers round robin; answers pings."""

    def __init__(
        self,
        node_id: NodeId,
        peers: Sequence[NodeId],
        rng: random.Random,
        *,
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
        planted_bug: str = "",
    ) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("interval_s and timeout_s are positive")
        self.node_id = node_id
        self.peers = list(peers)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.planted_bug = planted_bug
        self.next_nonce = rng.getrandbits(48)
        self.outstanding: dict[int, tuple[NodeId, float]] = {}  # nonce -> (peer, sent)
        self.next_ping_s: float | None = None
        self.cursor = 0
        self.late_ticks = 0
        self._effects = Effects()

    # -- ProtocolCore -------------------------------------------------------------------

    def on_tick(self, now_s: float) -> None:
        self._expire(now_s)
        if self.next_ping_s is None:
            self.next_ping_s = now_s
        if now_s - self.next_ping_s > self.interval_s:
            self.late_ticks += 1  # a pause: skip the pings we missed, do not burst
            self.next_ping_s = now_s
        while self.next_ping_s <= now_s:
            self._ping_next(now_s)
            self.next_ping_s += self.interval_s

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        if isinstance(msg, Ping):
            nonce = msg.nonce
            if self.planted_bug == "wrong_nonce" and nonce % 7 == 0:
                nonce += 1
            self._effects.sends.append((sender, Echo(nonce)))
        elif isinstance(msg, Echo):
            entry = self.outstanding.get(msg.nonce)
            if entry is None or entry[0] != sender:
                self._effects.events.append(StrayEcho(sender, msg.nonce))
                return
            del self.outstanding[msg.nonce]
            self._effects.events.append(EchoReceived(sender, msg.nonce, now_s - entry[1]))
            self.on_echo(now_s, sender)

    def take_effects(self) -> Effects:
        effects = self._effects
        self._effects = Effects()
        effects.wake_at_s = self.next_wake_s()
        return effects

    # -- internals ----------------------------------------------------------------------

    def next_wake_s(self) -> float | None:
        return self.next_ping_s

    def on_echo(self, now_s: float, sender: NodeId) -> None:
        """A matching echo arrived (subclasses count it)."""

    def _ping_next(self, now_s: float) -> None:
        if not self.peers or len(self.outstanding) >= OUTSTANDING_MAX:
            return
        peer = self.peers[self.cursor % len(self.peers)]
        self.cursor += 1
        nonce = self.next_nonce
        self.next_nonce += 1
        self.outstanding[nonce] = (peer, now_s)
        self._effects.sends.append((peer, Ping(nonce)))

    def _expire(self, now_s: float) -> None:
        outstanding = self.outstanding
        while outstanding:
            nonce = next(iter(outstanding))
            peer, sent_s = outstanding[nonce]
            if sent_s + self.timeout_s > now_s:
                return
            del outstanding[nonce]
            self._effects.events.append(PingTimedOut(peer, nonce))


def job_key(job_id: int) -> bytes:
    return job_id.to_bytes(8, "big")


class CounterCore(PingCore):
    """PingCore plus durable counters and jobs that survive crashes."""

    def __init__(
        self,
        node_id: NodeId,
        peers: Sequence[NodeId],
        store: Store,
        rng: random.Random,
        *,
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
        job_timeout_s: float = 5.0,
        planted_bug: str = "",
    ) -> None:
        super().__init__(
            node_id, peers, rng, interval_s=interval_s, timeout_s=timeout_s, planted_bug=planted_bug
        )
        self.store = store
        self.job_timeout_s = job_timeout_s
        forget = planted_bug == "forget_counters"
        self.echoes = 0 if forget else int(store.get("counters", b"echoes") or 0)
        self.jobs_done = 0 if forget else int(store.get("counters", b"jobs") or 0)
        self.running: dict[int, float] = {}  # job id -> deadline (local time)
        self.to_rerun: list[int] = []
        for key, state in store.scan("jobs"):
            if state == "accepted" or planted_bug == "rerun_finished":
                self.to_rerun.append(int.from_bytes(key, "big"))

    # -- application inputs (the scenario calls these through SimNode.call) -------------

    def submit(self, now_s: float, job_id: int) -> None:
        if job_id in self.running or self.store.get("jobs", job_key(job_id)) is not None:
            return  # a duplicate submission
        if len(self.running) >= RUNNING_MAX:
            return
        self._effects.writes.append(("jobs", job_key(job_id), "accepted"))
        self._effects.events.append(JobAccepted(job_id))
        self._run(now_s, job_id)

    def job_done(self, now_s: float, job_id: int, outcome: str) -> None:
        if job_id in self.running:  # else: already timed out, or from before a crash
            self._finish(job_id, outcome)

    # -- ProtocolCore -------------------------------------------------------------------

    def on_tick(self, now_s: float) -> None:
        if self.to_rerun:
            for job_id in self.to_rerun:
                self._run(now_s, job_id)
            self.to_rerun.clear()
        for job_id, deadline_s in list(self.running.items()):
            if deadline_s <= now_s:
                self._finish(job_id, "timeout")
        super().on_tick(now_s)

    def next_wake_s(self) -> float | None:
        wake_s = self.next_ping_s
        if self.running:
            deadline_s = min(self.running.values())
            if wake_s is None or deadline_s < wake_s:
                wake_s = deadline_s
        return wake_s

    def on_echo(self, now_s: float, sender: NodeId) -> None:
        self.echoes += 1
        self._effects.writes.append(("counters", b"echoes", self.echoes))

    def _run(self, now_s: float, job_id: int) -> None:
        self.running[job_id] = now_s + self.job_timeout_s
        self._effects.events.append(RunJob(job_id))

    def _finish(self, job_id: int, outcome: str) -> None:
        del self.running[job_id]
        self.jobs_done += 1
        self._effects.writes.append(("jobs", job_key(job_id), outcome))
        self._effects.writes.append(("counters", b"jobs", self.jobs_done))
        self._effects.events.append(JobFinished(job_id, outcome))
