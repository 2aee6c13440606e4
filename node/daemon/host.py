"""The one factory that builds the libp2p host (DESIGN.md §4).

Noise only (no plaintext, no SECIO, no TLS), Yamux only, at most one connection per peer
(else every dial waits a fixed 250 ms), no dial retries, no automatic redial of every
peer in the peerstore. The peer id is derived from the node's own Ed25519 seed.
"""

from __future__ import annotations

from typing import Any

import nacl.signing
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from colonynode.core.identity import Identity
from colonynode.node.logs import route_libp2p_logs

__all__ = ["build_host", "keypair_of"]


async def _credit_when_half_read(self: Any, *, bytes_read: int = 0) -> None:
    """go-yamux's rule for a stream's receive window: credit the sender back only once
    half the window has been read (`sendWindowUpdate`/`GrowTo`). py-libp2p 0.8.1 also
    credits every read that leaves any slack, which answers every data frame with a
    WINDOW_UPDATE frame of its own (a Noise message and a socket write each: ~7 % of a
    busy daemon's CPU, and as many frames on the wire as the data). The window stays at
    its initial 256 KiB: loopback and LAN links need no auto-tuning, and a 1 MiB frame
    flows in four credits."""
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta < self.target_recv_window // 2:
            return
        self.recv_window += delta
    await self.send_window_update(delta, skip_lock=True)


# Bound once, for every stream of this process (libp2p is pinned below 0.9).
YamuxStream._auto_tune_and_send_window_update = _credit_when_half_read  # type: ignore[method-assign]


def keypair_of(identity: Identity) -> KeyPair:
    private = Ed25519PrivateKey(nacl.signing.SigningKey(identity.seed))
    return KeyPair(private, private.get_public_key())


async def _no_auto_connect(*_: Any, **__: Any) -> None:
    return None


def build_host(identity: Identity) -> IHost:
    kp = keypair_of(identity)
    noise = NoiseTransport(kp, noise_privkey=new_x25519_key_pair().private_key)
    muxers: Any = {YAMUX_PROTOCOL_ID: Yamux}
    host = new_host(
        key_pair=kp,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt=muxers,
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )
    if host.get_id().to_base58() != identity.peer_id:  # pragma: no cover - library contract
        raise RuntimeError("libp2p derived another peer id from our key")
    net: Any = host.get_network()
    net.retry_config = RetryConfig(max_retries=0)
    # The auto-connector redials every peerstore peer every 10 s; we choose whom to dial.
    net.auto_connector.maybe_connect = _no_auto_connect
    route_libp2p_logs()
    return host


def forget_failed_dial(host: IHost, peer_id: Any) -> None:
    """py-libp2p refuses to redial a peer for 60 s after a failed dial: we decide retries."""
    cache = getattr(host.get_network(), "_negative_peer_cache", None)
    if cache is not None:
        try:
            cache.evict(str(peer_id))
        except Exception:  # pragma: no cover - private API, best effort
            pass


def dial_only(host: IHost, peer_id: Any) -> None:
    """Forget the addresses py-libp2p keeps for `peer_id`, so that a dial tries the one
    it is given: its swarm dials only the first TCP address of its peerstore, which is
    the stale one after the peer came back on a new port (the chaos run's daemons that
    stayed apart). NodeCore decides which addresses to try (node/core/colony.py)."""
    try:
        host.get_peerstore().clear_addrs(peer_id)
    except Exception:  # pragma: no cover - best effort, as above
        pass
