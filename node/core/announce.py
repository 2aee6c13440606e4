"""A node's announcements of its processes' changes (part of NodeCore, DESIGN.md §7):
the processes it granted (RUNNING), gave back (released) and closed.

Each is in this node's view at once. They go out in one gossip record per kind a step
(`{"processes": [item, ...]}`, up to ANNOUNCE_ITEMS_MAX items or about
ANNOUNCE_BYTES_MAX bytes), so a busy node signs, and its peers verify, one record for
many processes. A RUNNING announcement waits RUNNING_DELAY_S first: a run that is closed
(or given back) by then is announced closed (or not at all), one record instead of two,
and the voters take a close without a record ahead of it in the same frame queue. The
delay is below the claim stagger's step (`core.scheduling.STAGGER_STEP_S`): the nodes
that would claim the process next hear it runs before their turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from colonynode.core.scheduling import STAGGER_STEP_S
from colonynode.gossip import GossipCore
from colonynode.node.core.processes import (
    ANNOUNCE_BYTES_MAX,
    ANNOUNCE_ITEMS_MAX,
    ANNOUNCED_KINDS,
    CLOSED_KIND,
    RELEASED_KIND,
    RUNNING_KIND,
    ProcessBook,
)

__all__ = ["RUNNING_DELAY_S", "Announcements"]

RUNNING_DELAY_S = 0.01
assert RUNNING_DELAY_S <= STAGGER_STEP_S / 2


class AnnounceHost(Protocol):
    @property
    def now_s(self) -> float: ...

    @property
    def node_id(self) -> Any: ...

    def at(self, at_s: float, fn: Callable[[float], None]) -> None: ...


class Announcements:
    def __init__(
        self, host: AnnounceHost, book: ProcessBook, gossip: GossipCore, dirty: Callable[[], None]
    ) -> None:
        self.host = host
        self.book = book
        self.gossip = gossip
        self.dirty = dirty  # the gossip core has something to send
        self._now: dict[str, list[dict[str, Any]]] = {}  # to publish at the end of the step
        self._running: dict[str, tuple[float, dict[str, Any]]] = {}  # pid -> (due, item)
        self._timer_s: float | None = None
        self.counters = {"running_unannounced": 0}  # runs that closed before their RUNNING

    def add(self, kind: str, item: dict[str, Any]) -> None:
        """A process's change for every member: in this node's view at once."""
        assert kind in ANNOUNCED_KINDS
        host = self.host
        self.book.on_record(host.node_id, kind, item, host.now_s)
        pid = item["processid"]
        if kind == RUNNING_KIND:
            self._running[pid] = (host.now_s + RUNNING_DELAY_S, item)
            if self._timer_s is None:
                self._timer_s = host.now_s + RUNNING_DELAY_S
                host.at(self._timer_s, self._due)
            return
        if self._running.pop(pid, None) is not None:
            self.counters["running_unannounced"] += 1
            if kind == RELEASED_KIND:
                return  # nobody heard it ran: nobody needs to hear it waits again
        assert kind in (CLOSED_KIND, RELEASED_KIND)
        self._now.setdefault(kind, []).append(item)

    def _due(self, now_s: float) -> None:
        self._timer_s = None
        due = [pid for pid, (at_s, _) in self._running.items() if at_s <= now_s]
        items = self._now.setdefault(RUNNING_KIND, [])
        for pid in due:
            items.append(self._running.pop(pid)[1])
        if self._running:
            self._timer_s = min(at_s for at_s, _ in self._running.values())
            self.host.at(self._timer_s, self._due)

    def publish(self) -> None:
        """Sign this step's announcements, one record a kind (more when they are many)."""
        if not self._now:
            return
        pending, self._now = self._now, {}
        now_s = self.host.now_s
        for kind in ANNOUNCED_KINDS:  # released, then running, then closed
            chunk: list[dict[str, Any]] = []
            size = 0
            for item in pending.get(kind, ()):
                item_bytes = _rough_bytes(item)
                if chunk and (len(chunk) >= ANNOUNCE_ITEMS_MAX
                              or size + item_bytes > ANNOUNCE_BYTES_MAX):  # fmt: skip
                    self.gossip.publish(now_s, kind, {"processes": chunk})
                    chunk, size = [], 0
                chunk.append(item)
                size += item_bytes
            if chunk:
                self.gossip.publish(now_s, kind, {"processes": chunk})
        self.dirty()


def _rough_bytes(value: Any, depth: int = 0) -> int:
    """About how many bytes `value` takes encoded (strings and containers; deep or long
    containers counted as large, not walked)."""
    kind = type(value)
    if kind is str or kind is bytes:
        return len(value) + 3
    if kind is list or kind is tuple or kind is dict:
        if depth > 4 or len(value) > 256:
            return ANNOUNCE_BYTES_MAX
        items = value.items() if kind is dict else enumerate(value)
        return 2 + sum(_rough_bytes(k, depth + 1) + _rough_bytes(v, depth + 1) for k, v in items)
    return 9
