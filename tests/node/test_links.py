"""Links (node/core/colony.py) on stepped NodeCores: whom a node dials and looks up."""

from __future__ import annotations

from typing import Any

from colonynode.core.ids import peer_id_str
from colonynode.node.core.colony import REDIAL_S
from colonynode.node.core.messages import PeerAddrs
from colonynode.node.core.requests import Dial
from tests.node.colony import Colony


def test_a_member_whose_known_address_went_stale_is_found_again_through_the_dht() -> None:
    """Node 2 restarted on a new port: node 0 still knows the old address, so dialing it
    fails; node 0 looks node 2 up in the DHT (its signed /peer/ record, republished on
    start) and dials the new address. (Before, a member with any known address was
    never looked up: found by the chaos run, where restarted daemons stayed apart.)"""
    c = Colony(3, voters=3, dial=True)
    n2 = c.identities[2].node_id
    old = f"/ip4/10.0.0.12/tcp/4001/p2p/{peer_id_str(n2)}"
    new = f"/ip4/10.0.0.12/tcp/4999/p2p/{peer_id_str(n2)}"
    c.net.call(0, lambda core, now: core.membership.learn_addrs(n2, (old,)))
    c.net.call(2, lambda core, now: core.set_addrs(now, [new]))
    c.run_until(lambda: True, 2.0)
    peers = [c.identities[1].node_id]  # 0 lost its link to 2: only 1 is left
    c.net.call(0, lambda core, now: core.set_connected(now, peers))
    c.run_until(lambda: any(d.addr == new for d in c.net.events(0, Dial)), 3 * REDIAL_S)
    assert c.core(0).membership.addrs[n2][0] == new  # the newest first, then the old


def test_a_member_back_on_a_new_port_is_passed_on_at_once_by_whoever_it_reaches() -> None:
    """Node 2 comes back on a new port and reaches node 1 only; node 0 knows just its
    old address. Node 1 hears 2's address change in 2's Hello and passes its own Hello,
    with the new address as a hint, to node 0, which dials it at once (well before a
    redial round or a DHT lookup could find it)."""
    c = Colony(3, voters=3, dial=True)
    ids = [x.node_id for x in c.identities]
    old = f"/ip4/10.0.0.12/tcp/4001/p2p/{peer_id_str(ids[2])}"
    new = f"/ip4/10.0.0.12/tcp/4999/p2p/{peer_id_str(ids[2])}"
    c.net.call(2, lambda core, now: core.set_addrs(now, [old]))
    c.net.call(2, lambda core, now: core.links.hello_all())
    c.run_until(lambda: c.core(0).membership.addrs.get(ids[2]) == (old,), 1.0)
    for i, peers in ((0, [ids[1]]), (1, [ids[0]]), (2, [])):  # 2 goes down
        c.net.call(i, lambda core, now, peers=peers: core.set_connected(now, peers))
    c.net.call(2, lambda core, now: core.set_addrs(now, [new]))  # back on a new port
    c.net.call(2, lambda core, now: core.set_connected(now, [ids[1]]))
    c.net.call(1, lambda core, now: core.set_connected(now, [ids[0], ids[2]]))
    c.run_until(lambda: any(d.addr == new for d in c.net.events(0, Dial)), REDIAL_S / 5,
                drop=no_dht)  # fmt: skip
    assert c.core(0).membership.addrs[ids[2]][0] == new


def no_dht(src: int, dst: int, msg: Any) -> bool:
    """Lose every DHT message (so only the roster protocol can carry an address)."""
    return type(msg).__module__.startswith("colonynode.dht")


def test_a_hint_for_a_member_we_are_connected_to_or_naming_another_peer_is_ignored() -> None:
    c = Colony(3, voters=3, dial=True)
    ids = [x.node_id for x in c.identities]
    mine = f"/ip4/10.0.0.12/tcp/4001/p2p/{peer_id_str(ids[2])}"
    c.net.call(2, lambda core, now: core.set_addrs(now, [mine]))
    c.net.call(2, lambda core, now: core.links.hello_all())
    c.run_until(lambda: c.core(0).membership.addrs.get(ids[2]) == (mine,), 1.0)
    links = c.core(0).links
    elsewhere = f"/ip4/10.0.0.66/tcp/1/p2p/{peer_id_str(ids[2])}"
    assert links._take_hints((PeerAddrs(ids[2], (elsewhere,)),)) == []  # connected to 2
    c.net.call(0, lambda core, now: core.set_connected(now, [ids[1]]))
    not_its = f"/ip4/10.0.0.66/tcp/1/p2p/{peer_id_str(ids[1])}"
    assert links._take_hints((PeerAddrs(ids[2], (not_its,)),)) == []
    assert c.core(0).membership.addrs[ids[2]] == (mine,)
    assert links._take_hints((PeerAddrs(ids[2], (elsewhere,)),)) != []  # 2 unreached now


def test_a_node_that_is_no_voter_prunes_its_links_to_the_bound_and_a_voter_keeps_all() -> None:
    from colonynode.node.core.peerset import LINK_GRACE_S, LINKS_MAX
    from colonynode.node.core.requests import Disconnect

    colony = Colony(25, dial=True)  # every node was handed a link to every other
    ids = [x.node_id for x in colony.identities]
    assert colony.net.events(10, Disconnect) == []  # not within the grace
    colony.run_until(lambda: bool(colony.net.events(10, Disconnect)), LINK_GRACE_S + 10)
    closed = [e.peer for e in colony.net.events(10, Disconnect)]
    assert len(closed) == len(ids) - 1 - 3 - LINKS_MAX  # links to the others, to the bound
    wanted = colony.core(10).links.wanted(colony.net.t)
    assert not set(closed) & wanted and set(ids[:3]) <= wanted  # never a voter
    st = colony.core(10).links.status()
    assert st["pruned"] == len(closed) and st["voters"] == 3
    assert colony.net.events(0, Disconnect) == []  # a voter: every member reaches it


def test_a_roster_change_does_not_cut_short_the_link_of_a_node_that_is_joining() -> None:
    """Found with 30 daemons joining at once: the owner's node closed every link of a
    non-member whenever a roster changed, so a join under way when another was admitted
    lost its answer ("did not answer the join")."""
    from colonynode.node.core import requests as rq
    from colonynode.node.core.requests import Disconnect
    from colonynode.simulations.stepped import SteppedNet
    from tests.node.colony import identity, roster_of

    class WithStranger(Colony):
        def __init__(self) -> None:  # n5 holds no place in the roster: it is joining
            self.envelope = roster_of(5)
            self.identities = [identity(i) for i in range(6)]
            self.config = Colony(1).config
            self.net = SteppedNet([x.node_id for x in self.identities], self._make)
            self.net.tick_all()
            self.connect_all()

    colony = WithStranger()
    before = len(colony.net.events(0, Disconnect))  # (its Hello, as a member's, was refused)
    colony.result(0, rq.RemoveMember("n4"))
    cut = {e.peer for e in colony.net.events(0, Disconnect)[before:]}
    assert colony.identities[4].node_id in cut  # removed: its link goes
    assert colony.identities[5].node_id not in cut  # joining: its link stays
