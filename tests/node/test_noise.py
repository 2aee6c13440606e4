"""Our Noise XX handshake (node/daemon/noise.py) against py-libp2p's own Noise transport,
both ways, over real sockets: each side learns the other's peer id and the transport
messages decrypt; a dialer that expects another peer, and a peer whose signature does
not match its static key, are refused."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from colonynode.core.identity import Identity
from colonynode.core.ids import node_id_from_peer_id, peer_id_str
from colonynode.node.daemon.host import keypair_of
from colonynode.node.daemon.noise import HandshakeFailed, NoiseKey, handshake


def libp2p_noise(identity: Identity) -> NoiseTransport:
    return NoiseTransport(keypair_of(identity), noise_privkey=new_x25519_key_pair().private_key)


async def pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    return client, server


@pytest.mark.parametrize("we_dial", [True, False])
def test_our_handshake_and_py_libp2ps_connect_and_agree(we_dial: bool) -> None:
    ours, theirs = Identity.generate(), Identity.generate()

    async def main() -> None:
        client, server = await pair()
        got: dict[str, Any] = {}

        async def our_side(sock: trio.SocketStream) -> None:
            expect = theirs.node_id if we_dial else None
            got["ours"] = await handshake(sock, NoiseKey(ours), expect)

        async def their_side(sock: trio.SocketStream) -> None:
            raw = RawConnection(TrioTCPStream(sock), not we_dial)
            if we_dial:
                got["theirs"] = await libp2p_noise(theirs).secure_inbound(raw)
            else:
                peer = ID.from_base58(peer_id_str(ours.node_id))
                got["theirs"] = await libp2p_noise(theirs).secure_outbound(raw, peer)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(our_side, client if we_dial else server)
            nursery.start_soon(their_side, server if we_dial else client)
        state, peer = got["ours"]
        assert peer == theirs.node_id
        session = got["theirs"]
        assert node_id_from_peer_id(session.get_remote_peer().to_base58()) == ours.node_id
        their_state = session.conn.noise_state
        assert their_state.decrypt(state.encrypt(b"hello")) == b"hello"
        assert state.decrypt(their_state.encrypt(b"and back")) == b"and back"
        await client.aclose()
        await server.aclose()

    trio.run(main)


def test_a_dialer_that_reaches_another_peer_or_a_forged_payload_is_refused() -> None:
    a, b, c = Identity.generate(), Identity.generate(), Identity.generate()

    async def attempt(key_b: NoiseKey, expect: Any) -> list[BaseException]:
        client, server = await pair()
        errors: list[BaseException] = []

        async def side(sock: trio.SocketStream, key: NoiseKey, exp: Any) -> None:
            try:
                await handshake(sock, key, exp)
            except (HandshakeFailed, trio.BrokenResourceError) as exc:
                errors.append(exc)
                await sock.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, client, NoiseKey(a), expect)
            nursery.start_soon(side, server, key_b, None)
        return errors

    async def main() -> None:
        wrong = await attempt(NoiseKey(b), c.node_id)  # a dials expecting c, reaches b
        assert any("reached" in str(e) for e in wrong)
        forged = NoiseKey(b)
        forged.payload = NoiseKey(c).payload  # c's identity, over b's static key
        bad = await attempt(forged, b.node_id)
        assert any("signature" in str(e) for e in bad)

    trio.run(main)
