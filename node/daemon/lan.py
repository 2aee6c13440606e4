"""LAN discovery with mDNS (DESIGN.md §8; `colonynode start|join --mdns`).

A node advertises `_colonynode._tcp.local.` with its colony, its peer id and its
listening port on every IPv4 address of its interfaces, and browses for the others.
An advert is a hint, never an identity: a member's advert gives NodeCore addresses to
dial (`LanPeer`), each ending in the peer id it names, and the dial's Noise handshake
proves that peer id or fails; a stranger's or another colony's advert is ignored.
`join --mdns` without an address joins through the owner's node, which the invite names,
once it hears its advert (the token goes to no other peer).

python-zeroconf runs on its own threads; its start and a registration block for ~1.7 s,
so they run off the Trio loop (`trio.to_thread`), and what its browser hears comes back
through the loop's token.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

__all__ = ["SERVICE", "Advert", "Lan", "advert_of", "find_owner"]

log = logging.getLogger("colonynode.lan")

SERVICE = "_colonynode._tcp.local."
RESOLVE_MS = 3000
HEARD_MAX = 256  # adverts waiting to be resolved
ADDRS_MAX = 8
PROPERTY_BYTES_MAX = 128


@dataclass(frozen=True, slots=True)
class Advert:
    peer_id: str
    colony: str
    addrs: tuple[str, ...]  # multiaddrs ending in /p2p/<peer_id>


def _text(props: dict[bytes, bytes | None], key: bytes) -> str:
    value = props.get(key) or b""
    return value[:PROPERTY_BYTES_MAX].decode(errors="replace")


def advert_of(info: Any) -> Advert | None:
    """An advert from a resolved service (zeroconf's ServiceInfo); None if it is not
    one of ours."""
    props = info.properties or {}
    peer, colony = _text(props, b"peer"), _text(props, b"colony")
    if not peer or not colony or not info.port:
        return None
    ips = [ip for ip in info.parsed_addresses() if ":" not in ip][:ADDRS_MAX]
    addrs = tuple(f"/ip4/{ip}/tcp/{info.port}/p2p/{peer}" for ip in ips)
    return Advert(peer, colony, addrs) if addrs else None


def _local_ipv4() -> list[str]:
    """This machine's IPv4 addresses to advertise: not loopback or link-local ones,
    unless it has no other (a namespace with loopback alone, as the tests run)."""
    import ifaddr

    ips = sorted({ip.ip for a in ifaddr.get_adapters() for ip in a.ips if isinstance(ip.ip, str)})
    routable = [ip for ip in ips if not ip.startswith(("127.", "169.254."))]
    return (routable or ips)[:ADDRS_MAX]


class Lan:
    """Advertise this node and hand each advert heard to `on_advert` (on the loop)."""

    def __init__(self, colony: str, peer_id: str, on_advert: Callable[[Advert], None]) -> None:
        self.colony = colony
        self.peer_id = peer_id
        self.on_advert = on_advert
        self.counters = {"adverts": 0, "ignored": 0, "dropped": 0}

    async def run(self, port: int | None, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Advertise (`port`; None: browse only) and browse until cancelled."""
        from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

        token = trio.lowlevel.current_trio_token()
        send, heard = trio.open_memory_channel[str](HEARD_MAX)

        def put(name: str) -> None:
            try:
                send.send_nowait(name)
            except trio.WouldBlock:
                self.counters["dropped"] += 1

        def on_change(zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
            if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
                try:
                    token.run_sync_soon(put, name)
                except trio.RunFinishedError:
                    pass

        zc = await trio.to_thread.run_sync(Zeroconf)
        try:
            if port is not None:
                info = ServiceInfo(
                    SERVICE, f"{self.peer_id}.{SERVICE}", port=port,
                    addresses=[socket.inet_aton(ip) for ip in _local_ipv4()],
                    properties={"colony": self.colony, "peer": self.peer_id},
                )  # fmt: skip
                await trio.to_thread.run_sync(zc.register_service, info)
            browser = await trio.to_thread.run_sync(
                lambda: ServiceBrowser(zc, SERVICE, handlers=[on_change])
            )
            task_status.started()
            async for name in heard:
                found = await trio.to_thread.run_sync(zc.get_service_info, SERVICE, name,
                                                      RESOLVE_MS)  # fmt: skip
                advert = advert_of(found) if found is not None else None
                if advert is None or advert.peer_id == self.peer_id:
                    continue
                if advert.colony != self.colony:
                    self.counters["ignored"] += 1
                    continue
                self.counters["adverts"] += 1
                self.on_advert(advert)
            browser.cancel()
        finally:
            with trio.move_on_after(5) as cleanup:
                cleanup.shield = True
                await trio.to_thread.run_sync(zc.close)  # says goodbye: unregisters


async def find_owner(colony: str, owner_peer_id: str, timeout_s: float) -> Advert:
    """The advert of the colony's owner's node heard on the LAN within `timeout_s`
    (`join --mdns`); TooSlowError if none. Only the owner's: the invite names it, the
    dial's Noise handshake proves it, and the token goes to no one else (a false advert
    of any other peer id could take the token and join with it)."""
    found: list[Advert] = []
    done = trio.Event()

    def take(advert: Advert) -> None:
        if advert.peer_id == owner_peer_id and not done.is_set():
            found.append(advert)
            done.set()

    with trio.fail_after(timeout_s):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Lan(colony, "", take).run, None)
            await done.wait()
            nursery.cancel_scope.cancel()
    return found[0]
