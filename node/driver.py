"""The Trio driver of a sans-IO core (DESIGN.md §2, STYLE.md 2).

One task per core loops: receive -> step -> persist -> send. Everything that arrived
since the last turn is stepped in one go, the core's effects are taken once, their writes
are made durable in one batch (group commit, off the loop), and only then are the sends
handed to the transport, coalesced into one batch per peer. The core's clock is
`trio.current_time()`; its timer is `Effects.wake_at_s` (the earliest requested wake-up,
used up once it fires).

Application calls (publish, claim, ...) run on the core from any task of the same Trio
loop, then `kick()` the driver so their effects go out on its next turn, or `await
persisted()` to also wait until their writes are durable (a submission is on disk before
the user hears it was acknowledged).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import trio

from colonynode.core.effects import Effects, ProtocolCore
from colonynode.core.ids import NodeId
from colonynode.core.transport import Transport
from colonynode.storage._trio import StoreWriter

__all__ = ["INBOX_FRAMES_MAX", "CoreDriver"]

log = logging.getLogger(__name__)

INBOX_FRAMES_MAX = 4096  # received batches waiting for the core; more are dropped, counted
TURN_FRAMES_MAX = 512  # batches stepped in one turn before effects are flushed


class CoreDriver:
    def __init__(
        self,
        core: ProtocolCore,
        channel: str,
        transport: Transport,
        writer: StoreWriter,
        *,
        on_events: Callable[[list[Any]], None] | None = None,
        sync: bool = True,
    ) -> None:
        self.core = core
        self.channel = channel
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
        transport.set_receiver(channel, self.deliver)

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
            by_peer: defaultdict[NodeId, list[Any]] = defaultdict(list)
            for dest, msg in effects.sends:
                by_peer[dest].append(msg)
            for dest, msgs in by_peer.items():
                if not self.transport.send(dest, self.channel, msgs):
                    self.counters["sends_dropped"] += 1
        if effects.events and self.on_events is not None:
            self.on_events(effects.events)
        if effects.wake_at_s is not None:
            self._wake_at_s = effects.wake_at_s
