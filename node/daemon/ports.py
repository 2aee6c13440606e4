"""Sticky listen ports: a node listening on port 0 keeps the port it got last time.

`--listen /ip4/0.0.0.0/tcp/0` (the default) lets the system pick a free port. A node
that came back on a new port is one its peers must find again (from a peer's hint or
its DHT record, node/core/colony.py); one that comes back on its old port is redialled
where it was, as a daemon with a fixed port (IPFS's 4001, Syncthing's 22000) is. So
the port a `tcp/0` entry got is kept in node.json (`bound_ports`, by entry), and the
next start asks for it again if it is free; if it is taken, port 0 again.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)

__all__ = ["remember", "sticky"]


def sticky(listen: list[str], bound: dict[str, int]) -> list[str]:
    """`listen` with each `tcp/0` entry's last port, where that port is free now."""
    out = []
    for entry in listen:
        port = bound.get(entry)
        parts = entry.split("/")
        if port and _tcp_zero(parts) and _free(parts[2], port, ipv6=parts[1] == "ip6"):
            parts[4] = str(port)
            out.append("/".join(parts))
        else:
            out.append(entry)
    return out


def remember(listen: list[str], addrs: list[str]) -> dict[str, int]:
    """The ports the `tcp/0` entries of `listen` got, from the addresses listened on (one
    such entry: the first TCP address's port; several: none, as it is not clear which
    address is whose)."""
    zero = [e for e in listen if _tcp_zero(e.split("/"))]
    if len(zero) != 1:
        return {}
    for addr in addrs:
        parts = addr.split("/")
        if len(parts) > 4 and parts[3] == "tcp" and parts[4].isdigit() and int(parts[4]):
            return {zero[0]: int(parts[4])}
    return {}


def _tcp_zero(parts: list[str]) -> bool:  # ['', 'ip4', HOST, 'tcp', '0', ...]
    return len(parts) >= 5 and parts[1] in ("ip4", "ip6") and parts[3] == "tcp" and parts[4] == "0"


def _free(host: str, port: int, *, ipv6: bool) -> bool:
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            log.info("port %d on %s is taken (%s): listening on a new one", port, host, exc)
            return False
    return True
