"""The daemon: one Trio nursery of thin adapters around one NodeCore (DESIGN.md §10).

`colonynode start` and `colonynode join` end up in `run_daemon`. `Node.run` starts the
transport (Noise-secured links to peers), the driver that runs NodeCore (receive -> step ->
persist -> send -> answer), the dialer NodeCore asks for, and the local HTTP API.
Shutdown on SIGINT or SIGTERM is clean: the API handle is removed, the leases held are
released, connections are closed, the store is closed.
"""

from __future__ import annotations

import gc
import logging
import random
import secrets
import signal
import socket
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio

from colonynode.consensus.compaction import Retention
from colonynode.consensus.messages import CODEC as LEASE_CODEC
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId, peer_id_str
from colonynode.core.invite import InviteError, parse_invite
from colonynode.dht import CODEC as DHT_CODEC
from colonynode.gossip.messages import CODEC as GOSSIP_CODEC
from colonynode.node.core import (
    Dial,
    Disconnect,
    NodeConfig,
    NodeCore,
    PermissionDenied,
    Silenced,
    service,
)
from colonynode.node.core import requests as rq
from colonynode.node.core.messages import JOIN_CODEC, ROSTER_CODEC
from colonynode.node.daemon.colonies import ColoniesGateway
from colonynode.node.daemon.colonies import owner as colonies_owner
from colonynode.node.daemon.colonies.keys import key_id as colonies_key_id
from colonynode.node.daemon.colonies.keys import load_or_create_key
from colonynode.node.daemon.colonies.rpc import RpcError
from colonynode.node.daemon.driver import NodeDriver
from colonynode.node.daemon.fs.service import FsService
from colonynode.node.daemon.fs.transfer import FS_CODEC, serve_chunks
from colonynode.node.daemon.http import api_routes, build_app, nid_of
from colonynode.node.daemon.joining import JOIN_PROTOCOL, JoinFailed, join, serve_join
from colonynode.node.daemon.lan import Advert, Lan, find_owner
from colonynode.node.daemon.local_api import SOCKET_NAME, SOCKET_PATH_MAX, LocalApi
from colonynode.node.daemon.p2p import Channel, DialError, P2PTransport, parse_addr
from colonynode.node.daemon.ports import remember, sticky
from colonynode.node.datadir import DataDir, NodeSettings
from colonynode.node.logs import set_node_id
from colonynode.storage._trio import StoreWriter
from colonynode.storage.api import Store

__all__ = ["JoinFailed", "Node", "run_daemon"]

log = logging.getLogger("colonynode.node")

DIALS_IN_FLIGHT_MAX = 8


class Node:
    """The daemon's adapters around one NodeCore; what the HTTP API calls."""

    def __init__(
        self, datadir: DataDir, identity: Identity, settings: NodeSettings, store: Store
    ) -> None:
        self.datadir = datadir
        self.identity = identity
        self.settings = settings
        self.store = store
        config = NodeConfig(
            name=settings.name,
            colony=settings.colony or "",
            bootstrap=tuple(settings.bootstrap),
            retention=Retention.of(settings.retention_s),
            view_retention_s=settings.view_retention_s,
        )
        self.core = NodeCore(
            identity, store, random.Random(secrets.randbits(64)), unix_ns=time.time_ns,
            config=config,
        )  # fmt: skip
        self.started_s = 0.0
        self.api_url = ""
        self.local_api: LocalApi | None = None
        self._transport: P2PTransport | None = None
        self._driver: NodeDriver | None = None
        self._nursery: trio.Nursery | None = None
        self._dialing: set[str] = set()
        self.gateway: ColoniesGateway | None = None
        self.lan: Lan | None = None
        self.gateway_url = ""
        self.fs = FsService(self, datadir.path / "chunks", settings)

    @property
    def transport(self) -> P2PTransport:
        assert self._transport is not None, "the node is not running"
        return self._transport

    @property
    def driver(self) -> NodeDriver:
        assert self._driver is not None, "the node is not running"
        return self._driver

    def now_s(self) -> float:
        return trio.current_time()

    def unix_ns(self) -> int:
        return time.time_ns()

    # -- what the API asks -------------------------------------------------------------

    async def call(self, req: Any) -> Any:
        return await self.driver.call(req)

    async def call_many(self, reqs: list[Any]) -> list[Any]:
        return await self.driver.call_many(reqs)

    def status(self) -> dict[str, Any]:
        st = self.core.status()
        transport = self._transport
        counters = dict(transport.counters) if transport else {}
        st["addrs"] = transport.addrs() if transport else []
        st["api"] = self.api_url
        if self.local_api is not None:
            st["local_api"] = dict(self.local_api.counters)
        if self.lan is not None:
            st["lan"] = dict(self.lan.counters)
        st["fs"] = {**st.get("fs", {}), **self.fs.stats()}
        if self.gateway is not None:
            st["colonies"] = {"url": self.gateway_url, **self.gateway.counters,
                              **self.gateway.executors.counters}  # fmt: skip
        st["driver"] = {**self.driver.counters, **self.driver.writer.figures()}
        st["connected_peers"] = len(transport.peers()) if transport else 0
        st["uptime_s"] = round(trio.current_time() - self.started_s, 3)
        core_counters = st.pop("counters")
        st["counters"] = {
            "refused_streams": counters.get("refused_streams", 0)
            + core_counters["refused_streams"],
            "bad_frames": counters.get("bad_frames", 0),
            "handshakes_failed": counters.get("handshakes_failed", 0),
            "joins_refused": core_counters["joins_refused"],
            "send_dropped": counters.get("send_dropped", 0),
            "joins_forwarded": counters.get("joins_forwarded", 0),
            **{k: v for k, v in counters.items() if k.startswith("frames_")},
        }
        return st

    def members(self) -> list[dict[str, Any]]:
        out = self.core.membership.describe()
        connected = set(self.transport.peers()) if self._transport else set()
        for m in out:
            nid = nid_of(m["peer_id"])
            m["connected"] = nid in connected
            m["self"] = nid == self.identity.node_id
        return out

    def peers(self) -> list[dict[str, Any]]:
        """Every peer this node knows an address for or is connected to."""
        membership = self.core.membership
        connected = set(self.transport.peers()) if self._transport else set()
        seen = self._transport.last_seen_unix_s if self._transport else {}
        rows = []
        for nid in sorted(set(membership.addrs) | connected):
            member = membership.member(nid)
            last = seen.get(nid)
            rows.append({
                "peer_id": peer_id_str(nid),
                "name": member.name if member else None,
                "member": member is not None,
                "addrs": list(membership.addrs.get(nid, ())),
                "connected": nid in connected,
                "last_seen": None if last is None else round(last, 3),
            })  # fmt: skip
        return rows

    def records(self, kind: str | None, limit: int) -> list[dict[str, Any]]:
        return service.records(self.core, kind, limit)

    def list_processes(
        self, state: str | None, limit: int, offset: int, filters: dict[str, str]
    ) -> list[dict[str, Any]]:
        return service.list_processes(self.core, state, limit, offset, filters)

    def process_counts(self) -> dict[str, int]:
        return self.core.book.count_by_state()

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
        for key, value in sorted(st["scheduler"].items()):
            kind = "gauge" if key == "executors" else "counter"
            name = f"colonynode_{key}" + ("" if kind == "gauge" else "_total")
            lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
        gauges = {"chunks", "used_bytes", "quota_bytes", "labels", "snapshots", "transfers"}
        for key, value in sorted(st.get("fs", {}).items()):
            kind = "gauge" if key in gauges else "counter"
            name = f"colonynode_fs_{key}" + ("" if kind == "gauge" else "_total")
            lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
        lines.append("# TYPE colonynode_processes gauge")
        for state, count in sorted(self.core.book.count_by_state().items()):
            lines.append(f'colonynode_processes{{state="{state}"}} {count}')
        return "\n".join(lines) + "\n"

    # -- what NodeCore asks ------------------------------------------------------------

    def _gate(self, peer: NodeId, channel: str) -> bool:
        return self.core.membership.is_member(peer)

    def _peers_changed(self) -> None:
        if self._driver is not None and self._transport is not None:
            self._driver.set_connected(list(self._transport.peers()))

    def _on_notice(self, notice: Any) -> None:
        nursery = self._nursery
        assert nursery is not None
        if isinstance(notice, Dial):
            if notice.addr not in self._dialing and len(self._dialing) < DIALS_IN_FLIGHT_MAX:
                self._dialing.add(notice.addr)
                nursery.start_soon(self._dial, notice.addr)
        elif isinstance(notice, Disconnect):
            nursery.start_soon(self.transport.disconnect, notice.peer)
        elif isinstance(notice, Silenced):
            if not self.transport.silenced:
                log.warning("this node was removed from colony %s", self.core.colony())
            self.transport.silenced = True

    async def _dial(self, addr: str) -> None:
        try:
            await self.transport.connect(addr)
        except DialError as exc:
            log.debug("dial %s: %s", addr, exc)
        finally:
            self._dialing.discard(addr)

    # -- run ---------------------------------------------------------------------------

    def _channels(self, transport: P2PTransport) -> None:
        colony = self.settings.colony
        transport.add_channel(
            Channel("roster", f"/colony/{colony}/roster/1", ROSTER_CODEC, open_to_non_members=True)
        )
        transport.add_channel(Channel("join", JOIN_PROTOCOL, JOIN_CODEC, open_to_non_members=True))
        transport.add_channel(Channel("gossip", f"/colony/{colony}/gossip/1", GOSSIP_CODEC))
        transport.add_channel(Channel("dht", f"/colony/{colony}/dht/1", DHT_CODEC))
        transport.add_channel(Channel("lease", f"/colony/{colony}/lease/1", LEASE_CODEC))
        transport.add_channel(Channel("fs", f"/colony/{colony}/fs/1", FS_CODEC))

    def _keep_ports(self, addrs: list[str]) -> None:
        """Remember the ports `tcp/0` got, for the next start (ports.py)."""
        bound = remember(self.settings.listen, addrs)
        if bound and bound != self.settings.bound_ports:
            self.settings.bound_ports = bound
            self.datadir.save_settings(self.settings)

    async def run(
        self,
        *,
        join_with: tuple[str, str] | None = None,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        writer = StoreWriter(self.store, off_loop=False, adaptive=True)
        try:
            await self._run(writer, join_with, task_status)
        finally:
            writer.close()  # its thread ends, whatever ended the run

    async def _run(
        self, writer: StoreWriter, join_with: tuple[str, str] | None, task_status: Any
    ) -> None:
        set_node_id(self.identity.short_id)
        self.started_s = trio.current_time()
        listen = sticky(self.settings.listen, self.settings.bound_ports)
        if join_with is not None:
            self.settings.colony = parse_invite(join_with[1])[0].colony
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            transport = P2PTransport(self.identity, nursery, self._gate, self._peers_changed)
            self._transport = transport
            self._channels(transport)
            transport.set_stream_handler("join", partial(serve_join, self))
            fs = self.fs
            transport.set_stream_handler(
                "fs", partial(serve_chunks, fs.store, fs.counters, fs.bulk)
            )
            await nursery.start(fs.run)
            await transport.listen(listen)
            if self.settings.fs_bulk:
                host = parse_addr(transport.addrs()[0])[0]
                await nursery.start(fs.bulk.run, host, self.settings.fs_bulk_port)
            self._driver = NodeDriver(self.core, transport, writer, on_notice=self._on_notice)
            try:
                await nursery.start(self.driver.run)
                self.core.set_addrs(trio.current_time(), transport.addrs())
                self._keep_ports(transport.addrs())
                if join_with is not None:
                    await self._join(*join_with)
                for addr in transport.addrs():
                    log.info("listening on %s", addr)
                stop = trio.Event()
                await nursery.start(self._serve_api, stop)
                if self.settings.colonies:
                    await self._serve_colonies(stop)
                if self.settings.mdns:
                    await self._serve_lan()
                self._log_ready()
                task_status.started()
                await self._until_signal()
                stop.set()
                await self._release_leases()
                with trio.move_on_after(2):
                    await self.driver.close()  # the lazy writes that wait
            finally:
                self.datadir.remove_api_handle()
                with trio.move_on_after(3) as cleanup:
                    cleanup.shield = True
                    await transport.close()
            nursery.cancel_scope.cancel()

    async def _join_addrs(self, addr: str, token: str) -> list[str]:
        """`join`'s address, or with none (`join --mdns`) the owner's node's addresses
        heard on the LAN (the invite names it)."""
        if addr:
            return [addr]
        invite = parse_invite(token)[0]
        owner = peer_id_str(invite.owner)
        log.info("looking for colony %s's owner %s on the LAN (mDNS)", invite.colony, owner)
        try:
            advert = await find_owner(invite.colony, owner, LAN_FIND_S)
        except trio.TooSlowError:
            raise JoinFailed(
                f"the owner's node of colony {invite.colony} did not answer on the LAN within"
                f" {LAN_FIND_S:.0f} s: give a member's multiaddr instead"
            ) from None
        log.info("found the owner's node on the LAN at %s", ", ".join(advert.addrs))
        return list(advert.addrs)

    async def _join(self, addr: str, token: str) -> None:
        """Join through `addr`, or (`join --mdns`) through each address heard in turn."""
        addrs = await self._join_addrs(addr, token)
        for i, each in enumerate(addrs):
            try:
                await join(self, each, token)
                return
            except JoinFailed:
                if i == len(addrs) - 1:
                    raise

    async def _serve_lan(self) -> None:
        """Advertise this node on the LAN and take members' adverts as address hints
        (in the background: zeroconf takes ~1.7 s to start, the node is ready before)."""
        assert self._nursery is not None
        ports = [a.split("/tcp/")[1].split("/")[0] for a in self.transport.addrs() if "/tcp/" in a]
        self.lan = Lan(self.core.colony(), self.identity.peer_id, self._on_advert)
        self._nursery.start_soon(self._run_lan, self.lan, int(ports[0]) if ports else None)

    async def _run_lan(self, lan: Lan, port: int | None) -> None:
        try:
            await lan.run(port)
        except Exception as exc:  # zeroconf's errors are its own: the node serves on
            log.warning("LAN discovery stopped: %s: %s", type(exc).__name__, exc)

    def _on_advert(self, advert: Advert) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._lan_hint, advert)

    async def _lan_hint(self, advert: Advert) -> None:
        try:
            await self.call(rq.LanPeer(nid_of(advert.peer_id), advert.addrs))
        except ColonyError as exc:
            log.debug("LAN advert of %s: %s", advert.peer_id, exc)

    async def _serve_colonies(self, stop: trio.Event) -> None:
        """The Colonies-compatible API (node/daemon/colonies/), with the colony's key
        in the roster once the owner's node serves it."""
        assert self._nursery is not None and self.settings.colonies
        gateway = ColoniesGateway(self)
        self.gateway_url = await self._nursery.start(gateway.serve, self.settings.colonies, stop)
        self.gateway = gateway
        log.info("Colonies API on %s", self.gateway_url)
        if self.core.membership.is_owner:
            try:
                await self._colonies_keys()
            except ColonyError as exc:  # the node serves on; `gateway env` says it again
                log.warning("Colonies API: the colony's key is not in the roster: %s", exc)

    async def _colonies_keys(self) -> dict[str, str]:
        """This node's ColonyOS keys, in the roster: its user's, and on the owner's node
        the colony's (made on first use, kept 0600 in the data dir)."""
        keys: dict[str, str] = {}
        if self.core.membership.is_owner:
            colony = load_or_create_key(self.datadir.path / "colonies-colony.key")
            me = self.identity.node_id
            name = self.core.colony()
            await self.call(
                rq.ColoniesKeyChange("add_colony", colonies_key_id(colony), name, member=me)
            )
            keys["COLONIES_COLONY_PRVKEY"] = colony
        user = load_or_create_key(self.datadir.path / "colonies-user.key")
        try:
            await colonies_owner.change_key(self, "", "", key_id=colonies_key_id(user),
                                            name=f"{self.settings.name}-user")  # fmt: skip
        except RpcError as exc:
            raise (PermissionDenied if exc.status == 403 else ColonyError)(exc.message) from None
        keys["COLONIES_PRVKEY"] = user
        return keys

    async def colonies_env(self) -> dict[str, str]:
        """What `colonynode gateway env` exports for pycolonies programs."""
        if self.gateway is None:
            raise ValidationError(
                "this node serves no Colonies API: start it with --colonies-port PORT"
            )
        hostport = self.gateway_url.split("://", 1)[-1]
        host, _, port = hostport.rpartition(":")
        return {
            "COLONIES_SERVER_HOST": host.strip("[]"),
            "COLONIES_SERVER_PORT": port,
            "COLONIES_SERVER_TLS": "false",
            "COLONIES_COLONY_NAME": self.core.colony(),
            "COLONIES_EXECUTOR_NAME": f"{self.settings.name}-executor",
            **await self._colonies_keys(),
        }

    def _log_ready(self) -> None:
        roster = self.core.membership.roster
        log.info(
            "ready: colony %s, roster v%d, %d members",
            roster.colony if roster else "-",
            roster.version if roster else 0,
            len(roster.members) if roster else 0,
        )

    async def _until_signal(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s: shutting down", signal.Signals(signum).name)
                return

    async def _release_leases(self) -> None:
        if not self.core.consensus.claimer.leases:
            return
        try:
            n = await self.driver.call(rq.ReleaseAll(), timeout_s=2.0)
        except ColonyError as exc:
            log.warning("releasing the leases held: %s", exc)
            return
        log.info("released %d leases", n)

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
        routes = api_routes(self, me=self.identity.node_id, clock=self)
        app = build_app(self, token, me=self.identity.node_id, clock=self)
        assert self._nursery is not None
        binds = await self._nursery.start(
            partial(serve, app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        )
        self.api_url = str(binds[0])
        path = self.datadir.path / SOCKET_NAME
        sock: str | None = None
        if hasattr(socket, "AF_UNIX") and len(str(path)) <= SOCKET_PATH_MAX:
            self.local_api = LocalApi(routes, token)
            await self._nursery.start(self.local_api.serve, path, stop)
            sock = str(path)
        else:
            log.info("no local API socket: %s is too long a path for one (HTTP only)", path)
        self.datadir.write_api_handle(self.api_url, token, sock)
        log.info("local API on %s%s", self.api_url, f" and {sock}" if sock else "")
        task_status.started()


LAN_FIND_S = 20.0  # `join --mdns`: how long to look for a member on the LAN

# Allocations between young collections, and young/middle collections between older ones.
GC_THRESHOLDS = (50_000, 20, 100)


def _tune_gc() -> None:
    """What the node loaded is never garbage: out of the collector's sight (`gc.freeze`).
    Collect the young generation every 50,000 allocations, not 700: under load the
    default's collections, with the full ones the growing heap set off, took 0.6 s of a
    submitting daemon's 5 s of CPU for 3,400 calls (`gc.callbacks` with thread time),
    0.06-0.09 s with these. Cycles are still collected; memory a collection frees later is
    bounded by the young generation's size."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


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


def run_daemon(data_dir: Path, settings: NodeSettings, join: tuple[str, str] | None) -> None:
    """Open the store and run the node until SIGINT/SIGTERM (blocking)."""
    from colonynode.storage.lmdb_store import LmdbStore

    dd = DataDir(data_dir)
    identity = dd.load_identity()
    store = LmdbStore(dd.path)
    try:
        node = Node(dd, identity, settings, store)
        roster = node.core.membership.roster
        if join is None and roster is None:
            raise ColonyError(
                f"{dd.path} has an identity but belongs to no colony: "
                "run `colonynode join ADDR --invite TOKEN` or `colonynode init --colony NAME`"
            )
        if join is not None and roster is not None:
            raise InviteError(
                f"this node is already a member of colony {roster.colony}: "
                f"use `colonynode start --data-dir {dd.path}`"
            )
        _tune_gc()
        try:
            trio.run(partial(node.run, join_with=join))
        except BaseExceptionGroup as group:
            raise _first_colony_error(group) or group from None
    finally:
        store.close()
