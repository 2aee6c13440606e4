"""The Trio driver of a sans-IO core (DESIGN.md §2, STYLE.md 2).

One task loops: receive -> step -> persist -> send -> answer. Everything that arrived
since the last turn is stepped in one go, the core's effects are taken once, their writes
are made durable in one batch (group commit, off the loop), and only then are the sends
handed to the transport, coalesced into one batch per peer and channel, and the events
handed on. The core's clock is `trio.current_time()`; its timer is `Effects.wake_at_s`.

`NodeDriver` runs NodeCore: `await call(req)` asks it something (`NodeCore.request`)
and returns the answer (one table from request id to awaiter for every kind of request),
raising the error it answered with; a caller that goes away (cancelled, or timed out)
is forgotten by the core. Its notices (`Dial`, `Disconnect`, `Silenced`) go to the
daemon's `on_notice`.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import trio

from colonynode.core.effects import Effects, ProtocolCore
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

INBOX_FRAMES_MAX = 4096  # received batches waiting for the core; more are dropped, counted
TURN_FRAMES_MAX = 512  # batches stepped in one turn before effects are flushed
ANSWER_S = 90.0  # longer than any deadline of the core's own: it always answers first
AWAITERS_MAX = 100_000
NOTICES = (Dial, Disconnect, Silenced, RunStopped)  # what NodeCore asks the daemon to do


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
        sync: bool = True,
    ) -> None:
        self.core = core
        names = [channels] if isinstance(channels, str) else list(channels)
        only = names[0]
        self.channel_of = channel_of or (lambda msg: only)
        self.transport = transport
        self.writer = writer
        self.on_events = on_events
        self.sync = sync
        self.counters: Counter[str] = Counter()
        send, recv = trio.open_memory_channel[tuple[NodeId, Sequence[Any]]](INBOX_FRAMES_MAX)
        self._inbox_send, self._inbox = send, recv
        self._wakeup = trio.Event()  # set by deliver() and kick()
        self._wake_at_s: float | None = None
        self._taken = 0  # effects taken from the core so far (turns begun)
        self._durable = 0  # turns whose writes are durable
        self._durable_changed = trio.Event()
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
            while stepped < TURN_FRAMES_MAX:
                try:
                    sender, msgs = self._inbox.receive_nowait()
                except trio.WouldBlock:
                    break
                for msg in msgs:
                    self.core.on_message(now_s, sender, msg)
                stepped += 1
            if self._wake_at_s is not None and now_s >= self._wake_at_s:
                self._wake_at_s = None
                self.core.on_tick(now_s)
            await self._flush()

    async def _wait(self) -> None:
        """Until a batch arrives, the core is kicked, or its timer is due."""
        pending = self._inbox.statistics().current_buffer_used
        if not pending and not self._wakeup.is_set():
            deadline = self._wake_at_s if self._wake_at_s is not None else trio.current_time() + 60
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
        self._wakeup = trio.Event()

    async def _flush(self) -> None:
        effects: Effects = self.core.take_effects()
        self._taken += 1
        turn = self._taken
        self.counters["turns"] += 1
        if effects.writes:
            await self.writer.apply(effects.writes, sync=self.sync)  # persist before send
            self.counters["writes"] += len(effects.writes)
        self._durable = turn
        self._durable_changed.set()
        self._durable_changed = trio.Event()
        if effects.sends:
            batches: defaultdict[tuple[NodeId, str], list[Any]] = defaultdict(list)
            for dest, msg in effects.sends:
                batches[(dest, self.channel_of(msg))].append(msg)
            for (dest, channel), msgs in batches.items():
                if not self.transport.send(dest, channel, msgs):
                    self.counters["sends_dropped"] += 1
        if effects.events and self.on_events is not None:
            self.on_events(effects.events)
        if effects.wake_at_s is not None:
            self._wake_at_s = effects.wake_at_s


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
        )

    def _events(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, Answer):
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
