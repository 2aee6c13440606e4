"""Mesh maintenance: GRAFT/PRUNE keep every node's mesh degree within D_low..D_high."""

from __future__ import annotations

from colonynode.gossip import GossipConfig, Graft, Prune
from tests.gossip.harness import Colony


def _degrees(colony: Colony) -> list[int]:
    return [len(core.mesh) for i, core in enumerate(colony.cores) if i not in colony.down]


def test_mesh_degree_stays_within_bounds_after_heartbeats() -> None:
    colony = Colony(40)
    cfg = colony.config
    for t in range(1, 11):
        colony.tick_all(float(t), step_s=0.25)
        assert all(cfg.d_low <= d <= cfg.d_high for d in _degrees(colony)), _degrees(colony)


def test_mesh_links_are_symmetric_once_settled() -> None:
    colony = Colony(30)
    colony.tick_all(5.0, step_s=0.25)
    for i, core in enumerate(colony.cores):
        for peer in core.mesh:
            assert colony.node_id(i) in colony.cores[colony.index[peer]].mesh


def test_mesh_refills_when_peers_disappear() -> None:
    colony = Colony(30)
    colony.tick_all(3.0, step_s=0.25)
    core = colony.cores[0]
    gone = list(core.mesh)[:4]
    for p in gone:
        colony.crash(colony.index[p])
    colony.set_all_peers()
    colony.tick_all(6.0, step_s=0.25)
    assert not set(gone) & set(core.mesh)
    assert colony.config.d_low <= len(core.mesh) <= colony.config.d_high


def test_a_full_mesh_prunes_an_extra_graft_with_a_backoff() -> None:
    colony = Colony(20, GossipConfig(d_low=2, d=3, d_high=4))
    colony.tick_all(1.0, step_s=0.25)
    core = colony.cores[0]
    outsiders = [colony.node_id(i) for i in range(1, 20) if colony.node_id(i) not in core.mesh]
    while len(core.mesh) < 4:
        core.on_message(colony.now_s, outsiders.pop(), Graft())
    core.take_effects()
    extra = outsiders.pop()
    core.on_message(colony.now_s, extra, Graft())
    effects = core.take_effects()
    assert (extra, Prune(colony.config.prune_backoff_s)) in effects.sends
    assert extra not in core.mesh and len(core.mesh) == 4


def test_a_pruned_peer_is_not_grafted_again_during_its_backoff() -> None:
    colony = Colony(8, GossipConfig(d_low=6, d=6, d_high=7))
    colony.tick_all(1.0, step_s=0.25)
    core = colony.cores[0]
    peer = next(iter(core.mesh))
    core.on_message(colony.now_s, peer, Prune(30.0))
    core.take_effects()
    assert peer not in core.mesh
    colony.tick_all(10.0, step_s=0.5)  # heartbeats try to refill: not with `peer`
    assert peer not in core.mesh
