"""The Trio driver of a sans-IO core (DESIGN.md §2, STYLE.md 2).

One task loops: receive -> step -> persist -> send -> answer. Everything that arrived
since the last turn is stepped in one go, the core's effects are taken once, their writes
are made durable in one batch (group commit, off the loop), and only then are the sends
handed to the transport, coalesced into one batch per peer and channel, and the events
handed on. The core's clock is `trio.current_time()`; its timer is `Effects.wake_at_s`.

How durable a batch must be is the core's word (`Effects.durability`): a LAZY batch
(received gossip records) is not committed on its own but with the next batch that must
be durable, or within DEFER_S, so a voter that takes a record and then a request in the
next turn syncs once, and a turn that only took records sends and answers at once; a
BEFORE_SENDS batch (this node's own records) hands its answers on before its commit.
Either way the store holds a prefix of the batches: a crash loses lazy ones at the end.

`NodeDriver` runs NodeCore: `await call(req)` asks it something (`NodeCore.request`)
and returns the answer (one table from request id to awaiter for every kind of request),
raising the error it answered with; a caller that goes away (cancelled, or timed out)
is forgotten by the core. Its notices (`Dial`, `Disconnect`, `Silenced`) go to the
daemon's `on_notice`.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import trio

from colonynode.core.effects import BEFORE_SENDS, LAZY, Effects, ProtocolCore, Write
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.core.transport import Transport
from colonynode.node.core import (
    Answer,
    Dial,
    Disconnect,
    NodeCore,
    RunStopped,
    Silenced,
    channel_of,
)
from colonynode.node.core.nodecore import CHANNELS
from colonynode.storage._trio import StoreWriter

__all__ = ["ANSWER_S", "INBOX_FRAMES_MAX", "CoreDriver", "NoAnswer", "NodeDriver"]

log = logging.getLogger(__name__)
trace = logging.getLogger("colonynode.trace")
# COLONYNODE_TRACE=1: one line a driver turn (what came in, the writes and their commit,
# what went out, the answers), stamped with the machine's monotonic clock so the lines of
# several daemons on one machine sort into one timeline (docs/performance.md).
TRACE = os.environ.get("COLONYNODE_TRACE", "") not in ("", "0")

INBOX_FRAMES_MAX = 4096  # received batches waiting for the core; more are dropped, counted
TURN_FRAMES_MAX = 512  # batches stepped in one turn before effects are flushed
ANSWER_S = 90.0  # longer than any deadline of the core's own: it always answers first
AWAITERS_MAX = 100_000
NOTICES = (Dial, Disconnect, Silenced, RunStopped)  # what NodeCore asks the daemon to do
DEFER_S = 0.05  # the longest lazy writes wait for a batch that commits them
DRAIN_S = 0.002  # an inline commit waits at most this long for its early frames to leave
EARLY_SENDS_MAX = 8  # a batch of more sends waits for its commit whole (one frame a peer)
DEFERRED_WRITES_MAX = 4096  # ... or this many


class NoAnswer(ColonyError):
    """The core did not answer in time (it always should: a bug, or an overload)."""


class CoreDriver:
    def __init__(
        self,
        core: ProtocolCore,
        channels: str | Sequence[str],
        transport: Transport,
        writer: StoreWriter,
        *,
        channel_of: Callable[[Any], str] | None = None,
        on_events: Callable[[list[Any]], None] | None = None,
        early: Callable[[list[tuple[NodeId, Any]]], list[tuple[NodeId, Any]]] | None = None,
        sync: bool = True,
    ) -> None:
        self.core = core
        names = [channels] if isinstance(channels, str) else list(channels)
        only = names[0]
        self.channel_of = channel_of or (lambda msg: only)
        self.transport = transport
        self.writer = writer
        self.on_events = on_events
        self.early = early  # the sends of a batch that may leave before its commit
        # the transport's wait for queued frames to be written (the daemon's P2PTransport)
        self._drain = getattr(transport, "drain", None)
        self.sync = sync
        self.counters: Counter[str] = Counter()
        send, recv = trio.open_memory_channel[tuple[NodeId, Sequence[Any]]](INBOX_FRAMES_MAX)
        self._inbox_send, self._inbox = send, recv
        self._wakeup = trio.Event()  # set by deliver() and kick()
        self._wake_at_s: float | None = None
        self._taken = 0  # effects taken from the core so far (turns begun)
        self._durable = 0  # turns whose writes are durable
        self._durable_changed = trio.Event()
        self._came: list[str] = []  # what the turn took in (COLONYNODE_TRACE)
        self._deferred: list[Write] = []  # lazy writes not committed yet, in order
        self._deferred_until_s: float | None = None
        for name in names:
            transport.set_receiver(name, self.deliver)

    def deliver(self, sender: NodeId, channel: str, msgs: Sequence[Any]) -> None:
        """The transport's receiver: queue a frame's batch for the core (never blocks)."""
        try:
            self._inbox_send.send_nowait((sender, msgs))
        except trio.WouldBlock:
            self.counters["inbox_dropped"] += 1
            return
        self._wakeup.set()

    def kick(self) -> None:
        """Take the core's effects on the next turn (after an application call)."""
        self._wakeup.set()

    async def persisted(self) -> None:
        """Kick, and return once the writes of every application call made before this
        one are durable (the next turn takes them)."""
        target = self._taken + 1
        self.kick()
        while self._durable < target:
            await self._durable_changed.wait()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.core.on_tick(trio.current_time())
        await self._flush()
        task_status.started()
        while True:
            await self._wait()
            now_s = trio.current_time()
            stepped = 0
            came: list[str] = []
            while stepped < TURN_FRAMES_MAX:
                try:
                    sender, msgs = self._inbox.receive_nowait()
                except trio.WouldBlock:
                    break
                for msg in msgs:
                    self.core.on_message(now_s, sender, msg)
                if TRACE:
                    came.append(f"{bytes(sender)[:2].hex()}:{_kinds(msgs)}")
                stepped += 1
            if TRACE:
                self._came = came
            if self._wake_at_s is not None and now_s >= self._wake_at_s:
                self._wake_at_s = None
                self.core.on_tick(now_s)
            await self._flush()
            if self._deferred_until_s is not None and trio.current_time() >= self._deferred_until_s:
                await self._commit([], sync=False)

    async def _wait(self) -> None:
        """Until a batch arrives, the core is kicked, or its timer is due."""
        pending = self._inbox.statistics().current_buffer_used
        if not pending and not self._wakeup.is_set():
            deadline = self._wake_at_s if self._wake_at_s is not None else trio.current_time() + 60
            if self._deferred_until_s is not None:
                deadline = min(deadline, self._deferred_until_s)
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
        self._wakeup = trio.Event()

    async def _flush(self) -> None:
        t0 = time.monotonic() if TRACE else 0.0
        effects: Effects = self.core.take_effects()
        self._taken += 1
        turn = self._taken
        self.counters["turns"] += 1
        t1 = time.monotonic() if TRACE else 0.0
        writes = effects.writes
        level = effects.durability if writes else LAZY
        answered = False
        if level == LAZY:
            if writes:
                self._defer(writes)
        else:
            if level == BEFORE_SENDS and effects.events and self.on_events is not None:
                self.on_events(effects.events)  # its answers need none of its writes
                answered = True
            sends = effects.sends
            early = []  # a busy node's frames carry more when requests wait for its commit
            if self.early is not None and 0 < len(sends) <= EARLY_SENDS_MAX:
                early = self.early(sends)
            if early:  # requests that need none of them: the voters start at once
                self._send(early)
                gone = {id(msg) for _, msg in early}
                effects.sends = [(to, m) for to, m in sends if id(m) not in gone]
                if not self.writer.off_loop and self._drain is not None:  # out before it blocks
                    await self._drain({to for to, _ in early}, DRAIN_S)
            await self._commit(writes, sync=self.sync)  # persist before send
        if TRACE:
            self._trace(t0, t1, effects, level)
        self._durable = turn
        self._durable_changed.set()
        self._durable_changed = trio.Event()
        if effects.sends:
            self._send(effects.sends)
        if effects.events and self.on_events is not None and not answered:
            self.on_events(effects.events)
        if effects.wake_at_s is not None:
            self._wake_at_s = effects.wake_at_s

    def _send(self, sends: list[tuple[NodeId, Any]]) -> None:
        """One frame a peer and channel (the lease channel's first)."""
        batches: defaultdict[tuple[NodeId, str], list[Any]] = defaultdict(list)
        for dest, msg in sends:
            batches[(dest, self.channel_of(msg))].append(msg)
        for (dest, channel), msgs in sorted(batches.items(), key=_lease_first):
            if not self.transport.send(dest, channel, msgs):
                self.counters["sends_dropped"] += 1

    def _defer(self, writes: list[Write]) -> None:
        self._deferred.extend(writes)
        self.counters["writes_deferred"] += len(writes)
        if self._deferred_until_s is None:
            self._deferred_until_s = trio.current_time() + DEFER_S
        if len(self._deferred) >= DEFERRED_WRITES_MAX:
            self._deferred_until_s = trio.current_time()  # committed at the end of this turn

    async def _commit(self, writes: list[Write], *, sync: bool) -> None:
        """One transaction: the deferred writes, then `writes` (the store stays a prefix
        of the batches)."""
        if self._deferred:
            writes = self._deferred + writes
            self._deferred = []
        self._deferred_until_s = None
        if writes:
            await self.writer.apply(writes, sync=sync)
            self.counters["writes"] += len(writes)

    async def close(self) -> None:
        """Commit what waits (a clean shutdown)."""
        await self._commit([], sync=self.sync)

    def _trace(self, t0: float, t1: float, effects: Effects, level: int) -> None:
        sends: defaultdict[str, list[Any]] = defaultdict(list)
        for dest, msg in effects.sends:
            sends[bytes(dest)[:2].hex()].append(msg)
        answers = sum(1 for e in effects.events if type(e).__name__ == "Answer")
        trace.info(
            "turn %.3f in=[%s] effects=%.2fms writes=%d/%s commit=%.2fms out=[%s] answers=%d",
            t0 * 1000, " ".join(getattr(self, "_came", ())), (t1 - t0) * 1000,
            len(effects.writes), ["lazy", "sends", "all"][level], (time.monotonic() - t1) * 1000,
            " ".join(f"{d}:{_kinds(m)}" for d, m in sends.items()), answers,
        )  # fmt: skip
        self._came = []


def _lease_first(batch: tuple[tuple[NodeId, str], list[Any]]) -> bool:
    """Frames of the lease channel go out first: a voter that gets a request and a
    gossip record at once answers the request first (the record is no one's wait)."""
    return batch[0][1] != "lease"


def _kinds(msgs: Sequence[Any]) -> str:
    names = Counter(type(m).__name__ for m in msgs)
    return ",".join(f"{k}{'x' + str(n) if n > 1 else ''}" for k, n in names.items())


class NodeDriver(CoreDriver):
    """Runs NodeCore over the libp2p transport and LMDB; answers `call`s."""

    def __init__(
        self,
        core: NodeCore,
        transport: Transport,
        writer: StoreWriter,
        *,
        on_notice: Callable[[Any], None],
    ) -> None:
        self.node = core
        self.on_notice = on_notice
        self._awaiters: dict[int, tuple[trio.Event, list[Answer]]] = {}
        super().__init__(
            core,
            sorted(set(CHANNELS.values())),
            transport,
            writer,
            channel_of=channel_of,
            on_events=self._events,
            early=core.early_sends,
        )

    def _events(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, Answer):
                if TRACE:
                    trace.info("answer %.3f #%d", time.monotonic() * 1000, event.req)
                waiter = self._awaiters.pop(event.req, None)
                if waiter is not None:
                    waiter[1].append(event)
                    waiter[0].set()
            elif isinstance(event, NOTICES):
                self.on_notice(event)

    async def call(self, req: Any, timeout_s: float = ANSWER_S) -> Any:
        """Ask NodeCore; its answer's value, or the error it answered with."""
        if len(self._awaiters) >= AWAITERS_MAX:
            raise ColonyError("too many requests in flight on this node; try again")
        event, box = trio.Event(), list[Answer]()
        rid = self.node.request(trio.current_time(), req)
        if TRACE:
            trace.info("call %.3f %s #%d", time.monotonic() * 1000, type(req).__name__, rid)
        self._awaiters[rid] = (event, box)
        self.kick()
        try:
            with trio.move_on_after(timeout_s):
                await event.wait()
        finally:
            if not box:  # cancelled, or no answer in time: the core forgets it
                self._awaiters.pop(rid, None)
                self.node.forget(trio.current_time(), rid)
                self.kick()
        if not box:
            raise NoAnswer(f"no answer to {type(req).__name__} in {timeout_s:.0f} s")
        answer = box[0]
        if answer.error is not None:
            raise answer.error
        return answer.value

    async def call_many(self, reqs: Sequence[Any], timeout_s: float = ANSWER_S) -> list[Any]:
        """Ask NodeCore several things in one turn (one group commit, one frame a peer);
        each answer's value, or the error it answered with, in order."""
        if len(self._awaiters) + len(reqs) > AWAITERS_MAX:
            raise ColonyError("too many requests in flight on this node; try again")
        out: list[Any] = [None] * len(reqs)

        async def one(i: int, req: Any) -> None:
            try:
                out[i] = await self.call(req, timeout_s)
            except ColonyError as exc:
                out[i] = exc

        async with trio.open_nursery() as nursery:
            for i, req in enumerate(reqs):  # every request is made before the turn runs
                nursery.start_soon(one, i, req)
        return out

    def set_connected(self, peers: Sequence[NodeId]) -> None:
        self.node.set_connected(trio.current_time(), peers)
        self.kick()
