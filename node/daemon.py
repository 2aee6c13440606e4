"""The daemon: one Trio nursery running the libp2p host, the protocols and the local API.

`colonynode start` and `colonynode join` end up in `run_daemon`. Shutdown on SIGINT or
SIGTERM is clean: the API handle is removed, connections are closed, the store is closed.
"""

from __future__ import annotations

import logging
import random
import secrets
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee

from colonynode.consensus.handover import VoterSet
from colonynode.consensus.messages import Outcome, ProcessTerms
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId, peer_id_str, short_id
from colonynode.core.invite import InviteError, issue_invite, parse_invite
from colonynode.core.limits import FRAME_BYTES_MAX
from colonynode.core.roster import ROSTER_DOMAIN
from colonynode.gossip.config import GossipConfig
from colonynode.gossip.core import GossipCore
from colonynode.gossip.events import Accepted
from colonynode.gossip.messages import CODEC as GOSSIP_CODEC
from colonynode.gossip.records import (
    ENVELOPE_KIND,
    envelope_from_body,
    envelope_to_body,
    open_body,
)
from colonynode.node.api import PermissionDenied, build_app
from colonynode.node.datadir import DataDir, NodeSettings
from colonynode.node.dht_service import DhtService
from colonynode.node.driver import CoreDriver
from colonynode.node.host import build_host
from colonynode.node.leases import LeaseService, result_json
from colonynode.node.logs import set_node_id
from colonynode.node.membership import Membership, NotOwner
from colonynode.node.messages import (
    JOIN_CODEC,
    ROSTER_CODEC,
    Hello,
    JoinAccepted,
    JoinForward,
    JoinRequest,
    PeerAddrs,
    RosterUpdate,
)
from colonynode.node.p2p import Channel, DialError, P2PTransport, node_id_of
from colonynode.node.processes import PROCESS_KIND, ProcessBook, new_pid, terms_of
from colonynode.node.scheduler import Scheduler
from colonynode.node.wire import FrameStream, RemoteError, StreamClosed
from colonynode.storage._trio import StoreWriter
from colonynode.storage.api import Store, Write

__all__ = ["JoinFailed", "Node", "run_daemon"]

log = logging.getLogger("colonynode.node")

JOIN_PROTOCOL = "/colony/join/1"
JOIN_S = 20.0
REDIAL_S = 5.0


class JoinFailed(ColonyError):
    pass


class _Events(INotifee):
    """Connection events, handed to the node without blocking libp2p's connect path."""

    def __init__(
        self, on_connect: Callable[[NodeId], None], on_disconnect: Callable[[NodeId], None]
    ) -> None:
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        try:
            self._on_connect(node_id_of(conn.muxed_conn.peer_id))
        except ColonyError:
            pass

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        try:
            self._on_disconnect(node_id_of(conn.muxed_conn.peer_id))
        except ColonyError:
            pass

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        return None


class Node:
    def __init__(
        self, datadir: DataDir, identity: Identity, settings: NodeSettings, store: Store
    ) -> None:
        self.datadir = datadir
        self.identity = identity
        self.settings = settings
        self.store = store
        self.membership = Membership.load(identity, store)
        self.started_s = trio.current_time() if _in_trio() else 0.0
        self.api_url = ""
        self._transport: P2PTransport | None = None
        self._nursery: trio.Nursery | None = None
        self._wake_dialer = trio.Event()
        self._was_member = self.membership.is_member(identity.node_id)
        self.gossip: GossipCore | None = None
        self._gossip_driver: CoreDriver | None = None
        self._gossip_peers: frozenset[NodeId] = frozenset()
        self.leases: LeaseService | None = None
        self.dht: DhtService | None = None
        self.processes = ProcessBook()
        self.scheduler: Scheduler | None = None
        self._finding: dict[NodeId, float] = {}  # member -> no DHT lookup before this time

    # -- helpers ------------------------------------------------------------------------

    @property
    def transport(self) -> P2PTransport:
        assert self._transport is not None, "the node is not running"
        return self._transport

    def _persist(self, writes: list[Write]) -> None:
        if writes:
            self.store.apply(writes, sync=True)

    def _gate(self, peer: NodeId, channel: str) -> bool:
        return self.membership.is_member(peer)

    def _voter_set(self) -> VoterSet:
        roster = self.membership.roster
        if roster is None:
            return VoterSet(1, ())
        return VoterSet(roster.version, roster.voters)

    def _roster_changed(self) -> None:
        """Every roster change reaches the lease core (voter-set handovers)."""
        roster = self.membership.roster
        if roster is not None and self.leases is not None:
            self.leases.on_roster(roster.version, roster.voters)

    def _has_role(self, node: NodeId, role: str) -> bool:
        roster = self.membership.roster
        return roster is not None and roster.has_role(node, role)

    def _drop_all_peers(self) -> None:
        assert self._nursery is not None
        for peer in self.transport.peers():
            self._nursery.start_soon(self.transport.disconnect, peer)

    def _on_connect(self, peer: NodeId) -> None:
        if self.transport.silenced:  # a dial that was under way when we were removed
            self._drop_all_peers()
            return
        self._refresh_gossip_peers()
        # Everyone who connects hears our roster (a removed member learns it was removed);
        # only members hear where the other members are.
        env = self.membership.envelope
        if env is None:
            return
        # Other members' addresses are found through the DHT (/peer/ records), not relayed.
        self.transport.send(peer, "roster", [Hello(env, tuple(self.transport.addrs()), ())])

    def _on_disconnect(self, peer: NodeId) -> None:
        self._refresh_gossip_peers()

    def _refresh_gossip_peers(self) -> None:
        """Tell the gossip core which members we are connected to, when that changes."""
        if self.gossip is None or self._gossip_driver is None or self._transport is None:
            return
        peers = frozenset(p for p in self.transport.peers() if self.membership.is_member(p))
        if peers != self._gossip_peers:
            self._gossip_peers = peers
            self.gossip.set_peers(trio.current_time(), peers)
            self._gossip_driver.kick()
            if self.dht is not None:
                self.dht.connected(sorted(peers), lambda p: self.membership.addrs.get(p, ()))

    async def _watch_peers(self) -> None:
        # Connection events can race libp2p's own bookkeeping: re-check every second.
        while True:
            self._refresh_gossip_peers()
            await trio.sleep(1.0)

    def _on_gossip_events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, Accepted) and ev.kind.startswith(PROCESS_KIND):
                self.processes.on_record(ev.author, ev.kind, ev.body, trio.current_time())
                continue
            if isinstance(ev, Accepted) and ev.kind == ENVELOPE_KIND and not ev.local:
                try:
                    env = envelope_from_body(ev.body)
                except (ColonyError, ValueError):
                    continue
                if env.domain == ROSTER_DOMAIN:
                    self._take_roster(env, via=None)

    def _take_roster(self, env: Envelope, via: NodeId | None) -> bool:
        """Offer a roster from any path; on a change, act on it. True if it changed."""
        writes = self.membership.offer(env)
        if not writes:
            return False
        self._persist(writes)
        if self.removed:
            if not self.transport.silenced:
                log.warning("this node was removed from colony %s", self.settings.colony)
                self.transport.silenced = True
            self._drop_all_peers()
            return True
        self._broadcast_roster(skip=via)
        return True

    def _gossip_roster(self) -> None:
        """The owner's node also publishes each roster as a gossip record."""
        env = self.membership.envelope
        if self.gossip is None or self._gossip_driver is None or env is None:
            return
        self.gossip.publish(trio.current_time(), ENVELOPE_KIND, envelope_to_body(env))
        self._gossip_driver.kick()

    @property
    def removed(self) -> bool:
        """True once a roster we hold no longer names this node."""
        if self.membership.is_member(self.identity.node_id):
            self._was_member = True
            return False
        return self._was_member

    def _broadcast_roster(self, skip: NodeId | None = None) -> None:
        env = self.membership.envelope
        assert env is not None and self._nursery is not None
        for peer in self.transport.peers():
            if peer == skip:
                continue
            if self.membership.is_member(peer):
                self.transport.send(peer, "roster", [RosterUpdate(env)])
            else:  # removed from the colony: its connections are closed
                self._nursery.start_soon(self.transport.disconnect, peer)
        self._wake_dialer.set()
        self._refresh_gossip_peers()
        self._roster_changed()

    # -- the roster protocol ------------------------------------------------------------

    def _on_roster(self, sender: NodeId, channel: str, msgs: Any) -> None:
        writes: list[Write] = []
        changed = False
        for msg in msgs:
            offered = self.membership.offer(msg.roster)
            if offered:
                writes += offered
                changed = True
            if isinstance(msg, Hello) and self.membership.is_member(sender):
                writes += self.membership.learn_addrs(sender, msg.addrs)
                for p in msg.peers:
                    if self.membership.is_member(p.node_id):
                        writes += self.membership.learn_addrs(p.node_id, p.addrs)
        self._persist(writes)  # persist before send
        if self.removed:
            if not self.transport.silenced:
                log.warning("this node was removed from colony %s", self.settings.colony)
                self.transport.silenced = True
            self._drop_all_peers()
            return
        if not self.membership.is_member(sender):
            self.transport.counters["refused_streams"] += 1
            log.info("refused roster stream from non-member %s", short_id(sender))
            assert self._nursery is not None
            self._nursery.start_soon(self.transport.disconnect, sender)
            return
        if changed:
            self._broadcast_roster(skip=sender)
        elif writes:
            self._wake_dialer.set()

    # -- the join protocol --------------------------------------------------------------

    async def _serve_join(self, stream: INetStream) -> None:
        frames = FrameStream(stream, JOIN_CODEC, FRAME_BYTES_MAX)
        try:
            sender = node_id_of(stream.muxed_conn.peer_id)
            with trio.fail_after(JOIN_S):
                msgs = await frames.read_batch()
                if len(msgs) != 1 or not isinstance(msgs[0], JoinRequest | JoinForward):
                    await frames.write_error("bad_request", "expected one JoinRequest")
                    return
                msg = msgs[0]
                if isinstance(msg, JoinForward):
                    if not self.membership.is_member(sender):
                        self.transport.counters["refused_streams"] += 1
                        await frames.write_error("not_member", "only members forward joins")
                        return
                    joiner, req = msg.joiner, msg.request
                else:
                    joiner, req = sender, msg
                if not self.membership.is_owner:
                    reply = await self._forward_join(joiner, req)
                else:
                    reply = self._admit(joiner, req)
                if isinstance(reply, RemoteError):
                    await frames.write_error(reply.code, str(reply))
                    return
                await frames.write_batch([reply])
                if self.membership.is_owner:
                    self._broadcast_roster(skip=joiner)
        except (StreamClosed, RemoteError, trio.TooSlowError):
            pass
        except ColonyError as exc:
            self.transport.counters["bad_frames"] += 1
            log.info("bad join frame: %s", exc)
            await frames.reset()
        except Exception:
            log.exception("join handler failed")
            await frames.reset()
        finally:
            await frames.close()

    def _admit(self, joiner: NodeId, req: JoinRequest) -> JoinAccepted | RemoteError:
        """The owner's node: check the invite, add the joiner, persist, then answer."""
        try:
            member, writes = self.membership.admit(joiner, req.invite, req.name, time.time())
        except ColonyError as exc:
            self.transport.counters["joins_refused"] += 1
            log.info("refused join by %s: %s", short_id(joiner), exc)
            return RemoteError("invite", str(exc))
        writes += self.membership.learn_addrs(joiner, tuple(req.addrs))
        self._persist(writes)  # durable before anyone hears of it
        self._gossip_roster()
        env = self.membership.envelope
        assert env is not None
        own = PeerAddrs(self.identity.node_id, tuple(self.transport.addrs()))
        log.info("admitted %s as %s (roles %s)", short_id(joiner), member.name, member.roles)
        return JoinAccepted(env, (own,))

    async def _forward_join(self, joiner: NodeId, req: JoinRequest) -> JoinAccepted | RemoteError:
        """A member that is not the owner relays the request to the owner's node."""
        roster = self.membership.roster
        if roster is None or not self.membership.is_member(self.identity.node_id):
            return RemoteError("not_member", "this node is not a member of any colony")
        owner = roster.owner
        if owner not in self.transport.peers():
            addrs = [a for a in self.membership.addrs.get(owner, ()) if "/p2p/" in a]
            for addr in addrs[:1]:
                try:
                    await self.transport.connect(addr)
                except DialError:
                    pass
        try:
            frames = await self.transport.open(owner, "join")
            await frames.write_batch([JoinForward(joiner, req)])
            reply = await frames.read_batch()
            await frames.close()
        except RemoteError as exc:
            return exc
        except (StreamClosed, trio.TooSlowError) as exc:
            return RemoteError("owner_unreachable", f"the owner's node cannot be reached: {exc}")
        if len(reply) != 1 or not isinstance(reply[0], JoinAccepted):
            return RemoteError("bad_reply", "the owner's node answered with something else")
        log.info("forwarded the join of %s to the owner", short_id(joiner))
        self.transport.counters["joins_forwarded"] += 1
        return reply[0]

    async def join(self, addr: str, token: str) -> None:
        """Present `token` to the node at `addr`; on success we are a member (persisted)."""
        parse_invite(token)  # fail fast, locally, on a damaged or forged token
        owner = await self.transport.connect(addr)
        try:
            with trio.fail_after(JOIN_S):
                frames = await self.transport.open(owner, "join")
                req = JoinRequest(token, self.settings.name, tuple(self.transport.addrs()))
                await frames.write_batch([req])
                reply = await frames.read_batch()
                await frames.close()
        except RemoteError as exc:
            raise JoinFailed(f"join refused: {exc}") from None
        except (StreamClosed, trio.TooSlowError) as exc:
            raise JoinFailed(f"the node at {addr} did not answer the join ({exc})") from None
        if len(reply) != 1 or not isinstance(reply[0], JoinAccepted):
            raise JoinFailed("the node answered the join with something else")
        accepted = reply[0]
        # A RosterUpdate naming us may have arrived first: then this offer is not newer.
        writes = self.membership.offer(accepted.roster) or []
        if not self.membership.is_member(self.identity.node_id):
            raise JoinFailed("the roster we were sent does not name this node")
        for p in accepted.peers:
            writes += self.membership.learn_addrs(p.node_id, p.addrs)
        self._persist(writes)
        self._was_member = True
        roster = self.membership.roster
        assert roster is not None
        self.settings.colony = roster.colony
        self.settings.owner_peer_id = peer_id_str(roster.owner)
        self.settings.bootstrap = [addr]
        self.datadir.save_settings(self.settings)
        self._roster_changed()
        self._on_connect(owner)

    # -- dialing ------------------------------------------------------------------------

    async def _dialer(self) -> None:
        """Stay connected to every member whose address we know (small colonies: full mesh)."""
        while True:
            if self.removed:
                await trio.sleep_forever()
            connected = set(self.transport.peers())
            targets: list[str] = []
            for nid, addrs in list(self.membership.addrs.items()):
                if nid in connected or not self.membership.is_member(nid):
                    continue
                targets += [a for a in addrs if "/p2p/" in a][:1]
            if not connected:
                targets += self.settings.bootstrap
            elif self.dht is not None:
                self._find_unknown_members(connected)
            for addr in targets:
                try:
                    await self.transport.connect(addr)
                except DialError as exc:
                    log.debug("dial %s: %s", addr, exc)
            self._wake_dialer = trio.Event()
            with trio.move_on_after(REDIAL_S):
                await self._wake_dialer.wait()

    def _find_unknown_members(self, connected: set[NodeId]) -> None:
        """Look up, through the DHT, members we know no address for (at most every 10 s)."""
        roster = self.membership.roster
        assert self._nursery is not None and roster is not None
        now = trio.current_time()
        for m in roster.members:
            nid = m.node_id
            if nid == self.identity.node_id or nid in connected or nid in self.membership.addrs:
                continue
            if self._finding.get(nid, 0.0) > now:
                continue
            self._finding[nid] = now + 10.0
            self._nursery.start_soon(self._find_member, nid)

    async def _find_member(self, nid: NodeId) -> None:
        assert self.dht is not None
        try:
            addrs = await self.dht.find_peer(nid)
        except ColonyError as exc:
            log.debug("no address for %s yet: %s", short_id(nid), exc)
            return
        full = tuple(a if "/p2p/" in a else f"{a}/p2p/{peer_id_str(nid)}" for a in addrs)
        writes = self.membership.learn_addrs(nid, full)
        if writes:
            self._persist(writes)
            log.info("found %s through the DHT: %s", short_id(nid), full[0])
            self._wake_dialer.set()

    # -- API ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        roster = self.membership.roster
        me = roster.member(self.identity.node_id) if roster else None
        connected = list(self.transport.peers()) if self._transport else []
        counters = dict(self._transport.counters) if self._transport else {}
        return {
            "peer_id": self.identity.peer_id,
            "name": me.name if me else self.settings.name,
            "colony": roster.colony if roster else self.settings.colony,
            "owner": bool(roster and roster.owner == self.identity.node_id),
            "addrs": self.transport.addrs() if self._transport else [],
            "api": self.api_url,
            "roster_version": roster.version if roster else 0,
            "members": len(roster.members) if roster else 0,
            "connected_peers": len(connected),
            "member": me is not None,
            "voter": bool(roster and self.identity.node_id in roster.voters),
            "roles": list(me.roles) if me else [],
            "uptime_s": round(trio.current_time() - self.started_s, 3),
            "gossip": self.gossip.stats() if self.gossip else {},
            "dht": self._dht_status(),
            "counters": {
                "refused_streams": counters.get("refused_streams", 0),
                "bad_frames": counters.get("bad_frames", 0),
                "joins_refused": counters.get("joins_refused", 0),
                "send_dropped": counters.get("send_dropped", 0),
                "joins_forwarded": counters.get("joins_forwarded", 0),
                **{k: v for k, v in counters.items() if k.startswith("frames_")},
            },
        }

    def peers(self) -> list[dict[str, Any]]:
        """Every peer this node knows an address for or is connected to."""
        roster = self.membership.roster
        connected = set(self.transport.peers()) if self._transport else set()
        seen = self._transport.last_seen_unix_s if self._transport else {}
        known = set(self.membership.addrs) | connected
        rows = []
        for nid in sorted(known):
            member = roster.member(nid) if roster else None
            last = seen.get(nid)
            rows.append(
                {
                    "peer_id": peer_id_str(nid),
                    "name": member.name if member else None,
                    "member": member is not None,
                    "addrs": list(self.membership.addrs.get(nid, ())),
                    "connected": nid in connected,
                    "last_seen": None if last is None else round(last, 3),
                }
            )
        return rows

    def _dht_status(self) -> dict[str, Any]:
        if self.dht is None:
            return {}
        core = self.dht.core
        return {**core.stats, "joined": core.joined, "found_peer_addrs": self.dht.found_addrs}

    def members(self) -> list[dict[str, Any]]:
        out = self.membership.describe()
        connected = set(self.transport.peers()) if self._transport else set()
        for m in out:
            nid = _nid(m["peer_id"])
            m["connected"] = nid in connected
            m["self"] = nid == self.identity.node_id
        return out

    async def create_invite(self, roles: list[str], ttl_s: float) -> str:
        roster = self.membership.roster
        if roster is None or not self.membership.is_owner:
            raise PermissionDenied("only the colony owner's node issues invites")
        return issue_invite(
            self.identity,
            roster.colony,
            tuple(roles),
            token_id=secrets.token_bytes(16),
            now_unix_s=time.time(),
            ttl_s=ttl_s,
        )

    async def remove_member(self, name_or_id: str) -> dict[str, Any]:
        try:
            member, writes = self.membership.remove(name_or_id)
        except NotOwner as exc:
            raise PermissionDenied(str(exc)) from None
        self._persist(writes)
        self._broadcast_roster()
        self._gossip_roster()
        assert self.membership.roster is not None
        return {"removed": member.name, "roster_version": self.membership.roster.version}

    async def set_voters(self, names: list[str]) -> dict[str, Any]:
        try:
            writes = self.membership.set_voters(names)
        except NotOwner as exc:
            raise PermissionDenied(str(exc)) from None
        self._persist(writes)
        self._broadcast_roster()
        self._gossip_roster()
        assert self.membership.roster is not None
        return {"voters": names, "roster_version": self.membership.roster.version}

    async def publish_record(self, kind: str, body: Any) -> dict[str, Any]:
        if self.gossip is None or self._gossip_driver is None:
            raise ColonyError("gossip is not running yet")
        if kind == ENVELOPE_KIND:
            raise ValidationError(f"kind {ENVELOPE_KIND!r} is reserved for signed envelopes")
        env = self.gossip.publish(trio.current_time(), kind, body)
        self._gossip_driver.kick()
        return {"author": peer_id_str(env.author), "seq": open_body(env).seq, "kind": kind}

    def records(self, kind: str | None, limit: int) -> list[dict[str, Any]]:
        """Held gossip records (newest sequence first per author), bodies included."""
        if self.gossip is None:
            return []
        out: list[dict[str, Any]] = []
        for author, hwm in sorted(self.gossip.digest().items()):
            for seq in range(hwm, 0, -1):
                if len(out) >= limit:
                    return out
                env = self.gossip.record(author, seq)
                if env is None:
                    continue
                body = open_body(env)
                if kind is not None and body.kind != kind:
                    continue
                out.append(
                    {"author": peer_id_str(author), "seq": seq, "kind": body.kind,
                     "body": body.body if body.kind != ENVELOPE_KIND else None}
                )  # fmt: skip
        return out

    # -- lease primitives (the scheduler of the end-to-end issue builds on these) -------

    def _lease_service(self) -> LeaseService:
        if self.leases is None:
            raise ColonyError("the lease service is not running yet")
        return self.leases

    async def lease_submit(self, body: dict[str, Any]) -> dict[str, Any]:
        terms = ProcessTerms(
            pid=_pid(body.get("pid")),
            submitter=self.identity.node_id,
            executortype=str(body.get("executortype", "")),
            priority=int(body.get("priority", 0)),
            seq=time.time_ns(),
            maxexectime_s=float(body.get("maxexectime_s", 0)),
            maxwaittime_s=float(body.get("maxwaittime_s", 0)),
            maxretries=int(body.get("maxretries", 0)),
        )
        return result_json(await self._lease_service().submit(terms))

    async def lease_claim(self, body: dict[str, Any]) -> dict[str, Any]:
        pids = body.get("pids")
        if not isinstance(pids, list) or not 0 < len(pids) <= 1024:
            raise ValidationError("pids must be a list of 1..1024 hex process ids")
        lease_s = body.get("lease_s")
        results = await self._lease_service().claim(
            [_pid(p) for p in pids], None if lease_s is None else float(lease_s)
        )
        return {"results": [result_json(r) for r in results]}

    async def lease_close(self, body: dict[str, Any]) -> dict[str, Any]:
        outcome = str(body.get("outcome", "SUCCESS")).upper()
        if outcome not in Outcome.__members__:
            raise ValidationError("outcome must be SUCCESS or FAILED")
        errors = tuple(str(e) for e in body.get("errors", ()))
        closed = await self._lease_service().close(
            _pid(body.get("pid")), Outcome[outcome], body.get("output"), errors
        )
        return result_json(closed)

    async def lease_read(self, pid: str) -> dict[str, Any]:
        return result_json(await self._lease_service().read(_pid(pid)))

    # -- ColonyFS records in the DHT ---------------------------------------------------

    def _dht_service(self) -> DhtService:
        if self.dht is None:
            raise ColonyError("the DHT is not running yet")
        return self.dht

    async def fs_add_revision(self, body: dict[str, Any]) -> dict[str, Any]:
        from colonynode.dht import FileRevision

        label, name = str(body.get("label", "")), str(body.get("name", ""))
        revision = FileRevision(
            id=str(body.get("id", "")),
            sha256=bytes.fromhex(str(body.get("sha256", ""))),
            size=int(body.get("size", 0)),
            chunks=tuple(bytes.fromhex(str(c)) for c in body.get("chunks", ())),
            author=self.identity.node_id,
            time_ns=time.time_ns(),
        )
        result = await self._dht_service().fs_put(label, name, revision)
        return {
            "ok": result.ok,
            "stored": result.stored,
            "seq": result.seq,
            "reason": result.reason,
        }

    async def find_peer(self, peer_id: str) -> dict[str, Any]:
        """A member's addresses from its signed /peer/ record in the DHT."""
        nid = _nid(peer_id)
        addrs = await self._dht_service().find_peer(nid)
        return {"peer_id": peer_id, "found": bool(addrs), "addrs": list(addrs)}

    async def fs_record(self, label: str, name: str) -> dict[str, Any]:
        result = await self._dht_service().fs_get(label, name)
        record = result.value
        revisions = [] if record is None else [
            {"id": r.id, "sha256": r.sha256.hex(), "size": r.size,
             "chunks": [c.hex() for c in r.chunks], "author": peer_id_str(r.author),
             "time_ns": r.time_ns}
            for r in record.revisions
        ]  # fmt: skip
        return {
            "found": record is not None,
            "label": label,
            "name": name,
            "latest": None if record is None else record.latest,
            "revisions": revisions,
            "answers": result.answers,
            "hops": result.hops,
        }

    # -- processes ----------------------------------------------------------------------

    def _load_processes(self) -> None:
        """Rebuild the process view from the gossip records this node holds."""
        assert self.gossip is not None
        for author, hwm in sorted(self.gossip.digest().items()):
            for seq in range(1, hwm + 1):
                env = self.gossip.record(author, seq)
                if env is None:
                    continue
                body = open_body(env)
                if body.kind.startswith(PROCESS_KIND):
                    self.processes.on_record(author, body.kind, body.body)

    async def submit_process(self, body: dict[str, Any]) -> dict[str, Any]:
        roster = self.membership.roster
        if roster is None or not roster.has_role(self.identity.node_id, "submitter"):
            raise PermissionDenied("this node does not have the submitter role")
        from colonynode.core.process import parse_spec, spec_to_json

        spec = parse_spec(body.get("spec"))
        if self.gossip is None or self._gossip_driver is None:
            raise ColonyError("gossip is not running yet")
        pid, submitted = new_pid(), time.time_ns()
        record = {"processid": pid.hex(), "spec": spec_to_json(spec), "submission_ns": submitted}
        # Durable here (gossip ledger) before anything is sent; acknowledged to the user
        # only once a majority of voters holds the register.
        self.gossip.publish(trio.current_time(), PROCESS_KIND, record)
        self.processes.on_record(self.identity.node_id, PROCESS_KIND, record)
        self._gossip_driver.kick()
        ack = await self._lease_service().submit(
            terms_of(pid, spec, self.identity.node_id, submitted)
        )
        if not ack.acked:
            raise ColonyError(
                f"process {pid.hex()} was not acknowledged by a majority of voters"
                f" ({ack.reason.name if ack.reason is not None else 'no answer'})"
            )
        view = self.processes.get(pid)
        assert view is not None
        return view

    async def get_process(self, pid_hex: str, consistent: bool) -> dict[str, Any]:
        pid = _pid(pid_hex)
        view = self.processes.get(pid)
        if view is None and not consistent:
            raise ColonyError(f"no process {pid_hex} is known to this node")
        if consistent:
            read = await self._lease_service().read(pid)
            if read.view is None and view is None:
                raise ColonyError(f"no process {pid_hex} is known to a majority of voters")
            view = dict(view or {"processid": pid_hex})
            if read.view is not None:
                reg = read.view
                view.update(
                    state=reg.state.name,
                    epoch=reg.epoch,
                    retries=reg.retries,
                    output=reg.output if reg.output is not None else view.get("output", []),
                    errors=list(reg.errors),
                    executor=None if reg.holder is None else peer_id_str(reg.holder),
                )
            view["consistent"] = {"committed": read.committed, "answered": read.answered}
        assert view is not None
        return view

    def _publish_process(self, kind: str, body: dict[str, Any]) -> None:
        if self.gossip is not None and self._gossip_driver is not None:
            self.gossip.publish(trio.current_time(), kind, body)
            self._gossip_driver.kick()

    def _my_name(self) -> str:
        roster = self.membership.roster
        me = roster.member(self.identity.node_id) if roster else None
        return me.name if me else self.settings.name

    def _sched(self) -> Scheduler:
        if self.scheduler is None:
            raise ColonyError("the scheduler is not running yet")
        return self.scheduler

    async def executor_register(self, body: dict[str, Any]) -> dict[str, Any]:
        roster = self.membership.roster
        if roster is None or not roster.has_role(self.identity.node_id, "executor"):
            raise PermissionDenied("this node does not have the executor role")
        return self._sched().register(body)

    async def executor_assign(self, executor_id: str, body: dict[str, Any]) -> dict[str, Any]:
        proc = await self._sched().assign(executor_id, float(body.get("timeout_s", 10)))
        return {"process": proc}

    async def executor_close(
        self, executor_id: str, body: dict[str, Any], success: bool
    ) -> dict[str, Any]:
        errors = [str(e) for e in body.get("errors", ())]
        return await self._sched().close(
            executor_id, _pid(body.get("processid")), success, body.get("output"), errors
        )

    def list_processes(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        from colonynode.core.process import State

        wanted = None
        if state is not None:
            if state.upper() not in State.__members__:
                raise ValidationError(f"state must be one of {', '.join(State.__members__)}")
            wanted = State[state.upper()]
        return self.processes.list(wanted, limit)

    def metrics_text(self) -> str:
        st = self.status()
        lines = [
            "# TYPE colonynode_roster_version gauge",
            f"colonynode_roster_version {st['roster_version']}",
            "# TYPE colonynode_members gauge",
            f"colonynode_members {st['members']}",
            "# TYPE colonynode_connected_peers gauge",
            f"colonynode_connected_peers {st['connected_peers']}",
        ]
        for key, value in sorted(st["counters"].items()):
            lines += [f"# TYPE colonynode_{key}_total counter", f"colonynode_{key}_total {value}"]
        return "\n".join(lines) + "\n"

    # -- run ----------------------------------------------------------------------------

    async def run(
        self,
        *,
        join: tuple[str, str] | None = None,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        set_node_id(self.identity.short_id)
        self.started_s = trio.current_time()
        host = build_host(self.identity)
        listen = [multiaddr.Multiaddr(a) for a in self.settings.listen]
        if join is not None:
            self.settings.colony = parse_invite(join[1])[0].colony
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            async with host.run(listen_addrs=listen):
                self._transport = P2PTransport(host, nursery, self._gate)
                roster_protocol = f"/colony/{self.settings.colony}/roster/1"
                self.transport.add_channel(
                    Channel("roster", roster_protocol, ROSTER_CODEC, open_to_non_members=True)
                )
                self.transport.add_channel(
                    Channel("join", JOIN_PROTOCOL, JOIN_CODEC, open_to_non_members=True)
                )
                self.transport.set_receiver("roster", self._on_roster)
                self.transport.add_channel(
                    Channel("gossip", f"/colony/{self.settings.colony}/gossip/1", GOSSIP_CODEC)
                )
                self.gossip = GossipCore(
                    self.identity,
                    self.store,
                    random.Random(secrets.randbits(64)),
                    GossipConfig.lan(),
                    is_member=self.membership.is_member,
                )
                writer = StoreWriter(self.store)
                self.leases = LeaseService(
                    self.identity.node_id,
                    self.store,
                    self.transport,
                    writer,
                    str(self.settings.colony),
                    voters=self._voter_set(),
                    has_role=self._has_role,
                )
                self.dht = DhtService(
                    self.identity,
                    self.store,
                    self.transport,
                    writer,
                    str(self.settings.colony),
                    nursery,
                    is_member=self.membership.is_member,
                    may_write=lambda author, key: self.membership.is_member(author),
                )
                self._gossip_driver = CoreDriver(
                    self.gossip,
                    "gossip",
                    self.transport,
                    writer,
                    on_events=self._on_gossip_events,
                )
                host.set_stream_handler(JOIN_PROTOCOL, self._serve_join)  # type: ignore[arg-type]
                host.get_network().register_notifee(_Events(self._on_connect, self._on_disconnect))
                try:
                    if join is not None:
                        await self.join(*join)
                    for addr in self.transport.addrs():
                        log.info("listening on %s", addr)
                    stop = trio.Event()
                    await nursery.start(self._gossip_driver.run)
                    self._load_processes()
                    await nursery.start(self.leases.run)
                    self.scheduler = Scheduler(
                        self.processes, self.leases, self._publish_process, self._my_name
                    )
                    await nursery.start(self.dht.run)
                    self.dht.start(
                        self.transport.addrs(),
                        [(p, self.membership.addrs.get(p, ())) for p in self.transport.peers()],
                    )
                    nursery.start_soon(self._watch_peers)
                    await nursery.start(self._serve_api, stop)
                    nursery.start_soon(self._dialer)
                    roster = self.membership.roster
                    log.info(
                        "ready: colony %s, roster v%d, %d members",
                        roster.colony if roster else "-",
                        roster.version if roster else 0,
                        len(roster.members) if roster else 0,
                    )
                    task_status.started()
                    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for signum in signals:
                            log.info("received %s: shutting down", signal.Signals(signum).name)
                            break
                    stop.set()
                    if self.leases is not None and self.leases.granted:
                        n = await self.leases.release_all()
                        log.info("released %d leases", n)
                finally:
                    self.datadir.remove_api_handle()
                    with trio.move_on_after(3) as cleanup:
                        cleanup.shield = True
                        await host.close()
                nursery.cancel_scope.cancel()

    async def _serve_api(
        self, stop: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        from hypercorn.config import Config
        from hypercorn.trio import serve

        token = secrets.token_urlsafe(32)
        config = Config()
        config.bind = [self.settings.api]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = 1.0
        app = build_app(self, token)
        assert self._nursery is not None
        binds = await self._nursery.start(
            partial(serve, app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        )
        self.api_url = str(binds[0])
        self.datadir.write_api_handle(self.api_url, token)
        log.info("local API on %s", self.api_url)
        task_status.started()


def _first_colony_error(group: BaseExceptionGroup[Any]) -> ColonyError | None:
    """The expected failure inside the nurseries' exception groups, if there is one."""
    for exc in group.exceptions:
        if isinstance(exc, ColonyError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_colony_error(exc)
            if found is not None:
                return found
    return None


def _pid(value: Any) -> bytes:
    if not isinstance(value, str) or not 2 <= len(value) <= 128:
        raise ValidationError("a process id is 1..64 bytes of hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValidationError(f"process id {value!r} is not hex") from None


def _nid(peer_id: str) -> NodeId:
    from colonynode.core.ids import node_id_from_peer_id

    return node_id_from_peer_id(peer_id)


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def run_daemon(data_dir: Path, settings: NodeSettings, join: tuple[str, str] | None) -> None:
    """Open the store and run the node until SIGINT/SIGTERM (blocking)."""
    from colonynode.storage.lmdb_store import LmdbStore

    dd = DataDir(data_dir)
    identity = dd.load_identity()
    store = LmdbStore(dd.path)
    try:
        node = Node(dd, identity, settings, store)
        if join is None and node.membership.roster is None:
            raise ColonyError(
                f"{dd.path} has an identity but belongs to no colony: "
                "run `colonynode join ADDR --invite TOKEN` or `colonynode init --colony NAME`"
            )
        if join is not None and node.membership.roster is not None:
            raise InviteError(
                f"this node is already a member of colony {node.membership.roster.colony}: "
                f"use `colonynode start --data-dir {dd.path}`"
            )
        try:
            trio.run(partial(node.run, join=join))
        except BaseExceptionGroup as group:
            raise _first_colony_error(group) or group from None
    finally:
        store.close()
