"""Membership and links (part of NodeCore): the roster protocol, who is connected, whom
to dial, and the owner's roster changes (DESIGN.md §3, docs/decisions.md).

- Every roster comes the same way, whatever path brought it (a peer's Hello or
  RosterUpdate, the owner's gossip record, a join answer): `Membership.offer` takes it
  if it is a newer owner-signed one; then the voter set reaches the lease core
  (seal-then-serve), gossip and the DHT learn the members connected, and every
  connected member hears it (a non-member connection is closed).
- A roster that drops this node silences it: it stops talking and drops every
  connection (`Silenced`).
- Everyone who connects hears our roster in a `Hello` (a removed member learns it was
  removed); a peer's own addresses come in its Hello, the others' from their signed
  /peer/ records in the DHT and, as hints, in a Hello's `peers`: the addresses of the
  members its sender is connected to. A hint is taken only for a member we are not
  connected to and only if it names that member's peer id (the Noise handshake of the
  dial proves the identity; a wrong hint costs a failed dial, and the member's own Hello
  replaces it). A roster stream from a non-member is refused and counted.
- Dials: every `REDIAL_S`, or at once when an address or the roster changed, this node
  asks its driver to dial every member it wants (peerset.py: the voters, a random sample
  of members, the owner's candidates under voters auto; in small colonies every member)
  and is not connected to, the bootstrap addresses while connected to nobody, and looks
  up in the DHT every such member (each at most every `LOOKUP_EVERY_S`): one it knows no
  address for, and one whose known address may be stale (a member restarted on a new
  port). A node that is no voter closes links past LINKS_MAX to members it does not
  want. A node that hears a member's own addresses change (it restarted on a new port
  and reached us) sends its Hello, with the new hint, to every member it is connected
  to; and the restarted member hears
  everyone's current addresses in the Hellos of the peers it reaches. So restarted
  members find each other through anyone they both reach (the chaos run found
  restarted daemons on new ports that stayed apart for good).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from colonynode.consensus import requests as lrq
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId, peer_id_str
from colonynode.core.roster import ROSTER_DOMAIN
from colonynode.dht import DhtCore, PeerInfo, PeerRecord
from colonynode.gossip.events import Accepted
from colonynode.gossip.records import ENVELOPE_KIND, envelope_from_body, envelope_to_body
from colonynode.node.core.messages import ADDRS_MAX, Hello, PeerAddrs, RosterUpdate
from colonynode.node.core.peerset import CANDIDATES_MAX, LINK_GRACE_S, LINKS_MAX, PeerSet
from colonynode.node.core.processes import CLOSED_KIND
from colonynode.node.core.requests import Dial, Disconnect, Silenced
from colonynode.node.core.voters_auto import settings_of

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

__all__ = ["LOOKUP_EVERY_S", "REDIAL_S", "Links"]

REDIAL_S = 5.0
LOOKUP_EVERY_S = 10.0
FINDING_MAX = 4096  # members whose DHT lookup time is remembered
HINTS_MAX = 64  # members' addresses in one Hello
DIALS_PER_MEMBER = 3  # its first known addresses, tried in each round (the newest first)


class Links:
    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.membership = core.membership
        self.connected: frozenset[NodeId] = frozenset()
        self.members_connected: frozenset[NodeId] = frozenset()
        self.addrs: tuple[str, ...] = ()
        self.silenced = False
        self.was_member = self.membership.is_member(core.node_id)
        self.executor_members = 0
        self.executor_ids: tuple[bytes, ...] = ()  # members with the executor role, sorted
        self.found_addrs = 0
        self._finding: dict[NodeId, float] = {}  # member -> no DHT lookup before this time
        self._dial_at: float | None = None
        # (drawn from the node's rng only where it dials: the simulator links nodes itself,
        # and its seeds replay as before)
        seed = core.rng.getrandbits(64) if core.config.dial else 0
        self.peers = PeerSet(core.node_id, random.Random(seed))
        self._order: dict[NodeId, float] = {}  # connected peers -> since when (in order)
        self._closing: set[NodeId] = set()  # peers this node disconnects (pruned, removed)
        self.pruned = 0

    def start(self, now_s: float) -> None:
        if self.core.config.dial:
            self.dial_soon(now_s)

    # -- rosters --------------------------------------------------------------------------

    @property
    def removed(self) -> bool:
        """True once a roster we hold no longer names this node."""
        if self.membership.is_member(self.core.node_id):
            self.was_member = True
            return False
        return self.was_member

    def roster_changed(self) -> None:
        """Every roster change reaches the lease core (voter-set handovers), gossip and
        the DHT (who is a member), and the dialer."""
        roster = self.membership.roster
        if roster is None:
            return
        core = self.core
        ids = tuple(sorted(bytes(m.node_id) for m in roster.members if "executor" in m.roles))
        self.executor_members = len(ids)
        self.executor_ids = ids
        # Under the version that set these voters, which every node uses (a joiner that
        # took the roster's own version would name a set the voters do not serve), and
        # against the lease core's set, not the last roster's (a joiner's first roster
        # may be one that does not name it yet).
        voters, since = tuple(roster.voters), roster.voter_set_version()
        if voters != tuple(core.consensus.voters()) and since > core.consensus.version():
            core.lease(lrq.ChangeVoters(since, voters), _ignore)
        self._refresh_peers()
        core.vouches.roster_changed()
        for author, item in core.held_closes.release(roster.voter_sets(), core.counters):
            core.book.on_record(author, CLOSED_KIND, item, core.now_s)
        if core.config.dial and core._started:
            self.dial_soon(core.now_s)

    def take_roster(self, env: Envelope, via: NodeId | None) -> bool:
        """Offer a roster from any path; on a change, act on it. True if it changed."""
        writes = self.membership.offer(env)
        if not writes:
            return False
        self.core.write(writes)
        self.roster_changed()
        if not self.silence_if_removed():
            self.broadcast(skip=via)
        return True

    def silence_if_removed(self) -> bool:
        """Once a roster drops this node: stop talking, close every connection."""
        if not self.removed:
            return False
        if not self.silenced:
            self.silenced = True
            self.core.emit(Silenced())
        for peer in sorted(self.connected):
            self.core.emit(Disconnect(peer))
        return True

    def broadcast(self, skip: NodeId | None = None) -> None:
        env = self.membership.envelope
        roster = self.membership.roster
        assert env is not None and roster is not None, "a roster to broadcast"
        removed = {f.node_id for f in roster.former}
        for peer in sorted(self.connected):
            if peer == skip:
                continue
            if self.membership.is_member(peer):
                self.core.send(peer, RosterUpdate(env))
            elif peer in removed:  # removed from the colony: its connection is closed
                self.core.emit(Disconnect(peer))
            # (a stranger may be joining: the roster that admits another must not cut
            # its join short; its link lives NON_MEMBER_LINK_S unless it joins)

    def gossip_roster(self) -> None:
        """The owner's node also publishes each roster as a gossip record."""
        env = self.membership.envelope
        if env is not None:
            self.core.publish(ENVELOPE_KIND, envelope_to_body(env))

    def publish_change(self, writes: list[Any]) -> None:
        """The owner changed the roster: persist, then tell everyone."""
        self.core.write(writes)
        self.roster_changed()
        self.broadcast()
        self.gossip_roster()

    def on_record(self, event: Accepted) -> None:
        """A gossip record that is no process record: an owner's roster, maybe."""
        if event.kind != ENVELOPE_KIND or event.local:
            return
        try:
            env = envelope_from_body(event.body)
        except (ColonyError, ValueError):
            return
        if env.domain == ROSTER_DOMAIN:
            self.take_roster(env, via=None)

    def on_roster(self, sender: NodeId, msg: Any) -> None:
        """The roster protocol: a Hello (first on every connection) or a RosterUpdate."""
        m = self.membership
        writes = m.offer(msg.roster) or []
        changed = bool(writes)
        # A peer's own addresses, and its hints for the members we cannot reach.
        moved = False
        if isinstance(msg, Hello) and m.is_member(sender):
            before = m.addrs.get(sender)
            own = m.learn_addrs(sender, tuple(msg.addrs))
            moved = bool(own) and before is not None  # it restarted on a new address
            writes += own + self._take_hints(msg.peers)
        self.core.write(writes)  # persist before send
        if changed:
            self.roster_changed()
        if self.silence_if_removed():
            return
        if not m.is_member(sender):
            self.core.counters["refused_streams"] += 1
            self.core.emit(Disconnect(sender))
            return
        if changed:
            self.broadcast(skip=sender)
        elif writes and self.core.config.dial:
            self.dial_soon(self.core.now_s)
        if moved:  # the others may know only its old address: pass on the new one
            hello = self.hello()
            for peer in sorted(self.connected - {sender}):
                if hello is not None and m.is_member(peer):
                    self.core.send(peer, hello)

    # -- connections ------------------------------------------------------------------------

    def set_connected(self, peers: frozenset[NodeId]) -> None:
        new, gone = peers - self.connected, self.connected - peers
        self.connected = peers
        for nid in sorted(gone):
            self._order.pop(nid, None)
        self._order.update(dict.fromkeys(sorted(new), self.core.now_s))
        self.peers.lost(gone, self._closing)
        self._closing -= gone
        if self.silenced:  # a dial that was under way when we were removed
            for peer in sorted(new):
                self.core.emit(Disconnect(peer))
            return
        hello = self.hello()
        if hello is not None:
            for peer in sorted(new):
                self.core.send(peer, hello)
        self._refresh_peers()
        if new and self.core.config.dial:
            self._prune(self.core.now_s)
            self.core.at(self.core.now_s + LINK_GRACE_S, self._prune)  # its grace ends

    def hello_all(self) -> None:
        hello = self.hello()
        if hello is not None:
            for peer in sorted(self.connected):
                self.core.send(peer, hello)

    def hello(self) -> Hello | None:
        """Our roster, our addresses, and those of the members we are connected to."""
        m = self.membership
        if m.envelope is None:
            return None
        hints = [PeerAddrs(p, m.addrs[p][:ADDRS_MAX]) for p in sorted(self.connected)
                 if m.is_member(p) and m.addrs.get(p)]  # fmt: skip
        return Hello(m.envelope, self.addrs, tuple(hints[:HINTS_MAX]))

    def _take_hints(self, hints: tuple[PeerAddrs, ...]) -> list[Any]:
        """Addresses a member says others have: for members we cannot reach now."""
        m, writes = self.membership, []
        for hint in hints[:HINTS_MAX]:
            nid = hint.node_id
            if nid == self.core.node_id or nid in self.connected or not m.is_member(nid):
                continue
            suffix = f"/p2p/{peer_id_str(nid)}"
            addrs = tuple(a for a in hint.addrs if a.endswith(suffix))
            if addrs:
                writes += m.learn_addrs(nid, addrs, own=False)
        return writes

    def set_addrs(self, addrs: tuple[str, ...]) -> None:
        self.addrs = addrs
        if addrs:
            core = self.core
            core.dht.set_addrs(core.now_s, addrs)
            core.touch("dht")

    def _refresh_peers(self) -> None:
        """Tell gossip and the DHT which members we are connected to, when that changes."""
        m = self.membership
        members = frozenset(p for p in self.connected if m.is_member(p))
        if members == self.members_connected:
            return
        self.members_connected = members
        core = self.core
        now = core.now_s
        ordered = sorted(members)
        core.gossip.set_peers(now, ordered)
        dht = core.dht
        for p in ordered:
            dht.peer_seen(now, p, m.addrs.get(p, ()))
        dht.set_peers(now, ordered)
        if ordered and not dht.joined and dht.join_op is None:
            dht.bootstrap(now, [PeerInfo(p, m.addrs.get(p, ())) for p in ordered])
        core.touch("gossip")
        core.touch("dht")

    # -- dialing ----------------------------------------------------------------------------

    def dial_soon(self, now_s: float) -> None:
        if self._dial_at is None or self._dial_at > now_s:
            self._dial_at = now_s
            self.core.at(now_s, self._dial_round)

    def _dial_round(self, now_s: float) -> None:
        if self._dial_at is None or now_s < self._dial_at:
            return  # superseded by an earlier round
        self._dial_at = now_s + REDIAL_S
        self.core.at(self._dial_at, self._dial_round)
        if self.removed or self.silenced:
            return
        m = self.membership
        wanted = self.wanted(now_s)
        targets: list[str] = []
        for nid in sorted(wanted - self.connected):
            targets += [a for a in m.addrs.get(nid, ()) if "/p2p/" in a][:DIALS_PER_MEMBER]
        if not self.connected:
            targets += self.core.config.bootstrap
        else:
            self._find_unreached_members(now_s, wanted)
        for addr in targets:
            self.core.emit(Dial(addr))
        self._prune(now_s, wanted)

    def wanted(self, now_s: float) -> set[NodeId]:
        """The members this node keeps links to (peerset.py)."""
        m = self.membership
        roster = m.roster
        if roster is None:
            return set()
        members = [x.node_id for x in roster.members]
        candidates: list[NodeId] = []
        auto, never, _ = settings_of(roster)
        me = self.core.node_id
        if auto and m.is_owner:
            candidates = [x.node_id for x in roster.members
                          if x.name not in never and x.node_id != me]  # fmt: skip
        elif auto:  # one of the owner's first candidates wants the owner's node back
            eligible = [x.node_id for x in roster.members
                        if x.name not in never and x.node_id != roster.owner]  # fmt: skip
            if me in eligible[:CANDIDATES_MAX]:
                candidates = [roster.owner]
        return self.peers.wanted(now_s, members, roster.voters, self.connected, candidates)

    def status(self) -> dict[str, int]:
        """Links to members: to voters, to the others, those of them past the grace (at
        most LINKS_MAX at a node that is no voter: pruned when a grace ends; counted a
        second later, so that a count never falls between the two), and what the policy
        did."""
        m, now_s = self.membership, self.core.now_s
        voters = set(m.roster.voters) if m.roster else set()
        others = [t for n, t in self._order.items() if m.is_member(n) and n not in voters]
        settled = sum(1 for t in others if now_s - t >= LINK_GRACE_S + 1.0)
        return {"voters": sum(1 for n in self._order if n in voters), "others": len(others),
                "others_settled": settled, "bound": LINKS_MAX, "pruned": self.pruned,
                "replaced": self.peers.replaced}  # fmt: skip

    def _prune(self, now_s: float, wanted: set[NodeId] | None = None) -> None:
        """A node that is no voter closes links past LINKS_MAX to members it does not
        want (a voter keeps every link: every member must reach it)."""
        m = self.membership
        roster = m.roster
        if roster is None or self.core.node_id in roster.voters:
            return
        wanted = self.wanted(now_s) if wanted is None else wanted
        linked = {n: t for n, t in self._order.items() if m.is_member(n) and n not in self._closing}
        for nid in self.peers.prune(now_s, linked, roster.voters, wanted):
            self.pruned += 1
            self._closing.add(nid)
            self.core.emit(Disconnect(nid))

    def _find_unreached_members(self, now_s: float, wanted: set[NodeId]) -> None:
        """Look up, through the DHT, the members we want and are not connected to: we
        know no address for them, or the one we know no longer answers."""
        roster = self.membership.roster
        if roster is None:
            return
        me = self.core.node_id
        for member in roster.members:
            nid = member.node_id
            if nid == me or nid in self.connected or nid not in wanted:
                continue
            if self._finding.get(nid, 0.0) > now_s:
                continue
            if len(self._finding) >= FINDING_MAX:
                self._finding.clear()
            self._finding[nid] = now_s + LOOKUP_EVERY_S
            self._look_up(nid)

    def _look_up(self, nid: NodeId) -> None:
        def start(dht: DhtCore, now_s: float) -> int:
            return dht.find_peer(now_s, nid)

        self.core.dht_call(start, lambda event: self._found(nid, event))

    def _found(self, nid: NodeId, event: Any) -> None:
        record = getattr(event, "value", None)
        if not isinstance(record, PeerRecord):
            return
        full = tuple(a if "/p2p/" in a else f"{a}/p2p/{peer_id_str(nid)}" for a in record.addrs)
        if not full:
            return
        self.found_addrs += 1
        writes = self.membership.learn_addrs(nid, full, own=False)
        if writes:
            self.core.write(writes)
            self.core.emit(Dial(full[0]))


def _ignore(event: Any) -> None:
    return None
