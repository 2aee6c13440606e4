"""The simulated network: links with latency, loss, duplication, reordering, bandwidth,
clogs and partitions, and a per-node view of it that implements `core.transport.Transport`.

A *frame* is one batch of messages from one node to another on a channel, as a driver
sends it (DESIGN.md §4: the driver coalesces what is ready for a peer into one frame).
Every fault applies to whole frames, as it would to a frame on a libp2p stream.

Link model, per directed link (src → dst), created the first time it carries a frame:

- latency = the link's base latency (uniform in [latency_min_s, latency_max_s], fixed for
  the link) + an exponential jitter of mean jitter_mean_s, drawn per frame;
- FIFO by default (a stream): a frame is never delivered before the one sent before it
  on the same link. With probability reorder_p a frame leaves the stream order and takes
  an extra uniform delay in [0, reorder_window_s], so later frames can overtake it;
- loss_p drops a frame; dup_p delivers a second copy with its own latency;
- bandwidth_bytes_per_s (None = unlimited) serialises frames on the link: a frame of
  b bytes occupies it b / bandwidth seconds after the previous one finishes;
- a clog (of a link, or of every link of a node) holds frames in the link's queue until
  it lifts, then sends them in order: it delays, it never drops. Lifting every clog (the
  liveness phase's heal) releases the held frames at once;
- a partition gives every node a group label; a link between different labels is cut:
  frames are dropped when sent, and frames in flight are dropped when they arrive;
- links between two *clean* nodes (the liveness phase's healed majority) have no loss,
  duplication, reordering or clogs.

Limits: at most link_frames_max frames in flight per link; beyond it `send` says False.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from colonynode.core.ids import NodeId
from colonynode.core.transport import Receiver, Transport
from colonynode.simulations.engine import DELIVER, INTERNAL, EventQueue

__all__ = [
    "Frame",
    "Link",
    "LinkModel",
    "NetworkStats",
    "SimNetwork",
    "SimTransport",
    "default_size_of",
    "random_links",
]

# A frame in flight: (source index, channel, messages).
Frame = tuple[int, str, Sequence[Any]]

MESSAGE_BYTES_DEFAULT = 64


def default_size_of(msg: Any) -> int:
    """The size estimate of one message when a scenario gives none: a constant."""
    return MESSAGE_BYTES_DEFAULT


@dataclass(frozen=True, slots=True)
class LinkModel:
    latency_min_s: float = 0.001
    latency_max_s: float = 0.005
    jitter_mean_s: float = 0.0005
    loss_p: float = 0.0
    dup_p: float = 0.0
    reorder_p: float = 0.0
    reorder_window_s: float = 0.05
    bandwidth_bytes_per_s: float | None = None
    frame_overhead_bytes: int = 32
    link_frames_max: int = 4096

    def __post_init__(self) -> None:
        if not 0 <= self.latency_min_s <= self.latency_max_s:
            raise ValueError("latency needs 0 <= latency_min_s <= latency_max_s")
        for p in (self.loss_p, self.dup_p, self.reorder_p):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"a probability is in [0, 1], got {p}")
        if self.bandwidth_bytes_per_s is not None and self.bandwidth_bytes_per_s <= 0:
            raise ValueError("bandwidth is positive (or None for unlimited)")

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Link:
    """The state of one directed link."""

    __slots__ = ("base_s", "busy_until_s", "clog_until_s", "held", "inflight", "last_at_s")

    def __init__(self, base_s: float) -> None:
        self.base_s = base_s
        self.last_at_s = 0.0  # delivery time of the latest in-order frame (FIFO)
        self.busy_until_s = 0.0  # when the link finishes serialising its last frame
        self.clog_until_s = 0.0
        self.held: list[Frame] = []  # frames a clog holds, in send order
        self.inflight = 0  # frames held or on the wire


class NetworkStats:
    """Counters of what the network did to frames (all of them end up in the metrics)."""

    __slots__ = (
        "bytes_sent",
        "clogged",
        "delivered",
        "dropped_cut",
        "dropped_full",
        "dropped_loss",
        "dropped_no_receiver",
        "duplicated",
        "messages_sent",
        "reordered",
        "sent",
    )

    def __init__(self) -> None:
        self.sent = 0  # frames handed to the network
        self.messages_sent = 0
        self.bytes_sent = 0  # counted only when bandwidth is modelled
        self.delivered = 0  # frames handed to a receiver
        self.dropped_loss = 0
        self.dropped_cut = 0  # by a partition, when sent or when arriving
        self.dropped_full = 0  # link queue over link_frames_max
        self.dropped_no_receiver = 0
        self.duplicated = 0
        self.reordered = 0
        self.clogged = 0  # frames held by a clog

    def to_json(self) -> dict[str, int]:
        return {f"net_{name}": int(getattr(self, name)) for name in self.__slots__}


class SimNetwork:
    """All links of a simulated colony, on the world's event queue."""

    def __init__(
        self,
        queue: EventQueue,
        ids: Sequence[NodeId],
        model: LinkModel,
        rng: random.Random,
        size_of: Callable[[Any], int] = default_size_of,
    ) -> None:
        self.queue = queue
        self.ids: list[NodeId] = list(ids)
        self.index_of: dict[NodeId, int] = {nid: i for i, nid in enumerate(self.ids)}
        if len(self.index_of) != len(self.ids):
            raise ValueError("node ids are not unique")
        self.model = model
        self.rng = rng
        self.size_of = size_of
        n = len(self.ids)
        self.n = n
        self.labels: list[int] = [0] * n  # partition group of each node
        self.partitioned = False
        self.up = bytearray(b"\x01" * n)  # hosts that run (peers() lists only these)
        self.clean = bytearray(n)  # 1: the node is in the healed core (no link faults)
        self.node_clog_until_s: list[float] = [0.0] * n
        self.links: dict[int, Link] = {}
        self._holding: dict[int, None] = {}  # keys of links whose clog holds frames
        self.stats = NetworkStats()
        self.views = [SimTransport(self, i) for i in range(n)]
        # The frame being delivered by the current step: (src, dst, channel, msgs).
        self.delivering: tuple[int, int, str, Sequence[Any]] | None = None

    # -- topology faults ---------------------------------------------------------------

    def cut(self, src: int, dst: int) -> bool:
        """True while a partition separates src from dst."""
        return self.labels[src] != self.labels[dst]

    def partition(self, labels: Sequence[int]) -> None:
        """Give each node a group label; only nodes with equal labels reach each other."""
        if len(labels) != self.n:
            raise ValueError(f"a partition labels all {self.n} nodes, got {len(labels)}")
        self.labels = list(labels)
        self.partitioned = len(set(self.labels)) > 1

    def heal(self) -> None:
        """Remove every partition."""
        self.labels = [0] * self.n
        self.partitioned = False

    def link(self, src: int, dst: int) -> Link:
        key = src * self.n + dst
        link = self.links.get(key)
        if link is None:
            m = self.model
            link = Link(self.rng.uniform(m.latency_min_s, m.latency_max_s))
            self.links[key] = link
        return link

    def clog_link(self, src: int, dst: int, until_s: float) -> None:
        """Hold frames on src → dst until `until_s` (they are delayed, not dropped)."""
        link = self.link(src, dst)
        link.clog_until_s = max(link.clog_until_s, until_s)

    def clog_node(self, node: int, until_s: float) -> None:
        """Hold every frame to or from `node` until `until_s`."""
        self.node_clog_until_s[node] = max(self.node_clog_until_s[node], until_s)

    def clogged_until_s(self, src: int, dst: int, link: Link) -> float:
        if self.clean[src] and self.clean[dst]:
            return 0.0
        return max(link.clog_until_s, self.node_clog_until_s[src], self.node_clog_until_s[dst])

    def unclog_all(self) -> None:
        """Lift every clog and send what the clogs held, now."""
        for link in self.links.values():
            link.clog_until_s = 0.0
        self.node_clog_until_s = [0.0] * self.n
        holding, self._holding = self._holding, {}
        for key in holding:
            self._release(key)

    def set_clean(self, nodes: Collection[int]) -> None:
        """Links among `nodes` lose their loss, duplication, reordering and clogs."""
        self.clean = bytearray(self.n)
        for i in nodes:
            self.clean[i] = 1

    def view(self, index: int) -> SimTransport:
        return self.views[index]

    # -- the data path -----------------------------------------------------------------

    def send(self, src: int, dst: int, channel: str, msgs: Sequence[Any]) -> bool:
        """Put one frame on the link src → dst. False when the link's queue is full."""
        stats = self.stats
        model = self.model
        link = self.link(src, dst)
        if link.inflight >= model.link_frames_max:
            stats.dropped_full += 1
            return False
        stats.sent += 1
        stats.messages_sent += len(msgs)
        if self.labels[src] != self.labels[dst]:
            stats.dropped_cut += 1
            return True  # the sender cannot tell a cut link from a slow one
        faulty = not (self.clean[src] and self.clean[dst])
        if faulty and model.loss_p and self.rng.random() < model.loss_p:
            stats.dropped_loss += 1
            return True
        frame: Frame = (src, channel, msgs)
        link.inflight += 1
        if faulty:
            until_s = self.clogged_until_s(src, dst, link)
            if until_s > self.queue.now_s:
                stats.clogged += 1
                if not link.held:
                    key = src * self.n + dst
                    self._holding[key] = None
                    self.queue.push(until_s, INTERNAL, _Release(self, key))
                link.held.append(frame)
                return True
        self._transmit(link, src, dst, frame, faulty)
        return True

    def _release(self, key: int) -> None:
        """Send what a clog held on link `key`, unless the clog was extended."""
        link = self.links[key]
        if not link.held:
            return
        src, dst = divmod(key, self.n)
        until_s = self.clogged_until_s(src, dst, link)
        if until_s > self.queue.now_s:
            self.queue.push(until_s, INTERNAL, _Release(self, key))
            return
        self._holding.pop(key, None)
        held, link.held = link.held, []
        faulty = not (self.clean[src] and self.clean[dst])
        for frame in held:
            self._transmit(link, src, dst, frame, faulty)

    def _transmit(self, link: Link, src: int, dst: int, frame: Frame, faulty: bool) -> None:
        """Serialise, delay, maybe reorder or duplicate, and schedule the arrival."""
        stats = self.stats
        model = self.model
        rng = self.rng
        depart_s = self.queue.now_s
        bandwidth = model.bandwidth_bytes_per_s
        if bandwidth is not None:
            size = model.frame_overhead_bytes + sum(self.size_of(m) for m in frame[2])
            stats.bytes_sent += size
            if link.busy_until_s > depart_s:
                depart_s = link.busy_until_s
            depart_s += size / bandwidth
            link.busy_until_s = depart_s
        at_s = depart_s + link.base_s
        if model.jitter_mean_s:
            at_s += rng.expovariate(1.0 / model.jitter_mean_s)
        if faulty and model.reorder_p and rng.random() < model.reorder_p:
            stats.reordered += 1
            at_s += rng.uniform(0.0, model.reorder_window_s)
        else:
            if at_s < link.last_at_s:
                at_s = link.last_at_s
            link.last_at_s = at_s
        self.queue.push(at_s, DELIVER, dst, frame)
        if faulty and model.dup_p and rng.random() < model.dup_p:
            stats.duplicated += 1
            dup_at_s = depart_s + link.base_s
            if model.jitter_mean_s:
                dup_at_s += rng.expovariate(1.0 / model.jitter_mean_s)
            link.inflight += 1
            self.queue.push(dup_at_s, DELIVER, dst, frame)

    def deliver(self, dst: int, frame: Frame) -> None:
        """A frame arrives (the world loop calls this for a DELIVER event)."""
        link = self.links[frame[0] * self.n + dst]
        link.inflight -= 1
        self.redeliver(dst, frame)

    def redeliver(self, dst: int, frame: Frame) -> None:
        """Hand a frame that reached `dst` to its receiver, unless a partition cut it.

        Also used for frames a paused node buffered: a partition that started while it
        was frozen drops them, as a reset connection drops what the kernel had buffered.
        """
        src, channel, msgs = frame
        if self.labels[src] != self.labels[dst]:
            self.stats.dropped_cut += 1
            return
        receiver = self.views[dst].receivers.get(channel)
        if receiver is None:
            self.stats.dropped_no_receiver += 1
            return
        self.stats.delivered += 1
        self.delivering = (src, dst, channel, msgs)
        receiver(self.ids[src], channel, msgs)


class _Release:
    """The event that ends a clog's hold on one link (book-keeping, not a step)."""

    __slots__ = ("key", "network")

    def __init__(self, network: SimNetwork, key: int) -> None:
        self.network = network
        self.key = key

    def __call__(self, world: Any) -> None:
        self.network._release(self.key)


class SimTransport:
    """One node's view of the shared network: a `core.transport.Transport`."""

    __slots__ = ("_index", "_network", "receivers")

    def __init__(self, network: SimNetwork, index: int) -> None:
        self._network = network
        self._index = index
        self.receivers: dict[str, Receiver] = {}

    @property
    def local_id(self) -> NodeId:
        return self._network.ids[self._index]

    def set_receiver(self, channel: str, receiver: Receiver) -> None:
        self.receivers[channel] = receiver

    def send(self, dest: NodeId, channel: str, msgs: Sequence[Any]) -> bool:
        dst = self._network.index_of.get(dest)
        if dst is None or dst == self._index:
            return False
        return self._network.send(self._index, dst, channel, msgs)

    def peers(self) -> list[NodeId]:
        """Nodes that run and that no partition separates from this one (index order)."""
        net = self._network
        me = self._index
        label = net.labels[me]
        return [
            nid for j, nid in enumerate(net.ids) if j != me and net.up[j] and net.labels[j] == label
        ]


if TYPE_CHECKING:

    def _is_a_transport(view: SimTransport) -> Transport:
        return view  # mypy checks that SimTransport implements the Transport protocol


def random_links(rng: random.Random, n: int, degree: int) -> list[list[int]]:
    """A symmetric random graph: node i links to `degree // 2` others drawn by `rng`,
    and every link goes both ways (about `degree` links a node). Sorted neighbour lists."""
    links: list[dict[int, None]] = [{} for _ in range(n)]
    for i in range(n):
        for j in rng.sample(range(n - 1), min(n - 1, degree // 2)):
            j = j + 1 if j >= i else j
            links[i][j] = None
            links[j][i] = None
    return [sorted(x) for x in links]
