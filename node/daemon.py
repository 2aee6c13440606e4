"""The daemon: one Trio nursery running the libp2p host, the protocols and the local API.

`colonynode start` and `colonynode join` end up in `run_daemon`. Shutdown on SIGINT or
SIGTERM is clean: the API handle is removed, connections are closed, the store is closed.
"""

from __future__ import annotations

import logging
import random
import secrets
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee

from colonynode.consensus.handover import VoterSet
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId, short_id
from colonynode.core.invite import InviteError, parse_invite
from colonynode.core.roster import ROSTER_DOMAIN
from colonynode.gossip.config import GossipConfig
from colonynode.gossip.core import GossipCore
from colonynode.gossip.events import Accepted
from colonynode.gossip.messages import CODEC as GOSSIP_CODEC
from colonynode.gossip.records import (
    ENVELOPE_KIND,
    envelope_from_body,
    envelope_to_body,
)
from colonynode.node.api import build_app
from colonynode.node.datadir import DataDir, NodeSettings
from colonynode.node.dht_service import DhtService
from colonynode.node.driver import CoreDriver
from colonynode.node.host import build_host
from colonynode.node.joining import JOIN_PROTOCOL, JoinFailed, Joining
from colonynode.node.leases import LeaseService
from colonynode.node.logs import set_node_id
from colonynode.node.membership import Membership
from colonynode.node.messages import (
    JOIN_CODEC,
    ROSTER_CODEC,
    Hello,
    RosterUpdate,
)
from colonynode.node.node_api import StatusApi
from colonynode.node.p2p import Channel, DialError, P2PTransport, full_addr, node_id_of
from colonynode.node.processes import PROCESS_KIND, ProcessBook
from colonynode.node.scheduler import Scheduler
from colonynode.node.services_api import ServicesApi
from colonynode.storage._trio import StoreWriter
from colonynode.storage.api import Store, Write

__all__ = ["JoinFailed", "Node", "run_daemon"]

log = logging.getLogger("colonynode.node")

REDIAL_S = 5.0


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


class Node(Joining, StatusApi, ServicesApi):
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
        self._processes_changed = trio.Event()
        self.processes = ProcessBook(on_change=self._process_changed)
        self.scheduler: Scheduler | None = None
        self._finding: dict[NodeId, float] = {}  # member -> no DHT lookup before this time

    # -- helpers ------------------------------------------------------------------------

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
        if role == "owner":
            return roster is not None and roster.owner == node
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
                self.processes.on_record(
                    ev.author, ev.kind, ev.body, trio.current_time(), seq=ev.seq
                )
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
        if not self._silence_if_removed():
            self._broadcast_roster(skip=via)
        return True

    def _silence_if_removed(self) -> bool:
        """Once a roster drops this node: stop talking, close every connection."""
        if not self.removed:
            return False
        if not self.transport.silenced:
            log.warning("this node was removed from colony %s", self.settings.colony)
            self.transport.silenced = True
        self._drop_all_peers()
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
            # A peer's own addresses only (Hello.peers is not relayed any more: addresses
            # of others come from their signed /peer/ records in the DHT).
            if isinstance(msg, Hello) and self.membership.is_member(sender):
                writes += self.membership.learn_addrs(sender, msg.addrs)
        self._persist(writes)  # persist before send
        if self._silence_if_removed():
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
        full = tuple(full_addr(a, nid) for a in addrs)
        writes = self.membership.learn_addrs(nid, full)
        if writes:
            self._persist(writes)
            log.info("found %s through the DHT: %s", short_id(nid), full[0])
            self._wake_dialer.set()

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
                    nursery.start_soon(self.scheduler.claim_rounds)
                    nursery.start_soon(
                        self.scheduler.sweep,
                        lambda pid: self.processes.submitted_by(pid, self.identity.node_id),
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
