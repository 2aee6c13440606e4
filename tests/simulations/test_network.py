"""The simulated network's fault model (simulations/network.py), frame by frame."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest

from colonynode.core.ids import NodeId
from colonynode.simulations.engine import DELIVER, INTERNAL, EventQueue
from colonynode.simulations.network import LinkModel, SimNetwork

Arrival = tuple[float, int, int, list[Any]]  # (time, src, dst, msgs)

QUIET = LinkModel(latency_min_s=0.010, latency_max_s=0.010, jitter_mean_s=0.0)


def make_net(
    n: int, model: LinkModel = QUIET, seed: int = 1
) -> tuple[EventQueue, SimNetwork, list[Arrival]]:
    queue = EventQueue()
    ids = [NodeId(bytes([i + 1]) * 32) for i in range(n)]
    net = SimNetwork(queue, ids, model, random.Random(seed))
    got: list[Arrival] = []
    for i in range(n):

        def receiver(sender: NodeId, channel: str, msgs: Any, dst: int = i) -> None:
            got.append((queue.now_s, net.index_of[sender], dst, list(msgs)))

        net.view(i).set_receiver("c", receiver)
    return queue, net, got


def drain(queue: EventQueue, net: SimNetwork, until_s: float = math.inf) -> None:
    while queue.heap and queue.heap[0][0] <= until_s:
        _, _, kind, a, b = queue.pop()
        if kind == DELIVER:
            net.deliver(a, b)
        elif kind == INTERNAL:
            a(None)
    queue.now_s = max(queue.now_s, until_s) if until_s != math.inf else queue.now_s


def test_loss_rate_is_close_to_the_configured_one() -> None:
    queue, net, got = make_net(2, LinkModel(loss_p=0.1, link_frames_max=100_000))
    frames = 20_000
    for k in range(frames):
        net.send(0, 1, "c", [k])
    drain(queue, net)
    lost = frames - len(got)
    # binomial(20000, 0.1): sd = 42; 4 sd either side
    assert abs(lost - 2000) < 170
    assert net.stats.dropped_loss == lost


def test_duplication_delivers_copies() -> None:
    queue, net, got = make_net(2, LinkModel(dup_p=0.25, link_frames_max=100_000))
    for k in range(10_000):
        net.send(0, 1, "c", [k])
    drain(queue, net)
    extra = len(got) - 10_000
    assert abs(extra - 2500) < 200  # sd = 43
    assert net.stats.duplicated == extra
    assert {m[0] for _, _, _, m in got} == set(range(10_000))


def test_a_link_is_fifo_without_reordering_even_with_jitter() -> None:
    queue, net, got = make_net(2, LinkModel(jitter_mean_s=0.05))
    for k in range(500):
        net.send(0, 1, "c", [k])
        queue.now_s += 0.001
    drain(queue, net)
    assert [m[0] for _, _, _, m in got] == list(range(500))


def test_reordering_lets_later_frames_overtake() -> None:
    model = LinkModel(jitter_mean_s=0.0, reorder_p=0.2, reorder_window_s=0.05)
    queue, net, got = make_net(2, model)
    for k in range(500):
        net.send(0, 1, "c", [k])
        queue.now_s += 0.001
    drain(queue, net)
    order = [m[0] for _, _, _, m in got]
    assert sorted(order) == list(range(500))
    inversions = sum(1 for a, b in itertools.pairwise(order) if a > b)
    assert inversions > 20
    assert net.stats.reordered > 60


def test_partitions_block_exactly_the_cut_links() -> None:
    queue, net, got = make_net(6)
    labels = [0, 0, 1, 1, 2, 0]
    net.partition(labels)
    for src in range(6):
        for dst in range(6):
            if src != dst:
                net.send(src, dst, "c", [(src, dst)])
    drain(queue, net)
    delivered = {(s, d) for _, s, d, _ in got}
    expected = {(s, d) for s in range(6) for d in range(6) if s != d and labels[s] == labels[d]}
    assert delivered == expected
    assert net.stats.dropped_cut == 30 - len(expected)


def test_a_partition_drops_frames_already_in_flight_and_healing_restores_the_link() -> None:
    queue, net, got = make_net(2)
    net.send(0, 1, "c", ["in flight"])
    net.partition([0, 1])
    drain(queue, net)
    assert got == []
    net.heal()
    net.send(0, 1, "c", ["after heal"])
    drain(queue, net)
    assert [m for _, _, _, m in got] == [["after heal"]]


def test_a_clogged_link_delays_and_never_drops() -> None:
    queue, net, got = make_net(3)
    net.clog_link(0, 1, until_s=5.0)
    for k in range(10):
        net.send(0, 1, "c", [k])
        net.send(0, 2, "c", [k])  # another link: not clogged
    drain(queue, net)
    to_1 = [(t, m[0]) for t, _, d, m in got if d == 1]
    to_2 = [(t, m[0]) for t, _, d, m in got if d == 2]
    assert [m for _, m in to_1] == list(range(10))
    assert all(t >= 5.0 for t, _ in to_1)
    assert all(t == pytest.approx(0.010) for t, _ in to_2)
    assert net.stats.clogged == 10


def test_a_clogged_node_delays_its_links_and_unclog_releases_them_at_once() -> None:
    queue, net, got = make_net(3)
    net.clog_node(2, until_s=60.0)
    net.send(0, 2, "c", ["to"])
    net.send(2, 1, "c", ["from"])
    net.send(0, 1, "c", ["bystander"])
    drain(queue, net, until_s=1.0)
    assert [m for _, _, _, m in got] == [["bystander"]]
    net.unclog_all()
    drain(queue, net)
    assert sorted(m[0] for _, _, _, m in got) == ["bystander", "from", "to"]
    assert all(t < 1.1 for t, _, _, _ in got)


def test_bandwidth_serialises_frames_on_a_link() -> None:
    model = LinkModel(
        latency_min_s=0.0,
        latency_max_s=0.0,
        jitter_mean_s=0.0,
        bandwidth_bytes_per_s=1000.0,
        frame_overhead_bytes=36,
    )
    queue, net, got = make_net(2, model)
    for k in range(10):
        net.send(0, 1, "c", [k])  # 36 + 64 = 100 bytes: 0.1 s each at 1000 B/s
    drain(queue, net)
    times = [t for t, _, _, _ in got]
    assert times == pytest.approx([0.1 * (k + 1) for k in range(10)])
    assert net.stats.bytes_sent == 1000


def test_clean_links_have_no_loss_but_others_keep_it() -> None:
    queue, net, got = make_net(3, LinkModel(loss_p=1.0))
    net.set_clean([0, 1])
    net.send(0, 1, "c", ["clean"])
    net.send(0, 2, "c", ["lossy"])
    drain(queue, net)
    assert [m for _, _, _, m in got] == [["clean"]]


def test_a_full_link_refuses_frames() -> None:
    queue, net, _ = make_net(2, LinkModel(link_frames_max=3))
    assert [net.send(0, 1, "c", [k]) for k in range(5)] == [True, True, True, False, False]
    drain(queue, net)
    assert net.send(0, 1, "c", ["room again"])


def test_the_transport_view() -> None:
    queue, net, got = make_net(4)
    view = net.view(0)
    assert view.local_id == net.ids[0]
    assert view.send(net.ids[0], "c", ["to self"]) is False
    assert view.send(NodeId(b"\xff" * 32), "c", ["nobody"]) is False
    net.up[3] = 0
    net.partition([0, 0, 1, 0])
    assert view.peers() == [net.ids[1]]
    assert view.send(net.ids[1], "c", ["hi"]) is True
    drain(queue, net)
    assert got == [(pytest.approx(0.010), 0, 1, ["hi"])]
    assert net.stats.dropped_no_receiver == 0
    net.send(0, 1, "other-channel", ["x"])
    drain(queue, net)
    assert net.stats.dropped_no_receiver == 1


def test_the_same_seed_gives_the_same_arrivals() -> None:
    model = LinkModel(jitter_mean_s=0.01, loss_p=0.1, dup_p=0.1, reorder_p=0.1)
    runs = []
    for _ in range(2):
        queue, net, got = make_net(5, model, seed=42)
        for k in range(300):
            src, dst = k % 5, (k * 3 + 1) % 5
            if src != dst:
                net.send(src, dst, "c", [k])
            queue.now_s += 0.002
        drain(queue, net)
        runs.append(got)
    assert runs[0] == runs[1]
    assert len(runs[0]) > 100
