"""LAN adverts (issue 19): what an mDNS advert may tell a node. It is a hint of a
member's addresses, each ending in the peer id it names; never an identity."""

from __future__ import annotations

import socket

from zeroconf import ServiceInfo

from colonynode.core.ids import peer_id_str
from colonynode.node.core import requests as rq
from colonynode.node.daemon.lan import SERVICE, advert_of
from tests.node.colony import Colony, identity


def info(peer: str, colony: str = "lab", port: int = 4001, ips: tuple[str, ...] = ("10.0.0.7",),
         **props: str) -> ServiceInfo:  # fmt: skip
    return ServiceInfo(SERVICE, f"{peer}.{SERVICE}", port=port,
                       addresses=[socket.inet_aton(ip) for ip in ips],
                       properties={"colony": colony, "peer": peer, **props})  # fmt: skip


def test_an_advert_names_multiaddrs_ending_in_its_peer_id() -> None:
    advert = advert_of(info("12D3KooWx", ips=("10.0.0.7", "127.0.0.1")))
    assert advert is not None and advert.colony == "lab"
    assert advert.addrs == ("/ip4/10.0.0.7/tcp/4001/p2p/12D3KooWx",
                            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWx")  # fmt: skip
    assert advert_of(ServiceInfo(SERVICE, f"x.{SERVICE}", port=1,
                                 addresses=[socket.inet_aton("10.0.0.1")])) is None  # fmt: skip


def test_a_member_s_advert_is_dialled_and_a_stranger_s_is_not() -> None:
    colony = Colony(4)
    member, stranger = identity(2), identity(9)
    good = f"/ip4/10.0.0.7/tcp/4001/p2p/{peer_id_str(member.node_id)}"
    assert colony.result(0, rq.LanPeer(member.node_id, (good,))) is True
    assert good in colony.core(0).membership.addrs[member.node_id]
    stranger_addr = f"/ip4/10.0.0.8/tcp/4001/p2p/{peer_id_str(stranger.node_id)}"
    assert colony.result(0, rq.LanPeer(stranger.node_id, (stranger_addr,))) is False
    assert stranger.node_id not in colony.core(0).membership.addrs
    # An address naming another peer id than the member's is no address of it.
    other = identity(3)
    wrong = f"/ip4/10.0.0.9/tcp/4001/p2p/{peer_id_str(member.node_id)}"
    assert colony.result(0, rq.LanPeer(other.node_id, (wrong,))) is False
    assert wrong not in colony.core(0).membership.addrs.get(other.node_id, ())
